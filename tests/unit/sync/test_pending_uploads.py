"""The journal of BulkUploads that may still change Thrive, and how the next run settles them."""

from __future__ import annotations

from datetime import datetime

import pytest

from include.imis_thrive.sync import pending_uploads
from include.imis_thrive.sync.pending_uploads import CLOCK_MARGIN, UploadJournal
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.thrive.errors import UploadFailed, UploadTimeout

SUBJECT = "target_groups/newsletter"


@pytest.fixture
def store(tmp_path) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / "store"))


class FakeThrive:
    """Answers the waits `settle` makes, and remembers them."""

    def __init__(self, failed: set[int] = frozenset(), pending: bool = False) -> None:
        self.failed, self.pending = failed, pending
        self.waited: list[int] = []
        self.since: list[datetime] = []

    def wait_for_upload(self, upload_id: int, what: str = "BulkUpload"):
        self.waited.append(upload_id)
        if upload_id in self.failed:
            raise UploadFailed(upload_id, what, "failed")
        if self.pending:
            raise UploadTimeout(upload_id, what, 3600, "processing")

    def wait_for_uploads_since(self, since: datetime, what: str = "uploads"):
        self.since.append(since)
        return []


def test_an_upload_is_recorded_before_it_is_sent_and_named_once_queued(store):
    journal = UploadJournal(store, SUBJECT, "run-1")
    entry = journal.before_upload("remove 2 members", ["7", "8"])
    [recorded] = pending_uploads.pending(store, SUBJECT)
    assert (recorded.key, recorded.contact_ids, recorded.upload_id, recorded.run_id) == (entry, ("7", "8"), None,
                                                                                          "run-1")
    journal.queued(entry, 41)
    assert [upload.upload_id for upload in pending_uploads.pending(store, SUBJECT)] == [41]


def test_settling_waits_for_each_named_upload_and_for_every_upload_since_an_unnamed_one(store):
    journal = UploadJournal(store, SUBJECT, "run-1")
    journal.queued(journal.before_upload("remove", ["1", "2"]), 5)
    journal.before_upload("remove", ["3"])  # its run died before Thrive's answer: no UploadID
    thrive = FakeThrive()

    settled = pending_uploads.settle(thrive, store, SUBJECT)

    unnamed = pending_uploads.pending(store, SUBJECT)[1]
    assert thrive.waited == [5]
    assert thrive.since == [datetime.fromisoformat(unnamed.recorded_at) - CLOCK_MARGIN]
    assert settled.uncertain == {"1", "2", "3"}
    assert set(settled.keys) == set(journal.keys)


def test_a_failed_upload_is_settled_with_its_contacts_uncertain(store):
    journal = UploadJournal(store, SUBJECT, "run-1")
    journal.queued(journal.before_upload("remove", ["1"]), 5)

    settled = pending_uploads.settle(FakeThrive(failed={5}), store, SUBJECT)

    assert settled.uncertain == {"1"}


def test_an_upload_still_pending_stops_the_run_before_it_sends_anything(store):
    journal = UploadJournal(store, SUBJECT, "run-1")
    journal.queued(journal.before_upload("remove", ["1"]), 5)

    with pytest.raises(UploadTimeout):  # transient: the task retries later, and nothing landed after it
        pending_uploads.settle(FakeThrive(pending=True), store, SUBJECT)
    assert len(pending_uploads.pending(store, SUBJECT)) == 1


def test_nothing_recorded_is_nothing_to_wait_for(store):
    thrive = FakeThrive()
    settled = pending_uploads.settle(thrive, store, SUBJECT)
    assert (settled.keys, settled.uncertain, thrive.waited, thrive.since) == ((), frozenset(), [], [])


def test_clearing_forgets_only_the_entries_a_commit_accounted_for(store):
    earlier = UploadJournal(store, SUBJECT, "run-1")
    earlier.before_upload("remove", ["1"])
    later = UploadJournal(store, SUBJECT, "run-2")
    later.before_upload("remove", ["2"])

    pending_uploads.clear(store, SUBJECT, earlier.keys)

    assert [upload.contact_ids for upload in pending_uploads.pending(store, SUBJECT)] == [("2",)]
