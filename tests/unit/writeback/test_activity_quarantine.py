"""The quarantine policy: an event iMIS keeps failing costs a bounded number of posts per run and across runs,
never stalls the others, is never posted twice, and is released once iMIS takes it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from include.imis_thrive.http_retry import AmbiguousWriteError, TransientHTTPError
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.writeback.event_keys import event_key
from include.imis_thrive.writeback.ledger import ActivityLedger, hours_between
from include.imis_thrive.writeback.quarantine import RETRY_RUNS, ActivityQuarantine, FailedEvent
from include.imis_thrive.writeback.writer import (
    AMBIGUOUS_ATTEMPTS,
    FAILED_IN_A_ROW_BEFORE_STOP,
    ActivityWriter,
    ImisUnavailable,
    imis_reason,
)
from tests.unit.writeback.test_writer import END, START, FakeImis, events

CANNOT_TAKE = "An error occurred. Please contact the administrator."


def http_500(body: Any = None, text: str | None = None) -> AmbiguousWriteError:
    request = httpx.Request("POST", "http://imis.invalid/api/Activity")
    response = (httpx.Response(500, text=text, request=request) if text is not None
                else httpx.Response(500, json=body, request=request))
    return AmbiguousWriteError("activity for party 1000004", TransientHTTPError("activity", response))


class PoisonedImis(FakeImis):
    """Answers 500 with iMIS's generic message to every post of an event whose key is in `poisoned`."""

    def __init__(self, *poisoned: str, **options) -> None:
        super().__init__(**options)
        self.poisoned = set(poisoned)
        self.posts_of: dict[str, int] = {}

    def post_activity(self, party_id: str, properties: Mapping[str, Any]) -> str:
        key = properties["UF_1"]
        with self._lock:
            self.posts_of[key] = self.posts_of.get(key, 0) + 1
            poisoned = key in self.poisoned or party_id in self.poisoned
        if poisoned:
            with self._lock:
                self.posts += 1
            raise http_500({"$type": "System.Web.Http.HttpError, System.Web.Http", "Message": CANNOT_TAKE})
        return super().post_activity(party_id, properties)


@pytest.fixture
def store(tmp_path) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / "store"))


def run(imis: FakeImis, store: SnapshotStore, batch, **options) -> ActivityWriter:
    writer = ActivityWriter(imis, ActivityLedger.load(store, hours_between(START, END)), **options)
    writer.write(batch)
    return writer


BATCH = events(20)
POISON = event_key(BATCH[7])


def test_an_event_iMIS_keeps_failing_is_quarantined_with_its_reason_and_every_other_event_is_written(store):
    imis = PoisonedImis(POISON)
    summary = run(imis, store, BATCH, batch_size=6).tally.summary()
    assert sorted(imis.keys()) == sorted(event_key(e) for e in BATCH if event_key(e) != POISON)
    assert summary["written"]["Mail Open"] == 19
    assert imis.posts_of[POISON] == AMBIGUOUS_ATTEMPTS  # bounded per run, each failure then looked up
    assert summary["checked_in_imis"] == AMBIGUOUS_ATTEMPTS
    quarantine = summary["quarantine"]
    assert quarantine["events"] == 1 and quarantine["stuck"] == 0
    [entry] = quarantine["entries"]
    assert (entry["key"], entry["contact_id"], entry["kind"]) == (POISON, "1000004", "Mail Open")
    assert entry["reason"] == f"HTTP 500: {CANNOT_TAKE}"
    assert (entry["runs"], entry["attempts"]) == (1, AMBIGUOUS_ATTEMPTS)
    stored = ActivityQuarantine.load(store).get(POISON)
    assert stored["first_seen"] == stored["last_seen"] and stored["hour"] == "20260308T06"
    assert ActivityLedger.load(store, hours_between(START, END)).pending() == {POISON}


def test_later_runs_look_it_up_first_retry_it_a_bounded_number_of_runs_then_skip_it_as_stuck(store):
    imis = PoisonedImis(POISON)
    for number in range(1, RETRY_RUNS + 1):
        tally = run(imis, store, BATCH).tally
        assert sum(tally.written.values()) == (19 if number == 1 else 0)
        assert tally.checked_in_imis == AMBIGUOUS_ATTEMPTS + (number > 1)  # pending: looked up before the post
        assert [(e["runs"], e["stuck"]) for e in tally.quarantined] == [(number, number == RETRY_RUNS)]
    assert imis.posts_of[POISON] == RETRY_RUNS * AMBIGUOUS_ATTEMPTS
    stuck = run(imis, store, BATCH).tally
    assert imis.posts_of[POISON] == RETRY_RUNS * AMBIGUOUS_ATTEMPTS and stuck.checked_in_imis == 0
    summary = stuck.summary()["quarantine"]
    assert summary["events"] == 0 and summary["open"] == 1
    assert [(e["key"], e["contact_id"], e["stuck"]) for e in summary["stuck_skipped"]["entries"]] == [
        (POISON, "1000004", True)]
    assert ActivityQuarantine.load(store).get(POISON)["attempts"] == RETRY_RUNS * AMBIGUOUS_ATTEMPTS
    assert len(imis.activities) == 19


