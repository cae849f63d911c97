"""The page's figures from reports built in code: each group's last run, its history, what was kept from Thrive,
drift when a report has it, the panel fields, and the writeback per kind per hour."""

from __future__ import annotations

from datetime import UTC, datetime

from include.imis_thrive.health import summary
from include.imis_thrive.health.runs import RecentReports
from include.imis_thrive.sync.results import DriftCheck, PanelUpsertStatus, PlanStatus
from include.imis_thrive.thrive.kinds import EngagementKind
from tests.unit.health.report_builders import activities_report, group, panel_fields_report, target_groups_report

T1, T2, T3 = "2026-03-02T08:05:00+00:00", "2026-03-02T09:05:00+00:00", "2026-03-02T10:05:00+00:00"


def health(target_groups=(), panels=(), writebacks=(), unreadable=0) -> summary.SyncHealth:
    return summary.build(RecentReports(list(target_groups), unreadable), RecentReports(list(panels)),
                         RecentReports(list(writebacks)), now=datetime(2026, 3, 2, 11, tzinfo=UTC))


def test_each_group_shows_its_last_runs_figures_and_every_run_in_its_history():
    reports = [
        target_groups_report("scheduled__1", T1, [group("Newsletter", added=12, removed=3, members=1058),
                                                  group("Board", added=1, members=40)]),
        # a manual run of one group: the other keeps its figures from the run before
        target_groups_report("manual__2", T2, [group("Newsletter", added=0, removed=2, members=1056,
                                                     not_in_thrive=4, rejected=1)]),
    ]
    groups = {g.group: g for g in health(reports).target_groups}
    assert list(groups) == ["Board", "Newsletter"]
    newsletter, board = groups["Newsletter"], groups["Board"]
    assert (newsletter.state, newsletter.members, newsletter.added, newsletter.removed) == ("synced", 1056, 0, 2)
    assert newsletter.last_run.run_id == "manual__2"
    assert newsletter.last_run.airflow == "/dags/imis_to_thrive_target_groups/runs/manual__2"
    assert newsletter.last_run.report == "/sync-health/runs/imis_to_thrive_target_groups/manual__2"
    assert [(p.run_id, p.added, p.removed) for p in newsletter.history] == [("scheduled__1", 12, 3),
                                                                            ("manual__2", 0, 2)]
    assert newsletter.not_added.count == 5
    assert newsletter.not_added.by_reason == {"not in Thrive": 4, "rejected by Thrive": 1}
    assert (board.last_run.run_id, board.members, board.added) == ("scheduled__1", 40, 1)
    assert newsletter.drift is None  # reports written before drift was checked


def test_skipped_blocked_dry_and_failed_groups_say_so():
    report = target_groups_report("manual__1", T1, [
        group("Broken", status=PlanStatus.SKIPPED, reason="list IQA returns no active record"),
        group("Guarded", status=PlanStatus.BLOCKED, reason="would remove 40% of the members"),
        group("Trial", added=7, removed=1, dry_run=True),
        group("Crashed", loaded=False),
    ], dry_run=True)
    groups = {g.group: g for g in health([report]).target_groups}
    assert {name: g.state for name, g in groups.items()} == {
        "Broken": "skipped", "Crashed": "failed", "Guarded": "blocked", "Trial": "dry run"}
    assert groups["Broken"].reason == "list IQA returns no active record"
    assert (groups["Trial"].added, groups["Trial"].to_add, groups["Trial"].to_remove) == (0, 7, 1)
    assert health([report]).contacts.state == "dry run"


