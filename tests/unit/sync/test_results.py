"""The sync steps' results: each goes through XCom as JSON and comes back equal, statuses are the strings the
DAG and the reports have always shown, and a document that does not fit is refused rather than half read."""

from __future__ import annotations

import json

import pandas as pd
import pydantic
import pytest

from include.imis_thrive.sync.guard import GuardCheck
from include.imis_thrive.sync.results import (
    ContactsExtract,
    ContactsUpsert,
    GroupOutcome,
    GuardVerdict,
    PanelExtract,
    PanelFieldsRun,
    PanelUpsert,
    PanelUpsertStatus,
    PlanStatus,
    TargetGroup,
    TargetGroupLoad,
    TargetGroupPlan,
    TargetGroupsReport,
    ValidationQuarantine,
)
from include.imis_thrive.sync.snapshots import SnapshotHandle

HANDLE = SnapshotHandle(name="contacts", key="contacts/snapshots/20260302T100000000000Z-run-1-abcd1234.parquet",
                        run_id="run-1", rows=3, staged_at="20260302T100000000000Z")
CHECK = GuardCheck(subject="target group 'Newsletter'", measure="removed members", count=1, base=4, share=0.25,
                   limit=0.2, blocked=True, overridden=False)
CHANGES = {"previous": 4, "added": 1, "changed": 2, "removed": 0, "unchanged": 1,
           "changed_by_column": {"FirstName": 2}}
MEMBERSHIP = {"target_group": "Newsletter", "previous": 4, "current": 3, "added": 0, "removed": 1}


def through_xcom(result):
    """What the next task rebuilds from the XCom the previous one pushed (Airflow stores it as JSON)."""
    return type(result).from_xcom(json.loads(json.dumps(result.to_xcom())))


def contacts_extract() -> ContactsExtract:
    return ContactsExtract(handle=HANDLE, rows=3, staged=2,
                           quarantined=ValidationQuarantine(rows=1, by_reason={"email_invalid": 1}, sample_ids=["7"]),
                           validation={"iqa": "$/HigherLogic/Contacts/Contacts", "failed": []}, new_bad_emails=1,
                           seconds=0.5)


def ready_plan() -> TargetGroupPlan:
    return TargetGroupPlan(group="Newsletter", iqa="$/HigherLogic/MailingLists/Newsletter", status=PlanStatus.READY,
                           handle=HANDLE, membership=MEMBERSHIP, guard=GuardVerdict.of(CHECK), full_resync=False)


def contacts_upsert() -> ContactsUpsert:
    return ContactsUpsert(members=3, missing_from_contacts_iqa=0, diff=CHANGES,
                          guard=GuardVerdict.nothing_to_compare(), to_send=3, dry_run=False, sent=3, rejected=1,
                          calls=1, records_sent=3, outcomes={"created": 2, "rejected": 1},
                          quarantine={"open": 1, "by_reason": {"malformed": 1}, "flagged_count": 0,
                                      "flagged_ids": [], "flag_after_runs": 3}, seconds=0.2)


def panel_upsert() -> PanelUpsert:
    return PanelUpsert(status=PanelUpsertStatus.SYNCED, in_thrive=4, panel_rows=5, not_in_thrive=1, diff=CHANGES,
                       to_send=3, field_sets={"count": 1, "largest": [{"fields": ["Region"], "contacts": 3}]},
                       dry_run=False, guard=GuardVerdict.of(CHECK), sent=3, calls=1, seconds=0.1)


@pytest.mark.parametrize("result", [
    TargetGroup(name="Newsletter", iqa="$/HigherLogic/MailingLists/Newsletter"),
    TargetGroup(name="Board", iqa="$/HigherLogic/MailingLists/Board", problem="list IQA ... is skipped"),
    contacts_extract(),
    ready_plan(),
    TargetGroupPlan(group="Board", iqa="$/HigherLogic/MailingLists/Board", status=PlanStatus.SKIPPED, reason="why"),
    contacts_upsert(),
    TargetGroupLoad(group="Newsletter", to_add=1, to_remove=1, not_in_thrive=0, dry_run=False, added=1, removed=1,
                    members=3, calls=2, seconds=0.1),
    TargetGroupLoad(group="Newsletter", to_add=1, to_remove=1, not_in_thrive=0, dry_run=True),
    TargetGroupsReport(run_id="run-1", finished_at="2026-03-02T10:05:00+00:00", contacts=contacts_extract(),
                       upsert=contacts_upsert(), target_groups=[GroupOutcome(**dict(ready_plan()))]),
    PanelExtract(iqa="$/HigherLogic/Panels/PanelFields", handle=HANDLE, rows=5, staged=5, fields=["Region"],
                 custom_fields=["Region"], quarantined=ValidationQuarantine(by_field={}), validation={}, seconds=1.0),
    panel_upsert(),
    PanelFieldsRun(report="file:///r.json", status=PanelUpsertStatus.BLOCKED, fields=1, custom_fields=[],
                   to_send=0, sent=0, rejected=0),
], ids=lambda result: type(result).__name__)
def test_every_result_comes_back_equal_through_xcom_json(result):
    assert through_xcom(result) == result


