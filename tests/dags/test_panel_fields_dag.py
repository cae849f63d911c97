"""`imis_to_thrive_panel_fields` end to end with dag.test() against both sandboxes on loopback."""

import pytest

from include.imis_thrive.sync import panel_fields
from include.imis_thrive.sync.snapshots import SnapshotStore
from tests.dags.conftest import asset_events, dag_test_run, run_dag

pytestmark = [pytest.mark.dags, pytest.mark.integration]
DAG_ID = "imis_to_thrive_panel_fields"
TASKS = {"fetch_panel_fields", "extract_panel_fields", "upsert_panel_fields", "finish_run"}


def subscribe_writes(sandboxes) -> int:
    return sandboxes.thrive.counters().get("records_written", {}).get("Subscribe", 0)


def test_the_dag_is_nightly_in_a_named_zone_with_the_guard_params(dagbag):
    dag = dagbag.get_dag(DAG_ID)
    assert dag is not None, dagbag.import_errors
    assert {task.task_id for task in dag.tasks} == TASKS
    assert {task.task_id for task in dag.tasks if task.pool == "imis_api"} == {"fetch_panel_fields"}  # iMIS only
    assert dag.get_task("extract_panel_fields").upstream_task_ids == {"fetch_panel_fields"}
    assert dag.schedule == "0 2 * * *" and str(dag.timezone) == "America/New_York"
    assert {"dry_run", "allow_mass_change", "max_changed_share"} <= set(dag.params)


def test_after_a_target_group_run_panel_fields_load_and_a_second_run_sends_nothing(dagbag, sandboxes):
    state, tasks = run_dag(dagbag, "imis_to_thrive_target_groups")
    assert state == "success", tasks
    in_thrive = {s["contact_id"] for s in sandboxes.thrive.subscribers() if s["contact_id"]}
    writes_before = subscribe_writes(sandboxes)

    run = dag_test_run(dagbag, DAG_ID)

    assert str(run.state) == "success"
    store = SnapshotStore(sandboxes.store_url)
    sent = store.read(panel_fields.PANEL_FIELDS_SNAPSHOT)
    assert len(sent) == subscribe_writes(sandboxes) - writes_before > 0
    assert set(sent["ID"]) <= in_thrive
    someone = sent["ID"].iloc[0]
    assert {"ChapterName", "CommitteeCount", "CEUCredits"} <= sandboxes.thrive.subscriber(someone)["fields"].keys()

    [event] = asset_events(run.run_id).values()
    assert event["added"] == len(sent) and event["rows"] == len(sandboxes.imis.seed.contacts["ID"])  # IQA rows

    writes_before = subscribe_writes(sandboxes)
    run = dag_test_run(dagbag, DAG_ID)
    assert str(run.state) == "success"
    assert subscribe_writes(sandboxes) == writes_before
    assert asset_events(run.run_id) == {}  # nothing changed in Thrive