def test_drift_shows_what_the_check_found_and_what_the_load_repaired():
    check = DriftCheck(snapshot=1058, in_thrive=18, reconciled=True, missing=1040, extra=0)
    plain = group("Newsletter", members=1058)
    assert plain.load is not None
    drifted = plain.model_copy(update={"drift": check, "load": plain.load.model_copy(
        update={"drift_readded": 1040, "drift_removed": 0, "drift_fields_resent": 12})})
    report = target_groups_report("scheduled__1", T1, [])
    [newsletter] = health([report.model_copy(update={"target_groups": [drifted]})]).target_groups
    assert newsletter.drift is not None
    assert {k: newsletter.drift[k] for k in ("snapshot", "in_thrive", "missing", "extra", "readded", "removed",
                                             "fields_resent")} == {"snapshot": 1058, "in_thrive": 18,
                                                                   "missing": 1040, "extra": 0, "readded": 1040,
                                                                   "removed": 0, "fields_resent": 12}
    assert newsletter.drift["note"] == ("drift: 1,040 missing in Thrive, 0 extra, repaired (1,040 added again, "
                                        "0 removed, 12 fields re-sent)")


def test_a_group_without_a_drift_check_shows_none():
    [newsletter] = health([target_groups_report("scheduled__1", T1, [group("Newsletter")])]).target_groups
    assert newsletter.drift is None


def test_contact_fields_show_quarantine_reasons_with_ids_and_stuck_contacts():
    reports = [target_groups_report("scheduled__1", T1, [group("Newsletter")], changed=4),
               target_groups_report("scheduled__2", T2, [group("Newsletter")], changed=9,
                                    quarantined={"email_invalid": ["101", "102"], "too_long": ["103"]},
                                    stuck=["207"])]
    contacts = health(reports).contacts
    assert contacts is not None
    assert (contacts.read, contacts.changed, contacts.sent) == (500, 9, 9)
    assert contacts.quarantined.count == 3
    assert contacts.quarantined.by_reason == {"email_invalid": 2, "too_long": 1}
    assert contacts.quarantined.ids == ["101", "102", "103"]
    assert (contacts.stuck.count, contacts.stuck.ids) == (1, ["207"])
    assert [p.changed for p in contacts.history] == [4, 9]


def test_panel_fields_last_run_and_history():
    panels = [panel_fields_report("scheduled__1", T1, changed=30, sent=30),
              panel_fields_report("scheduled__2", T2, changed=5, sent=0, status=PanelUpsertStatus.DRY_RUN)]
    panel = health(panels=panels).panel_fields
    assert panel is not None
    assert (panel.state, panel.read, panel.fields, panel.changed, panel.sent) == ("dry run", 300, 2, 5, 0)
    assert [p.changed for p in panel.history] == [30, 5]
    assert health().panel_fields is None and health().contacts is None and health().activities is None


def test_the_writeback_per_kind_per_hour_with_refusals_and_quarantine():
    writebacks = [
        activities_report("scheduled__8", "2026-03-02T08:00:00+00:00", "2026-03-02T09:00:00+00:00",
                          {"Mail Open": 40, "Link Click": 10}),
        activities_report("scheduled__9", "2026-03-02T09:00:00+00:00", "2026-03-02T10:00:00+00:00",
                          {"Mail Open": 25, "Link Click": 0}, refused={"ActivityType unknown": 2},
                          quarantined_kinds=["Link Click"], unknown={"Mail Open": 3}),
    ]
    writeback = health(writebacks=writebacks).activities
    assert writeback is not None
    assert writeback.state == "incomplete"
    assert [k.kind for k in writeback.kinds] == [str(kind) for kind in EngagementKind]
    kinds = {k.kind: k for k in writeback.kinds}
    assert [(p.start[11:16], p.written) for p in kinds["Mail Open"].per_hour] == [("08:00", 40), ("09:00", 25)]
    assert (kinds["Mail Open"].written, kinds["Mail Open"].unknown_contacts) == (25, 3)
    assert kinds["Link Click"].quarantined == 1
    assert kinds["Bad Email"].written == 0
    assert (writeback.refused.count, writeback.refused.by_reason) == (2, {"ActivityType unknown": 2})
    assert writeback.quarantine_open == 1


def test_reports_of_another_shape_are_noted():
    note = health(unreadable=2).notes
    assert note == ["2 stored imis_to_thrive_target_groups report(s) were written by another version and are "
                    "left out"]
