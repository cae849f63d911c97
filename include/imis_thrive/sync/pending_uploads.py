"""BulkUploads that may still change Thrive after the run that sent them died, recorded before they are sent.

Thrive queues a BulkUpload and applies it on its own time. A run killed after queueing a removal (or a bulk
add or upsert) leaves an upload that lands later, while the snapshot, never committed over it, still says what
Thrive held before: if the member then rejoins the list, the diff sees nobody to add and the late removal makes
the loss permanent. So every upload is written down *before* it is sent (`UploadJournal.before_upload`), with
its contacts, and its `UploadID` is added once Thrive answers (`queued`).

The next run that plans the same subject settles the entries first (`settle`): it waits until each upload is
done (by its `UploadID`; one whose ID was never read is waited for through every upload `upload_history` lists
since it was recorded), so nothing of it can land after this run's own sends. What a settled upload did is
still uncertain (queued or not, applied or failed), so its contacts are *uncertain*: the run re-sends their
current state, whatever the snapshot says. An entry is removed only after the commit of a run that accounted
for it (`clear`); a run killed before that leaves it for the next one.

One JSON document per subject (`pending_uploads/<subject>.json`), written with the store's conditional update,
so concurrent runs lose no entry.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.thrive.client import ThriveClient
from include.imis_thrive.thrive.errors import UploadFailed

log = logging.getLogger(__name__)

PENDING_FOLDER = "pending_uploads"
# How far before an entry's record time `upload_history` is searched for the upload it never got the ID of:
# Thrive's clock (and the time zone it reports in, which no vendor page states) may differ from the worker's.
CLOCK_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class PendingUpload:
    """One upload that was about to be sent (or was queued) and whose effect no commit has accounted for yet."""

    key: str
    what: str
    contact_ids: tuple[str, ...]
    recorded_at: str  # ISO 8601, UTC
    run_id: str
    upload_id: int | None = None

    @classmethod
    def from_document(cls, key: str, document: dict) -> PendingUpload:
        return cls(key=key, what=document["what"], contact_ids=tuple(document["contact_ids"]),
                   recorded_at=document["recorded_at"], run_id=document["run_id"],
                   upload_id=document.get("upload_id"))


@dataclass(frozen=True)
class SettledUploads:
    """What `settle` found: the entries now done in Thrive, and the contacts whose state they left uncertain."""

    keys: tuple[str, ...]
    uncertain: frozenset[str]


def _key(subject: str) -> str:
    return f"{PENDING_FOLDER}/{snapshot_name(subject)}"


class UploadJournal:
    """The client's `UploadJournal` for one subject (a target group, or the contacts) of one run."""

    def __init__(self, store: SnapshotStore, subject: str, run_id: str) -> None:
        self.store = store
        self.subject = subject
        self.run_id = run_id
        self.keys: list[str] = []

    def before_upload(self, what: str, contact_ids: Sequence[str]) -> str:
        entry = uuid.uuid4().hex
        document = {"what": what, "contact_ids": list(contact_ids), "run_id": self.run_id,
                    "recorded_at": datetime.now(UTC).isoformat(), "upload_id": None}

        def add(stored: dict | None) -> dict:
            uploads = dict((stored or {}).get("uploads", {}))
            uploads[entry] = document
            return {"subject": self.subject, "uploads": uploads}

        self.store.update_json(_key(self.subject), add)
        self.keys.append(entry)
        return entry

    def queued(self, entry: str, upload_id: int) -> None:
        def note(stored: dict | None) -> dict:
            uploads = dict((stored or {}).get("uploads", {}))
            if entry in uploads:
                uploads[entry] = uploads[entry] | {"upload_id": upload_id}
            return {"subject": self.subject, "uploads": uploads}

        self.store.update_json(_key(self.subject), note)


def pending(store: SnapshotStore, subject: str) -> list[PendingUpload]:
    """The subject's entries, oldest first."""
    document = store.read_json(_key(subject)) or {}
    entries = [PendingUpload.from_document(key, value) for key, value in document.get("uploads", {}).items()]
    return sorted(entries, key=lambda entry: entry.recorded_at)


def settle(thrive: ThriveClient, store: SnapshotStore, subject: str) -> SettledUploads:
    """Wait until every recorded upload of `subject` is done in Thrive; raises `UploadTimeout` (retried) while
    one is still pending, so this run sends nothing an older upload could overwrite."""
    entries = pending(store, subject)
    if not entries:
        return SettledUploads((), frozenset())
    unnamed = [entry for entry in entries if entry.upload_id is None]
    for entry in entries:
        if entry.upload_id is None:
            continue
        try:
            thrive.wait_for_upload(entry.upload_id, f"{entry.what} (left pending by run {entry.run_id})")
        except UploadFailed as failed:  # failed or not, its contacts are re-sent below
            log.warning("%s: %s", subject, failed)
    if unnamed:
        since = min(datetime.fromisoformat(entry.recorded_at) for entry in unnamed) - CLOCK_MARGIN
        thrive.wait_for_uploads_since(since, f"uploads since {since.isoformat()} (one of {subject!r} has no "
                                             "UploadID: its run died before Thrive's answer)")
    uncertain = frozenset(contact for entry in entries for contact in entry.contact_ids)
    log.info("%s: %d upload(s) left by earlier runs are settled; %d contact(s) are re-sent as uncertain", subject,
             len(entries), len(uncertain))
    return SettledUploads(tuple(entry.key for entry in entries), uncertain)


def clear(store: SnapshotStore, subject: str, keys: Collection[str]) -> None:
    """Forget entries a commit has accounted for (entries recorded since stay)."""
    if not keys or store.read_json(_key(subject)) is None:
        return

    def drop(stored: dict | None) -> dict:
        uploads = {key: value for key, value in (stored or {}).get("uploads", {}).items() if key not in keys}
        return {"subject": subject, "uploads": uploads}

    store.update_json(_key(subject), drop)
