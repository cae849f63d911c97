"""The deterministic key of an engagement event: the same event read twice gets the same key.

iMIS has no idempotent POST (reference/imis-api.md §3.3), so the key is what makes a write recognisable: it
goes into the activity (see `activity_map.EVENT_KEY_PROPERTY`) and into the ledger. It hashes only what
identifies the event in Thrive (kind, contact, mailing, the UTC moment to the microsecond, the URL), never
descriptive text such as a page title that Thrive may later reword.
"""

from __future__ import annotations

import hashlib
from datetime import UTC

from include.imis_thrive.thrive.engagement import EngagementEvent

KEY_VERSION = "HL1"  # bump when the hashed parts change, so old and new keys can never be confused
_SEPARATOR = "\x1f"  # ASCII unit separator: cannot occur in IDs, timestamps or URLs
DIGEST_HEX_CHARS = 32  # 128 bits: collisions are out of reach for any number of events


def event_key(event: EngagementEvent) -> str:
    """`HL1-<32 hex>`: short enough for an activity user field, safe in a URL filter."""
    parts = (
        event.kind.value,
        event.contact_id or "",
        event.mailing_id or "",
        event.mailing_instance_id or "",
        event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        event.url or "",
    )
    digest = hashlib.sha256(_SEPARATOR.join(parts).encode()).hexdigest()[:DIGEST_HEX_CHARS]
    return f"{KEY_VERSION}-{digest}"
