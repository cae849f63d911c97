"""What the writeback last saw of the state its derived kinds come from (no grid records those events).

Small documents next to the ledger:
- `writeback/state/unsubscribed`: contact ID -> cancellation moment. A run adds the contacts whose Unsubscribe
  it read and drops those it found subscribed again (each such change is one Resubscribe);
- `writeback/state/flags/<kind>`: mailing instance -> {contact: the window that first turned its `was_opened` /
  `was_clicked` flag into a Mail Open / Link Click}, on tenants that do not serve the per-event grids.

Each is saved only after that run's activities are durable in the ledger, so a crash re-derives the same
events, which the ledger then recognises; it never loses one.
"""

from __future__ import annotations

from collections.abc import Mapping

from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.thrive.kinds import EngagementKind

UNSUBSCRIBED_KEY = "writeback/state/unsubscribed"
FLAGS_PREFIX = "writeback/state/flags"


def load_unsubscribed(store: SnapshotStore) -> dict[str, str]:
    return dict((store.read_json(UNSUBSCRIBED_KEY) or {}).get("contacts", {}))


def save_unsubscribed(store: SnapshotStore, contacts: Mapping[str, str]) -> None:
    store.write_json(UNSUBSCRIBED_KEY, {"contacts": dict(sorted(contacts.items()))})


def _flags_key(kind: EngagementKind) -> str:
    return f"{FLAGS_PREFIX}/{snapshot_name(kind.value)}"


def load_flags(store: SnapshotStore, kind: EngagementKind) -> dict[str, dict[str, str | None] | list[str]]:
    return dict((store.read_json(_flags_key(kind)) or {}).get("instances", {}))


def save_flags(store: SnapshotStore, kind: EngagementKind, instances: Mapping[str, Mapping[str, str | None]]) -> None:
    store.write_json(_flags_key(kind), {"instances": {key: dict(value) for key, value in sorted(instances.items())}})
