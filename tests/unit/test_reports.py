import pytest

from include.imis_thrive import reports
from include.imis_thrive.sync.results import (
    DriftCheck,
    PanelFieldsReport,
    RejectionSummary,
    TargetGroupLoad,
    TargetGroupPlan,
    TargetGroupsReport,
    ValidationQuarantine,
)
from include.imis_thrive.writeback.results import ActivitiesReport


def test_activity_report_lists_every_kind_and_the_unknown_contacts():
    interval = {"start": "2026-03-02T10:00:00+00:00", "end": "2026-03-02T11:00:00+00:00"}
    report = ActivitiesReport.from_xcom({
        "run_id": "r1", "finished_at": "2026-03-02T11:05:00+00:00", "interval": interval,
        "writeback": {"interval": interval, "timezone": "America/New_York", "read": {"Mail Open": 3, "Link Click": 0},
                      "written": {"Mail Open": 2, "Link Click": 0}, "already_written": {"Mail Open": 1},
                      "unknown_contacts": {"events": 1, "ids": ["999"]},
                      "rejected": {"events": 0}, "imis_calls": 4, "thrive_calls": 2, "seconds": 0.5}})
    text = reports.render_activities(report)
    assert "| Mail Open | 3 | 2 | 1 |" in text and "| Link Click | 0 | 0 | 0 |" in text
    assert "contacts unknown to iMIS were skipped:** 999" in text
    figures = reports.activity_figures(report.writeback)
    assert (figures["rows"], figures["added"], figures["already_written"], figures["quarantined"]) == (3, 2, 1, 1)


def test_target_group_figures_count_members_not_added_as_quarantined():
    plan = TargetGroupPlan(group="Newsletter", iqa="$/HigherLogic/MailingLists/Newsletter", status="ready",
                           membership={"target_group": "Newsletter", "previous": 5, "current": 10, "added": 7,
                                       "removed": 2})
    load = TargetGroupLoad(group="Newsletter", to_add=9, to_remove=2, not_in_thrive=2, dry_run=False, added=7,
                           removed=2, rejected=1, members=7, calls=2, seconds=0.1)
    figures = reports.target_group_figures(plan, load)
    assert (figures["rows"], figures["added"], figures["removed"], figures["quarantined"]) == (10, 7, 2, 3)


def test_quarantine_section_shows_reasons_and_ids_only():
    quarantine = ValidationQuarantine(rows=2, by_reason={"email is malformed": 2}, sample_ids=["1001", "1002"])
    text = "\n".join(reports._quarantine_lines("Quarantined", quarantine))
    assert "| email is malformed | 2 |" in text and "1001, 1002" in text


def test_rejections_thrive_keeps_refusing_name_the_contacts_to_fix():
    ledger = RejectionSummary(open=3, by_reason={"email is malformed": 3}, flagged_count=1, flagged_ids=["1001"],
                              flag_after_runs=3)
    text = "\n".join(reports._quarantine_lines("Rejected", ledger))
    assert "| email is malformed | 3 |" in text and "1 contact(s) rejected 3 runs in a row need a fix" in text


def test_a_group_s_drift_reads_as_found_and_repaired_or_not():
    drift = {"snapshot": 10, "in_thrive": 9, "reconciled": True, "missing": 2, "extra": 1}
    plan = TargetGroupPlan(group="Newsletter", iqa="$/HigherLogic/MailingLists/Newsletter", status="ready",
                           drift=drift)
    load = TargetGroupLoad(group="Newsletter", to_add=2, to_remove=1, not_in_thrive=0, dry_run=False, added=2,
                           removed=1, drift_readded=2, drift_removed=1, drift_fields_resent=0)
    assert reports.drift_note(plan, load) == ("drift: 2 missing in Thrive, 1 extra, repaired (2 added again, "
                                              "1 removed, 0 fields re-sent)")
    assert reports.drift_note(plan, load.model_copy(update={"dry_run": True})).endswith("not repaired (dry run)")
    blocked = plan.model_copy(update={"status": "blocked"})
    assert reports.drift_note(blocked, None).endswith("not repaired (blocked)")
    quiet = plan.model_copy(update={"drift": DriftCheck(snapshot=10, in_thrive=10)})
    assert reports.drift_note(quiet, load) == "none (10 in Thrive)"
    assert (reports.target_group_figures(plan, load)["drift_missing"],
            reports.target_group_figures(plan, load)["drift_extra"]) == (2, 1)


HANDLE = {"name": "contacts", "key": "contacts/snapshots/s.parquet", "run_id": "r1", "rows": 290,
          "staged_at": "20260302T110000Z"}
NO_CHANGES = {"previous": 0, "added": 0, "changed": 0, "removed": 0, "unchanged": 0}


