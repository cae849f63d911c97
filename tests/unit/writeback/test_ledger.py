"""The key ledger: durable intent and written records per UTC hour, pending keys, compaction, concurrency."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.writeback import ledger as ledger_module
from include.imis_thrive.writeback.ledger import ActivityLedger, LedgerError, hours_between, ledger_hour

HOUR = "20260308T06"
NEXT = "20260308T07"


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path) -> SnapshotStore:
    base = str(tmp_path / "store") if request.param == "local" else f"memory://ledger-{uuid.uuid4().hex}"
    return SnapshotStore(base)


def test_hours_are_utc_partitions():
    assert ledger_hour(datetime(2026, 3, 8, 1, 59, tzinfo=timezone(timedelta(hours=-5)))) == HOUR
    assert hours_between(datetime(2026, 3, 8, 6, tzinfo=UTC), datetime(2026, 3, 8, 8, tzinfo=UTC)) == [HOUR, NEXT]
    late_start, early_end = datetime(2026, 3, 8, 6, 30, tzinfo=UTC), datetime(2026, 3, 8, 7, 1, tzinfo=UTC)
    assert hours_between(late_start, early_end) == [HOUR, NEXT]
    with pytest.raises(ValueError, match="empty interval"):
        hours_between(datetime(2026, 3, 8, 6, tzinfo=UTC), datetime(2026, 3, 8, 6, tzinfo=UTC))


def test_an_empty_ledger_has_nothing(store):
    ledger = ActivityLedger.load(store, [HOUR])
    assert ledger.written == {} and ledger.pending() == set()


def test_records_survive_a_reload_and_intent_without_written_is_pending(store):
    ledger = ActivityLedger.load(store, [HOUR, NEXT])
    ledger.record_intent({HOUR: ["k1", "k2"], NEXT: ["k3"]})
    ledger.record_written({HOUR: {"k1": "1048000"}})
    reloaded = ActivityLedger.load(store, [HOUR, NEXT])
    assert reloaded.written == {"k1": "1048000"}
    assert reloaded.pending() == {"k2", "k3"}
    assert reloaded.is_pending("k2") and not reloaded.is_pending("k1") and not reloaded.is_pending("k9")
    assert reloaded.seqn("k1") == "1048000"


def test_only_the_loaded_hours_are_read(store):
    ActivityLedger.load(store, [HOUR, NEXT]).record_written({HOUR: {"k1": "1"}, NEXT: {"k2": "2"}})
    assert ActivityLedger.load(store, [NEXT]).written == {"k2": "2"}


def test_recording_into_an_unloaded_hour_is_refused(store):
    with pytest.raises(LedgerError, match="20260308T07 was not loaded"):
        ActivityLedger.load(store, [HOUR]).record_intent({NEXT: ["k1"]})


def test_compaction_keeps_every_key_in_one_record(store):
    ledger = ActivityLedger.load(store, [HOUR])
    for batch in range(3):
        ledger.record_intent({HOUR: [f"k{batch}a", f"k{batch}b"]})
        ledger.record_written({HOUR: {f"k{batch}a": str(batch)}})
    assert ledger.compact() == 6
    assert len(ledger_module._record_names(store, HOUR)) == 1
    reloaded = ActivityLedger.load(store, [HOUR])
    assert reloaded.written == {"k0a": "0", "k1a": "1", "k2a": "2"}
    assert reloaded.pending() == {"k0b", "k1b", "k2b"}
    assert reloaded.compact() == 0


def test_a_record_compacted_away_while_reading_is_read_again(store, monkeypatch):
    ledger = ActivityLedger.load(store, [HOUR])
    ledger.record_written({HOUR: {"k1": "1"}})
    ledger.record_written({HOUR: {"k2": "2"}})
    real_read = store.read_json
    compacted = []

    def read_during_compaction(key):
        if not compacted:  # another worker compacts between our listing and our first read
            compacted.append(key)
            ledger_module._compact_partition(store, HOUR)
        return real_read(key)

    monkeypatch.setattr(store, "read_json", read_during_compaction)
    assert ActivityLedger.load(store, [HOUR]).written == {"k1": "1", "k2": "2"}


def test_a_partition_that_never_settles_is_an_error(store, monkeypatch):
    ActivityLedger.load(store, [HOUR]).record_written({HOUR: {"k1": "1"}})
    monkeypatch.setattr(store, "read_json", lambda key: None)
    with pytest.raises(LedgerError, match="kept changing while being read"):
        ActivityLedger.load(store, [HOUR])
