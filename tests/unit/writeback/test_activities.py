"""The run report of the writeback: written next to the snapshots, failing only on refusals or a failed write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.writeback.activities import WritebackIncomplete, finish_run
from include.imis_thrive.writeback.writer import WritebackTally

START = datetime(2026, 3, 8, 6, tzinfo=UTC)
END = START + timedelta(hours=1)


def summary(written: int = 3, unknown: tuple[str, ...] = (), rejected: dict[str, int] | None = None) -> dict:
    tally = WritebackTally()
    tally.written["Mail Open"] = written
    tally.unknown_contacts.update(unknown)
    tally.unknown_contact_events["Mail Open"] = len(unknown)
    tally.rejected.update(rejected or {})
    return tally.summary()


@pytest.fixture
def store(tmp_path) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / "store"))


def test_the_report_is_stored_with_counts_per_kind(store):
    run_id = "scheduled__2026-03-08T06:00:00+00:00"
    finish_run(store, run_id, START, END, summary())
    stored = store.read_json(f"reports/activities/{snapshot_name(run_id)}")
    assert stored["writeback"]["written"]["Mail Open"] == 3
    assert stored["writeback"]["written"]["Link Click"] == 0
    assert stored["interval"] == {"start": START.isoformat(), "end": END.isoformat()}


def test_unknown_contacts_are_reported_without_failing_the_run(store):
    report = finish_run(store, "run-1", START, END, summary(unknown=("9999001", "9999002")))
    assert report["writeback"]["unknown_contacts"]["ids"] == ["9999001", "9999002"]


def test_refused_activities_fail_the_run_with_the_reasons(store):
    with pytest.raises(WritebackIncomplete, match=r"refused 2 activities.*\n2 × Description is too long"):
        finish_run(store, "run-1", START, END, summary(rejected={"Description is too long": 2}))


def test_a_failed_write_step_fails_the_run_after_the_report(store):
    with pytest.raises(WritebackIncomplete, match="write_activities task failed.*writes only what is missing"):
        finish_run(store, "run-1", START, END, None)
    assert store.read_json(f"reports/activities/{snapshot_name('run-1')}")["writeback"] is None