def _target_groups_report(dry_run: bool) -> TargetGroupsReport:
    """Contacts to send and two groups, one with membership changes and one skipped, as a run records them."""
    membership = {"target_group": "Newsletter", "previous": 0, "current": 179, "added": 179, "removed": 0}
    return TargetGroupsReport.from_xcom({
        "run_id": "r1", "finished_at": "2026-03-02T11:05:00+00:00", "dry_run": dry_run,
        "contacts": {"handle": HANDLE, "rows": 300, "staged": 290, "quarantined": {"rows": 10},
                     "validation": {}, "new_bad_emails": 0, "seconds": 1.0},
        "upsert": {"members": 250, "missing_from_contacts_iqa": 0, "diff": NO_CHANGES | {"added": 240},
                   "guard": {"blocked": False, "base": 0}, "to_send": 240, "dry_run": dry_run,
                   "sent": 0 if dry_run else 240, "seconds": 0.5},
        "target_groups": [
            {"group": "Newsletter", "iqa": "$/HigherLogic/MailingLists/Newsletter", "status": "ready",
             "membership": membership,
             "load": {"group": "Newsletter", "to_add": 172, "to_remove": 3, "not_in_thrive": 7, "dry_run": dry_run,
                      "added": 0 if dry_run else 172, "removed": 0 if dry_run else 3,
                      "members": None if dry_run else 176}},
            {"group": "Broken - Prompted", "iqa": "$/HigherLogic/MailingLists/Broken - Prompted", "status": "skipped",
             "reason": "list IQA $/HigherLogic/MailingLists/Broken - Prompted is skipped: it must have no prompts"}]})


def test_a_dry_run_report_says_so_and_what_a_real_run_would_add_remove_and_send():
    text = reports.render_target_groups(_target_groups_report(dry_run=True))

    assert "**DRY RUN**" in text.split("## Contacts")[0]  # the banner comes before any figure
    assert "| read | staged | new to Thrive | changed | would send |" in text
    assert "| 300 | 290 | 240 | 0 | 240 |" in text
    assert "| group | status | members | would add | would remove | would not add | drift in Thrive | note |" in text
    assert "| Newsletter | ready | 179 | 172 | 3 | 7 |  |" in text
    assert "| Broken - Prompted | skipped |  |  |  |  |  | list IQA" in text


def test_a_real_run_report_has_no_banner_and_shows_what_was_done():
    text = reports.render_target_groups(_target_groups_report(dry_run=False))

    assert "DRY RUN" not in text and "would" not in text
    assert "| 300 | 290 | 240 | 0 | 240 |" in text and "| Newsletter | ready | 176 | 172 | 3 | 7 |  |" in text


def _panel_report(dry_run: bool) -> PanelFieldsReport:
    return PanelFieldsReport.from_xcom({
        "run_id": "p1", "finished_at": "2026-03-02T02:05:00+00:00", "iqa": "$/HigherLogic/Panels/PanelFields",
        "extract": {"iqa": "$/HigherLogic/Panels/PanelFields", "handle": HANDLE, "rows": 300, "staged": 300,
                    "fields": ["Region", "Chapter"], "custom_fields": [], "quarantined": {"rows": 0},
                    "validation": {}, "seconds": 1.0},
        "upsert": {"status": "dry_run" if dry_run else "synced", "in_thrive": 250, "panel_rows": 300,
                   "not_in_thrive": 50, "diff": NO_CHANGES | {"added": 250}, "to_send": 250,
                   "field_sets": {"count": 1, "largest": []}, "dry_run": dry_run, "sent": 0 if dry_run else 250,
                   "seconds": 0.5}})


def test_a_dry_run_panel_report_says_so_and_what_a_real_run_would_send():
    text = reports.render_panel_fields(_panel_report(dry_run=True))
    assert "**DRY RUN**" in text
    assert "| read | fields | new contacts | changed | would send | rejected | status |" in text
    assert "| 300 | 2 | 250 | 0 | 250 | 0 | dry_run |" in text
    assert "DRY RUN" not in reports.render_panel_fields(_panel_report(dry_run=False))


@pytest.mark.parametrize("figures, announced", [
    ({"added": 172, "removed": 3, "dry_run": False}, True),
    ({"added": 0, "removed": 1, "dry_run": False}, True),
    ({"added": 0, "changed": 4, "removed": 0, "status": "synced"}, True),
    ({"added": 172, "removed": 3, "dry_run": True}, False),  # a dry run wrote nothing
    ({"added": 250, "changed": 0, "removed": 0, "status": "dry_run"}, False),
    ({"added": 0, "changed": 90, "removed": 0, "status": "blocked"}, False),  # the guard stopped the load
    ({"added": 0, "changed": 0, "removed": 0, "dry_run": False}, False),  # e.g. every group skipped or blocked
    ({"rows": 0, "added": 0, "already_written": 0}, False),  # an hour without engagement
    ({}, False),  # the write step did not finish
], ids=repr)
def test_an_asset_event_announces_only_a_run_that_wrote_something(figures, announced):
    assert reports.announces_a_change(figures) is announced
