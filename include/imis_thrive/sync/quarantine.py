"""Records Thrive rejected: kept between runs, retried each run, flagged once they keep failing.

A rejected contact is left out of the snapshot, so the next run's diff sends it again; this ledger only
remembers *why* and *for how many runs in a row*, so the run report can flag the ones a person must fix
(a malformed email in iMIS, say) instead of retrying them silently forever. IDs and reasons only: the
reasons come from the Thrive client, which never quotes member data in them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.thrive.models import SubscriberOutcome

FLAG_AFTER_RUNS = 3
REPORTED_IDS = 50


@dataclass
class RejectionLedger:
    """Per contact ID: the last reason, consecutive failed runs, and when it first failed.

    Two runs may record into the same ledger at once; `save` replays this run's records over whatever is stored
    by then (a conditional write), so neither run's update is lost.
    """

    name: str
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    _records: list[tuple[str, list[str], list[SubscriberOutcome]]] = field(default_factory=list, repr=False)

    @classmethod
    def load(cls, store: SnapshotStore, name: str) -> RejectionLedger:
        document = store.read_json(cls.key(name)) or {}
        return cls(name, dict(document.get("entries", {})))

    @staticmethod
    def key(name: str) -> str:
        return f"quarantine/{name}"

    def save(self, store: SnapshotStore) -> str:
        def replayed(stored: dict[str, Any] | None) -> dict[str, Any]:
            self.entries = dict((stored or {}).get("entries", {}))
            for run_id, accepted, rejected in self._records:
                _apply(self.entries, run_id, accepted, rejected)
            return {"entries": self.entries}

        return store.update_json(self.key(self.name), replayed)

    def record(self, run_id: str, accepted: Iterable[str], rejected: Iterable[SubscriberOutcome]) -> None:
        """Accepted contacts leave the ledger; each rejected one counts one more failed run (once per run)."""
        record = (run_id, list(accepted), list(rejected))
        self._records.append(record)
        _apply(self.entries, *record)

    def flagged(self) -> list[str]:
        """Contacts rejected in `FLAG_AFTER_RUNS` or more runs in a row: a person must fix them in iMIS."""
        return sorted(cid for cid, entry in self.entries.items() if entry["runs"] >= FLAG_AFTER_RUNS)

    def summary(self) -> dict[str, Any]:
        flagged = self.flagged()
        reasons: dict[str, int] = {}
        for entry in self.entries.values():
            reason = _reason_kind(entry["reason"])
            reasons[reason] = reasons.get(reason, 0) + 1
        return {"open": len(self.entries), "by_reason": reasons, "flagged_count": len(flagged),
                "flagged_ids": flagged[:REPORTED_IDS], "flag_after_runs": FLAG_AFTER_RUNS}


def _apply(entries: dict[str, dict[str, Any]], run_id: str, accepted: Iterable[str],
           rejected: Iterable[SubscriberOutcome]) -> None:
    for contact_id in accepted:
        entries.pop(contact_id, None)
    for outcome in rejected:
        entry = entries.setdefault(outcome.contact_id, {"runs": 0, "first_run": run_id})
        if entry.get("last_run") != run_id:
            entry["runs"] += 1
        entry.update(last_run=run_id, reason=outcome.reason or outcome.status.value)


def _reason_kind(reason: str) -> str:
    """A reason with the IDs it quotes replaced by `#`, so the report counts one line per kind of rejection
    ("email already belongs to subscriber with ID #") instead of one per contact; the ledger keeps the full text."""
    return re.sub(r"\b(ID|id|contact|subscriber) \d+\b", r"\1 #", reason)
