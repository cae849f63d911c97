"""A throwaway Airflow home for the benchmarks that run a DAG with `airflow dags test` against sandboxes.

SQLite metadata, the project's DAGs folder, a snapshot store of its own, the two connections pointing at sandboxes
served on free loopback ports; after a run, its task instances come from that home's database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox.__main__ import build_sandboxes
from sandbox.airflow_settings import PROJECT_ROOT, AirflowSettings, load_settings

AIRFLOW = [sys.executable, "-m", "airflow"]


def seeded(contacts: int, prefix: str) -> tuple[AirflowSettings, Any, Any, Path]:
    """The settings, both sandboxes seeded as `make demo` seeds them (seed 1, no broken lists), and a new home."""
    settings = load_settings()
    imis_sandbox, thrive_sandbox = build_sandboxes(settings, contacts=contacts, seed=1, broken_lists=False)
    return settings, imis_sandbox, thrive_sandbox, Path(tempfile.mkdtemp(prefix=prefix))


def environment(home: Path, settings: AirflowSettings, imis_url: str, thrive_url: str) -> dict[str, str]:
    """The environment of an `airflow` command in `home` whose connections reach the sandboxes at these URLs."""
    imis, thrive = settings.connection("imis_default"), settings.connection("thrive_default")
    return os.environ | {
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW_VAR_IMIS_THRIVE_STORE_URL": str(home / "store"),
        "AIRFLOW_CONN_IMIS_DEFAULT": json.dumps({
            "conn_type": "imis", "host": imis_url, "login": imis.conn_login, "password": imis.conn_password,
            "extra": {**imis.conn_extra, "token_store_dir": str(home / "tokens")}}),
        "AIRFLOW_CONN_THRIVE_DEFAULT": json.dumps({
            "conn_type": "thrive", "host": f"{thrive_url}{thrive.url_path()}", "login": thrive.conn_login,
            "password": thrive.conn_password, "extra": {**thrive.conn_extra, "poll_interval_s": 0.01}}),
    }


def migrate(env: dict[str, str]) -> None:
    subprocess.run([*AIRFLOW, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)


def dags_test(env: dict[str, str], dag_id: str, log_path: Path) -> tuple[int, float]:
    """`airflow dags test dag_id` (every task in this one process): its exit code and wall seconds."""
    started = time.monotonic()
    with log_path.open("w") as log:
        completed = subprocess.run([*AIRFLOW, "dags", "test", dag_id], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, check=False)
    return completed.returncode, time.monotonic() - started


def last_run_id(database: Path, dag_id: str) -> str:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY start_date DESC LIMIT 1",
                                  (dag_id,)).fetchone()[0]


def last_run_task_instances(database: Path, dag_id: str) -> list[tuple[str, int, str, str, float]]:
    """(task, map index, state, pool, seconds) of the DAG's latest run, in the order they started."""
    with sqlite3.connect(database) as connection:
        return connection.execute(
            "SELECT task_id, map_index, state, pool, duration FROM task_instance WHERE dag_id = ? AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY start_date DESC LIMIT 1) ORDER BY start_date",
            (dag_id, dag_id)).fetchall()


def print_task_table(rows: list[tuple[str, int, str, str, float]]) -> None:
    print(f"{'task':<32} {'map':>4} {'state':<8} {'pool':<14} {'seconds':>8}")
    for task_id, map_index, state, pool, duration in rows:
        print(f"{task_id:<32} {map_index:>4} {state or '-':<8} {pool:<14} {duration or 0:>8.2f}")
