"""Activity writeback (Thrive → iMIS): the steps of `thrive_to_imis_activities`.

Each public function is one task of the DAG and runs without Airflow: it takes the clients and the snapshot
store, returns a small JSON-friendly summary (counts per kind, iMIS IDs; never emails or other member data),
and raises a typed error a person can act on.

1. `write_activities`: read the eight engagement kinds of `[start, end)` (six from Thrive's grids, Resubscribe
   derived from the recorded unsubscribed state, Bad Email from the sync's own record), each on its own, and
   write each event once as an `HLOGIC` activity (see `writer.py` for how "once" holds through crashes).
2. `finish_run`: the run report next to the snapshots; fails the run if iMIS refused events, so alerting
   fires. Contacts unknown to iMIS are listed in the report, not treated as a failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from include.imis_thrive.imis.client import ImisClient
from include.imis_thrive.reports import render_activities
from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.thrive.client import ThriveClient
from include.imis_thrive.sync.bad_emails import bad_email_events
from include.imis_thrive.thrive.engagement import iter_engagement, resubscribes, unsubscribed_state
from include.imis_thrive.thrive.errors import ThriveError
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback.ledger import ActivityLedger, hours_between
from include.imis_thrive.writeback.unsubscribed_state import load_unsubscribed, save_unsubscribed
from include.imis_thrive.writeback.writer import DEFAULT_BATCH_SIZE, ActivityWriter

log = logging.getLogger(__name__)

REPORT_PREFIX = "reports/activities"


class WritebackIncomplete(Exception):
    """The run wrote what it could, but events were refused or the write step failed; the report says which."""


def write_activities(imis: ImisClient, thrive: ThriveClient, store: SnapshotStore, start: datetime, end: datetime,
                     kinds: Iterable[EngagementKind] = tuple(EngagementKind), concurrency: int | None = None,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, Any]:
    """Every event of `[start, end)` as one activity; safe to re-run for the same interval (writes 0 again).

    Each kind is read and written on its own: a kind Thrive will not serve is listed under `failed_kinds`
    (and fails the run in `finish_run`) while the others are written.
    """
    started = time.monotonic()
    imis_calls, thrive_calls = imis.calls, thrive.calls
    start, end = _utc(start), _utc(end)
    ledger = ActivityLedger.load(store, hours_between(start, end))
    writer = ActivityWriter(imis, ledger, concurrency=concurrency, batch_size=batch_size)
    log.info("activities for [%s, %s): writing with %d threads, %s time", start.isoformat(), end.isoformat(),
             writer.concurrency, imis.config.timezone)
    wanted = list(dict.fromkeys(kinds))
    failed: dict[str, str] = {}
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
            else:
                writer.write(iter_engagement(thrive, kind, start, end))
        except ThriveError as error:
            log.error("%s: not written this run: %s", kind, error)
            failed[kind.value] = str(error)
    if EngagementKind.UNSUBSCRIBE in wanted or EngagementKind.RESUBSCRIBE in wanted:
        save_unsubscribed(store, unsubscribed)
    compacted = ledger.compact()
    seconds = time.monotonic() - started
    written = sum(writer.tally.written.values())
    return {
        "interval": {"start": start.isoformat(), "end": end.isoformat()},
        "timezone": imis.config.timezone,
        **writer.tally.summary(),
        "failed_kinds": failed,
        "unsubscribed_tracked": len(unsubscribed),
        "ledger": {"records_added": ledger.records_added, "records_compacted": compacted},
        "imis_calls": imis.calls - imis_calls,
        "thrive_calls": thrive.calls - thrive_calls,
        "seconds": round(seconds, 2),
        "activities_per_second": round(written / seconds, 1) if seconds > 0 else None,
    }


def _in_dependency_order(kinds: Iterable[EngagementKind]) -> list[EngagementKind]:
    """Unsubscribe before Resubscribe: a contact who unsubscribed and came back within one window counts."""
    return sorted(kinds, key=lambda kind: kind is EngagementKind.RESUBSCRIBE)


def finish_run(store: SnapshotStore, run_id: str, start: datetime, end: datetime,
               writeback: Mapping[str, Any] | None) -> dict[str, Any]:
    """Write the run report; then raise `WritebackIncomplete` if the write step failed or iMIS refused events."""
    report = {
        "run_id": run_id, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "interval": {"start": _utc(start).isoformat(), "end": _utc(end).isoformat()},
        "writeback": dict(writeback) if writeback else None,
    }
    key = f"{REPORT_PREFIX}/{snapshot_name(run_id)}"
    report["location"] = store.write_json(key, report)
    readable = store.write_text(key, render_activities(report))
    log.info("run report written to %s (readable: %s)", report["location"], readable)
    if writeback is None:
        raise WritebackIncomplete(
            f"activities for [{report['interval']['start']}, {report['interval']['end']}) were not all written: "
            "the write_activities task failed (see its log); re-running it writes only what is missing")
    for kind, count in sorted(writeback["written"].items()):
        log.info("%s: %d activities written", kind, count)
    unknown = writeback["unknown_contacts"]
    if unknown["events"]:
        log.warning("%d events of %d contacts unknown to iMIS were skipped, e.g. IDs %s", unknown["events"],
                    unknown["contacts"], ", ".join(unknown["ids"][:10]))
    failed_kinds = writeback.get("failed_kinds") or {}
    if failed_kinds:
        reasons = "\n".join(f"{kind}: {reason}" for kind, reason in sorted(failed_kinds.items()))
        raise WritebackIncomplete(f"{len(failed_kinds)} engagement kind(s) could not be read from Thrive; every "
                                  f"other kind was written (report: {report['location']}):\n{reasons}")
    rejected = writeback["rejected"]
    if rejected["events"]:
        reasons = "\n".join(f"{count} × {reason}" for reason, count in rejected["by_reason"].items())
        raise WritebackIncomplete(f"iMIS refused {rejected['events']} activities (report: {report['location']}):\n"
                                  f"{reasons}")
    return report


def _utc(moment: datetime) -> datetime:
    """Airflow passes pendulum datetimes; the writeback works on plain aware UTC ones."""
    if moment.tzinfo is None:
        raise ValueError(f"naive interval bound {moment!r}: the data interval must be timezone-aware")
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC)
