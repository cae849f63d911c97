"""Post engagement events to iMIS as activities, each exactly once, with bounded concurrency.

One `ImisClient` (thread-safe, one shared token, each request on a connection no other thread is using: see
`http_clients.py`) serves a pool of `concurrency` threads. Events go in batches; per batch, the ledger records the
keys as intent, the batch is posted, and the keys that landed are recorded as written, before the next batch
starts (the next batch is read and planned meanwhile, so the posts do not wait for Thrive). With a lease
(`sync/lease.py`, one per data interval), the writer checks it before each batch and each post, and stops
(`LeaseLost`) once it is no longer sure to hold it; and before each batch it re-reads the ledger, so a writer that
took the interval over from an orphaned one skips what the orphan wrote and looks up what it may have been posting.
Per event:

- a key the ledger has as written is skipped; a *pending* one (a crashed run's intent) is looked up in iMIS
  by its key first, and only posted if iMIS does not have it;
- a post whose outcome is unknown (`AmbiguousWriteError`: a timeout, a dropped connection, a 5xx) is never
  blindly resent: iMIS is asked for the key, and the post is repeated only if the activity is not there;
- an event whose `AMBIGUOUS_ATTEMPTS` posts all failed so (iMIS answering 500 to a payload it cannot take) is
  quarantined (`quarantine.py`: by key, with iMIS's error text) and the writer goes on with the other events;
  a later run tries it again, after the same look-up, until it has failed `quarantine.RETRY_RUNS` runs; then it
  is stuck, and skipped until a person clears it (`retry_stuck`);
- `FAILED_IN_A_ROW_BEFORE_STOP` events failing one after the other, with nothing written between them, is iMIS
  down, not bad events: the writer stops (`ImisUnavailable`, a task retry) and quarantines none of them;
- a contact iMIS does not know (400 "party does not exist") is skipped and reported by ID, never lost silently;
- any other 400 is reported with iMIS's reason; if the first events are all refused, the writer stops early,
  since a wrong property name or activity type would otherwise be refused 100,000 times.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from include.imis_thrive.errors import BadConfiguration, TransientTrouble
from include.imis_thrive.http_retry import AmbiguousWriteError, TransientHTTPError
from include.imis_thrive.imis.client import ImisClient
from include.imis_thrive.imis.errors import ImisRequestError
from include.imis_thrive.sync.lease import Lease
from include.imis_thrive.thrive.engagement import EngagementEvent
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback.activity_map import PlannedActivity, carries_key, find_filters, plan_activity
from include.imis_thrive.writeback.event_keys import event_key
from include.imis_thrive.writeback.ledger import ActivityLedger, ledger_hour
from include.imis_thrive.writeback.quarantine import REPORTED_KEYS, RETRY_RUNS, ActivityQuarantine, FailedEvent, listed

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
AMBIGUOUS_ATTEMPTS = 5  # posts of one event per run whose outcome stayed unknown (each followed by a lookup)
FAILED_IN_A_ROW_BEFORE_STOP = 50  # events failing in a row, none written between: an outage, not bad events
REJECTIONS_BEFORE_STOP = 20  # refusals, with nothing accepted yet, that prove the mapping itself is wrong
REPORTED_IDS = 100  # contact IDs listed in the report; the counts are always complete
# UNCONFIRMED wording (reference/imis-api.md §3.5 leaves the 400 body open); the sandbox says
# "Party '<id>' does not exist." This matches that and "... was not found" / "... not found".
UNKNOWN_PARTY = re.compile(r"\bparty\W+\S+\W+(?:does not exist|was not found|not found)", re.IGNORECASE)


class Outcome(StrEnum):
    WRITTEN = "written"  # posted now
    FOUND = "found_in_imis"  # an earlier, unrecorded attempt had written it: recorded, not posted again
    UNKNOWN_CONTACT = "unknown_contact"
    REJECTED = "rejected"
    FAILED = "failed"  # every post of this run failed and iMIS does not have it: quarantined
    NOT_TRIED = "not_tried"  # the writer stopped (an outage) before posting it; its key stays pending


@dataclass(frozen=True)
class _Planned:
    """An activity to post, whether to look it up in iMIS first, and its ledger partition (computed once)."""

    activity: PlannedActivity
    check_first: bool
    hour: str


@dataclass(frozen=True)
class _Posting:
    """A batch whose intent is recorded and whose posts are submitted, one future per activity, in order."""

    batch: Sequence[_Planned]
    futures: list[Future[WriteResult]]


@dataclass(frozen=True)
class WriteResult:
    activity: PlannedActivity
    outcome: Outcome
    seqn: str | None = None
    reason: str | None = None
    attempts: int = 0


class ActivitiesRejected(BadConfiguration):
    """iMIS refuses the activities themselves (not an unknown contact): the mapping or the type is wrong."""


class WriteOutcomeUnknown(TransientTrouble):
    """An event's post stayed ambiguous through every attempt and lookup; a retry of the task resolves it."""


