"""The tenant check's pure logic: which alternative a reply shows, and which FIX line a finding gives."""

from __future__ import annotations

import pytest

from include.imis_thrive.thrive import documents, envelope
from include.imis_thrive.thrive.errors import ThriveCredentialsError
from include.imis_thrive.thrive.grids import ENGAGEMENT_GRIDS
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.thrive.models import Interest
from include.imis_thrive.thrive.tenant_check import (
    CLIENT_GRIDS,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    PASSWORD_ENV,
    Compression,
    FaultShape,
    GridCheck,
    Role,
    StartRowCheck,
    TargetGroupCheck,
    TenantReport,
    credentials_problem,
    fault_shape_of,
    main,
    missing_target_groups,
    pipeline_grids,
    reply_is_compressed,
)
from sandbox import thrive_xml
from tests.unit.thrive import replies

RECIPIENTS = ("data-team@example.org",)


def _report(**changes) -> TenantReport:
    grids = tuple(GridCheck(use, count=3, rows_read=3) for use in pipeline_grids())
    settings = dict(status_email_recipients=RECIPIENTS, startrow=StartRowCheck(0, "interest_target_group", 0),
                    fault_shape=FaultShape.AAPI, compression=Compression.SUPPORTED, compression_detail="ok",
                    grids=grids, target_groups=TargetGroupCheck(("Newsletter",)))
    return TenantReport("https://t.invalid/aapi/InformzService.svc", "7001", "Brand", "api", **{**settings, **changes})


def _refused(report: TenantReport, *grids: str, code: str = "InvalidGridCategoryException") -> TenantReport:
    return _report(grids=tuple(GridCheck(c.use, refused_code=code, refused_reason="no") if c.use.grid in grids else c
                               for c in report.grids))


@pytest.mark.parametrize(("shape", "expected"), [
    ("aapi", FaultShape.AAPI), ("service", FaultShape.SERVICE), ("faultcode", FaultShape.FAULTCODE)])
def test_each_fault_shape_of_the_emulator_is_named(shape, expected):
    body = thrive_xml.fault_envelope("InvalidGridCategoryException", "Grid type 'x' is not a known grid", shape)
    assert fault_shape_of(body) is expected
    assert envelope.fault_from(envelope.parse_envelope(body, "t"), "t").code == "InvalidGridCategoryException"


def test_a_reply_without_a_fault_or_not_soap_is_said_so():
    assert fault_shape_of(replies.response_envelope("<GridResponse/>")) is FaultShape.NO_FAULT
    assert fault_shape_of(b"<html>proxy error</html>") is FaultShape.UNREADABLE


def test_a_compressed_grids_payload_is_told_from_a_plain_one():
    ns = envelope.NAMESPACE
    plain = f'<GridResponse xmlns="{ns}"><Grids><Grid type="subscriber"/></Grids></GridResponse>'
    grid = f'<Grid xmlns="{ns}" type="subscriber"/>'  # compressed on its own, so it names its namespace
    packed = f'<GridResponse xmlns="{ns}"><Grids>{documents.compress_text(grid)}</Grids></GridResponse>'
    assert not reply_is_compressed(replies.response_envelope(plain))
    assert reply_is_compressed(replies.response_envelope(packed))


def test_a_refused_per_event_opens_grid_is_covered_by_the_documented_flags():
    report = _refused(_report(), "mailing_activity_opens")
    assert report.exit_code == EXIT_OK
    assert any(line.startswith("NOTE grid mailing_activity_opens") and "flags are read instead" in line
               for line in report.render().splitlines())
    both = _refused(_report(), "mailing_activity_opens", "mailing_activity_subscriber_actions")
    assert any("Mail Open writeback fails on every run" in problem for problem in both.problems)


def test_every_grid_the_pipeline_reads_is_checked_once_with_its_own_fields():
    uses = pipeline_grids()
    grids = [use.grid for use in uses]
    assert len(grids) == len(set(grids))
    engagement = {grid for spec in ENGAGEMENT_GRIDS.values() for grid in spec.grids}
    derived = {"subscriber", "mailing_activity_subscriber_actions"}  # Resubscribe's state, the opens/clicks flags
    assert set(grids) == engagement | {use.grid for use in CLIENT_GRIDS} | derived
    mail_sent = [use for use in uses if EngagementKind.MAIL_SENT in use.kinds]
    assert {use.grid for use in mail_sent} == {"subscriber_mailing_history"}
    assert all(use.return_fields == ENGAGEMENT_GRIDS[EngagementKind.MAIL_SENT].return_fields()
               for use in mail_sent)
    only_clicks = [use.grid for use in pipeline_grids([EngagementKind.LINK_CLICK])]
    client_grids = [use.grid for use in CLIENT_GRIDS]
    assert only_clicks == [*client_grids, "mailing_activity_clicks", "mailing_activity_subscriber_actions"]


