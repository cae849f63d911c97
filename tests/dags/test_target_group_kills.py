"""SIGKILLed target-group runs, then one normal run: Thrive ends exactly where a fault-free sync does (issue 13,
defect 1).

Each cycle changes iMIS a little (edited contacts, members moving in and out of two lists), then starts a run
of the DAG's tasks, in their order and through the same hooks and store, in a process of its own (forked from
a server that imported them once: an Airflow start per kill would take minutes) and SIGKILLs it when the Thrive
sandbox receives a chosen request: counted from the run's first write (a Subscribe or BulkUpload), so the kills
land in `upsert_contacts` and `load_target_group`, delivered to Thrive or not (killed while sending, or with
Thrive's answer in flight). The normal run at the end is a real `dag.test()` run.
The kill points come from a seed. The next cycle's run is the re-run of the killed one, and is itself killed;
a run the kill point missed must finish on its own. Then one normal run, without `allow_mass_change`.

The reference is the same seed's sandboxes with the same iMIS changes and one fault-free run. Compared: every
target group's members, and the email and fields of each member (a contact that a killed run sent and that is
no longer in any list may stay in Thrive: the sync never deletes subscribers). And the snapshots claim exactly
what Thrive holds, with no upload left pending.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import random
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any

import pytest

from include.imis_thrive.sync import pending_uploads
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.sync.target_groups import group_snapshot
from tests.dags.conftest import Sandboxes, run_dag, serve_sandboxes
from tests.dags.test_target_groups_dag import DAG_ID, VALID_LISTS, latest_report

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SEED = 13
KILLS = 10
MAX_CYCLES = 16
# Thrive requests from a run's first write: a cycle's run makes 9 (the interest list read once per client), so one
# kill point in ten misses, and that run must finish on its own.
LAST_KILL_POINT = 10



def run_sync_steps(environment: dict[str, str] | None = None) -> None:
    """One run of the DAG's tasks in their order, as each task calls them (hooks, the store Variable), in this
    process: the task process a kill takes down. `environment` is the world's (a forked child's is older)."""
    if environment is not None:
        os.environ.update(environment)
    from include.imis_thrive.airflow.hooks.imis import ImisHook
    from include.imis_thrive.airflow.hooks.thrive import ThriveHook
    from include.imis_thrive.airflow.runtime import snapshot_store
    from include.imis_thrive.sync import target_groups as steps

    run_id = f"kill-test-{os.getpid()}-{time.time_ns()}"
    store = snapshot_store()
    with ImisHook().get_client() as imis, ThriveHook().get_client() as thrive:
        groups = steps.discover_target_groups(imis, thrive)
        contacts = steps.extract_contacts(imis, store, run_id)
        plans = [steps.plan_target_group(imis, thrive, store, group, contacts, run_id) for group in groups]
        upsert = steps.upsert_contacts(thrive, store, contacts, plans, run_id)
        loads = [steps.load_target_group(thrive, store, plan, run_id) for plan in plans if plan.ready]
    steps.finish_run(store, run_id, plans, contacts, upsert, loads)


def _task_processes() -> multiprocessing.context.ForkServerContext:
    """Children forked from a server that imported the sync once: a killed run costs a fork, not an Airflow start."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "include.imis_thrive.sync.target_groups",
                                    "include.imis_thrive.sync.validation", "include.imis_thrive.airflow.hooks.imis",
                                    "include.imis_thrive.airflow.hooks.thrive", "include.imis_thrive.airflow.runtime"])
    return context