class ImisUnavailable(WriteOutcomeUnknown):
    """Many events in a row failed every post: iMIS is down or refusing every activity; retry the task later."""


@dataclass
class WritebackTally:
    """Counts per kind, and the contact IDs and reasons a person needs: no member data beyond iMIS IDs."""

    read: Counter[str] = field(default_factory=Counter)
    written: Counter[str] = field(default_factory=Counter)
    found_in_imis: Counter[str] = field(default_factory=Counter)
    already_written: Counter[str] = field(default_factory=Counter)
    no_contact_id: Counter[str] = field(default_factory=Counter)
    unknown_contact_events: Counter[str] = field(default_factory=Counter)
    unknown_contacts: Counter[str] = field(default_factory=Counter)  # party ID -> events skipped
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> events
    rejected_sample: list[dict[str, str]] = field(default_factory=list)
    duplicates_in_read: int = 0
    checked_in_imis: int = 0
    quarantined: list[dict[str, Any]] = field(default_factory=list)  # failed in this run, as `listed` shows them
    stuck_skipped: list[dict[str, Any]] = field(default_factory=list)  # stuck from earlier runs: not tried
    released: int = 0  # quarantined by an earlier run, written (or found) now
    quarantine_open: int = 0  # entries left in the quarantine after this run

    def add(self, result: WriteResult) -> None:
        kind = result.activity.kind.value
        if result.outcome in (Outcome.FAILED, Outcome.NOT_TRIED):
            return  # counted by the writer once the run's quarantine is settled
        if result.outcome is Outcome.WRITTEN:
            self.written[kind] += 1
        elif result.outcome is Outcome.FOUND:
            self.found_in_imis[kind] += 1
        elif result.outcome is Outcome.UNKNOWN_CONTACT:
            self.unknown_contact_events[kind] += 1
            self.unknown_contacts[result.activity.party_id] += 1
        else:
            self.rejected[result.reason or "no reason given"] += 1
            if len(self.rejected_sample) < REPORTED_IDS:
                self.rejected_sample.append({"key": result.activity.key, "contact_id": result.activity.party_id,
                                             "kind": kind})

    def summary(self) -> dict[str, Any]:
        return {
            "read": _every_kind(self.read), "written": _every_kind(self.written),
            "found_in_imis": dict(self.found_in_imis),
            "already_written": dict(self.already_written), "no_contact_id": dict(self.no_contact_id),
            "duplicates_in_read": self.duplicates_in_read, "checked_in_imis": self.checked_in_imis,
            "unknown_contacts": {"events": sum(self.unknown_contact_events.values()),
                                 "by_kind": dict(self.unknown_contact_events),
                                 "contacts": len(self.unknown_contacts),
                                 "ids": sorted(self.unknown_contacts)[:REPORTED_IDS]},
            "rejected": {"events": sum(self.rejected.values()), "by_reason": dict(self.rejected),
                         "sample": self.rejected_sample},
            "quarantine": {"events": len(self.quarantined),
                           "stuck": sum(entry["stuck"] for entry in self.quarantined),
                           "entries": self.quarantined[:REPORTED_KEYS],
                           "stuck_skipped": {"events": len(self.stuck_skipped),
                                             "entries": self.stuck_skipped[:REPORTED_KEYS]},
                           "released": self.released, "open": self.quarantine_open,
                           "attempts_per_run": AMBIGUOUS_ATTEMPTS, "retry_runs": RETRY_RUNS},
        }


