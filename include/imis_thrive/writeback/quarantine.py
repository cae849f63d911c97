"""Events iMIS keeps failing: quarantined by activity key, retried on a bounded number of runs, then stuck.

One event iMIS can never take (real iMIS answers HTTP 500 "An error occurred. Please contact the
administrator." for such a payload) must not stall every other event of its interval. So an event whose posts
all failed in a run (`writer.AMBIGUOUS_ATTEMPTS` of them, each followed by a look-up that did not find it) is
*quarantined* instead of failing the writer: the run writes every other event, commits the ledger, and only
then fails (in `finish_run`), so the alert fires and names the event.

Policy, per event key:
- a run that fails it counts one more failed run (`runs`) and adds its posts to `attempts`;
- a later run of the same interval tries it again (looking it up in iMIS first: its key is pending in the
  ledger), for `RETRY_RUNS` failed runs in all;
- then it is *stuck*: later runs skip it (no post, no look-up) and list it in the report, without failing,
  until a person clears it: the DAG param `retry_stuck` tries stuck events once more, and deleting the entry
  from the document below forgets it (the next run treats it as new, after the same look-up);
- once written (or found in iMIS) it leaves the quarantine.

Kept like the target-group quarantine (`sync/quarantine.py`): one small JSON document in the snapshot store,
`quarantine/activities`, `{"entries": {key: entry}}`. Entries hold the contact ID, kind, UTC hour, iMIS's
error text, first/last seen and the counts; never an email or other member data. One writer of an interval runs
at a time (its lease, `sync/lease.py`; hourly runs one after another, `max_active_runs=1`), so a run reads the
document at its start and writes it at its end, unless it lost its lease meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from include.imis_thrive.sync.quarantine import RejectionLedger
from include.imis_thrive.sync.snapshots import SnapshotStore

QUARANTINE_NAME = "activities"
RETRY_RUNS = 3  # runs that may fail an event before it is stuck
REPORTED_KEYS = 50  # entries listed in a report; the counts are always complete


@dataclass(frozen=True)
class FailedEvent:
    """One event every post of this run failed for: what the quarantine records about it."""

    key: str
    contact_id: str
    kind: str
    hour: str
    reason: str
    attempts: int


@dataclass
class ActivityQuarantine:
    """Per activity key: iMIS's last error text, failed runs, posts, and when it first and last failed."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, store: SnapshotStore) -> ActivityQuarantine:
        document = store.read_json(cls.key()) or {}
        return cls(dict(document.get("entries", {})))

    @staticmethod
    def key() -> str:
        """The same place as the target groups' and panel fields' quarantines."""
        return RejectionLedger.key(QUARANTINE_NAME)

    def save(self, store: SnapshotStore) -> str:
        return store.write_json(self.key(), {"entries": self.entries, "retry_runs": RETRY_RUNS})

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def is_stuck(self, key: str) -> bool:
        """Failed in `RETRY_RUNS` runs: not tried again until a person clears it."""
        entry = self.entries.get(key)
        return entry is not None and entry["runs"] >= RETRY_RUNS

    def record_failure(self, failed: FailedEvent, now: datetime | None = None) -> dict[str, Any]:
        """One more failed run for this event; returns its entry (with `stuck` set once it is)."""
        seen = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        entry = self.entries.setdefault(failed.key, {"contact_id": failed.contact_id, "kind": failed.kind,
                                                     "hour": failed.hour, "first_seen": seen, "runs": 0,
                                                     "attempts": 0})
        entry["runs"] += 1
        entry["attempts"] += failed.attempts
        entry.update(last_seen=seen, reason=failed.reason, stuck=entry["runs"] >= RETRY_RUNS)
        return entry

    def release(self, keys: Iterable[str]) -> int:
        """Keys now in iMIS leave the quarantine; how many were in it."""
        return sum(self.entries.pop(key, None) is not None for key in keys)

    def stuck(self) -> list[str]:
        return sorted(key for key in self.entries if self.is_stuck(key))


def listed(key: str, entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as a report lists it: key, contact ID, kind, reason and counts (nothing else)."""
    return {"key": key, "contact_id": entry["contact_id"], "kind": entry["kind"], "reason": entry["reason"],
            "runs": entry["runs"], "attempts": entry["attempts"], "first_seen": entry["first_seen"],
            "last_seen": entry["last_seen"], "stuck": entry["runs"] >= RETRY_RUNS}