class KillSwitch:
    """The Thrive sandbox's outer ASGI layer, on the test's side: when the armed run's chosen request (counted
    from its first ActionRequest) arrives, SIGKILL the run's process, then hand the request to Thrive or drop
    it. The sandbox itself knows nothing of this."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._victim: int | None = None
        self._kill_at = 0
        self._deliver = True
        self._writes_seen = 0
        self.killed = False

    def arm(self, pid: int, kill_at: int, deliver: bool) -> None:
        with self._lock:
            self._victim, self._kill_at, self._deliver = pid, kill_at, deliver
            self._writes_seen, self.killed = 0, False

    def disarm(self) -> None:
        with self._lock:
            self._victim = None

    def _should_kill(self, is_write: bool) -> bool:
        with self._lock:
            if self._victim is None:
                return False
            if self._writes_seen or is_write:
                self._writes_seen += 1
            if self._writes_seen != self._kill_at:
                return False
            os.kill(self._victim, signal.SIGKILL)
            self._victim, self.killed = None, True
            return True

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        if self._should_kill(b"ActionRequest" in body) and not self._deliver:
            return  # killed while sending: Thrive never saw this request
        await self.app(scope, replay, send)


def _unique_emails(sandboxes: Sandboxes) -> None:
    """Every well-formed email made unique: Thrive refuses an email another subscriber holds, so with the seed's
    shared addresses who is refused would depend on which contact reached Thrive first, a history that kills
    change by design. (Missing and malformed addresses stay, and are quarantined in both worlds.)"""
    contacts = sandboxes.imis.seed.contacts
    for row, email in enumerate(contacts["PrimaryEmailAddress"]):
        if isinstance(email, str) and email.count("@") == 1 and not email.endswith(("@", ".com.com")):
            contacts["PrimaryEmailAddress"][row] = f"contact.{contacts['ID'][row]}@{email.partition('@')[2]}"


def _change_imis(sandboxes: Sandboxes, cycle: int) -> None:
    """The same small change for a cycle in every world: edits and members moving, as between two hourly runs."""
    sandboxes.imis.mutate_contacts(12, seed=100 + cycle)
    sandboxes.imis.move_list_members("Annual Conference 2026", 3, seed=200 + cycle)
    sandboxes.imis.move_list_members("Newsletter", 4, seed=300 + cycle)


def _thrive_state(sandboxes: Sandboxes) -> dict[str, Any]:
    groups = {name: set(sandboxes.thrive.interest_members(name)) for name in VALID_LISTS}
    members = set().union(*groups.values())
    fields = {str(s["contact_id"]): (s["email"], s["fields"]) for s in sandboxes.thrive.subscribers()
              if str(s["contact_id"]) in members}
    return {"groups": groups, "fields": fields}


def _groups_not_synced(store_url: str) -> list[str]:
    """The latest run report's lists that were skipped or blocked (by the guard), with the reason."""
    return [f"{g['group']}: {g.get('reason')}" for g in latest_report(store_url)["target_groups"]
            if g["status"] != "ready"]


def test_runs_killed_in_the_load_then_one_normal_run_end_as_a_fault_free_sync(dagbag, monkeypatch, tmp_path):
    rng = random.Random(SEED)
    switch: dict[str, KillSwitch] = {}

    def wrap(app: Any) -> KillSwitch:
        switch["thrive"] = KillSwitch(app)
        return switch["thrive"]

    kills, cycles, unkilled = 0, 0, 0
    history: list[tuple[int, int, bool, bool]] = []  # (cycle, kill point, delivered, killed): for a failure's message
    processes = _task_processes()
    with contextmanager(serve_sandboxes)(monkeypatch, tmp_path / "faulty", wrap_thrive=wrap) as faulty:
        killer = switch["thrive"]
        _unique_emails(faulty)
        run_sync_steps()
        while kills < KILLS:
            assert cycles < MAX_CYCLES, f"only {kills} of {cycles} runs were killed"
            _change_imis(faulty, cycles)
            child = processes.Process(target=run_sync_steps, args=(dict(os.environ),))
            child.start()
            kill_at, deliver = rng.randint(1, LAST_KILL_POINT), rng.random() < 0.5
            killer.arm(child.pid, kill_at=kill_at, deliver=deliver)
            child.join(timeout=300)
            killer.disarm()
            history.append((cycles, kill_at, deliver, killer.killed))
            cycles += 1
            if killer.killed:
                assert child.exitcode == -signal.SIGKILL
                kills += 1
            else:  # the kill point was past this run's last request: a re-run that must succeed on its own
                assert child.exitcode == 0, (f"cycle {cycles}: the run that was not killed failed",
                                             _groups_not_synced(faulty.store_url), history)
                unkilled += 1

        state, tasks = run_dag(dagbag, DAG_ID)  # the one normal run, no allow_mass_change
        assert state == "success", tasks
        assert _groups_not_synced(faulty.store_url) == []
        after_kills = _thrive_state(faulty)
        store = SnapshotStore(faulty.store_url)
        for name in VALID_LISTS:
            assert set(store.read(group_snapshot(name))["ID"]) == after_kills["groups"][name], name
            assert not pending_uploads.pending(store, group_snapshot(name)), name

    with contextmanager(serve_sandboxes)(monkeypatch, tmp_path / "reference") as reference:
        _unique_emails(reference)
        for cycle in range(cycles):
            _change_imis(reference, cycle)
        run_sync_steps()
        expected = _thrive_state(reference)

    assert kills == KILLS and unkilled < cycles
    for name in VALID_LISTS:
        missing = expected["groups"][name] - after_kills["groups"][name]
        extra = after_kills["groups"][name] - expected["groups"][name]
        assert not missing and not extra, (name, sorted(missing), sorted(extra), history)
    assert after_kills["fields"] == expected["fields"], history
