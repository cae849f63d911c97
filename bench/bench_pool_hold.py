"""Benchmark: how long each task of a DAG run holds the `imis_api` pool slot, against the sandboxes.

Seeds both sandboxes at the demo's size (3,000 contacts, seed 1, as `make demo`), serves them on free loopback
ports, runs `airflow dags test <dag>` in a throwaway Airflow home (SQLite, its own store folder), then reads the
run's task instances from that home's database and prints each task's duration and pool, the sum of the durations
of the tasks that hold `imis_api` (the time every other iMIS task of every DAG must wait for, with a 1-slot
pool), the same without the first task (in `dags test` it also pays the process's imports), and the wall time.

    source bin/env.sh && .venv/bin/python bench/bench_pool_hold.py [--dag imis_to_thrive_target_groups] [--contacts N]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sandbox.__main__ import build_sandboxes
from sandbox.airflow_settings import PROJECT_ROOT, load_settings
from sandbox.server import SandboxServer

POOL = "imis_api"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dag", default="imis_to_thrive_target_groups")
    parser.add_argument("--contacts", type=int, default=3000)
    arguments = parser.parse_args()
    settings = load_settings()
    imis_sandbox, thrive_sandbox = build_sandboxes(settings, contacts=arguments.contacts, seed=1,
                                                   broken_lists=False)
    home = Path(tempfile.mkdtemp(prefix="bench-pool-hold-"))
    with SandboxServer(imis_sandbox.app) as imis_server, SandboxServer(thrive_sandbox.app) as thrive_server:
        imis, thrive = settings.connection("imis_default"), settings.connection("thrive_default")
        environment = os.environ | {
            "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW_VAR_IMIS_THRIVE_STORE_URL": str(home / "store"),
            "AIRFLOW_CONN_IMIS_DEFAULT": json.dumps({
                "conn_type": "imis", "host": imis_server.url, "login": imis.conn_login,
                "password": imis.conn_password, "extra": {**imis.conn_extra, "token_store_dir": str(home / "tokens")}}),
            "AIRFLOW_CONN_THRIVE_DEFAULT": json.dumps({
                "conn_type": "thrive", "host": f"{thrive_server.url}{thrive.url_path()}", "login": thrive.conn_login,
                "password": thrive.conn_password, "extra": {**thrive.conn_extra, "poll_interval_s": 0.01}}),
        }
        airflow = [sys.executable, "-m", "airflow"]
        subprocess.run([*airflow, "db", "migrate"], env=environment, check=True, stdout=subprocess.DEVNULL)
        started = time.monotonic()
        with (home / "run.log").open("w") as log:
            completed = subprocess.run([*airflow, "dags", "test", arguments.dag], env=environment, stdout=log,
                                       stderr=subprocess.STDOUT, check=False)
        wall = time.monotonic() - started
    rows = _task_instances(home / "airflow.db", arguments.dag)
    print(f"{arguments.dag}, {arguments.contacts:,} contacts: exit {completed.returncode}, {wall:.1f} s wall "
          f"(log: {home / 'run.log'})")
    print(f"{'task':<32} {'map':>4} {'state':<8} {'pool':<14} {'seconds':>8}")
    for task_id, map_index, state, pool, duration in rows:
        print(f"{task_id:<32} {map_index:>4} {state or '-':<8} {pool:<14} {duration or 0:>8.2f}")
    held = sum(duration or 0 for _, _, _, pool, duration in rows if pool == POOL)
    total = sum(duration or 0 for *_, duration in rows)
    print(f"held the {POOL} slot: {held:.2f} s of {total:.2f} s task time "
          f"({100 * held / total if total else 0:.0f}%) in {sum(1 for row in rows if row[3] == POOL)} task(s)")
    # `dags test` runs every task in one process: the first one also pays that process's imports, which on a worker
    # each task pays in its own process. Without it, the figure compares the tasks' own work.
    first, *others = rows or [("", 0, "", "", 0.0)]
    held_after_first = sum(duration or 0 for _, _, _, pool, duration in others if pool == POOL)
    print(f"held the {POOL} slot without the first task ({first[0]}, which carries the imports): "
          f"{held_after_first:.2f} s")
    return completed.returncode


def _task_instances(database: Path, dag_id: str) -> list[tuple[str, int, str, str, float]]:
    """(task, map index, state, pool, seconds) of the DAG's one run, in the order they started."""
    with sqlite3.connect(database) as connection:
        return connection.execute(
            "SELECT task_id, map_index, state, pool, duration FROM task_instance WHERE dag_id = ? "
            "ORDER BY start_date", (dag_id,)).fetchall()


if __name__ == "__main__":
    sys.exit(main())