def imis_reason(unsure: AmbiguousWriteError) -> str:
    """iMIS's own words for a failed post, e.g. `HTTP 500: An error occurred. Please contact the administrator.`"""
    cause = unsure.cause
    if not isinstance(cause, TransientHTTPError):
        return f"no answer ({type(cause).__name__})"
    try:
        body = cause.response.json()
    except ValueError:
        body = None
    message = None
    if isinstance(body, dict):
        errors = (body.get("Errors") or {}).get("$values") if isinstance(body.get("Errors"), dict) else None
        message = body.get("Message") or body.get("message") or (
            errors[0].get("Message") if errors and isinstance(errors[0], dict) else None)
    text = str(message) if message else (cause.response.text.strip() or "no body")
    return f"HTTP {cause.status_code}: {text[:200]}"


def _every_kind(counts: Counter[str]) -> dict[str, int]:
    """Counts for all eight kinds, zeros included, so a report reads the same for every run."""
    return {kind.value: counts[kind.value] for kind in EngagementKind}


class ActivityWriter:
    """Writes events through one shared client and one ledger; one writer per run.

    `concurrency` defaults to the client's `max_concurrency`, which also sizes its connection pool. The
    quarantine defaults to the one in the ledger's store; `retry_stuck` tries its stuck events once more."""

    def __init__(self, imis: ImisClient, ledger: ActivityLedger, concurrency: int | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, quarantine: ActivityQuarantine | None = None,
                 retry_stuck: bool = False, lease: Lease | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.imis = imis
        self.ledger = ledger
        self.quarantine = quarantine if quarantine is not None else ActivityQuarantine.load(ledger.store)
        self.retry_stuck = retry_stuck
        self.lease = lease
        self.zone = ZoneInfo(imis.config.timezone)
        self.concurrency = concurrency or imis.config.max_concurrency
        self.batch_size = batch_size
        self.tally = WritebackTally()
        self._unknown_parties: set[str] = set()
        self._lock = threading.Lock()
        self._failed: dict[str, FailedEvent] = {}
        self._released: set[str] = set()
        self._failing_streak: list[str] = []  # keys failed one after the other, nothing written since
        self._outage = False

    def write(self, events: Iterable[EngagementEvent]) -> WritebackTally:
        """Plan, deduplicate and post every event; returns the tally (also kept on `self.tally`).

        The next batch is planned (read from Thrive, checked against the ledger) while the last one posts; it is
        started only once the last one's outcome is recorded and checked."""
        seen: set[str] = set()
        batch: list[_Planned] = []
        posting: _Posting | None = None
        started, last_log = time.monotonic(), time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="imis-activity") as pool:
                try:
                    for event in events:
                        planned = self._plan(event, seen)
                        if planned is not None:
                            batch.append(planned)
                        if len(batch) >= self.batch_size:
                            previous, posting = posting, None
                            self._finish(previous)
                            posting = self._start(batch, pool)
                            batch = []
                            if time.monotonic() - last_log > 5:
                                last_log = time.monotonic()
                                self._log_progress(started)
                    previous, posting = posting, None
                    self._finish(previous)
                    if batch:
                        self._finish(self._start(batch, pool))
                except BaseException:
                    if posting is not None:
                        self._record(posting)  # what landed of the batch in flight is recorded before the error
                    raise
        finally:
            self._settle_quarantine()  # also when the run fails: what it learnt about failing events counts
        self._log_progress(started)
        return self.tally

    def _plan(self, event: EngagementEvent, seen: set[str]) -> _Planned | None:
        """The activity of an event still to write (and whether to check iMIS first); None once it is counted as
        skipped. Only the key is computed for an event already written: most of a re-run's events."""
        kind = event.kind.value
        self.tally.read[kind] += 1
        if not event.contact_id:
            self.tally.no_contact_id[kind] += 1
            return None
        key = event_key(event)
        if key in seen:
            self.tally.duplicates_in_read += 1
            return None
        seen.add(key)
        if self.ledger.is_written(key):
            self.tally.already_written[kind] += 1
            return None
        entry = self.quarantine.get(key)
        if entry is not None and self.quarantine.is_stuck(key) and not self.retry_stuck:
            self.tally.stuck_skipped.append(listed(key, entry))
            return None
        activity = plan_activity(event, self.zone, key)
        return _Planned(activity, self.ledger.is_pending(key) or entry is not None, ledger_hour(activity.occurred_at))

    def _start(self, batch: Sequence[_Planned], pool: ThreadPoolExecutor) -> _Posting | None:
        """Intent, then posts: a crash anywhere after this loses nothing and duplicates nothing."""
        self.check_lease()
        batch = self._still_to_write(batch)
        if not batch:
            return None
        intent: dict[str, list[str]] = defaultdict(list)
        for planned in batch:
            intent[planned.hour].append(planned.activity.key)
        self.ledger.record_intent(intent)
        return _Posting(batch, [pool.submit(self._write_one, planned.activity, planned.check_first)
                                for planned in batch])

    def _finish(self, posting: _Posting | None) -> None:
        """Record what the batch wrote, then stop the writer if the batch says it must."""
        if posting is None:
            return
        failures = self._record(posting)
        if failures:
            log.error("activities: %d of %d posts in this batch failed; the first error follows", len(failures),
                      len(posting.batch))
            raise failures[0]
        if self._outage:
            streak = self._failing_streak
            last = self._failed[streak[-1]]
            raise ImisUnavailable(
                f"iMIS failed every post of {len(streak)} activities in a row (the last: {last.key} for contact "
                f"{last.contact_id}: {last.reason}) and took none in between: iMIS is down or refusing every "
                "activity, not one bad event, so none of them was quarantined and the writer stopped; the task's "
                "retry looks each one up in iMIS before posting it again")
        self._stop_if_refused()

    def _record(self, posting: _Posting) -> list[BaseException]:
        """Wait for the batch's posts, tally them and record the keys that landed; the posts' own errors."""
        wait(posting.futures)
        written: dict[str, dict[str, str]] = defaultdict(dict)
        failures: list[BaseException] = []
        for planned, future in zip(posting.batch, posting.futures, strict=True):
            error = future.exception()
            if error is not None:
                failures.append(error)
                continue
            result = future.result()
            self.tally.add(result)
            activity = result.activity
            if result.outcome in (Outcome.WRITTEN, Outcome.FOUND):
                written[planned.hour][activity.key] = result.seqn or ""
                self._released.add(activity.key)
            elif result.outcome is Outcome.FAILED:
                self._failed[activity.key] = FailedEvent(activity.key, activity.party_id, activity.kind.value,
                                                         planned.hour, result.reason or "no reason given",
                                                         result.attempts)
        self.ledger.record_written(written)
        return failures

    def check_lease(self) -> None:
        if self.lease is not None:
            self.lease.check()

    def _still_to_write(self, batch: Sequence[_Planned]) -> list[_Planned]:
        """The batch less what another writer of the interval recorded since it was planned (with a lease only:
        one writer alone has nothing new to read); a key it recorded as intent is looked up before posting."""
        if self.lease is None or not self.ledger.refresh({planned.hour for planned in batch}):
            return list(batch)
        still = []
        for planned in batch:
            key = planned.activity.key
            if self.ledger.is_written(key):
                self.tally.already_written[planned.activity.kind.value] += 1
            else:
                still.append(replace(planned, check_first=planned.check_first or self.ledger.is_pending(key)))
        return still

    def _write_one(self, activity: PlannedActivity, check_first: bool) -> WriteResult:
        result = self._attempt(activity, check_first)
        with self._lock:
            if result.outcome in (Outcome.WRITTEN, Outcome.FOUND):
                self._failing_streak.clear()
            elif result.outcome is Outcome.FAILED:
                self._failing_streak.append(activity.key)
                self._outage = self._outage or len(self._failing_streak) >= FAILED_IN_A_ROW_BEFORE_STOP
        return result

    def _attempt(self, activity: PlannedActivity, check_first: bool) -> WriteResult:
        """At most `AMBIGUOUS_ATTEMPTS` posts, each failure followed by a look-up; a look-up first if asked."""
        if self._outage:
            return WriteResult(activity, Outcome.NOT_TRIED)
        if check_first:
            if activity.party_id in self._unknown_parties:  # iMIS has no such party, so no activity of it either
                return WriteResult(activity, Outcome.UNKNOWN_CONTACT)
            seqn = self._find(activity)
            if seqn is not None:
                return WriteResult(activity, Outcome.FOUND, seqn)
        reason = "no reason given"
        for attempt in range(1, AMBIGUOUS_ATTEMPTS + 1):
            if activity.party_id in self._unknown_parties:
                return WriteResult(activity, Outcome.UNKNOWN_CONTACT)
            if self._outage:
                return WriteResult(activity, Outcome.NOT_TRIED, attempts=attempt - 1)
            self.check_lease()  # a writer no longer sure of its lease posts nothing more (its key stays pending)
            try:
                return WriteResult(activity, Outcome.WRITTEN, self.imis.post_activity(activity.party_id,
                                                                                      activity.properties))
            except AmbiguousWriteError as unsure:
                reason = imis_reason(unsure)
                log.warning("activity %s for party %s: %s; looking it up before posting again (attempt %d/%d)",
                            activity.key, activity.party_id, unsure, attempt, AMBIGUOUS_ATTEMPTS)
                seqn = self._find(activity)
                if seqn is not None:
                    return WriteResult(activity, Outcome.FOUND, seqn)
            except ImisRequestError as refused:
                return self._refused(activity, refused)
        log.error("activity %s (%s) for contact %s: all %d posts of this run failed (%s) and iMIS does not have "
                  "it; quarantined, the other events go on", activity.key, activity.kind, activity.party_id,
                  AMBIGUOUS_ATTEMPTS, reason)
        return WriteResult(activity, Outcome.FAILED, reason=reason, attempts=AMBIGUOUS_ATTEMPTS)

    def _settle_quarantine(self) -> None:
        """Record this run's failed events and release the written ones, then store the quarantine."""
        failed = dict(self._failed)
        if self._outage:
            for key in self._failing_streak:
                failed.pop(key, None)  # an outage's victims stay pending, not quarantined
        changed = bool(failed) or bool(self._released & self.quarantine.entries.keys())
        self.tally.released += self.quarantine.release(self._released)
        for event in failed.values():
            entry = self.quarantine.record_failure(event)
            self.tally.quarantined.append(listed(event.key, entry))
            if entry["stuck"]:
                log.error("activity %s for contact %s has now failed in %d runs: stuck, not tried again until "
                          "cleared (DAG param retry_stuck, or delete its entry from %s)", event.key,
                          event.contact_id, entry["runs"], self.quarantine.key())
        self.tally.quarantine_open = len(self.quarantine.entries)
        if changed and (self.lease is None or self.lease.held):  # a writer that lost its lease leaves it to the taker
            self.quarantine.save(self.ledger.store)
        # `write` runs once per engagement kind: what is settled now must not be counted again by the next kind.
        self._failed.clear()
        self._released.clear()

    def _find(self, activity: PlannedActivity) -> str | None:
        """The SEQN of this event's activity if iMIS has it ("" when iMIS does not say), else None."""
        with self._lock:
            self.tally.checked_in_imis += 1
        for row in self.imis.find_activities(find_filters(activity)):
            if carries_key(row, activity.key):
                return str(row.get("SEQN") or "")
        return None

    def _refused(self, activity: PlannedActivity, refused: ImisRequestError) -> WriteResult:
        reason = str(refused).split(": ", 1)[-1]
        if refused.status_code == 400 and UNKNOWN_PARTY.search(reason):
            with self._lock:
                self._unknown_parties.add(activity.party_id)
            return WriteResult(activity, Outcome.UNKNOWN_CONTACT, reason=reason)
        return WriteResult(activity, Outcome.REJECTED, reason=reason)

    def _stop_if_refused(self) -> None:
        accepted = sum(self.tally.written.values()) + sum(self.tally.found_in_imis.values())
        refused = sum(self.tally.rejected.values())
        if accepted == 0 and refused >= REJECTIONS_BEFORE_STOP:
            reason, count = self.tally.rejected.most_common(1)[0]
            raise ActivitiesRejected(
                f"iMIS refused the first {refused} HLOGIC activities and accepted none ({count} with: {reason}); "
                "check that the activity type HLOGIC exists and that the property names in "
                "include/imis_thrive/writeback/activity_map.py match GET /api/metadata/Activity"
            )

    def _log_progress(self, started: float) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        done = sum(self.tally.written.values())
        log.info("activities: %s read, %s written, %s already written, %s/s", f"{sum(self.tally.read.values()):,}",
                 f"{done:,}", f"{sum(self.tally.already_written.values()):,}", f"{done / elapsed:,.0f}")
