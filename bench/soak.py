"""Soak: the three DAGs over many seeds, with faults, token purges and SIGKILLs, each against a fault-free reference.

Per seed, two worlds are built from the same seed: a *reference* (no faults, no kills) and a *faulty* one where both
sandboxes answer ~`--fault-rate` of requests with 429/500/503 or a dropped connection, iMIS tokens are purged every
few seconds (an app-pool restart), and DAG runs are SIGKILLed at random moments (the whole process group, as an
OOM kill or a lost worker would) and then run again, as Airflow's retry or an operator would. Both worlds go
through the same steps: target groups and panel fields, a change in iMIS (edited contacts, moved list members),
target groups again, then engagement in Thrive and the activity writeback of that hour.

The faulty world must end exactly where the reference does: the same members in every Thrive target group, the
same field values per subscriber, and the same HLOGIC activities (kind, contact, time) in iMIS, each once.
Prints one row per seed (seed, faults, kills, re-runs, lost, duplicated, mismatched) and exits 1 on any mismatch.

    python bench/soak.py --seeds 20          # `make soak`
    python bench/soak.py --seeds 1 --first-seed 7 --contacts 200
    python bench/soak.py --seeds 2 --data-seed 1 --contacts 150 --engagement 100 --no-changes --kill-rate 0.3
                                             # the two seeds `make test` runs (tests/bench/test_soak.py)

`--data-seed` gives every seed the same data (contacts, changes, engagement), so one reference serves them all and
the seeds differ only in their faults, purges and kills: the cheap form, one reference run fewer per seed.
The changes between the two target-group runs scale with `--contacts` (20 edited contacts and 3 moved list members
at the default 300), so a small world stays under the mass-change guard as a large one does.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from sandbox.__main__ import build_sandboxes  # noqa: E402
from sandbox.airflow_settings import load_settings  # noqa: E402
from sandbox.faults import FaultConfig  # noqa: E402
from sandbox.imis_app import ImisSandbox  # noqa: E402
from sandbox.server import SandboxServer  # noqa: E402
from sandbox.thrive_app import ThriveSandbox  # noqa: E402

TARGET_GROUPS, PANEL_FIELDS, ACTIVITIES = "imis_to_thrive_target_groups", "imis_to_thrive_panel_fields", \
    "thrive_to_imis_activities"
ENGAGED_GROUP = "Newsletter"
MAX_ATTEMPTS = 6

# One DAG run in a child process, as a worker would run it: retry delays zeroed so a retry waits for nothing.
CHILD = """
import sys
from datetime import datetime, timedelta
sys.path.insert(0, sys.argv[1])
from airflow.models import DagBag
dag = DagBag(dag_folder=sys.argv[1] + "/dags").get_dag(sys.argv[2])
for task in dag.tasks:
    task.retry_delay = timedelta(0)
    task.max_retry_delay = timedelta(0)
run = dag.test(logical_date=datetime.fromisoformat(sys.argv[3]))
print("SOAK-RUN-STATE", run.state, flush=True)
"""


@dataclass
class World:
    """One pair of sandboxes on free ports, its snapshot store, and the environment its DAG runs see."""

    imis: ImisSandbox
    thrive: ThriveSandbox
    env: dict[str, str]


@dataclass
class Tally:
    """What happened to one faulty world: faults injected, kills, runs that had to be started again."""

    kills: int = 0
    reruns: int = 0
    failed_steps: list[str] = field(default_factory=list)

    def faults(self, world: World) -> int:
        return sum(world.imis.faults.injected.values()) + sum(world.thrive.faults.injected.values())


@contextmanager
def serve_world(seed: int, contacts: int, workdir: Path, airflow_env: dict[str, str]) -> Iterator[World]:
    settings = load_settings()
    imis, thrive = build_sandboxes(settings, contacts=contacts, seed=seed, broken_lists=False)
    with SandboxServer(imis.app) as imis_server, SandboxServer(thrive.app) as thrive_server:
        imis_setting, thrive_setting = settings.connection("imis_default"), settings.connection("thrive_default")
        env = own_airflow_home(airflow_env, workdir) | {
            "AIRFLOW_CONN_IMIS_DEFAULT": json.dumps({
                "conn_type": "imis", "host": imis_server.url, "login": imis_setting.conn_login,
                "password": imis_setting.conn_password,
                "extra": {**imis_setting.conn_extra, "token_store_dir": str(workdir / "tokens")}}),
            "AIRFLOW_CONN_THRIVE_DEFAULT": json.dumps({
                "conn_type": "thrive", "host": f"{thrive_server.url}{thrive_setting.url_path()}",
                "login": thrive_setting.conn_login, "password": thrive_setting.conn_password,
                "extra": {**thrive_setting.conn_extra, "poll_interval_s": 0.05}}),
            "AIRFLOW_VAR_IMIS_THRIVE_STORE_URL": str(workdir / "store"),
            # A SIGKILLed writeback's re-run takes its interval over a few seconds later, not minutes.
            "AIRFLOW_VAR_IMIS_THRIVE_WRITEBACK_LEASE": json.dumps({"ttl": 3, "renew_every": 0.5, "grace": 1}),
        }
        yield World(imis, thrive, env)


def run_dag(world: World, dag_id: str, logical_date: datetime, rng: random.Random | None, tally: Tally | None,
            kill_rate: float) -> bool:
    """Run until success (at most MAX_ATTEMPTS); in the faulty world, a run may be SIGKILLed at a random moment,
    except the last attempt, which stands for the operator's final re-run that is let finish."""
    for attempt in range(MAX_ATTEMPTS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(PROJECT_ROOT), dag_id, logical_date.isoformat()],
                                 env=world.env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)
        killable = rng is not None and attempt < MAX_ATTEMPTS - 1
        kill_at = rng.uniform(2.0, 14.0) if killable and rng.random() < kill_rate else None  # type: ignore[union-attr]
        output = _wait(child, kill_at)
        if kill_at is not None and child.returncode == -signal.SIGKILL:
            tally.kills += 1  # type: ignore[union-attr]
        elif "SOAK-RUN-STATE success" in output:
            return True
        if tally is None:
            tail = "\n".join(output.strip().splitlines()[-25:])
            raise RuntimeError(f"the fault-free reference run of {dag_id} at {logical_date} failed:\n{tail}")
        if attempt < MAX_ATTEMPTS - 1:
            tally.reruns += 1
    if tally is not None:
        tally.failed_steps.append(f"{dag_id}@{logical_date:%H:%M}: {_last_error(output)}")
    return False