def test_target_groups_are_matched_case_insensitively_and_a_deleted_one_is_named():
    interests = [Interest(1, "newsletter", False), Interest(2, "Old List", True)]
    found = missing_target_groups(["Newsletter", "Old List", "Lapsed"], interests)
    assert found.missing == ("Lapsed", "Old List") and found.deleted == ("Old List",)
    report = _report(target_groups=found)
    assert report.exit_code == EXIT_PROBLEMS
    assert any("'Old List'" in p and "restore it" in p for p in report.problems)


def test_a_clean_tenant_can_run_and_gets_only_the_startrow_tip_when_the_extra_is_unset():
    assert _report().ok and _report().tips == [] and _report().exit_code == EXIT_OK
    unset = _report(startrow=StartRowCheck(1, "interest_target_group", None))
    assert unset.ok and unset.tips == ["set the thrive connection's extra startrow_base to 1 (detected here), so no "
                                       "run has to probe it"]
    assert "TIP  set the thrive connection's extra startrow_base to 1" in unset.render()
    assert unset.render().splitlines()[-1].endswith(": the pipeline can run")


def test_a_startrow_extra_that_contradicts_the_tenant_is_a_problem():
    report = _report(startrow=StartRowCheck(1, "interest_target_group", 0))
    assert report.problems == ["the thrive connection's extra startrow_base is 0 but this tenant counts rows from 1: "
                               "paging would skip or repeat rows; set it to 1 (or remove it, to detect it on each run)"]


def test_missing_status_email_recipients_is_a_fix_line():
    report = _report(status_email_recipients=())
    assert report.exit_code == EXIT_PROBLEMS
    assert any(line.startswith("FIX  the thrive connection has no status_email_recipients extra")
               for line in report.render().splitlines())


def test_one_refused_campaign_signal_is_a_note_both_are_a_problem():
    one = _refused(_report(), "mailing_instance")
    assert one.ok and "NOTE grid mailing_instance: refused with InvalidGridCategoryException" in one.render()
    both = _refused(_report(), "mailing_instance", "target_group_counts")
    assert len(both.problems) == 2 and all("Airflow Variable imis_thrive_campaign_groups" in p for p in both.problems)


def test_a_refused_engagement_grid_names_the_kind_and_the_required_grids_block_the_sync():
    report = _refused(_report(), "subscriber_form_usage", "subscriber_interests")
    fixes = [line for line in report.render().splitlines() if line.startswith("FIX")]
    assert len(fixes) == 2 and report.exit_code == EXIT_PROBLEMS
    assert "Landing Page Submit writeback fails on every run" in fixes[1]
    assert fixes[0].startswith("FIX  grid subscriber_interests (target group members")
    assert {use.role for use in pipeline_grids()} == set(Role)


def test_a_nonempty_grid_whose_first_page_is_empty_is_a_problem():
    grids = tuple(GridCheck(c.use, count=5, rows_read=0) if c.use.grid == "subscriber" else c for c in _report().grids)
    report = _report(grids=grids)
    assert len(report.problems) == 1 and "grid subscriber" in report.problems[0]
    assert "the Count says 5 rows but the first page holds none" in report.problems[0]


@pytest.mark.parametrize(("code", "words"), [
    ("InvalidCredentialsException", "check the thrive connection's login, password and brand_id"),
    ("ValidUserNotFoundException", "check the thrive connection's login, password and brand_id"),
    ("NoAvailableIPAddressException", "allow-list the public IP address"),
    ("BrandNotFoundException", "set the thrive connection's extra brand_id"),
])
def test_refused_credentials_name_the_fix_and_stop_the_check(code, words):
    problem = credentials_problem(ThriveCredentialsError("grid x", code, "refused"))
    assert words in problem and code in problem
    report = TenantReport("https://t.invalid", "7001", "Brand", "api", RECIPIENTS, credentials=problem)
    assert report.problems == [problem] and report.exit_code == EXIT_PROBLEMS
    assert report.render().splitlines()[1] == f"FIX  {problem}"


def test_alternatives_are_named_as_the_emulator_names_them():
    assert _report().alternatives() == {"startrow_base": "0", "fault_shape": "aapi", "grids": "extended",
                                        "compression": "on-request"}


@pytest.mark.parametrize("argv", [
    ["--url", "https://t.invalid"],  # no brand or user
    ["--url", "https://t.invalid", "--brand-id", "1", "--brand-name", "B", "--user", "u"],  # no password
    ["--kinds", "Mail Sent,Carrier Pigeon"],
    ["--password", "secret"],  # there is no such option, on purpose
])
def test_usage_errors_exit_2(argv, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == EXIT_USAGE
