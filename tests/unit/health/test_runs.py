"""Reading run reports back: found where each DAG's `finish_run` writes them, the recent ones only, oldest first,
and a stored report of another shape left out with a count instead of breaking the page."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from include.imis_thrive.health import runs
from include.imis_thrive.health.addresses import (
    ACTIVITIES_DAG,
    PANEL_FIELDS_DAG,
    TARGET_GROUPS_DAG,
    report_view_path,
    report_view_url,
    run_path,
)
from include.imis_thrive.sync import panel_fields, target_groups
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.writeback import activities
from tests.unit.health.report_builders import (
    activities_report,
    group,
    panel_fields_report,
    store_report,
    target_groups_report,
)


@pytest.fixture
def store(tmp_path) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / "store"))


def test_each_dags_finish_run_writes_where_the_page_reads(store, caplog):
    caplog.set_level(logging.INFO, logger="include.imis_thrive.sync.load_cycle")
    tg = target_groups_report("manual__1", "2026-03-02T10:00:00+00:00", [])
    target_groups.finish_run(store, "manual__1", [], tg.contacts, tg.upsert, [], report_url="http://af/r/1")
    panel = panel_fields_report("scheduled__2", "2026-03-02T02:00:00+00:00", changed=1, sent=1)
    panel_fields.finish_run(store, "scheduled__2", panel.extract, panel.upsert)
    written = activities_report("scheduled__3", "2026-03-02T09:00:00+00:00", "2026-03-02T10:00:00+00:00", {})
    assert written.writeback is not None
    activities.finish_run(store, "scheduled__3", datetime(2026, 3, 2, 9, tzinfo=UTC),
                          datetime(2026, 3, 2, 10, tzinfo=UTC), written.writeback)

    assert [r.run_id for r in runs.target_group_reports(store, 5)] == ["manual__1"]
    assert [r.run_id for r in runs.panel_field_reports(store, 5)] == ["scheduled__2"]
    assert [r.run_id for r in runs.activity_reports(store, 5)] == ["scheduled__3"]
    for dag_id, run_id, title in ((TARGET_GROUPS_DAG, "manual__1", "# Target-group sync manual__1"),
                                  (PANEL_FIELDS_DAG, "scheduled__2", "# Panel-field sync scheduled__2"),
                                  (ACTIVITIES_DAG, "scheduled__3", "# Activity writeback scheduled__3")):
        assert (runs.readable_report(store, dag_id, run_id) or "").startswith(title)
    # The log names the report's address in Airflow when the DAG passes it, not the store's file.
    assert "run report: http://af/r/1" in caplog.messages


def test_the_recent_reports_are_the_last_written_oldest_first(store):
    for hour in range(6):
        store_report(store, target_groups_report(f"scheduled__{hour}", f"2026-03-02T{hour:02d}:05:00+00:00",
                                                 [group("Newsletter", added=hour)]))
    recent = runs.target_group_reports(store, 3)
    assert [r.run_id for r in recent] == ["scheduled__3", "scheduled__4", "scheduled__5"]
    assert recent.last is not None and recent.last.run_id == "scheduled__5"


def test_a_report_of_another_shape_is_counted_and_left_out(store):
    store_report(store, target_groups_report("manual__ok", "2026-03-02T10:00:00+00:00", [group("Newsletter")]))
    store.write_json(runs.report_key(TARGET_GROUPS_DAG, "manual__old"), {"run_id": "manual__old", "groups": []})
    recent = runs.target_group_reports(store, 10)
    assert [r.run_id for r in recent] == ["manual__ok"]
    assert recent.unreadable == 1


def test_no_report_for_an_unknown_dag_or_a_run_that_wrote_none(store):
    assert runs.readable_report(store, "some_other_dag", "manual__1") is None
    assert runs.readable_report(store, TARGET_GROUPS_DAG, "manual__never") is None
    assert runs.target_group_reports(store, 5).reports == []


def test_addresses_quote_run_ids_and_sit_under_the_base_url():
    run_id = "manual__2026-03-02T10:00:00+00:00"
    assert report_view_path(TARGET_GROUPS_DAG, run_id) == (
        "/sync-health/runs/imis_to_thrive_target_groups/manual__2026-03-02T10%3A00%3A00%2B00%3A00")
    assert run_path(TARGET_GROUPS_DAG, "a/b") == "/dags/imis_to_thrive_target_groups/runs/a%2Fb"
    assert report_view_url("https://airflow.example.org/", ACTIVITIES_DAG, "r") == (
        "https://airflow.example.org/sync-health/runs/thrive_to_imis_activities/r")