def test_retry_stuck_tries_a_stuck_event_again_and_once_iMIS_takes_it_it_leaves_the_quarantine(store):
    imis = PoisonedImis(POISON)
    for _ in range(RETRY_RUNS):
        run(imis, store, BATCH)
    imis.poisoned.clear()
    assert sum(run(imis, store, BATCH).tally.written.values()) == 0  # stuck: not tried without the param
    tally = run(imis, store, BATCH, retry_stuck=True).tally
    assert tally.written == {"Mail Open": 1} and tally.released == 1 and tally.checked_in_imis == 1
    assert ActivityQuarantine.load(store).entries == {}
    assert sorted(imis.keys()) == sorted(event_key(e) for e in BATCH)  # each exactly once
    assert sum(run(imis, store, BATCH).tally.written.values()) == 0


def test_deleting_a_stuck_entry_lets_the_next_run_look_it_up_and_write_it_once(store):
    imis = PoisonedImis(POISON)
    for _ in range(RETRY_RUNS):
        run(imis, store, BATCH)
    imis.poisoned.clear()
    quarantine = ActivityQuarantine.load(store)
    quarantine.entries.pop(POISON)
    quarantine.save(store)
    tally = run(imis, store, BATCH).tally
    assert tally.written == {"Mail Open": 1} and tally.checked_in_imis == 1
    assert sorted(imis.keys()) == sorted(event_key(e) for e in BATCH)


def test_a_quarantined_event_iMIS_took_meanwhile_is_found_and_released_not_posted_again(store):
    imis = PoisonedImis(POISON)
    run(imis, store, BATCH)
    imis.activities.append({"SEQN": "99", "PartyId": "1000004", "UF_1": POISON})  # someone fixed and wrote it
    tally = run(imis, store, BATCH).tally
    assert tally.found_in_imis == {"Mail Open": 1} and tally.released == 1
    assert imis.posts_of[POISON] == AMBIGUOUS_ATTEMPTS
    assert ActivityQuarantine.load(store).entries == {}


def test_every_event_of_a_poisoned_contact_is_quarantined_and_other_contacts_are_written(store):
    imis = PoisonedImis("1000005")
    batch = events(6) + events(4, contact="1000005")
    summary = run(imis, store, batch).tally.summary()
    assert summary["written"]["Mail Open"] == 6
    assert {e["contact_id"] for e in summary["quarantine"]["entries"]} == {"1000005"}
    assert summary["quarantine"]["events"] == 4


def test_many_events_failing_in_a_row_is_an_outage_that_stops_the_run_without_quarantining_them(store):
    imis = FakeImis(max_concurrency=1)
    imis.lost_before_landing = 10**9  # iMIS answers no post at all
    with pytest.raises(ImisUnavailable, match=f"{FAILED_IN_A_ROW_BEFORE_STOP} activities in a row.*not one bad"):
        run(imis, store, events(FAILED_IN_A_ROW_BEFORE_STOP + 30), batch_size=40)
    assert ActivityQuarantine.load(store).entries == {}
    assert imis.posts == FAILED_IN_A_ROW_BEFORE_STOP * AMBIGUOUS_ATTEMPTS  # then it stopped posting
    imis.lost_before_landing = 0
    tally = run(imis, store, events(FAILED_IN_A_ROW_BEFORE_STOP + 30)).tally
    assert sorted(imis.keys()) == sorted(event_key(e) for e in events(FAILED_IN_A_ROW_BEFORE_STOP + 30))
    assert tally.checked_in_imis == 80  # every key of the stopped run was pending: looked up first


def test_a_failure_between_successes_is_not_an_outage(store):
    poisoned = [event_key(e) for e in BATCH[::2]]
    imis = PoisonedImis(*poisoned, max_concurrency=1)
    tally = run(imis, store, BATCH).tally
    assert len(tally.quarantined) == 10 and sum(tally.written.values()) == 10


@pytest.mark.parametrize("error, reason", [
    (http_500({"$type": "System.Web.Http.HttpError, System.Web.Http", "Message": CANNOT_TAKE}),
     f"HTTP 500: {CANNOT_TAKE}"),
    (http_500({"Errors": {"$values": [{"Message": "Bad UF_3"}]}}), "HTTP 500: Bad UF_3"),
    (http_500(text="<html>Runtime Error</html>"), "HTTP 500: <html>Runtime Error</html>"),
    (http_500(text=""), "HTTP 500: no body"),
    (AmbiguousWriteError("activity", httpx.RemoteProtocolError("dropped")), "no answer (RemoteProtocolError)"),
])
def test_the_reason_is_what_iMIS_said(error, reason):
    assert imis_reason(error) == reason


def test_an_entry_counts_runs_and_posts_and_keeps_when_it_was_first_seen():
    quarantine = ActivityQuarantine()
    failed = FailedEvent("HL1-x", "1000004", "Mail Open", "20260308T06", "HTTP 500: first", 5)
    first = datetime(2026, 3, 8, 7, tzinfo=UTC)
    quarantine.record_failure(failed, first)
    entry = quarantine.record_failure(FailedEvent(**{**failed.__dict__, "reason": "HTTP 500: later"}),
                                      first.replace(hour=9))
    assert (entry["runs"], entry["attempts"], entry["reason"]) == (2, 10, "HTTP 500: later")
    assert (entry["first_seen"], entry["last_seen"]) == ("2026-03-08T07:00:00+00:00", "2026-03-08T09:00:00+00:00")
    assert not quarantine.is_stuck("HL1-x") and quarantine.stuck() == []
    assert quarantine.release(["HL1-x", "HL1-other"]) == 1 and quarantine.entries == {}
