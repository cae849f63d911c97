"""`imis_to_thrive_target_groups` end to end with dag.test() against both sandboxes on loopback.

What is asserted is the end state at the sandboxes (what Thrive holds, what was written to it) and in the
snapshot store, not log lines.
"""

from __future__ import annotations

import pytest

from include.imis_thrive.imis import iqa_package
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.sync.target_groups import CONTACTS_SNAPSHOT
from tests.dags.conftest import (
    asset_events,
    dag_test_run,
    messages,
    run_dag,
    task_key,
    task_logs,
)

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


def test_a_dry_run_reports_what_a_real_run_then_does_loads_nothing_and_emits_no_asset_event(dagbag, sandboxes):
    run = dag_test_run(dagbag, DAG_ID, dry_run=True)
    assert str(run.state) == "success"
    assert written(sandboxes) == {}
    assert SnapshotStore(sandboxes.store_url).read(CONTACTS_SNAPSHOT) is None
    assert asset_events(run.run_id) == {}  # a DAG scheduled on the assets must not fire on a dry run
    dry = latest_report(sandboxes.store_url)
    assert dry["dry_run"] is True and dry["upsert"]["to_send"] > 0
    store = SnapshotStore(sandboxes.store_url)
    text = store.read_text(f"reports/target_groups/{store.newest_name('reports/target_groups')}")
    assert "**DRY RUN**" in text and "| would add | would remove |" in text
    would = {g["group"]: (g["load"]["to_add"], g["load"]["to_remove"]) for g in dry["target_groups"]}
    assert all(to_add > 0 for to_add, _ in would.values()), would  # not "0": Thrive would hold the members

    run = dag_test_run(dagbag, DAG_ID)
    assert str(run.state) == "success"
    real = latest_report(sandboxes.store_url)
    assert real["dry_run"] is False
    assert real["upsert"]["sent"] == dry["upsert"]["to_send"]
    rejected_by_thrive = real["upsert"]["rejected"]
    for group in real["target_groups"]:  # what the dry run said, less only what Thrive refused of it
        to_add, to_remove = would[group["group"]]
        load = group["load"]
        assert load["removed"] == to_remove
        assert 0 <= to_add - load["added"] <= load["rejected"] + rejected_by_thrive, (group["group"], load)
        assert load["to_add"] + load["not_in_thrive"] == to_add + next(
            g["load"]["not_in_thrive"] for g in dry["target_groups"] if g["group"] == group["group"])
    events = asset_events(run.run_id)
    assert {f"thrive://target-groups/{name.lower().replace(' ', '-')}" for name in VALID_LISTS} | {
        "thrive://contacts/default-fields"} == events.keys()
    newsletter = next(g["load"] for g in real["target_groups"] if g["group"] == "Newsletter")
    assert events["thrive://target-groups/newsletter"]["added"] == newsletter["added"] > 0


def test_a_manual_run_syncs_only_the_named_group(dagbag, sandboxes):
    state, tasks = run_dag(dagbag, DAG_ID, target_group="Lapsed Members")
    assert state == "success", tasks
    assert [name for name, members in memberships(sandboxes).items() if members] == ["Lapsed Members"]


def test_each_broken_list_is_skipped_with_its_rule_and_the_others_still_sync(dagbag, broken_sandboxes, caplog):
    run = dag_test_run(dagbag, DAG_ID)
    tasks = {task_key(ti): str(ti.state) for ti in run.get_task_instances()}
    logs = task_logs(caplog.records, run)
    assert str(run.state) == "failed"  # so that alerting fires
    reasons = {g["group"]: g.get("reason") for g in latest_report(broken_sandboxes.store_url)["target_groups"]}
    expected = {
        "Broken - Prompted": iqa_package.ListRequirement.NO_PROMPTS,
        "Broken - No ID Alias": iqa_package.ListRequirement.ID_ALIAS,
        "Broken - Not Shared": iqa_package.ListRequirement.SHARED_WITH_EVERYONE,
        "Broken - No Active Records": iqa_package.ListRequirement.ACTIVE_RECORD,
    }
    [stop] = messages(logs["finish_run"], "ERROR")  # the run's failure, in one sentence
    assert stop.startswith("Stopped by bad data, not retried: the run did not sync everything") and "\n" not in stop
    for name, rule in expected.items():
        assert f"list IQA $/HigherLogic/MailingLists/{name} is skipped" in reasons[name]
        assert rule.value in reasons[name]
        assert f"{name}: {reasons[name]}" in stop
        for task in ("plan_target_group", "load_target_group"):  # grey in the grid, not green or red
            assert tasks[f"{task}[{name}]"] == "skipped"
            assert messages(logs[f"{task}[{name}]"], "WARNING") == [reasons[name]]
            assert messages(logs[f"{task}[{name}]"], "ERROR") == []
        assert not broken_sandboxes.thrive.interest_members(name)  # nothing loaded for it
    for name in VALID_LISTS:
        assert reasons[name] is None and tasks[f"load_target_group[{name}]"] == "success"
        assert broken_sandboxes.thrive.interest_members(name)
    assert tasks["upsert_contacts"] == "success" and tasks["finish_run"] == "failed"


def test_a_group_the_guard_stops_fails_with_one_error_sentence_and_emits_no_asset_event(
        dagbag, sandboxes, caplog, capfd):
    state, _ = run_dag(dagbag, DAG_ID, target_group="Newsletter")
    assert state == "success"
    moved = sandboxes.imis.move_list_members("Newsletter", 120, seed=6)  # most members leave the list
    caplog.clear()
    capfd.readouterr()

    run = dag_test_run(dagbag, DAG_ID, target_group="Newsletter")

    logs = task_logs(caplog.records, run)
    assert str(run.state) == "failed" and len(moved["removed"]) > 50
    [stop] = messages(logs["load_target_group[Newsletter]"], "ERROR")
    assert stop.startswith("Stopped by bad data, not retried: mass-change guard stopped target group 'Newsletter'")
    assert "re-run with the mass-change override" in stop and "\n" not in stop
    console = capfd.readouterr().out  # Airflow's structlog lines: the failure and its traceback come after it
    assert console.count("Task failed with exception") == 2  # the load, then finish_run
    assert asset_events(run.run_id) == {}  # nothing changed in Thrive: no downstream DAG may fire


def test_task_logs_carry_no_return_value_dumps_and_no_gx_docs_lines(dagbag, sandboxes, capfd, caplog):
    run = dag_test_run(dagbag, DAG_ID, target_group="Newsletter")
    assert str(run.state) == "success"
    console = capfd.readouterr().out  # the lines Airflow logs itself (structlog); caplog has the standard loggers'
    assert "Returned value was" not in console  # whole summaries (XComs) dumped into every task's log
    ran = run.get_task_instances()
    assert console.count("Done. Returned value not shown") == len(ran) == 8  # what it logs instead, once a task
    logs = task_logs(caplog.records, run)
    assert any("contacts: 300 read" in line for line in messages(logs["extract_contacts"], "INFO"))
    assert "docs site" not in caplog.text and "Data Docs" not in caplog.text  # GX's ephemeral-context chatter


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
