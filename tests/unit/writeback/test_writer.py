"""The writer against an in-memory iMIS: once per event through ambiguity, crashes, unknown contacts, refusals."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from include.imis_thrive.http_retry import AmbiguousWriteError
from include.imis_thrive.imis.client import ImisConfig
from include.imis_thrive.imis.errors import ImisRequestError
from include.imis_thrive.sync.lease import Lease, LeaseLost, LeaseTerms
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.thrive.engagement import EngagementEvent
from include.imis_thrive.thrive.errors import ThriveFault
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback.event_keys import event_key
from include.imis_thrive.writeback.ledger import ActivityLedger, hours_between
from include.imis_thrive.writeback.writer import (
    AMBIGUOUS_ATTEMPTS,
    REJECTIONS_BEFORE_STOP,
    ActivitiesRejected,
    ActivityWriter,
)

START = datetime(2026, 3, 8, 6, tzinfo=UTC)
END = START + timedelta(hours=1)
KNOWN = {"1000004", "1000005", "1000006"}


class FakeImis:
    """`post_activity` and `find_activities` over a list, with per-call misbehaviour scripted by the test.

    `landed_then_lost` / `lost_before_landing`: how many posts end in `AmbiguousWriteError` after or before
    the activity was stored; `refuse`: a 400 message for every post; `crash_on_post`: raise on that post."""

    def __init__(self, max_concurrency: int = 4, delay_s: float = 0.0) -> None:
        self.config = ImisConfig(base_url="http://imis.invalid", username="u", password="p",
                                 timezone="America/New_York", max_concurrency=max_concurrency)
        self.calls = 0
        self.activities: list[dict[str, Any]] = []
        self.posts = 0
        self.landed_then_lost = 0
        self.lost_before_landing = 0
        self.refuse: str | None = None
        self.crash_on_post: int | None = None
        self.delay_s = delay_s
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()

    def post_activity(self, party_id: str, properties: Mapping[str, Any]) -> str:
        with self._lock:
            self.posts += 1
            self.calls += 1
            number = self.posts
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay_s)
            with self._lock:
                if self.crash_on_post == number:
                    raise RuntimeError("worker crashed")
                if self.lost_before_landing:
                    self.lost_before_landing -= 1
                    raise AmbiguousWriteError("activity", httpx.ReadTimeout("timed out"))
                if party_id not in KNOWN:
                    raise ImisRequestError(f"activity for party {party_id}: rejected with HTTP 400: "
                                           f"Party '{party_id}' does not exist.", 400)
                if self.refuse:
                    raise ImisRequestError(f"activity for party {party_id}: rejected with HTTP 400: {self.refuse}",
                                           400)
                seqn = str(1_048_000 + len(self.activities))
                self.activities.append({"SEQN": seqn, "PartyId": party_id, **properties})
                if self.landed_then_lost:
                    self.landed_then_lost -= 1
                    raise AmbiguousWriteError("activity", httpx.RemoteProtocolError("connection dropped"))
                return seqn
        finally:
            with self._lock:
                self.in_flight -= 1

    def find_activities(self, filters: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        self.calls += 1
        key = filters["UF_1"].removeprefix("eq:")
        return iter([row for row in self.activities if row["PartyId"] == filters["PartyId"] and row["UF_1"] == key])

    def keys(self) -> list[str]:
        return [row["UF_1"] for row in self.activities]


def events(count: int, contact: str = "1000004",
           kind: EngagementKind = EngagementKind.MAIL_OPEN) -> list[EngagementEvent]:
    return [EngagementEvent(kind, contact, None, "12", "34", START + timedelta(seconds=index))
            for index in range(count)]


@pytest.fixture
def store(tmp_path) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / "store"))


def write(imis: FakeImis, store: SnapshotStore, batch: list[EngagementEvent], **options) -> ActivityWriter:
    writer = ActivityWriter(imis, ActivityLedger.load(store, hours_between(START, END)), **options)
    writer.write(batch)
    return writer


def test_every_event_is_written_once_and_a_second_run_writes_nothing(store):
    imis = FakeImis()
    batch = events(30) + events(5, kind=EngagementKind.MAIL_SENT)
    first = write(imis, store, batch, batch_size=7).tally
    assert first.written == {"Mail Open": 30, "Mail Sent": 5}
    assert sorted(imis.keys()) == sorted(event_key(e) for e in batch)
    second = write(imis, store, batch).tally
    assert sum(second.written.values()) == 0
    assert second.already_written == {"Mail Open": 30, "Mail Sent": 5}
    assert len(imis.activities) == 35 and imis.posts == 35


def test_duplicates_in_the_read_and_events_without_contact_are_counted_not_posted(store):
    imis = FakeImis()
    tally = write(imis, store, events(3) + events(3) + events(2, contact="")).tally
    assert tally.duplicates_in_read == 3
    assert tally.no_contact_id == {"Mail Open": 2}
    assert len(imis.activities) == 3


def test_a_post_that_landed_but_lost_its_answer_is_found_not_repeated(store):
    imis = FakeImis()
    imis.landed_then_lost = 2
    tally = write(imis, store, events(5)).tally
    assert len(imis.activities) == 5 and imis.posts == 5
    assert sum(tally.found_in_imis.values()) == 2 and sum(tally.written.values()) == 3
    assert tally.checked_in_imis == 2


def test_a_post_lost_before_landing_is_looked_up_then_repeated(store):
    imis = FakeImis(max_concurrency=1)
    imis.lost_before_landing = 2
    tally = write(imis, store, events(3)).tally
    assert sorted(imis.keys()) == sorted(event_key(e) for e in events(3))
    assert imis.posts == 5 and tally.checked_in_imis == 2


def test_an_outcome_that_stays_unknown_is_quarantined_and_leaves_the_key_pending(store):
    imis = FakeImis(max_concurrency=1)
    imis.lost_before_landing = AMBIGUOUS_ATTEMPTS
    tally = write(imis, store, events(1)).tally
    key = event_key(events(1)[0])
    assert [entry["reason"] for entry in tally.quarantined] == ["no answer (ReadTimeout)"]
    assert ActivityLedger.load(store, hours_between(START, END)).pending() == {key}
    assert imis.posts == AMBIGUOUS_ATTEMPTS and tally.checked_in_imis == AMBIGUOUS_ATTEMPTS


def test_a_crash_after_posts_loses_nothing_and_duplicates_nothing(store):
    imis = FakeImis(max_concurrency=1)
    imis.crash_on_post = 4
    with pytest.raises(RuntimeError, match="worker crashed"):
        write(imis, store, events(10), batch_size=5)
    assert len(imis.activities) == 4  # the batch's other posts landed and were recorded before the error
    imis.crash_on_post = None
    rerun = write(imis, store, events(10), batch_size=5).tally
    assert sorted(imis.keys()) == sorted(event_key(e) for e in events(10))
    assert sum(rerun.already_written.values()) == 4


def test_keys_a_killed_run_left_pending_are_checked_in_imis_before_posting(store):
    imis = FakeImis()
    write(imis, store, events(3))
    ledger = ActivityLedger.load(store, hours_between(START, END))
    # A run killed between its posts and its written record: intent only, yet iMIS has two of the three.
    pending = [event_key(e) for e in events(6)[3:]]
    ledger.record_intent({"20260308T06": pending})
    imis.activities += [{"SEQN": "77", "PartyId": "1000004", "UF_1": key} for key in pending[:2]]
    tally = write(imis, store, events(6)).tally
    assert tally.found_in_imis == {"Mail Open": 2} and tally.written == {"Mail Open": 1}
    assert tally.checked_in_imis == 3
    assert sorted(imis.keys()) == sorted(event_key(e) for e in events(6))


def test_unknown_contacts_are_skipped_counted_and_listed(store):
    imis = FakeImis(max_concurrency=1)
    tally = write(imis, store, events(2) + events(3, contact="9999999")).tally
    summary = tally.summary()
    assert summary["unknown_contacts"] == {"events": 3, "by_kind": {"Mail Open": 3}, "contacts": 1,
                                           "ids": ["9999999"]}
    assert imis.posts == 3  # after the first refusal, the contact's other events are not posted
    assert summary["written"]["Mail Open"] == 2 and summary["written"]["Link Click"] == 0


def test_a_rerun_looks_up_an_unknown_contact_once_not_each_of_its_pending_events(store):
    imis = FakeImis(max_concurrency=1)
    batch = events(2) + events(30, contact="9999999")
    write(imis, store, batch)
    tally = write(imis, store, batch).tally  # the 30 keys are pending: intent recorded, never written
    assert tally.checked_in_imis == 1 and imis.posts == 3 + 1
    assert tally.summary()["unknown_contacts"]["events"] == 30


def test_activities_refused_from_the_start_stop_the_writer(store):
    imis = FakeImis()
    imis.refuse = "Property 'UF_1' is not defined on Activity."
    with pytest.raises(ActivitiesRejected, match=r"UF_1' is not defined.*activity_map\.py"):
        write(imis, store, events(100), batch_size=REJECTIONS_BEFORE_STOP)
    assert imis.posts == REJECTIONS_BEFORE_STOP


def test_a_few_refusals_are_reported_with_the_reason(store):
    imis = FakeImis()
    writer = ActivityWriter(imis, ActivityLedger.load(store, hours_between(START, END)))
    writer.write(events(5))
    imis.refuse = "Description is too long."
    writer.write(events(3, contact="1000005"))
    rejected = writer.tally.summary()["rejected"]
    assert rejected["events"] == 3
    assert rejected["by_reason"] == {"rejected with HTTP 400: Description is too long.": 3}
    assert {row["contact_id"] for row in rejected["sample"]} == {"1000005"}


def test_concurrency_is_bounded(store):
    imis = FakeImis(max_concurrency=3, delay_s=0.01)
    write(imis, store, events(30))
    assert imis.max_in_flight == 3


def test_the_next_batch_is_read_while_the_last_one_posts(store):
    imis = FakeImis(max_concurrency=2, delay_s=0.05)
    posting_while_read: list[int] = []

    def stream() -> Iterator[EngagementEvent]:
        for event in events(15):
            with imis._lock:
                posting_while_read.append(imis.in_flight)
            yield event

    write(imis, store, stream(), batch_size=5)
    assert any(posting_while_read[6:10])  # the second batch was read as the first posted, the 7th event onwards
    assert len(imis.activities) == 15


def test_a_read_failing_while_a_batch_posts_records_that_batch_first(store):
    imis = FakeImis(max_concurrency=2, delay_s=0.05)

    def stream() -> Iterator[EngagementEvent]:
        yield from events(7)
        raise ThriveFault("grid MailingActivityOpens, page 2", "InformzAAPIFault", "refused")

    with pytest.raises(ThriveFault):
        write(imis, store, stream(), batch_size=5)
    ledger = ActivityLedger.load(store, hours_between(START, END))
    assert sorted(ledger.written) == sorted(event_key(event) for event in events(5)) and not ledger.pending()


class StalledLease(Lease):
    """A lease whose heartbeat never beats: its writer is stopped, or cannot reach the store."""

    def _renew_until_stopped(self) -> None:
        self._stop.wait()


def test_a_writer_whose_lease_was_taken_over_stops_before_its_next_batch(store):
    imis = FakeImis()
    terms = LeaseTerms(ttl=timedelta(seconds=0.3), renew_every=timedelta(seconds=0.1), wait=timedelta(seconds=5),
                       grace=timedelta(seconds=0.1))
    stalled = StalledLease(store, "activities/interval", terms)
    stalled.acquire()
    taker = Lease(store, "activities/interval", terms)

    def stream() -> Iterator[EngagementEvent]:
        batch = events(20)
        yield from batch[:7]
        taker.acquire()  # once the first batch is posted, the stalled lease expires and is taken over
        yield from batch[7:]

    writer = ActivityWriter(imis, ActivityLedger.load(store, hours_between(START, END)), batch_size=7, lease=stalled)
    with pytest.raises(LeaseLost):
        writer.write(stream())
    taker.release()
    assert imis.posts == 7  # the first batch only


def test_before_each_batch_a_writer_rereads_what_an_orphan_of_its_interval_recorded(store):
    imis = FakeImis()
    batch = events(10)
    keys = [event_key(event) for event in batch]
    orphan = ActivityLedger.load(store, hours_between(START, END))

    def stream() -> Iterator[EngagementEvent]:
        yield from batch[:9]
        # Meanwhile the orphan recorded 0-4 as written, and 5-6 as intent of which only 5 landed before it stopped.
        for key, event in zip(keys[:6], batch[:6], strict=True):
            imis.post_activity(event.contact_id, {"UF_1": key})
        orphan.record_intent({"20260308T06": keys[:7]})
        orphan.record_written({"20260308T06": dict.fromkeys(keys[:5], "")})
        yield batch[9]

    with Lease(store, "activities/interval").hold() as lease:
        writer = ActivityWriter(imis, ActivityLedger.load(store, hours_between(START, END)), batch_size=10,
                                lease=lease)
        tally = writer.write(stream())
    assert sorted(imis.keys()) == sorted(keys)  # each once
    assert tally.already_written == {"Mail Open": 5}
    assert tally.found_in_imis == {"Mail Open": 1} and tally.written == {"Mail Open": 4}