def test_statuses_travel_as_the_plain_strings_reports_have_always_shown():
    assert [status.value for status in PlanStatus] == ["ready", "skipped", "blocked"]
    assert [status.value for status in PanelUpsertStatus] == ["blocked", "dry_run", "synced"]
    assert ready_plan().to_xcom()["status"] == "ready"
    assert type(ready_plan().to_xcom()["status"]) is str
    assert through_xcom(panel_upsert()).status is PanelUpsertStatus.SYNCED


def test_a_status_nobody_knows_is_refused():
    document = ready_plan().to_xcom() | {"status": "synced"}
    with pytest.raises(pydantic.ValidationError, match="status"):
        TargetGroupPlan.from_xcom(document)


def test_a_renamed_or_missing_field_fails_where_it_is_read_not_later():
    document = contacts_extract().to_xcom()
    with pytest.raises(pydantic.ValidationError, match="staged_rows"):
        ContactsExtract.from_xcom(document | {"staged_rows": 2})
    with pytest.raises(pydantic.ValidationError, match="handle"):
        ContactsExtract.from_xcom({key: value for key, value in document.items() if key != "handle"})


def test_xcom_stays_small_empty_fields_are_left_out_and_handles_are_plain_json():
    skipped = TargetGroupPlan(group="Board", iqa="$/HigherLogic/MailingLists/Board", status=PlanStatus.SKIPPED,
                              reason="why").to_xcom()
    assert skipped == {"group": "Board", "iqa": "$/HigherLogic/MailingLists/Board", "status": "skipped",
                       "reason": "why"}
    assert contacts_extract().to_xcom()["handle"] == HANDLE.as_dict()
    assert len(json.dumps(TargetGroupsReport(run_id="r", finished_at="t", contacts=contacts_extract(),
                                             upsert=contacts_upsert(), target_groups=[]).to_xcom())) < 2_000


def test_results_are_frozen():
    with pytest.raises(pydantic.ValidationError):
        ready_plan().status = PlanStatus.SKIPPED


def test_the_guard_verdict_gives_back_the_guards_own_check():
    assert GuardVerdict.of(CHECK).check() == CHECK
    assert GuardVerdict.nothing_to_compare().to_xcom() == {"blocked": False, "base": 0}


def test_only_a_ready_plan_has_staged_changes():
    assert ready_plan().ready and ready_plan().staged() == HANDLE
    skipped = TargetGroupPlan(group="Board", iqa="x", status=PlanStatus.SKIPPED, reason="why")
    with pytest.raises(ValueError, match="'Board' is skipped"):
        skipped.staged()


def test_validation_quarantine_counts_rows_by_rule_and_field_with_a_few_ids():
    frame = pd.DataFrame({"ID": ["1", "1", "2"], "column": ["Email", "FirstName", "Email"],
                          "reason": ["email_invalid", "too_long", "email_invalid"]})
    assert ValidationQuarantine.of(frame).to_xcom() == {
        "rows": 2, "by_reason": {"email_invalid": 2, "too_long": 1}, "sample_ids": ["1", "2"],
        "sample_reasons": {"1": ["Email: email_invalid", "FirstName: too_long"], "2": ["Email: email_invalid"]}}
    assert ValidationQuarantine.of(frame, by_field=True).by_field == {"Email": 2, "FirstName": 1}
    assert ValidationQuarantine.of(frame.iloc[:0], by_field=True).to_xcom() == {
        "rows": 0, "by_reason": {}, "by_field": {}, "sample_ids": [], "sample_reasons": {}}
