"""The ledger of activity keys: which events are in iMIS, and which a crashed run may have put there.

Kept in the snapshot store (so every worker shares it), partitioned by the UTC hour the event happened in,
so any run, whatever its data interval, reads exactly the partitions its events can fall in:

    writeback/ledger/<YYYYMMDDTHH>/<written-at>-<token>.json     {"intent": [keys], "written": {key: SEQN}}

It is a write-ahead log. Before a batch is posted, its keys are recorded as *intent*; once posted, as
*written* with their SEQN. Each record is a new small document, written whole (atomically), so a run killed
at any moment leaves every earlier record intact. On the next run, a written key is skipped, and a key with
intent but no written record is *pending*: the post may or may not have landed, so the writer asks iMIS
before posting it again. Nothing is ever lost (intent is recorded before the post) or written twice (a
pending key is checked first).

A run re-reads its partitions before each batch (`refresh`: only the records it has not read yet), so a writer
that took an interval's lease over from an orphaned one (`sync/lease.py`) sees every key the orphan recorded, up
to the moment it stopped, and never posts one of them blindly.

`compact` folds a partition's records into one document, writing the merged one before deleting the ones
it merged; a reader that finds a listed record gone re-lists, so it always sees one or the other. Records
only ever add keys, so two compactions of one partition racing each other lose nothing either.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from include.imis_thrive.errors import TransientTrouble
from include.imis_thrive.sync.snapshots import SnapshotStore

log = logging.getLogger(__name__)

LEDGER_PREFIX = "writeback/ledger"
HOUR_FORMAT = "%Y%m%dT%H"
_LOAD_ATTEMPTS = 5


class LedgerError(TransientTrouble):
    """The ledger cannot be read consistently; the message names the partition and what to check.

    Transient: a partition changing under the reader is another writer compacting it; a later try reads it settled."""


def ledger_hour(moment: datetime) -> str:
    """The partition of an event: its UTC hour, e.g. `20260301T14`."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: ledger partitions are UTC hours of aware moments")
    return moment.astimezone(UTC).strftime(HOUR_FORMAT)


def hours_between(start: datetime, end: datetime) -> list[str]:
    """The partitions `[start, end)` touches, oldest first."""
    if end <= start:
        raise ValueError(f"empty interval [{start.isoformat()}, {end.isoformat()})")
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = []
    while hour < end:
        hours.append(hour.strftime(HOUR_FORMAT))
        hour += timedelta(hours=1)
    return hours


class ActivityLedger:
    """The written and pending keys of some hours, and the way to record more of them durably."""

    def __init__(self, store: SnapshotStore, hours: Iterable[str]) -> None:
        self.store = store
        self.hours = sorted(set(hours))
        self.written: dict[str, str] = {}
        self.intent: set[str] = set()
        self.records_added = 0
        self._read: dict[str, set[str]] = {hour: set() for hour in self.hours}  # record names already folded in

    @classmethod
    def load(cls, store: SnapshotStore, hours: Iterable[str]) -> ActivityLedger:
        ledger = cls(store, hours)
        ledger.refresh()
        log.info("ledger: %d written and %d pending keys in %d hour(s)", len(ledger.written),
                 len(ledger.pending()), len(ledger.hours))
        return ledger

    def refresh(self, hours: Iterable[str] | None = None) -> int:
        """Fold in the records other writers added since the last read, of every loaded partition or only of
        `hours` (records only add keys, so reading the new ones is enough); returns how many were new."""
        new = 0
        for hour in self.hours if hours is None else sorted(set(hours)):
            self._check_hour(hour)
            written, intent, names = _read_partition(self.store, hour, skip=self._read[hour])
            self.written.update(written)
            self.intent.update(intent)
            new += len(names - self._read[hour])
            self._read[hour] |= names
        return new

    def is_written(self, key: str) -> bool:
        return key in self.written

    def seqn(self, key: str) -> str | None:
        """The SEQN a key was written under ("" when iMIS did not say), or None if it is not known written."""
        return self.written.get(key)

    def is_pending(self, key: str) -> bool:
        """Posting may have started for this key without its outcome being recorded: ask iMIS first."""
        return key in self.intent and key not in self.written

    def pending(self) -> set[str]:
        return self.intent - self.written.keys()

    def record_intent(self, keys_by_hour: Mapping[str, Iterable[str]]) -> None:
        """Durably note that these keys are about to be posted; call before posting them."""
        for hour, keys in keys_by_hour.items():
            keys = sorted(keys)
            if keys:
                self._append(hour, {"intent": keys, "written": {}})
                self.intent.update(keys)

    def record_written(self, seqn_by_hour: Mapping[str, Mapping[str, str]]) -> None:
        """Durably note the keys now in iMIS, with their SEQN."""
        for hour, written in seqn_by_hour.items():
            if written:
                self._append(hour, {"intent": [], "written": dict(written)})
                self.written.update(written)

    def compact(self) -> int:
        """Fold each loaded partition's records into one; returns how many records were merged away."""
        merged = 0
        for hour in self.hours:
            merged += _compact_partition(self.store, hour)
        return merged

    def _append(self, hour: str, document: dict[str, Any]) -> None:
        self._check_hour(hour)
        name = _record_name()
        self.store.write_json(f"{_partition(hour)}/{name}", document)
        self._read[hour].add(name)
        self.records_added += 1

    def _check_hour(self, hour: str) -> None:
        if hour not in self.hours:
            raise LedgerError(f"ledger partition {hour} was not loaded (loaded: {', '.join(self.hours)}); an event "
                              "outside the run's interval cannot be checked against the keys already written")


def _partition(hour: str) -> str:
    return f"{LEDGER_PREFIX}/{hour}"


def _record_name() -> str:
    """Sortable by time of writing, unique across workers."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}"


def _record_names(store: SnapshotStore, hour: str) -> list[str]:
    """The record documents of one partition, oldest first (none before its first record)."""
    return store.json_names(_partition(hour))


def _read_partition(store: SnapshotStore, hour: str,
                    skip: Collection[str] = ()) -> tuple[dict[str, str], set[str], set[str]]:
    """(written, intent, record names) of one partition, read consistently despite concurrent compaction; the
    records named in `skip` (read before) are listed but not read again."""
    for _ in range(_LOAD_ATTEMPTS):
        names = _record_names(store, hour)
        read = [store.read_json(f"{_partition(hour)}/{name}") for name in names if name not in skip]
        documents = [document for document in read if document is not None]
        if len(documents) == len(read):
            written: dict[str, str] = {}
            intent: set[str] = set()
            for document in documents:
                written.update(document["written"])
                intent.update(document["intent"])
            return written, intent, set(names)
        log.info("ledger %s: a record was compacted away while reading; reading the partition again", hour)
    raise LedgerError(
        f"ledger partition {_partition(hour)} in {store.base} kept changing while being read "
        f"({_LOAD_ATTEMPTS} attempts); check that only one writeback task runs at a time (the interval's lease)"
    )


def _compact_partition(store: SnapshotStore, hour: str) -> int:
    """Write the union of the partition's records as one record, then delete the records it replaces."""
    written, intent, names = _read_partition(store, hour)
    if len(names) <= 1:
        return 0
    store.write_json(f"{_partition(hour)}/{_record_name()}",
                     {"intent": sorted(intent - written.keys()), "written": written})
    for name in names:
        store.delete_json(f"{_partition(hour)}/{name}")  # gone already: a concurrent compaction merged it
    log.info("ledger %s: compacted %d records (%d written keys)", hour, len(names), len(written))
    return len(names)
