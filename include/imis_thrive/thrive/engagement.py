"""Engagement readers: for `[start, end)` and each kind, an iterator of normalised events.

Six kinds are read from the grid `grids.ENGAGEMENT_GRIDS` names, windowed and sorted on that grid's date
element, so the activity writeback (DESIGN.md §3) sees one shape whatever grid an event came from. No grid
records the other two, so they are derived: a Resubscribe is a subscriber the previous run recorded as
unsubscribed who is subscribed again (`resubscribes`), and a Bad Email is a malformed address the sync itself
tried to add (`sync/bad_emails.py`). A grid the tenant refuses makes only its own kind fail (`KindUnavailable`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from include.imis_thrive.errors import BadConfiguration
from include.imis_thrive.thrive import parsing
from include.imis_thrive.thrive.client import ThriveClient, batched
from include.imis_thrive.thrive.documents import Comparator, Condition, Record
from include.imis_thrive.thrive.envelope import FaultCode
from include.imis_thrive.thrive.errors import ThriveError, ThriveFault
from include.imis_thrive.thrive.grids import (
    DERIVED_KINDS,
    ENGAGEMENT_GRIDS,
    MAIL_HISTORY_DAYS,
    MAX_GRID_ROWS,
    EngagementGrid,
    Grid,
)
from include.imis_thrive.thrive.kinds import EngagementKind

__all__ = ["EngagementEvent", "EngagementKind", "KindUnavailable", "event_from_record", "flagged_events",
           "iter_engagement", "resubscribes"]

log = logging.getLogger(__name__)

# Faults that mean "this tenant does not serve that grid or element", not "the request was wrong this time".
_REFUSED_GRID = frozenset({FaultCode.INVALID_GRID, FaultCode.UNEXPECTED_INPUT, FaultCode.INVALID_DATA_FORMAT})
SUBSCRIBER_STATE_FIELDS = ("user_id", "email", "is_unsubscriber", "cancellation_date", "modified_date")
# Where a tenant refuses the per-event grid, the documented per-subscriber flags of each recent mailing say who
# opened or clicked (GridRequests - Subscriber Mailing Activity): one event per contact and mailing instance.
FLAG_OF_KIND = {EngagementKind.MAIL_OPEN: "was_opened", EngagementKind.LINK_CLICK: "was_clicked"}
FLAG_FIELDS = ("mailing_instance_id", "user_id", "email")  # plus the kind's flag
FLAG_LOOKBACK = timedelta(days=30)  # opens and clicks of a mailing this old are still picked up
STATE_BATCH = 500  # contact IDs per `IN` condition when reading the state of recorded unsubscribers


class KindUnavailable(ThriveError, BadConfiguration):
    """The tenant refuses the grid one engagement kind is read from; the other kinds are still read."""

    def __init__(self, kind: EngagementKind, grid: str, fault: ThriveFault) -> None:
        self.kind = kind
        super().__init__(
            f"{kind}: Thrive refused grid {grid} ({fault.code}: {fault.reason}). No vendor page documents this grid, "
            f"so this tenant may not serve it: ask Higher Logic to enable it, or leave {kind.value!r} out of the "
            "DAG's `kinds` param")


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
        occurred_at=parsing.parse_timestamp(occurred),
        url=_get(record, spec.url_element),
        page=_get(record, spec.page_element),
    )


def _first_windows(seen: Mapping[str, str | None] | Sequence[str]) -> dict[str, str | None]:
    """The state of one mailing; a list (the state before windows were kept) is contacts of unknown windows."""
    return dict(seen) if isinstance(seen, Mapping) else dict.fromkeys(seen)


def _check_window(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("engagement window bounds must be timezone-aware (UTC)")
    if end <= start:
        raise ValueError(f"empty engagement window [{start.isoformat()}, {end.isoformat()})")


def _inside(moment: datetime, start: datetime, end: datetime) -> datetime:
    """A derived event's moment, kept in `[start, end)`: re-running the interval derives the same event and key."""
    return min(max(moment, start), end - timedelta(microseconds=1))


def grids_for_window(kind: EngagementKind, start: datetime, now: datetime) -> tuple[str, ...]:
    """The grids holding `kind`'s events from `start` on: Mail Sent older than 100 days lives in the `_all` twin."""
    grids: tuple[str, ...] = ENGAGEMENT_GRIDS[kind].grids
    if kind is EngagementKind.MAIL_SENT and start < now - timedelta(days=MAIL_HISTORY_DAYS):
        grids += (Grid.SUBSCRIBER_MAILING_HISTORY_ALL,)
    return grids


