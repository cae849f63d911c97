"""The eight engagement kinds written back to iMIS as `HLOGIC` activities (DESIGN.md §1), defined once."""

from __future__ import annotations

from enum import StrEnum


class EngagementKind(StrEnum):
    """One kind of Thrive engagement; the value is the activity kind's name as iMIS users read it."""

    BAD_EMAIL = "Bad Email"
    LANDING_PAGE_SUBMIT = "Landing Page Submit"
    UNSUBSCRIBE = "Unsubscribe"
    RESUBSCRIBE = "Resubscribe"
    WEB_PAGE_VISIT = "Web Tracking Page Visit"
    MAIL_SENT = "Mail Sent"
    MAIL_OPEN = "Mail Open"
    LINK_CLICK = "Link Click"
