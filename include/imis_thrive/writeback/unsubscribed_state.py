"""Who the writeback last saw unsubscribed: the state a Resubscribe is derived from (no grid records one).

One small document next to the ledger, `contact ID -> cancellation moment`. A run adds the contacts whose
Unsubscribe it read, and drops those it found subscribed again (each such change is one Resubscribe). It is
saved only after that run's activities are durable in the ledger, so a crash re-derives the same events, which
the ledger then recognises; it never loses one.
"""

from __future__ import annotations

from collections.abc import Mapping

from include.imis_thrive.sync.snapshots import SnapshotStore

STATE_KEY = "writeback/state/unsubscribed"


def load_unsubscribed(store: SnapshotStore) -> dict[str, str]:
    return dict((store.read_json(STATE_KEY) or {}).get("contacts", {}))


def save_unsubscribed(store: SnapshotStore, contacts: Mapping[str, str]) -> None:
    store.write_json(STATE_KEY, {"contacts": dict(sorted(contacts.items()))})
