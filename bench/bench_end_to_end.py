"""Benchmark: `airflow dags test imis_to_thrive_target_groups` end to end on N contacts (default 100,000), 4 lists.

Seeds both sandboxes (seed 1), serves them on free loopback ports in this process (the DAG runs in its own
`airflow` process), and runs the DAG three times in one throwaway Airflow home: a first run (every contact and
member new to Thrive), a run with nothing changed, and a run after 1% of the contacts were edited and 1% of the
Newsletter's members moved. Prints each run's wall time against the issue's targets (first run <= 60 s, a 1%
change <= 25 s), its task-by-task table and the load average.

    source bin/env.sh && .venv/bin/python bench/bench_end_to_end.py [--contacts N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import airflow_home

from sandbox.__main__ import build_sandboxes
from sandbox.airflow_settings import load_settings
from sandbox.server import SandboxServer

DAG_ID = "imis_to_thrive_target_groups"
MOVED_LIST = "Newsletter"
TARGET_S = {"first run": 60.0, "1% changed": 25.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    arguments = parser.parse_args()
    settings = load_settings()
    imis_sandbox, thrive_sandbox = build_sandboxes(settings, contacts=arguments.contacts, seed=1,
                                                   broken_lists=False)
    home = Path(tempfile.mkdtemp(prefix="bench-end-to-end-"))
    print(f"{DAG_ID}, {arguments.contacts:,} contacts, {len(imis_sandbox.seed.lists)} lists; Airflow home {home}")
    failed = 0
    with SandboxServer(imis_sandbox.app) as imis_server, SandboxServer(thrive_sandbox.app) as thrive_server:
        env = airflow_home.environment(home, settings, imis_server.url, thrive_server.url)
        airflow_home.migrate(env)
        for label in ("first run", "nothing changed", "1% changed"):
            if label == "1% changed":
                edited = imis_sandbox.mutate_contacts(max(1, arguments.contacts // 100), seed=17)
                members = len(imis_sandbox.seed.lists[MOVED_LIST].members)
                moved = imis_sandbox.move_list_members(MOVED_LIST, max(1, members // 100), seed=19)
                print(f"\nedited {len(edited):,} contacts; {len(moved['added'])} joined and "
                      f"{len(moved['removed'])} left {MOVED_LIST!r}")
            log = home / f"{label.replace(' ', '-').replace('%', '')}.log"
            returncode, wall = airflow_home.dags_test(env, DAG_ID, log)
            failed |= returncode
            target = TARGET_S.get(label)
            versus = f" (target <= {target:.0f} s: {wall / target:.2f} of it)" if target else ""
            print(f"\n{label}: exit {returncode}, {wall:.1f} s wall{versus}; load average "
                  f"{' '.join(f'{load:.1f}' for load in os.getloadavg())} (log: {log})")
            airflow_home.print_task_table(airflow_home.last_run_task_instances(home / "airflow.db", DAG_ID))
    return failed


if __name__ == "__main__":
    sys.exit(main())
