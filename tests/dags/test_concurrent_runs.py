"""Two real runs of `imis_to_thrive_target_groups` at once: an hourly full sync and a pre-publish refresh of one
group, as two processes sharing only the sandboxes and the snapshot store (each with its own metadata DB, as two
workers would have their own task processes).

Before the store's conditional writes and its grace for open stages, one run's commit pruned the plan the other
had staged ("staged snapshot … is gone"), and a commit could overwrite members the other run had just recorded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.sync.target_groups import group_snapshot
from tests.dags.conftest import PROJECT_ROOT, run_dag
from tests.dags.test_target_groups_dag import DAG_ID, VALID_LISTS, memberships

pytestmark = [pytest.mark.dags, pytest.mark.integration]

RUN_IN_CHILD = """
import json, sys
from datetime import timedelta
from airflow.models import DagBag
dag = DagBag(dag_folder=sys.argv[1] + "/dags").get_dag(sys.argv[2])
for task in dag.tasks:
    task.retry_delay = timedelta(0)
run = dag.test(run_conf=json.loads(sys.argv[3]) or None)
print("RUN-STATE", run.state, flush=True)
"""


def _start_run(workdir: Path, conf: str) -> subprocess.Popen:
    home = workdir / "airflow"
    home.mkdir(parents=True)
    shutil.copy(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db", home / "airflow.db")
    env = os.environ | {"AIRFLOW_HOME": str(home),
                        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}
    return subprocess.Popen([sys.executable, "-c", RUN_IN_CHILD, str(PROJECT_ROOT), DAG_ID, conf], env=env,
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_full_run_and_a_one_group_refresh_at_once_both_succeed_and_lose_nothing(dagbag, sandboxes, tmp_path):
    state, tasks = run_dag(dagbag, DAG_ID)
    assert state == "success", tasks
    sandboxes.imis.move_list_members("Newsletter", 12, seed=5)
    sandboxes.imis.move_list_members("Annual Conference 2026", 6, seed=6)
    sandboxes.imis.mutate_contacts(15, seed=7)

    runs = [_start_run(tmp_path / "hourly", "{}"),
            _start_run(tmp_path / "refresh", '{"target_group": "Newsletter"}')]
    outputs = [run.communicate(timeout=900)[0] for run in runs]

    for output in outputs:
        assert "RUN-STATE success" in output, output[-4000:]
    state, tasks = run_dag(dagbag, DAG_ID)
    assert state == "success", tasks
    after_concurrent_runs = memberships(sandboxes)
    store = SnapshotStore(sandboxes.store_url)
    for name in VALID_LISTS:  # the snapshot claims exactly what Thrive holds
        assert set(store.read(group_snapshot(name))["ID"]) == after_concurrent_runs[name], name
    state, tasks = run_dag(dagbag, DAG_ID, full_resync=True)  # reconciles with Thrive's own lists
    assert state == "success", tasks
    assert memberships(sandboxes) == after_concurrent_runs
