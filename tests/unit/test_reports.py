from include.imis_thrive import reports
from include.imis_thrive.sync.results import (
    DriftCheck,
    RejectionSummary,
    TargetGroupLoad,
    TargetGroupPlan,
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
