"""Activity writeback (Thrive → iMIS): the steps of `thrive_to_imis_activities`.

Each public function is one task of the DAG and runs without Airflow: it takes the clients and the snapshot
store, returns a small JSON-friendly summary (counts per kind, iMIS IDs; never emails or other member data),
and raises a typed error a person can act on.

1. `write_activities`: read the eight engagement kinds of `[start, end)` from Thrive and write each event
   once as an `HLOGIC` activity (see `writer.py` for how "once" holds through crashes and retries).
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
from include.imis_thrive.thrive.engagement import iter_all_engagement
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback.ledger import ActivityLedger, hours_between
from include.imis_thrive.writeback.writer import DEFAULT_BATCH_SIZE, ActivityWriter

log = logging.getLogger(__name__)

REPORT_PREFIX = "reports/activities"


class WritebackIncomplete(Exception):
    """The run wrote what it could, but events were refused or the write step failed; the report says which."""


def write_activities(imis: ImisClient, thrive: ThriveClient, store: SnapshotStore, start: datetime, end: datetime,
                     kinds: Iterable[EngagementKind] = tuple(EngagementKind), concurrency: int | None = None,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, Any]:
    """Every event of `[start, end)` as one activity; safe to re-run for the same interval (writes 0 again)."""
    started = time.monotonic()
    imis_calls, thrive_calls = imis.calls, thrive.calls
    start, end = _utc(start), _utc(end)
    ledger = ActivityLedger.load(store, hours_between(start, end))
    writer = ActivityWriter(imis, ledger, concurrency=concurrency, batch_size=batch_size)
    log.info("activities for [%s, %s): writing with %d threads, %s time", start.isoformat(), end.isoformat(),
             writer.concurrency, imis.config.timezone)
    tally = writer.write(iter_all_engagement(thrive, start, end, kinds))
    compacted = ledger.compact()
    seconds = time.monotonic() - started
    written = sum(tally.written.values())
    return {
        "interval": {"start": start.isoformat(), "end": end.isoformat()},
        "timezone": imis.config.timezone,
        **tally.summary(),
        "ledger": {"records_added": ledger.records_added, "records_compacted": compacted},
        "imis_calls": imis.calls - imis_calls,
        "thrive_calls": thrive.calls - thrive_calls,
        "seconds": round(seconds, 2),
        "activities_per_second": round(written / seconds, 1) if seconds > 0 else None,
    }


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
