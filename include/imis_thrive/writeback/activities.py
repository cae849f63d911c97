"""Activity writeback (Thrive → iMIS): the steps of `thrive_to_imis_activities`.

Each public function is one task of the DAG and runs without Airflow: it takes the clients and the snapshot
store, returns a small typed result (`results.py`: counts per kind, iMIS IDs; never emails or other member
data),
and raises a typed error a person can act on.

1. `write_activities`: read the eight engagement kinds of `[start, end)` (six from Thrive's grids, Resubscribe
   derived from the recorded unsubscribed state, Bad Email from the sync's own record), each on its own, and
   write each event once as an `HLOGIC` activity (see `writer.py` for how "once" holds through crashes), under
   the interval's lease (`sync/lease.py`): a second writer of the same interval (a retry beside an orphaned
   attempt) waits for it, or takes it over once it expired, and never posts what the first one recorded.
2. `finish_run`: the run report next to the snapshots; fails the run if iMIS refused events or events were
   quarantined (iMIS failed every post of them; `quarantine.py`), so alerting fires, after every other event
   was written. Contacts unknown to iMIS, and stuck events skipped, are listed in the report without failing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from include.imis_thrive.errors import BadData
from include.imis_thrive.imis.client import ImisClient
from include.imis_thrive.reports import render_activities
from include.imis_thrive.sync.bad_emails import bad_email_events
from include.imis_thrive.sync.lease import DEFAULT_TERMS, Lease, LeaseTerms
from include.imis_thrive.sync.load_cycle import write_report
from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.thrive.client import ThriveClient
from include.imis_thrive.thrive.engagement import (
    FLAG_OF_KIND,
    KindUnavailable,
    flagged_events,
    iter_engagement,
    resubscribes,
    unsubscribed_state,
)
from include.imis_thrive.thrive.errors import ThriveError
from include.imis_thrive.thrive.grids import ENGAGEMENT_GRIDS, Grid
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback.derived_state import load_flags, load_unsubscribed, save_flags, save_unsubscribed
from include.imis_thrive.writeback.ledger import ActivityLedger, hours_between
from include.imis_thrive.writeback.quarantine import RETRY_RUNS
from include.imis_thrive.writeback.results import (
    ActivitiesReport,
    ActivityWriteback,
    Interval,
    QuarantinedEvent,
    WritebackQuarantine,
)
from include.imis_thrive.writeback.writer import DEFAULT_BATCH_SIZE, ActivityWriter

log = logging.getLogger(__name__)

REPORT_PREFIX = "reports/activities"
LEASE_PREFIX = "activities"


class WritebackIncomplete(BadData):
    """The run wrote what it could, but events were refused or quarantined, or the write step failed.

    `alert_lines`: what the failure alert lists besides the first line (event keys, contact IDs, iMIS's reasons).
    Bad data: raised by `finish_run`, whose retry would report the same events again (the write step retries itself)."""

    def __init__(self, message: str, alert_lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.alert_lines = list(alert_lines)


def write_activities(imis: ImisClient, thrive: ThriveClient, store: SnapshotStore, start: datetime, end: datetime,
                     kinds: Iterable[EngagementKind] = tuple(EngagementKind), concurrency: int | None = None,
                     batch_size: int = DEFAULT_BATCH_SIZE, retry_stuck: bool = False,
                     lease: LeaseTerms = DEFAULT_TERMS) -> ActivityWriteback:
    """Every event of `[start, end)` as one activity; safe to re-run for the same interval (writes 0 again), and
    to run twice at once: the interval's lease lets one writer at a time post (`LeaseHeld`, `LeaseLost`).

    Each kind is read and written on its own: a kind Thrive will not serve is listed under `failed_kinds`
    (and fails the run in `finish_run`) while the others are written. Events iMIS keeps failing are
    quarantined (and reported) rather than raised; `retry_stuck` tries the stuck ones once more.
    """
    start, end = _utc(start), _utc(end)
    with Lease(store, interval_lease_name(start, end), lease).hold() as held:
        return _write_interval(imis, thrive, store, start, end, kinds, concurrency, batch_size, retry_stuck, held)


def interval_lease_name(start: datetime, end: datetime) -> str:
    """`activities/20260308T060000Z-20260308T070000Z`: one lease per data interval."""
    return f"{LEASE_PREFIX}/{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}"


def _write_interval(imis: ImisClient, thrive: ThriveClient, store: SnapshotStore, start: datetime, end: datetime,
                    kinds: Iterable[EngagementKind], concurrency: int | None, batch_size: int, retry_stuck: bool,
                    lease: Lease) -> ActivityWriteback:
    started = time.monotonic()
    imis_calls, thrive_calls = imis.calls, thrive.calls
    ledger = ActivityLedger.load(store, hours_between(start, end))
    writer = ActivityWriter(imis, ledger, concurrency=concurrency, batch_size=batch_size, retry_stuck=retry_stuck,
                            lease=lease)
    log.info("activities for [%s, %s): writing with %d threads, %s time", start.isoformat(), end.isoformat(),
             writer.concurrency, imis.config.timezone)
    wanted = list(dict.fromkeys(kinds))
    failed: dict[str, str] = {}
    sources: dict[str, str] = {}
    unsubscribed = load_unsubscribed(store)
    for kind in _in_dependency_order(wanted):
        try:
            if kind is EngagementKind.UNSUBSCRIBE:
                events = list(iter_engagement(thrive, kind, start, end))
                writer.write(events)
                unsubscribed |= unsubscribed_state(events)
            elif kind is EngagementKind.RESUBSCRIBE:
                events, still = resubscribes(thrive, unsubscribed, start, end)
                writer.write(events)
                unsubscribed = still
            elif kind is EngagementKind.BAD_EMAIL:
                writer.write(bad_email_events(store, start, end))
            elif kind in FLAG_OF_KIND:
                sources[kind.value] = _opens_or_clicks(thrive, store, writer, kind, start, end)
            else:
                writer.write(iter_engagement(thrive, kind, start, end))
        except ThriveError as error:
            log.error("%s: not written this run: %s", kind, error)
            failed[kind.value] = str(error)
    lease.check()  # the derived state below is written whole: only by the interval's one writer
    if EngagementKind.UNSUBSCRIBE in wanted or EngagementKind.RESUBSCRIBE in wanted:
        save_unsubscribed(store, unsubscribed)
    compacted = ledger.compact()
    seconds = time.monotonic() - started
    written = sum(writer.tally.written.values())
    return ActivityWriteback.model_validate({
        "interval": {"start": start.isoformat(), "end": end.isoformat()},
        "timezone": imis.config.timezone,
        **writer.tally.summary(),
        "failed_kinds": failed,
        "sources": sources,
        "unsubscribed_tracked": len(unsubscribed),
        "ledger": {"records_added": ledger.records_added, "records_compacted": compacted},
        "imis_calls": imis.calls - imis_calls,
        "thrive_calls": thrive.calls - thrive_calls,
        "seconds": round(seconds, 2),
        "activities_per_second": round(written / seconds, 1) if seconds > 0 else None,
    })


def _opens_or_clicks(thrive: ThriveClient, store: SnapshotStore, writer: ActivityWriter, kind: EngagementKind,
                     start: datetime, end: datetime) -> str:
    """Mail Open / Link Click from the per-event grid, or, where the tenant refuses it, from the documented
    per-mailing flags (one event per contact and mailing, dated at the mailing); returns the source used."""
    try:
        writer.write(iter_engagement(thrive, kind, start, end))
        return ENGAGEMENT_GRIDS[kind].grids[0]
    except KindUnavailable as refused:
        log.warning("%s; reading the documented per-mailing %s flags instead", refused, FLAG_OF_KIND[kind])
    events, flags = flagged_events(thrive, kind, load_flags(store, kind), start, end)
    writer.write(events)
    writer.check_lease()
    save_flags(store, kind, flags)
    return f"{Grid.MAILING_ACTIVITY_SUBSCRIBER_ACTIONS}.{FLAG_OF_KIND[kind]}"


def _in_dependency_order(kinds: Iterable[EngagementKind]) -> list[EngagementKind]:
    """Unsubscribe before Resubscribe: a contact who unsubscribed and came back within one window counts."""
    return sorted(kinds, key=lambda kind: kind is EngagementKind.RESUBSCRIBE)


def finish_run(store: SnapshotStore, run_id: str, start: datetime, end: datetime,
               writeback: ActivityWriteback | None, report_url: str | None = None) -> ActivitiesReport:
    """Write the run report; then raise `WritebackIncomplete` if the write step failed, iMIS refused events, or
    events were quarantined in this run (all the others were written and recorded by then). `report_url` is
    where the report reads in Airflow (logged)."""
    interval = Interval(start=_utc(start).isoformat(), end=_utc(end).isoformat())
    report = ActivitiesReport(run_id=run_id, finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
                              interval=interval, writeback=writeback)
    location = write_report(store, f"{REPORT_PREFIX}/{snapshot_name(run_id)}", report, render_activities(report),
                            report_url)
    report = report.model_copy(update={"location": location})
    if writeback is None:
        raise WritebackIncomplete(
            f"activities for [{interval.start}, {interval.end}) were not all written: "
            "the write_activities task failed (see its log); re-running it writes only what is missing")
    for kind, count in sorted(writeback.written.items()):
        log.info("%s: %d activities written", kind, count)
    unknown = writeback.unknown_contacts
    if unknown.events:
        log.warning("%d events of %d contacts unknown to iMIS were skipped, e.g. IDs %s", unknown.events,
                    unknown.contacts, ", ".join(unknown.ids[:10]))
    quarantine = writeback.quarantine
    if quarantine.stuck_skipped.events:
        log.warning("%d stuck event(s) skipped, not tried again until cleared (param retry_stuck): %s",
                    quarantine.stuck_skipped.events,
                    "; ".join(_listed(entry) for entry in quarantine.stuck_skipped.entries[:10]))
    if writeback.failed_kinds:
        reasons = "\n".join(f"{kind}: {reason}" for kind, reason in sorted(writeback.failed_kinds.items()))
        raise WritebackIncomplete(f"{len(writeback.failed_kinds)} engagement kind(s) could not be read from Thrive; "
                                  f"every other kind was written (report: {location}):\n{reasons}")
    rejected = writeback.rejected
    if rejected.events:
        reasons_by_count = [f"{count} × {reason}" for reason, count in rejected.by_reason.items()]
        raise WritebackIncomplete(f"iMIS refused {rejected.events} activities (report: {location}):\n"
                                  + "\n".join(reasons_by_count), reasons_by_count)
    if quarantine.events:
        raise quarantined_error(quarantine, location)
    return report


def quarantined_error(quarantine: WritebackQuarantine, location: str) -> WritebackIncomplete:
    """The failure of a run that quarantined events: the first line (what an alert shows) names the first."""
    entries, count = quarantine.entries, quarantine.events
    more = f"; and {count - 1} more" if count > 1 else ""
    lines = [_listed(entry) for entry in entries]
    if count > len(entries):
        lines.append(f"... and {count - len(entries)} more")
    lines.append(f"report: {location}")
    return WritebackIncomplete(f"{count} event(s) quarantined, every other event was written: iMIS failed every "
                               f"post of {lines[0]}{more}\n" + "\n".join(lines), lines)


def _listed(entry: QuarantinedEvent) -> str:
    """`HL1-… for contact 1000123 (Mail Open): HTTP 500: An error occurred… [failed runs 1 of 3, …]`: IDs only."""
    state = ("stuck: not tried again until cleared with the param retry_stuck" if entry.stuck
             else "tried again by the next run of its interval")
    return (f"{entry.key} for contact {entry.contact_id} ({entry.kind}): {entry.reason} "
            f"[failed runs {entry.runs} of {RETRY_RUNS}, {entry.attempts} posts; {state}]")


def _utc(moment: datetime) -> datetime:
    """Airflow passes pendulum datetimes; the writeback works on plain aware UTC ones."""
    if moment.tzinfo is None:
        raise ValueError(f"naive interval bound {moment!r}: the data interval must be timezone-aware")
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC)
