"""Engagement readers: for `[start, end)` and each kind, an iterator of normalised events.

Each kind is read from the grid(s) `wire.ENGAGEMENT_GRIDS` names, windowed and sorted on that grid's date
element, so the activity writeback (DESIGN.md §3) sees one shape whatever grid an event came from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from include.imis_thrive.thrive import wire
from include.imis_thrive.thrive.client import ThriveClient
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.thrive.wire import Comparator, Condition, EngagementGrid, Record

__all__ = ["EngagementEvent", "EngagementKind", "event_from_record", "iter_engagement", "iter_all_engagement"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngagementEvent:
    """One engagement event; `contact_id` is the remote ID (= iMIS ID), None when Thrive has none for it."""

    kind: EngagementKind
    contact_id: str | None
    email: str | None
    mailing_id: str | None
    mailing_instance_id: str | None
    occurred_at: datetime
    url: str | None = None
    page: str | None = None


def _get(record: Record, element: str | None) -> str | None:
    return record.get(element.lower()) if element else None


def event_from_record(kind: EngagementKind, spec: EngagementGrid, record: Record) -> EngagementEvent | None:
    """The event one grid row stands for, or None when the row carries no timestamp."""
    occurred = _get(record, spec.date_element)
    if not occurred:
        return None
    return EngagementEvent(
        kind=kind,
        contact_id=_get(record, spec.contact_id_element),
        email=_get(record, spec.email_element),
        mailing_id=_get(record, spec.mailing_id_element),
        mailing_instance_id=_get(record, spec.mailing_instance_element),
        occurred_at=wire.parse_timestamp(occurred),
        url=_get(record, spec.url_element),
        page=_get(record, spec.page_element),
    )


def iter_engagement(
    client: ThriveClient,
    kind: EngagementKind,
    start: datetime,
    end: datetime,
    page_size: int = wire.MAX_GRID_ROWS,
) -> Iterator[EngagementEvent]:
    """Events of one kind with `start <= occurred_at < end` (both aware datetimes), oldest first per grid."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("engagement window bounds must be timezone-aware (UTC)")
    if end <= start:
        raise ValueError(f"empty engagement window [{start.isoformat()}, {end.isoformat()})")
    spec = wire.ENGAGEMENT_GRIDS[kind]
    window = (Condition.single(spec.date_element, Comparator.GTE, start),
              Condition.single(spec.date_element, Comparator.LT, end))
    for grid in spec.grids:
        undated = 0
        for record in client.iter_grid(grid, spec.date_element, window, spec.return_fields(), page_size=page_size):
            event = event_from_record(kind, spec, record)
            if event is None:
                undated += 1
                continue
            yield event
        if undated:
            log.warning("%s: %d rows of grid %s had no %s and were skipped", kind, undated, grid, spec.date_element)


def iter_all_engagement(
    client: ThriveClient,
    start: datetime,
    end: datetime,
    kinds: Iterable[EngagementKind] = tuple(EngagementKind),
    page_size: int = wire.MAX_GRID_ROWS,
) -> Iterator[EngagementEvent]:
    """Every kind's events for the window, one kind after another."""
    for kind in kinds:
        yield from iter_engagement(client, kind, start, end, page_size)
