"""Racing writers on one snapshot store: real processes on a local folder, threads on S3 (moto on loopback).

Without conditional writes these lose updates: a commit overwrites a pointer written after its read, so one run's
members vanish from the snapshot, and one of two interleaved ledger saves is dropped.
"""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pandas as pd
import pytest

from include.imis_thrive.sync.merge import merge_members
from include.imis_thrive.sync.quarantine import RejectionLedger
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.thrive.models import OutcomeStatus, SubscriberOutcome

pytestmark = pytest.mark.integration

GROUP = "board-members"
ROUNDS = 25


def _add_members(store: SnapshotStore, writer: str) -> None:
    """Each round: read the committed members, add one of this writer's own, commit over whatever is there."""
    for round_number in range(ROUNDS):
        baseline = store.current(GROUP)
        base = pd.Series([], dtype="str") if baseline is None else store.load(baseline)["ID"]
        mine = pd.concat([base, pd.Series([f"{writer}-{round_number}"], dtype="str")], ignore_index=True)
        store.commit_over(GROUP, f"run-{writer}", baseline, lambda theirs, base_frame, mine=mine: pd.DataFrame(
            {"ID": merge_members(mine, None if theirs is None else theirs["ID"],
                                 None if base_frame is None else base_frame["ID"])}))


def _reject_contacts(store: SnapshotStore, writer: str) -> None:
    for round_number in range(ROUNDS):
        ledger = RejectionLedger.load(store, "contacts")
        contact = f"{writer}-{round_number}"
        ledger.record(f"run-{contact}", accepted=[],
                      rejected=[SubscriberOutcome(contact, "", OutcomeStatus.REJECTED, "email refused")])
        ledger.save(store)


def _in_process(base: str, job: str, writer: str, start_together) -> None:
    store = SnapshotStore(base, keep=1)
    start_together.wait(60)
    {"members": _add_members, "ledger": _reject_contacts}[job](store, writer)


def _race_processes(base: str, job: str, writers: int = 3) -> None:
    context = multiprocessing.get_context("spawn")
    start_together = context.Barrier(writers)
    processes = [context.Process(target=_in_process, args=(base, job, f"w{n}", start_together))
                 for n in range(writers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0


def _expected(writers: int = 3) -> list[str]:
    return sorted(f"w{n}-{r}" for n in range(writers) for r in range(ROUNDS))


def test_racing_commits_on_a_local_folder_lose_no_member_and_leave_a_readable_pointer(tmp_path: Path) -> None:
    _race_processes(str(tmp_path), "members")

    store = SnapshotStore(str(tmp_path))
    assert sorted(store.read(GROUP)["ID"]) == _expected()


def test_interleaved_ledger_saves_on_a_local_folder_lose_no_entry(tmp_path: Path) -> None:
    _race_processes(str(tmp_path), "ledger")

    assert sorted(RejectionLedger.load(SnapshotStore(str(tmp_path)), "contacts").entries) == _expected()


@pytest.fixture
def s3_store_factory(s3_bucket):
    """Each racing thread gets a store object of its own on the one bucket, as each worker would."""
    return lambda: SnapshotStore(s3_bucket.url, keep=1, storage_options=s3_bucket.options)


@pytest.mark.parametrize("job", ["members", "ledger"])
def test_racing_writers_on_s3_lose_nothing(s3_store_factory, job: str) -> None:
    work = {"members": _add_members, "ledger": _reject_contacts}[job]
    failures: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            work(s3_store_factory(), name)
        except BaseException as failure:  # reported by the assertion below
            failures.append(failure)

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)

    assert failures == []
    store = s3_store_factory()
    found = (store.read(GROUP)["ID"] if job == "members"
             else list(RejectionLedger.load(store, "contacts").entries))
    assert sorted(found) == _expected()
