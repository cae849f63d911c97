"""The deployment of README "Running on several machines", for real: PostgreSQL, CeleryExecutor on Redis, two
workers with separate Airflow homes, snapshots on an S3 server, the three DAGs triggered through the REST API.

The tests run in order on one deployment: the DAGs on both workers first, then a worker SIGKILLed (its whole tree,
as systemd's KillMode=control-group or a lost machine would) during `write_activities`, then only a task's process
group killed; each ends with every event of its hour written once. `make test-distributed`; skipped, with the
reason, when PostgreSQL or Redis do not answer. Timings of each DAG run go to .data/distributed/timings-<executor>.json.

For the same figures on one machine, `IMIS_THRIVE_TEST_EXECUTOR=LocalExecutor` starts the same deployment without
workers (scheduler-run tasks, still PostgreSQL and S3); only the first test applies there.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from include.imis_thrive.sync.target_groups import CONTACTS_SNAPSHOT
from sandbox.faults import FaultConfig
from tests.dags.conftest import PROJECT_ROOT
from tests.dags.test_activities_dag import ALL_KINDS, FIRST_END, engage, expected_keys, written
from tests.dags.test_target_groups_dag import VALID_LISTS, memberships
from tests.distributed.deployment import DAG_IDS, Deployment, running_deployment, unavailable_services

pytestmark = [pytest.mark.integration, pytest.mark.dags, pytest.mark.timeout(900)]
TARGET_GROUPS, PANEL_FIELDS, ACTIVITIES = DAG_IDS
WORKERS = {"worker-a", "worker-b"}
ONE_HOUR = timedelta(hours=1)
# Recovery after a kill: the heartbeat timeout (30 s here) or the task's own failure, then retry_delay (2 min).
RECOVERY_TIMEOUT_S = 480
TIMINGS: dict[str, Any] = {}
EXECUTOR = os.environ.get("IMIS_THRIVE_TEST_EXECUTOR", "CeleryExecutor")
needs_workers = pytest.mark.skipif(EXECUTOR != "CeleryExecutor", reason=f"kills a Celery worker; {EXECUTOR} has none")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    reason = unavailable_services()
    if reason:
        pytest.skip(f"the Celery deployment test needs PostgreSQL and Redis: {reason}")
    started = time.monotonic()
    with running_deployment(tmp_path_factory.mktemp("distributed"), executor=EXECUTOR) as running:
        TIMINGS["executor"] = EXECUTOR
        TIMINGS["start-up s"] = round(time.monotonic() - started, 1)
        yield running
    out = PROJECT_ROOT / ".data" / "distributed"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"timings-{EXECUTOR}.json").write_text(json.dumps(TIMINGS, indent=2))


@pytest.fixture(scope="module")
def engagement(deployment):
    """Three hours of engagement in Thrive (the interval before FIRST_END and the two after), once."""
    return engage(deployment.sandboxes, FIRST_END - ONE_HOUR, FIRST_END + 2 * ONE_HOUR, 1200)


def trigger(deployment: Deployment, dag_id: str, logical_date: datetime | None = None, **conf: Any) -> str:
    with deployment.api_client() as client:
        return client.trigger_dag_run(dag_id, conf, logical_date=logical_date).run_id


def finish(deployment: Deployment, dag_id: str, run_id: str, label: str, timeout_s: float = 600) -> str:
    """Wait for the run through the REST API; record its duration as the metadata DB has it, under `label`."""
    with deployment.api_client() as client:
        run = client.wait_for_dag_run(dag_id, run_id, timeout_s=timeout_s, poll_s=2.0)
    [(seconds,)] = deployment.query("SELECT EXTRACT(EPOCH FROM end_date - start_date) FROM dag_run "
                                    "WHERE dag_id = %s AND run_id = %s", dag_id, run_id)
    # where the time went: in the tasks themselves, or between queued and started (executor, broker, worker)
    [(busy, waiting)] = deployment.query(
        "SELECT SUM(duration), SUM(EXTRACT(EPOCH FROM start_date - queued_dttm)) FROM task_instance "
        "WHERE dag_id = %s AND run_id = %s", dag_id, run_id)
    TIMINGS[f"{label} s"] = round(float(seconds), 1)
    TIMINGS[f"{label}: task time, queued-to-started s"] = [round(float(busy or 0), 1), round(float(waiting or 0), 1)]
    return run.state


def hostnames(deployment: Deployment, *run_ids: str) -> set[str]:
    return {row[0] for row in deployment.query(
        "SELECT DISTINCT hostname FROM task_instance WHERE run_id = ANY(%s) AND state = 'success'", list(run_ids))}


def interval_of(deployment: Deployment, run_id: str) -> tuple[datetime, datetime]:
    [(start, end)] = deployment.query("SELECT data_interval_start, data_interval_end FROM dag_run "
                                      "WHERE dag_id = %s AND run_id = %s", ACTIVITIES, run_id)
    return start, end


def imis_lists(deployment: Deployment) -> dict[str, set[str]]:
    """Each iMIS list's members, less the contacts validation quarantined (no usable email), which the committed
    contacts snapshot leaves out."""
    seed = deployment.sandboxes.imis.seed
    ids = seed.contacts["ID"]
    validated = set(map(str, deployment.store().read(CONTACTS_SNAPSHOT)["ID"]))
    members = {name: {str(ids[row]) for row in seed.find_list(name).members} for name in VALID_LISTS}
    everyone = set().union(*members.values())
    assert 0 < len(everyone - validated) < len(everyone) // 10  # a few, not the lists themselves
    return {name: ids_ & validated for name, ids_ in members.items()}


def expected_through(deployment: Deployment, engagement, end: datetime) -> Counter[tuple[str, str, str]]:
    """Every event of an iMIS contact from the first hour to `end`: the Newsletter members the target-group sync
    subscribed are mailed too, beside the contacts `engage` subscribed."""
    generated, _ = engagement
    in_imis = set(map(str, deployment.sandboxes.imis.seed.contacts["ID"]))
    return expected_keys(deployment.sandboxes, generated, in_imis, FIRST_END - ONE_HOUR, end)


def running_writer(deployment: Deployment, run_id: str) -> tuple[str, int] | None:
    """(hostname, pid) of the running `write_activities` of the run, once Airflow has recorded both."""
    rows = deployment.query("SELECT hostname, pid FROM task_instance WHERE dag_id = %s AND run_id = %s AND "
                            "task_id = 'write_activities' AND state = 'running'", ACTIVITIES, run_id)
    return (rows[0][0], int(rows[0][1])) if rows and rows[0][0] and rows[0][1] else None


def kill_halfway(deployment: Deployment, run_id: str, before: int, expected: int, kill) -> str:
    """Slow iMIS activity posts down, wait until `write_activities` has written a part of its hour, then kill;
    returns the hostname of the worker it ran on."""
    sandboxes = deployment.sandboxes
    sandboxes.imis.faults.configure(FaultConfig(latency_ms=150, path_prefix="/api/activity"))
    try:
        hostname, pid = deployment.wait_until("write_activities running", lambda: running_writer(deployment, run_id),
                                              timeout_s=300, poll_s=0.2)
        deployment.wait_until("write_activities halfway", lambda: sum(written(sandboxes).values()) - before
                              >= max(1, (expected - before) // 3), timeout_s=300, poll_s=0.05)
        kill(hostname, pid)
    finally:
        sandboxes.imis.faults.configure(FaultConfig())
    assert before < sum(written(sandboxes).values()) < expected, "the kill came too late to interrupt anything"
    return hostname


def test_the_three_dags_run_on_both_workers_and_thrive_holds_the_imis_lists(deployment, request):
    started = time.monotonic()
    runs = {TARGET_GROUPS: trigger(deployment, TARGET_GROUPS), PANEL_FIELDS: trigger(deployment, PANEL_FIELDS)}
    states = {dag_id: finish(deployment, dag_id, run_id, dag_id) for dag_id, run_id in runs.items()}
    assert states == {TARGET_GROUPS: "success", PANEL_FIELDS: "success"}, deployment.tails()
    assert memberships(deployment.sandboxes) == imis_lists(deployment)

    engagement = request.getfixturevalue("engagement")
    runs[ACTIVITIES] = trigger(deployment, ACTIVITIES, FIRST_END, kinds=ALL_KINDS)
    assert finish(deployment, ACTIVITIES, runs[ACTIVITIES], ACTIVITIES) == "success", deployment.tails()
    TIMINGS["three DAGs, wall s"] = round(time.monotonic() - started, 1)
    assert interval_of(deployment, runs[ACTIVITIES]) == (FIRST_END - ONE_HOUR, FIRST_END)
    expected = expected_through(deployment, engagement, FIRST_END)
    assert written(deployment.sandboxes) == expected and sum(expected.values()) > 50

    if EXECUTOR == "CeleryExecutor":
        assert hostnames(deployment, *runs.values()) == WORKERS  # both workers took tasks, and only they did


@needs_workers
def test_a_worker_killed_during_write_activities_loses_and_doubles_nothing(deployment, engagement):
    end = FIRST_END + ONE_HOUR
    expected = expected_through(deployment, engagement, end)
    before = sum(written(deployment.sandboxes).values())
    run_id = trigger(deployment, ACTIVITIES, end, kinds=ALL_KINDS)

    def kill_worker(hostname: str, pid: int) -> None:
        TIMINGS["worker kill: processes killed"] = deployment.kill_tree(hostname)
        deployment.services[f"{hostname}-killed"] = deployment.services.pop(hostname)

    started = time.monotonic()
    killed = kill_halfway(deployment, run_id, before, sum(expected.values()), kill_worker)
    assert finish(deployment, ACTIVITIES, run_id, f"{ACTIVITIES}, worker killed",
                  timeout_s=RECOVERY_TIMEOUT_S) == "success", deployment.tails()
    TIMINGS["worker kill: recovery s"] = round(time.monotonic() - started, 1)
    assert written(deployment.sandboxes) == expected
    [(survivor, tries)] = deployment.query(
        "SELECT hostname, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s "
        "AND task_id = 'write_activities'", ACTIVITIES, run_id)
    assert survivor == (WORKERS - {killed}).pop() and tries >= 2
    deployment.start_worker(killed)  # back for the next test, in its old home


@needs_workers
def test_a_task_process_group_killed_during_write_activities_loses_and_doubles_nothing(deployment, engagement):
    end = FIRST_END + 2 * ONE_HOUR
    expected = expected_through(deployment, engagement, end)
    before = sum(written(deployment.sandboxes).values())
    run_id = trigger(deployment, ACTIVITIES, end, kinds=ALL_KINDS)
    worker_pids = {name: deployment.services[name].process.pid for name in WORKERS}

    def kill_task_group(hostname: str, pid: int) -> None:
        group = os.getpgid(pid)
        assert group != os.getpgid(worker_pids[hostname]), "the task shares its worker's process group"
        os.killpg(group, signal.SIGKILL)

    started = time.monotonic()
    killed_on = kill_halfway(deployment, run_id, before, sum(expected.values()), kill_task_group)
    assert finish(deployment, ACTIVITIES, run_id, f"{ACTIVITIES}, task process group killed",
                  timeout_s=RECOVERY_TIMEOUT_S) == "success", deployment.tails()
    TIMINGS["task kill: recovery s"] = round(time.monotonic() - started, 1)
    assert written(deployment.sandboxes) == expected
    assert deployment.services[killed_on].process.poll() is None  # the worker itself lived on