def _wait(child: subprocess.Popen[str], kill_at: float | None) -> str:
    if kill_at is None:
        return child.communicate()[0]
    try:
        return child.communicate(timeout=kill_at)[0]
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        return child.communicate()[0]


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if "Error" in line or "Exception" in line]
    return (lines[-1] if lines else output.strip().splitlines()[-1] if output.strip() else "no output")[:200]


@dataclass(frozen=True)
class Workload:
    """The size of one world: its contacts and, derived or given, the changes and engagement its steps make."""

    contacts: int = 300
    engagement: int = 300
    changes: bool = True  # edit contacts and move list members, then sync the target groups a second time

    @property
    def edited_contacts(self) -> int:
        return max(2, self.contacts // 15)

    @property
    def moved_members(self) -> int:
        return max(1, self.contacts // 100)


def run_steps(world: World, seed: int, hour: datetime, rng: random.Random | None, tally: Tally | None,
              kill_rate: float, workload: Workload) -> None:
    """The same steps in both worlds, at the same logical dates: `hour` is the engagement hour, chosen once per
    seed (a world built after the clock turned an hour must not write another hour's activities)."""

    def step(dag_id: str, logical_date: datetime) -> None:
        run_dag(world, dag_id, logical_date, rng, tally, kill_rate)

    step(TARGET_GROUPS, hour - timedelta(hours=3))
    step(PANEL_FIELDS, hour - timedelta(hours=3))
    if workload.changes:
        world.imis.mutate_contacts(workload.edited_contacts, seed=seed + 1)
        world.imis.move_list_members("Annual Conference 2026", workload.moved_members, seed=seed + 2)
        step(TARGET_GROUPS, hour - timedelta(hours=2))
    world.thrive.generate_engagement(hour - timedelta(hours=1), hour, volume=workload.engagement, seed=seed,
                                     interests=[ENGAGED_GROUP], by_contact=True)
    step(ACTIVITIES, hour)


def end_state(world: World) -> dict[str, Any]:
    """What the comparison looks at: Thrive's memberships and fields per contact, iMIS's HLOGIC activities."""
    groups = {str(interest["name"]): sorted(map(str, world.thrive.interest_members(str(interest["name"]))))
              for interest in world.thrive.interests()}
    fields = {str(s["contact_id"]): (s["email"], s["fields"]) for s in world.thrive.subscribers()}
    activities = Counter((a["Properties"].get("SOURCE_CODE"), a["PartyId"], a["Properties"].get("TRANSACTION_DATE"))
                         for a in world.imis.activities())
    return {"groups": groups, "fields": fields, "activities": activities}


def compare(reference: dict[str, Any], faulty: dict[str, Any]) -> dict[str, int]:
    lost = reference["activities"] - faulty["activities"]
    duplicated = faulty["activities"] - reference["activities"]
    group_names = reference["groups"].keys() | faulty["groups"].keys()
    members_off = sum(len(set(reference["groups"].get(name, [])) ^ set(faulty["groups"].get(name, [])))
                      for name in group_names)
    contacts = reference["fields"].keys() | faulty["fields"].keys()
    fields_off = sum(reference["fields"].get(contact) != faulty["fields"].get(contact) for contact in contacts)
    return {"lost": sum(lost.values()), "duplicated": sum(duplicated.values()),
            "mismatched": members_off + fields_off}


def own_airflow_home(template: dict[str, str], workdir: Path) -> dict[str, str]:
    """A world's own metadata DB, copied from the migrated template: the two worlds run the same logical dates."""
    home = workdir / "airflow"
    home.mkdir(parents=True)
    shutil.copy(Path(template["AIRFLOW_HOME"]) / "airflow.db", home / "airflow.db")
    return template | {"AIRFLOW_HOME": str(home),
                       "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}


def migrated_airflow_home(workdir: Path) -> dict[str, str]:
    """A migrated throwaway Airflow home (SQLite), the template every world copies."""
    home = workdir / "airflow-template"
    home.mkdir()
    env = os.environ | {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
                        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                        "PYTHONPATH": str(PROJECT_ROOT)}
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return env


@contextmanager
def token_purges(world: World, every_s: float) -> Iterator[None]:
    """An iMIS app-pool restart every few seconds while the faulty world runs."""
    stop = threading.Event()

    def purge() -> None:
        while not stop.wait(every_s):
            world.imis.purge_tokens()

    purger = threading.Thread(target=purge, daemon=True)
    purger.start()
    try:
        yield
    finally:
        stop.set()
        purger.join()


def reference_state(data_seed: int, workload: Workload, hour: datetime, airflow_env: dict[str, str],
                    workdir: Path) -> dict[str, Any]:
    """Where a world of `data_seed` ends with no faults and no kills."""
    with serve_world(data_seed, workload.contacts, workdir / f"reference-{data_seed}", airflow_env) as reference:
        run_steps(reference, data_seed, hour, None, None, 0.0, workload)
        return end_state(reference)


def soak_seed(seed: int, data_seed: int, workload: Workload, fault_rate: float, kill_rate: float,
              hour: datetime, expected: dict[str, Any], airflow_env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """The faulty world of `seed` (its faults, purges and kills) on the data of `data_seed`, against `expected`."""
    tally, rng = Tally(), random.Random(seed)
    with serve_world(data_seed, workload.contacts, workdir / f"faulty-{seed}", airflow_env) as faulty, \
            ExitStack() as stack:
        faults = FaultConfig(rate_429=fault_rate, rate_500=fault_rate, rate_503=fault_rate, drop_rate=fault_rate,
                             retry_after_s=0, seed=seed)
        faulty.imis.faults.configure(faults)
        faulty.thrive.faults.configure(faults)
        stack.enter_context(token_purges(faulty, every_s=3.0))
        run_steps(faulty, data_seed, hour, rng, tally, kill_rate, workload)
        faulty.imis.faults.configure(FaultConfig())
        faulty.thrive.faults.configure(FaultConfig())
        outcome = compare(expected, end_state(faulty))
        return {"seed": seed, "faults": tally.faults(faulty), "kills": tally.kills, "reruns": tally.reruns,
                **outcome, "failed_steps": tally.failed_steps,
                "activities": sum(expected["activities"].values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--contacts", type=int, default=300, help="contacts per world (the changes scale with it)")
    parser.add_argument("--engagement", type=int, default=300, help="engagement events made for the writeback hour")
    parser.add_argument("--data-seed", type=int, help="the same data for every seed, so one reference serves all")
    parser.add_argument("--no-changes", action="store_true",
                        help="each DAG once: no change in iMIS and no second target-group run (the quick form)")
    parser.add_argument("--fault-rate", type=float, default=0.025, help="share of requests per fault kind")
    parser.add_argument("--kill-rate", type=float, default=0.5, help="chance that a DAG run is SIGKILLed")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = []
    workload = Workload(args.contacts, args.engagement, changes=not args.no_changes)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)  # in every window
    references: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="imis-thrive-soak-") as tmp:
        workdir = Path(tmp)
        airflow_env = migrated_airflow_home(workdir)
        print(f"{'seed':>5} {'faults':>7} {'kills':>6} {'re-runs':>8} {'activities':>11} {'lost':>5} "
              f"{'duplicated':>11} {'mismatched':>11} {'seconds':>8}", flush=True)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            started = time.monotonic()
            data_seed = seed if args.data_seed is None else args.data_seed
            if data_seed not in references:
                references[data_seed] = reference_state(data_seed, workload, hour, airflow_env, workdir)
            row = soak_seed(seed, data_seed, workload, args.fault_rate, args.kill_rate, hour, references[data_seed],
                            airflow_env, workdir)
            row["seconds"] = round(time.monotonic() - started, 1)
            rows.append(row)
            print(f"{row['seed']:>5} {row['faults']:>7} {row['kills']:>6} {row['reruns']:>8} {row['activities']:>11} "
                  f"{row['lost']:>5} {row['duplicated']:>11} {row['mismatched']:>11} {row['seconds']:>8}", flush=True)
            for failed in row["failed_steps"]:
                print(f"      step never succeeded: {failed}", flush=True)
    totals = {key: sum(row[key] for row in rows) for key in ("faults", "kills", "reruns", "lost", "duplicated",
                                                              "mismatched")}
    print(f"total: {len(rows)} seeds, " + ", ".join(f"{value} {key}" for key, value in totals.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    bad = totals["lost"] or totals["duplicated"] or totals["mismatched"] or any(r["failed_steps"] for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
