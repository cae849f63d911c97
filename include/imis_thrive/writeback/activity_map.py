"""What an engagement event becomes in iMIS: one `HLOGIC` activity, its properties set from data defined here.

Everything a person may need to adapt to their tenant sits in this module: the activity type, the property
that carries each piece of the event, the longest value each property takes, and per kind what the
description names and what the detail field keeps.

Property names (reference/imis-api.md §3.1): `ACTIVITY_TYPE`, `TRANSACTION_DATE` and `DESCRIPTION` are
confirmed in real payloads. `SOURCE_CODE` and `UF_1`..`UF_3` are UNCONFIRMED: inferred from the Activity
table's columns. Run `GET /api/metadata/Activity` on the tenant once and change the names here if they
differ; the lengths are the Activity table's usual sizes and are UNCONFIRMED too.

Dates go as naive local time of the instance (`YYYY-MM-DDTHH:MM:SS`, reference §3.2). In the hour a DST
change repeats, two events a real hour apart read the same local time; their keys still differ, because
the key hashes the UTC moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from include.imis_thrive.thrive.engagement import EngagementEvent
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback.event_keys import event_key

ACTIVITY_TYPE = "HLOGIC"


@dataclass(frozen=True)
class ActivityProperty:
    """One activity property the writeback sets; `confirmed` says whether a real payload proves the name."""

    name: str
    confirmed: bool
    max_length: int | None = None


TYPE = ActivityProperty("ACTIVITY_TYPE", confirmed=True)
TRANSACTION_DATE = ActivityProperty("TRANSACTION_DATE", confirmed=True)
DESCRIPTION = ActivityProperty("DESCRIPTION", confirmed=True, max_length=255)
KIND = ActivityProperty("SOURCE_CODE", confirmed=False, max_length=40)  # the kind's name, e.g. "Mail Open"
EVENT_KEY = ActivityProperty("UF_1", confirmed=False, max_length=255)  # the key: how a write is recognised
MAILING = ActivityProperty("UF_2", confirmed=False, max_length=255)  # Thrive mailing instance (else mailing) ID
DETAIL = ActivityProperty("UF_3", confirmed=False, max_length=255)  # the URL or page, per `KIND_LAYOUT`


class EventText(StrEnum):
    """Which free-text part of an event a property shows."""

    URL = "url"
    PAGE = "page"


@dataclass(frozen=True)
class KindLayout:
    """Per kind: what DESCRIPTION names after the kind, and what DETAIL keeps."""

    subject: EventText | None
    detail: EventText | None


KIND_LAYOUT: Mapping[EngagementKind, KindLayout] = {
    EngagementKind.BAD_EMAIL: KindLayout(EventText.PAGE, EventText.PAGE),  # page: Thrive's suppression reason
    EngagementKind.LANDING_PAGE_SUBMIT: KindLayout(EventText.PAGE, EventText.PAGE),  # page: the form's name
    EngagementKind.UNSUBSCRIBE: KindLayout(None, None),
    EngagementKind.RESUBSCRIBE: KindLayout(None, None),
    EngagementKind.WEB_PAGE_VISIT: KindLayout(EventText.PAGE, EventText.URL),  # the title reads, the URL is exact
    EngagementKind.MAIL_SENT: KindLayout(None, None),
    EngagementKind.MAIL_OPEN: KindLayout(None, None),
    EngagementKind.LINK_CLICK: KindLayout(EventText.URL, EventText.URL),
}


@dataclass(frozen=True)
class PlannedActivity:
    """One event ready to post: its key, the iMIS party, the UTC moment (the ledger's partition) and properties."""

    key: str
    kind: EngagementKind
    party_id: str
    occurred_at: datetime
    properties: dict[str, Any]


def local_transaction_date(moment: datetime, zone: ZoneInfo) -> str:
    """An aware moment as the instance's naive local wall time, to the second (DST included)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: engagement moments must be timezone-aware (UTC)")
    return moment.astimezone(zone).replace(tzinfo=None).isoformat(timespec="seconds")


def plan_activity(event: EngagementEvent, zone: ZoneInfo, key: str | None = None) -> PlannedActivity:
    """The activity for an event whose contact ID is known (callers skip the others and count them); `key` is
    the event's `event_key` when the caller has it already."""
    if not event.contact_id:
        raise ValueError(f"{event.kind} event at {event.occurred_at.isoformat()} has no contact ID to write it to")
    key = key or event_key(event)
    layout = KIND_LAYOUT[event.kind]
    mailing = event.mailing_instance_id or event.mailing_id
    values: list[tuple[ActivityProperty, str | None]] = [
        (TYPE, ACTIVITY_TYPE),
        (TRANSACTION_DATE, local_transaction_date(event.occurred_at, zone)),
        (DESCRIPTION, describe(event, layout)),
        (KIND, event.kind.value),
        (EVENT_KEY, key),
        (MAILING, mailing),
        (DETAIL, _text(event, layout.detail)),
    ]
    properties = {prop.name: _fit(value, prop) for prop, value in values if value}
    return PlannedActivity(key, event.kind, event.contact_id, event.occurred_at, properties)


def describe(event: EngagementEvent, layout: KindLayout) -> str:
    """`Link Click: https://… (mailing 12)`: what a person reads on the contact's History tab."""
    subject = _text(event, layout.subject)
    text = f"{event.kind.value}: {subject}" if subject else event.kind.value
    return f"{text} (mailing {event.mailing_id})" if event.mailing_id else text


def find_filters(activity: PlannedActivity) -> dict[str, str]:
    """`GET /api/Activity` filters that find this activity if an earlier attempt wrote it (reference §3.3)."""
    return {"PartyId": activity.party_id, TYPE.name: f"eq:{ACTIVITY_TYPE}", EVENT_KEY.name: f"eq:{activity.key}"}


def carries_key(row: Mapping[str, Any], key: str) -> bool:
    """Whether a found activity is this event's: checked here too, in case the server ignored a filter.

    Property names are matched case-insensitively, as iMIS itself appears to (reference §3.1)."""
    wanted = EVENT_KEY.name.casefold()
    return any(str(name).casefold() == wanted and value == key for name, value in row.items())


def _text(event: EngagementEvent, part: EventText | None) -> str | None:
    if part is EventText.URL:
        return event.url
    if part is EventText.PAGE:
        return event.page
    return None


def _fit(value: str, prop: ActivityProperty) -> str:
    """Cut a value to the property's length, marking the cut; the event key is never this long."""
    if prop.max_length is None or len(value) <= prop.max_length:
        return value
    return value[: prop.max_length - 1] + "…"
