"""Records Thrive rejected: kept between runs, resent once their content changes, flagged while they stay refused.

A rejected contact is left out of the snapshot, so the next run's diff finds it again. The ledger remembers the
row's hash as it was refused (`diff.row_hashes`, the hash the snapshots store), so the next run holds the row
back while its hash is the same (Thrive would refuse it again: every one of them would cost an upsert, and with
the refusals located by halving, several) and sends it as soon as it changes in iMIS. A row refused while another
contact held its email in Thrive (Thrive keys subscribers by email too) also remembers that contact, and is sent
again once that contact no longer holds the email, though the refused row itself never changed. The ledger also
remembers *why* and *for how many runs in a row* the contact stayed refused (sent and refused, or held back
unchanged), so the run report can flag the ones a person must fix (a malformed email in iMIS, say). IDs, hashes
and reasons only: the reasons come from the Thrive client, which never quotes member data in them.

An entry written before hashes were kept has none: that row is sent once more, and its hash kept then.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.thrive.models import SubscriberOutcome

FLAG_AFTER_RUNS = 3
REPORTED_IDS = 50
# one `record` call: run, accepted, rejected, their hashes, held, the holders of their emails
_Record = tuple[str, list[str], list[SubscriberOutcome], dict[str, int], list[str], dict[str, str]]


@dataclass
class RejectionLedger:
    """Per contact ID: the last reason, consecutive failed runs, and when it first failed.

    Two runs may record into the same ledger at once; `save` replays this run's records over whatever is stored
    by then (a conditional write), so neither run's update is lost.
    """

    name: str
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    _records: list[_Record] = field(default_factory=list, repr=False)

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
            for record in self._records:
                _apply(self.entries, *record)
            return {"entries": self.entries}

        return store.update_json(self.key(self.name), replayed)

    def record(self, run_id: str, accepted: Iterable[str], rejected: Iterable[SubscriberOutcome],
               hashes: Mapping[str, int] | None = None, held: Iterable[str] = (),
               email_holders: Mapping[str, str] | None = None) -> None:
        """Accepted contacts leave the ledger; each rejected one counts one more failed run (once per run) and
        keeps its row hash from `hashes` and, from `email_holders`, the contact that held its email in Thrive
        when it was refused; each `held` one (refused before, held back unchanged) counts one more run it stayed
        refused."""
        record = (run_id, list(accepted), list(rejected), dict(hashes or {}), list(held), dict(email_holders or {}))
        self._records.append(record)
        _apply(self.entries, *record)

    def refused_unchanged(self, ids: pd.Series, hashes: pd.Series | np.ndarray) -> np.ndarray:
        """Per ID, whether Thrive refused that very row before (same hash): sending it again would be refused
        again, so it waits until it changes in iMIS."""
        refused = {cid: entry["hash"] for cid, entry in self.entries.items() if "hash" in entry}
        if not refused:
            return np.zeros(len(ids), dtype=bool)
        kept = pd.Series(refused, dtype="str").reindex(pd.Index(ids, dtype="str"))
        current = pd.Series(np.asarray(hashes, dtype="uint64"), dtype="uint64").astype("str").to_numpy()
        return (kept.to_numpy() == current) & kept.notna().to_numpy()

    def email_holders(self, ids: pd.Series) -> pd.Series:
        """Per ID, the contact that held its email in Thrive when Thrive refused it (NA where none did)."""
        holders = {cid: entry["email_held_by"] for cid, entry in self.entries.items() if "email_held_by" in entry}
        return pd.Series(holders, dtype="str").reindex(pd.Index(ids, dtype="str"))

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
           rejected: Iterable[SubscriberOutcome], hashes: Mapping[str, int], held: Iterable[str],
           email_holders: Mapping[str, str]) -> None:
    for contact_id in accepted:
        entries.pop(contact_id, None)
    for outcome in rejected:
        entry = entries.setdefault(outcome.contact_id, {"runs": 0, "first_run": run_id})
        if entry.get("last_run") != run_id:
            entry["runs"] += 1
        entry.update(last_run=run_id, reason=outcome.reason or outcome.status.value)
        for key, known in (("hash", hashes), ("email_held_by", email_holders)):
            if outcome.contact_id in known:  # a hash as text: JSON numbers above 2**53 are not exact everywhere
                entry[key] = str(known[outcome.contact_id])
            else:
                entry.pop(key, None)
    for contact_id in held:
        still = entries.get(contact_id)
        if still is not None and still.get("last_run") != run_id:
            still.update(runs=still["runs"] + 1, last_run=run_id)


def _reason_kind(reason: str) -> str:
    """A reason with the IDs it quotes replaced by `#`, so the report counts one line per kind of rejection
    ("email already belongs to subscriber with ID #") instead of one per contact; the ledger keeps the full text."""
    return re.sub(r"\b(ID|id|contact|subscriber) \d+\b", r"\1 #", reason)
