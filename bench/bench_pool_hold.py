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
import sys

import airflow_home

from sandbox.server import SandboxServer

POOL = "imis_api"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dag", default="imis_to_thrive_target_groups")
    parser.add_argument("--contacts", type=int, default=3000)
    arguments = parser.parse_args()
    settings, imis_sandbox, thrive_sandbox, home = airflow_home.seeded(arguments.contacts, "bench-pool-hold-")
    with SandboxServer(imis_sandbox.app) as imis_server, SandboxServer(thrive_sandbox.app) as thrive_server:
        env = airflow_home.environment(home, settings, imis_server.url, thrive_server.url)
        airflow_home.migrate(env)
        returncode, wall = airflow_home.dags_test(env, arguments.dag, home / "run.log")
    rows = airflow_home.last_run_task_instances(home / "airflow.db", arguments.dag)
    print(f"{arguments.dag}, {arguments.contacts:,} contacts: exit {returncode}, {wall:.1f} s wall "
          f"(log: {home / 'run.log'})")
    airflow_home.print_task_table(rows)
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
    return returncode


if __name__ == "__main__":
    sys.exit(main())