def iter_engagement(
    client: ThriveClient,
    kind: EngagementKind,
    start: datetime,
    end: datetime,
    page_size: int = MAX_GRID_ROWS,
    now: datetime | None = None,
) -> Iterator[EngagementEvent]:
    """Events of one grid-read kind with `start <= occurred_at < end`, oldest first per grid."""
    _check_window(start, end)
    if kind in DERIVED_KINDS:
        raise ValueError(f"{kind} is derived, not read from a grid (see resubscribes / sync.bad_emails)")
    spec = ENGAGEMENT_GRIDS[kind]
    window = (Condition.single(spec.date_element, Comparator.GTE, start),
              Condition.single(spec.date_element, Comparator.LT, end))
    for grid in grids_for_window(kind, start, now or datetime.now(start.tzinfo)):
        undated = 0
        rows = client.iter_grid(grid, spec.date_element, window, spec.return_fields(), page_size=page_size)
        try:
            for record in rows:
                event = event_from_record(kind, spec, record)
                if event is None:
                    undated += 1
                    continue
                yield event
        except ThriveFault as fault:
            if fault.code in _REFUSED_GRID:
                raise KindUnavailable(kind, grid, fault) from fault
            raise
        if undated:
            log.warning("%s: %d rows of grid %s had no %s and were skipped", kind, undated, grid, spec.date_element)


def resubscribes(
    client: ThriveClient,
    unsubscribed: Mapping[str, str],
    start: datetime,
    end: datetime,
) -> tuple[list[EngagementEvent], dict[str, str]]:
    """Resubscribe events of `[start, end)`, and who is still unsubscribed afterwards.

    `unsubscribed` maps contact ID -> the cancellation date recorded when they unsubscribed. Each is read back
    from the documented `subscriber` grid; one who is subscribed again is a Resubscribe, dated by the grid's
    `modified_date` kept inside the window (so re-running the interval gives the same event and key).
    """
    _check_window(start, end)
    events: list[EngagementEvent] = []
    still: dict[str, str] = {}
    for contacts in batched(sorted(unsubscribed), STATE_BATCH):
        condition = Condition("user_id", Comparator.IN, tuple(contacts))
        found = {row.get("user_id"): row for row in
                 client.iter_grid(Grid.SUBSCRIBER, "subscriber_id", (condition,), SUBSCRIBER_STATE_FIELDS)}
        for contact in contacts:
            row = found.get(contact)
            if row is None or parsing.flag(row.get("is_unsubscriber")):
                still[contact] = unsubscribed[contact]
                continue
            modified = row.get("modified_date")
            moment = parsing.parse_timestamp(modified) if modified else start
            events.append(EngagementEvent(EngagementKind.RESUBSCRIBE, contact, row.get("email"), None, None,
                                          _inside(moment, start, end)))
    log.info("resubscribes: %d of %d recorded unsubscribers are subscribed again", len(events), len(unsubscribed))
    return events, still


def unsubscribed_state(events: Sequence[EngagementEvent]) -> dict[str, str]:
    """contact ID -> cancellation moment, from this window's Unsubscribe events (the state the next run checks)."""
    return {event.contact_id: event.occurred_at.isoformat() for event in events if event.contact_id}


def flagged_events(
    client: ThriveClient,
    kind: EngagementKind,
    seen: Mapping[str, Mapping[str, str | None] | Sequence[str]],
    start: datetime,
    end: datetime,
) -> tuple[list[EngagementEvent], dict[str, dict[str, str | None]]]:
    """Opens or clicks derived from `mailing_activity_subscriber_actions`, and the flags seen after this window.

    `seen` maps mailing instance -> {contact: start of the window that first turned its flag into an event}. The
    flags carry no time, so an event is dated at its mailing, kept inside that window: a later run of the *same*
    window derives the same event and key again (so a quarantined one is retried, and the ledger recognises the
    written ones); any other window skips it. Mailings older than `FLAG_LOOKBACK` are dropped from the state.
    """
    _check_window(start, end)
    flag = FLAG_OF_KIND[kind]
    window = start.isoformat()
    instances = client.iter_grid(Grid.MAILING_INSTANCE, "mailing_instance_id",
                                 (Condition.single("mailing_date", Comparator.GTE, end - FLAG_LOOKBACK),
                                  Condition.single("mailing_date", Comparator.LT, end)),
                                 ("mailing_instance_id", "mailing_id", "mailing_date"))
    events: list[EngagementEvent] = []
    state: dict[str, dict[str, str | None]] = {}
    for instance in instances:
        instance_id, mailed = instance.get("mailing_instance_id"), instance.get("mailing_date")
        if not instance_id or not mailed:
            continue
        moment = _inside(parsing.parse_timestamp(mailed), start, end)
        known = _first_windows(seen.get(instance_id, {}))
        rows = client.iter_grid(Grid.MAILING_ACTIVITY_SUBSCRIBER_ACTIONS, "user_id",
                                (Condition.single("mailing_instance_id", Comparator.EQ, instance_id),
                                 Condition.single(flag, Comparator.EQ, 1)),
                                (*FLAG_FIELDS, flag))
        for row in rows:
            contact = row.get("user_id")
            if contact and parsing.flag(row.get(flag)) and known.setdefault(contact, window) == window:
                events.append(EngagementEvent(kind, contact, row.get("email"), instance.get("mailing_id"),
                                              instance_id, moment))
        state[instance_id] = dict(sorted(known.items()))
    log.info("%s: %d from the %s flags of %d mailing instance(s) (the per-event grid is not served)", kind,
             len(events), flag, len(state))
    return events, state
