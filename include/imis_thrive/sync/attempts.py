"""The last attempt that started loading a subject: what the mass-change guard measures a re-run against.

The rule: **a change counts against the guard once, when a run first plans it.** The guard measures a run's
change against the state Thrive would hold had the last attempt that started sending finished: the committed
snapshot, unless a later attempt passed the guard (or was overridden by a person) and began to load, in which
case that attempt's planned state. A run killed half-way does not commit, so without this its re-run would
diff against the older snapshot and count the killed run's changes again on top of its own; a few kills in a
row with ordinary churn between them then look like a mass change, and recovering needs the override.
A kill is not a mass change: the re-run is measured against what the killed run was already allowed to do.

An attempt is recorded by the first step that sends (`upsert_contacts`), never by a plan or a dry run, so a
dry run that was overridden approves nothing. A commit newer than the attempt makes it moot.
What the run *sends* is still the diff against the committed snapshot (what Thrive surely holds), with the
contacts the attempt changed counted as uncertain (sent or not, the snapshot cannot say), so their current state
is sent again: a killed run's add of a member who has left since is taken back, and its half-sent fields are
sent whole.
"""

from __future__ import annotations

import logging

import pandas as pd

from include.imis_thrive.sync.snapshots import SnapshotError, SnapshotHandle, SnapshotStore, snapshot_name

log = logging.getLogger(__name__)

ATTEMPTS_FOLDER = "attempts"


def _key(subject: str) -> str:
    return f"{ATTEMPTS_FOLDER}/{snapshot_name(subject)}"


def record_attempt(store: SnapshotStore, subject: str, planned: SnapshotHandle) -> None:
    """Note that a run starts loading `planned` (a staged frame of the state it drives Thrive to) for `subject`."""
    store.write_json(_key(subject), planned.as_dict())


def last_attempt(store: SnapshotStore, subject: str, committed: SnapshotHandle | None) -> pd.DataFrame | None:
    """The planned frame of the last attempt at `subject` that no commit has overtaken, or None."""
    document = store.read_json(_key(subject))
    if document is None:
        return None
    attempt = SnapshotHandle.from_dict(document)
    if committed is not None and committed.staged_at >= attempt.staged_at:
        return None
    try:
        return store.load(attempt)
    except SnapshotError:  # pruned: only after a newer commit, which makes it moot anyway
        log.info("the last attempt at %s (%s) is gone; the guard measures against the committed snapshot",
                 subject, attempt.key)
        return None
