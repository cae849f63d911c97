"""Bad Email: the malformed addresses the sync itself tries to add, recorded once for the activity writeback.

The integration's description defines a Bad Email as a subscriber with a malformed address (two `@`, a doubled
`.com`) being added. No vendor grid reports those (thrive-vendor-facts.md), and the sync is what adds
subscribers, so it detects them at extraction: each contact + address is recorded once, with the moment it was
first seen, in one small document next to the snapshots. Every address validation quarantines as malformed is
a Bad Email too (its pattern is the last check here), so no refused address goes unrecorded. The writeback
reads the records of its interval and writes each as one `Bad Email` activity (exactly once, through the same
ledger as every other kind).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd

from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.sync.validation import EMAIL_PATTERN
from include.imis_thrive.thrive.client import DOUBLED_SUFFIX
from include.imis_thrive.thrive.engagement import EngagementEvent
from include.imis_thrive.thrive.kinds import EngagementKind

log = logging.getLogger(__name__)

BAD_EMAILS_KEY = "engagement/bad_emails"


def bad_email_reason(email: str) -> str | None:
    """Why an address is malformed in the description's sense, or None; an empty address is missing, not bad."""
    address = email.strip()
    if not address:
        return None
    if address.count("@") > 1:
        return "the address has more than one @"
    local, at, domain = address.partition("@")
    if not at or not local or not domain:
        return "the address has no @ with a name before and a domain after it"
    if "." not in domain or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        return f"the domain {domain!r} is not a valid host name"
    doubled = DOUBLED_SUFFIX.search(domain)
    if doubled:
        return f"the domain ends in a doubled {doubled.group(1).lower()}"
    if not re.fullmatch(EMAIL_PATTERN, address):
        return "the address has characters or a form that validation refuses (spaces, accents, a bad host name)"
    return None


def _record_key(contact_id: str, email: str) -> str:
    return f"{contact_id}|{email.strip().casefold()}"


def record_bad_emails(store: SnapshotStore, contacts: pd.DataFrame, id_column: str, email_column: str,
                      now: datetime | None = None) -> int:
    """Record every contact whose address is malformed and not yet recorded; returns how many are new."""
    emails = contacts[email_column].astype("string").fillna("")
    found = [(str(contact), str(email), reason) for contact, email in zip(contacts[id_column], emails, strict=True)
             if (reason := bad_email_reason(str(email)))]
    if not found:
        return 0
    document = store.read_json(BAD_EMAILS_KEY) or {"records": {}}
    moment = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
    new = 0
    for contact, email, reason in found:
        key = _record_key(contact, email)
        if key not in document["records"]:
            document["records"][key] = {"contact_id": contact, "email": email, "reason": reason, "detected_at": moment}
            new += 1
    if new:
        store.write_json(BAD_EMAILS_KEY, document)
        log.info("bad emails: %d new malformed addresses recorded for the Bad Email activity (%d known)", new,
                 len(document["records"]))
    return new


def bad_email_events(store: SnapshotStore, start: datetime, end: datetime) -> Iterable[EngagementEvent]:
    """The Bad Email events first detected in `[start, end)`, oldest first."""
    records = (store.read_json(BAD_EMAILS_KEY) or {"records": {}})["records"].values()
    events = [EngagementEvent(EngagementKind.BAD_EMAIL, record["contact_id"], record["email"], None, None,
                              datetime.fromisoformat(record["detected_at"]), page=record["reason"])
              for record in records]
    return sorted((event for event in events if start <= event.occurred_at < end), key=lambda e: e.occurred_at)
