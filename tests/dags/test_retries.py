"""Which failures Airflow retries, pinned with real `dag.test()` runs against the sandboxes: a task failing on bad
data or on a bad connection setting is tried once; a task failing on transport trouble is tried again."""

from __future__ import annotations

import ast
import json
import os

import pytest

from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.sync.target_groups import CONTACTS_SNAPSHOT, group_snapshot
from sandbox.faults import FaultConfig
from sandbox.imis_package import CONTACTS_PATH
from tests.dags.conftest import PROJECT_ROOT, dag_test_run, task_key

pytestmark = [pytest.mark.dags, pytest.mark.integration]
DAG_ID = "imis_to_thrive_target_groups"


def tries(run) -> dict[str, tuple[str, int]]:
    """{task: (state, try number)} of a finished run."""
    return {task_key(ti): (str(ti.state), ti.try_number) for ti in run.get_task_instances()}


def test_bad_data_fails_the_task_on_its_first_try(dagbag, sandboxes):
    sandboxes.imis.seed.contacts["ID"][3] = sandboxes.imis.seed.contacts["ID"][4]  # a blocking expectation fails

    run = dag_test_run(dagbag, DAG_ID, target_group="Newsletter")

    assert str(run.state) == "failed"
    assert tries(run)["extract_contacts"] == ("failed", 1)


def test_a_lying_page_fails_the_extraction_on_its_first_try_and_loads_nothing(dagbag, sandboxes):
    """Issue 13, defects 5 and 9: a page whose Count says more rows than it holds was retried (and, unchecked,
    ended with members removed from Thrive); it fails at once, before anything is loaded or committed."""
    sandboxes.imis.lie_in_pages("count", 0, CONTACTS_PATH)

    run = dag_test_run(dagbag, DAG_ID, target_group="Newsletter")

    assert str(run.state) == "failed"
    assert tries(run)["fetch_contacts"] == ("failed", 1)  # the task that pages the IQA
    assert sandboxes.thrive.counters().get("records_written", {}) == {}
    store = SnapshotStore(sandboxes.store_url)
    assert store.current(CONTACTS_SNAPSHOT) is None and store.current(group_snapshot("Newsletter")) is None


def test_a_bad_connection_setting_fails_the_task_on_its_first_try(dagbag, sandboxes, monkeypatch):
    connection = json.loads(os.environ["AIRFLOW_CONN_IMIS_DEFAULT"])
    connection["extra"]["page_size"] = 900  # above the 500 iMIS allows
    monkeypatch.setenv("AIRFLOW_CONN_IMIS_DEFAULT", json.dumps(connection))

    run = dag_test_run(dagbag, DAG_ID, target_group="Newsletter")

    assert str(run.state) == "failed"
    assert tries(run)["discover_target_groups"] == ("failed", 1)
    assert tries(run)["fetch_contacts"] == ("failed", 1)


def test_transport_trouble_is_retried_and_the_run_then_succeeds(dagbag, sandboxes):
    # Every attempt of the first iMIS login gets a 503, so the first task to log in fails after the client's own
    # retries; its second try logs in, and every later task shares that token.
    attempts = 6  # the client's RetryPolicy.max_attempts
    sandboxes.imis.faults.configure(FaultConfig(script=[503] * attempts, retry_after_s=0, path_prefix="/token"))

    run = dag_test_run(dagbag, DAG_ID, target_group="Newsletter")

    assert str(run.state) == "success"
    assert sandboxes.imis.faults.injected == {"503": attempts}
    retried = {task: try_number for task, (_, try_number) in tries(run).items() if try_number > 1}
    assert list(retried.values()) == [2], tries(run)


def _is_task(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (target.id if isinstance(target, ast.Name) else getattr(target, "attr", "")) == "task"


def _enters_retry_by_error_kind(function: ast.FunctionDef) -> bool:
    """The task's top-level `with` enters `retry_by_error_kind()` first, so client construction is inside it."""
    for statement in function.body:
        if isinstance(statement, ast.With):
            first = statement.items[0].context_expr
            return isinstance(first, ast.Call) and getattr(first.func, "id", "") == "retry_by_error_kind"
    return False


# DAG files whose only task is an operator of Airflow's own (no domain code runs in them, so no error kind to map).
OPERATOR_ONLY_DAGS = {"thrive_reconciliation": "TriggerDagRunOperator"}


@pytest.mark.parametrize("dag_file", sorted((PROJECT_ROOT / "dags").glob("*.py")), ids=lambda path: path.stem)
def test_every_task_decides_its_retry_by_error_kind(dag_file):
    tree = ast.parse(dag_file.read_text())
    tasks = [node for node in ast.walk(tree)
             if isinstance(node, ast.FunctionDef) and any(_is_task(d) for d in node.decorator_list)]
    if dag_file.stem in OPERATOR_ONLY_DAGS:
        operators = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call)
                     and isinstance(node.func, ast.Name) and node.func.id.endswith("Operator")}
        assert tasks == [] and operators == {OPERATOR_ONLY_DAGS[dag_file.stem]}
        return
    assert tasks
    assert [task.name for task in tasks if not _enters_retry_by_error_kind(task)] == []
