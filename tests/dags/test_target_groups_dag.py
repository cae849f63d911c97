"""`imis_to_thrive_target_groups` end to end with dag.test() against both sandboxes on loopback.

What is asserted is the end state at the sandboxes (what Thrive holds, what was written to it) and in the
snapshot store, not log lines.
"""

from __future__ import annotations

import pytest

from include.imis_thrive.imis import iqa_package
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.sync.target_groups import CONTACTS_SNAPSHOT
from tests.dags.conftest import run_dag

pytestmark = [pytest.mark.dags, pytest.mark.integration]
DAG_ID = "imis_to_thrive_target_groups"
VALID_LISTS = ("All Members", "Annual Conference 2026", "Lapsed Members", "Newsletter")


def memberships(sandboxes) -> dict[str, set[str]]:
    return {name: set(sandboxes.thrive.interest_members(name)) for name in VALID_LISTS}


def written(sandboxes) -> dict[str, int]:
    return dict(sandboxes.thrive.counters().get("records_written", {}))


def latest_report(store_url: str) -> dict:
    store = SnapshotStore(store_url)
    return store.read_json(f"reports/target_groups/{store.newest_name('reports/target_groups')}")


def test_only_the_tasks_that_talk_to_imis_hold_an_imis_api_slot(dagbag):
    dag = dagbag.get_dag(DAG_ID)
    pooled = {task.task_id for task in dag.tasks if task.pool == "imis_api"}
    assert pooled == {"discover_target_groups", "fetch_contacts", "fetch_target_group"}
    assert dag.get_task("extract_contacts").upstream_task_ids == {"fetch_contacts"}
    assert dag.get_task("plan_target_group").upstream_task_ids == {"fetch_target_group", "extract_contacts"}
    assert dag.get_task("fetch_target_group").upstream_task_ids == {"discover_target_groups"}


def test_three_runs_load_everything_then_exactly_the_changes_then_nothing(dagbag, sandboxes):
    state, tasks = run_dag(dagbag, DAG_ID)
    assert state == "success", tasks
    assert {f"load_target_group[{name}]" for name in VALID_LISTS} <= tasks.keys()  # one mapped task per list
    first = memberships(sandboxes)
    assert all(first.values())

    mutated = set(sandboxes.imis.mutate_contacts(20, seed=2))
    moved = sandboxes.imis.move_list_members("Annual Conference 2026", 5, seed=4)
    before = written(sandboxes)
    state, tasks = run_dag(dagbag, DAG_ID)
    assert state == "success", tasks
    second = memberships(sandboxes)
    in_thrive_before = set().union(*first.values())
    joined = second["Annual Conference 2026"] - first["Annual Conference 2026"]
    left = first["Annual Conference 2026"] - second["Annual Conference 2026"]
    assert left == set(moved["removed"]) & first["Annual Conference 2026"]
    assert joined <= set(moved["added"])
    assert all(second[name] == first[name] for name in VALID_LISTS if name != "Annual Conference 2026")
    report = latest_report(sandboxes.store_url)
    retried = report["upsert"]["sent"] - len(mutated & in_thrive_before) - len(joined - in_thrive_before)
    assert 0 <= retried <= report["upsert"]["quarantine"]["open"]  # Thrive's earlier rejections, changed since
    delta = {kind: count - before.get(kind, 0) for kind, count in written(sandboxes).items()}
    conference = next(g["load"] for g in report["target_groups"] if g["group"] == "Annual Conference 2026")
    assert conference["added"] == len(joined)
    assert delta["Subscribe"] == report["upsert"]["records_sent"] + conference["records_sent"]
    assert delta["BulkUpload"] == len(left)

    before = written(sandboxes)
    state, _ = run_dag(dagbag, DAG_ID)
    assert state == "success"
    report = latest_report(sandboxes.store_url)
    assert memberships(sandboxes) == second
    assert written(sandboxes) == before  # nothing changed: nothing written, Thrive's rejections not resent
    assert report["upsert"]["sent"] == 0
    assert report["upsert"]["refused_unchanged"] == report["upsert"]["quarantine"]["open"] > 0


def test_a_dry_run_reports_the_diff_and_loads_nothing(dagbag, sandboxes):
    state, _ = run_dag(dagbag, DAG_ID, dry_run=True)
    assert state == "success"
    assert written(sandboxes) == {}
    assert SnapshotStore(sandboxes.store_url).read(CONTACTS_SNAPSHOT) is None
    assert latest_report(sandboxes.store_url)["upsert"]["to_send"] > 0


def test_a_manual_run_syncs_only_the_named_group(dagbag, sandboxes):
    state, tasks = run_dag(dagbag, DAG_ID, target_group="Lapsed Members")
    assert state == "success", tasks
    assert [name for name, members in memberships(sandboxes).items() if members] == ["Lapsed Members"]


def test_each_broken_list_is_skipped_with_its_rule_and_the_others_still_sync(dagbag, broken_sandboxes):
    state, tasks = run_dag(dagbag, DAG_ID)
    assert state == "failed"  # so that alerting fires
    reasons = {g["group"]: g.get("reason") for g in latest_report(broken_sandboxes.store_url)["target_groups"]}
    expected = {
        "Broken - Prompted": iqa_package.ListRequirement.NO_PROMPTS,
        "Broken - No ID Alias": iqa_package.ListRequirement.ID_ALIAS,
        "Broken - Not Shared": iqa_package.ListRequirement.SHARED_WITH_EVERYONE,
        "Broken - No Active Records": iqa_package.ListRequirement.ACTIVE_RECORD,
    }
    for name, rule in expected.items():
        assert f"list IQA $/HigherLogic/MailingLists/{name} is skipped" in reasons[name]
        assert rule.value in reasons[name]
        assert tasks[f"load_target_group[{name}]"] == "failed"
        assert not broken_sandboxes.thrive.interest_members(name)  # nothing loaded for it
    for name in VALID_LISTS:
        assert reasons[name] is None and tasks[f"load_target_group[{name}]"] == "success"
        assert broken_sandboxes.thrive.interest_members(name)


def _null_id(seed):
    seed.contacts["ID"][3] = None


def _duplicate_id(seed):
    seed.contacts["ID"][3] = seed.contacts["ID"][4]


def _non_numeric_id(seed):
    seed.contacts["ID"][3] = "AB-1234"


def _no_active_record(seed):
    seed.contacts["Status"][:] = "I"


@pytest.mark.parametrize("damage, message", [
    (_null_id, "ID"), (_duplicate_id, "unique"), (_non_numeric_id, "numeric"), (_no_active_record, "active"),
])
def test_a_blocking_expectation_fails_before_anything_is_loaded_and_keeps_the_snapshot(
        dagbag, sandboxes, damage, message):
    state, _ = run_dag(dagbag, DAG_ID, target_group="Newsletter")
    assert state == "success"
    store = SnapshotStore(sandboxes.store_url)
    committed = store.current(CONTACTS_SNAPSHOT)
    before = written(sandboxes)

    damage(sandboxes.imis.seed)
    state, tasks = run_dag(dagbag, DAG_ID, target_group="Newsletter")
    assert state == "failed"
    assert tasks["extract_contacts"] == "failed"
    assert tasks["upsert_contacts"] == "upstream_failed"
    assert written(sandboxes) == before  # nothing reached Thrive
    assert store.current(CONTACTS_SNAPSHOT) == committed  # the last good snapshot stays


@pytest.mark.parametrize("column", ["ID", "FirstName"])
def test_a_missing_id_or_required_column_fails_before_loading(dagbag, sandboxes, column):
    sandboxes.imis.seed.contacts_definition = sandboxes.imis.seed.contacts_definition.without_column(column)
    state, tasks = run_dag(dagbag, DAG_ID)
    assert state == "failed" and tasks["extract_contacts"] == "failed"
    assert written(sandboxes) == {}


def test_each_synced_group_and_the_contacts_publish_an_asset_event_with_the_figures(dagbag, sandboxes):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    state, _ = run_dag(dagbag, DAG_ID, target_group="Newsletter")
    assert state == "success"
    with create_session() as session:
        events = {event.uri: event.extra for event in session.query(AssetEvent).all()
                  if event.uri.startswith("thrive://")}
    newsletter = events["thrive://target-groups/newsletter"]
    assert newsletter["added"] == len(sandboxes.thrive.interest_members("Newsletter")) > 0
    assert {"rows", "added", "removed", "quarantined", "api_calls", "seconds"} <= newsletter.keys()
    contacts = events["thrive://contacts/default-fields"]
    assert contacts["rows"] == 300 and contacts["sent"] > 0 and "changed" in contacts


def test_the_readable_report_names_the_groups_and_quarantine_reasons_without_emails(dagbag, sandboxes):
    state, _ = run_dag(dagbag, DAG_ID)
    assert state == "success"
    store = SnapshotStore(sandboxes.store_url)
    [name] = store.json_names("reports/target_groups")
    text = store.read_text(f"reports/target_groups/{name}")
    assert "| Newsletter | ready |" in text and "email_invalid" in text
    assert "@" not in text  # counts and IDs only: no member email reaches a report
