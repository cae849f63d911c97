"""The grid catalogue: which grids the pipeline reads, their data elements, and where each engagement kind lives.

Grid tokens and elements are in the documented spelling (replies may differ in case). Marks: CONFIRMED (a vendor
page shows it), OPEN (no vendor page settles it), third-party (only third-party metadata names it); see
`shared/reference/thrive-vendor-facts.md` and `documents.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from include.imis_thrive.thrive.kinds import EngagementKind

MAX_GRID_ROWS = 1000  # NumberOfRows of one grid page


class Grid(StrEnum):
    SUBSCRIBER = "subscriber"
    SUBSCRIBER_INTERESTS = "subscriber_interests"
    SUBSCRIBER_PERSONAL_INFORMATION = "subscriber_personal_information"
    INTEREST_TARGET_GROUP = "interest_target_group"
    TARGET_GROUP_COUNTS = "target_group_counts"
    MAILING_INSTANCE = "mailing_instance"
    MAILING_ACTIVITY_SUBSCRIBER_ACTIONS = "mailing_activity_subscriber_actions"
    UPLOAD_HISTORY = "upload_history"
    SUBSCRIBER_MAILING_HISTORY = "subscriber_mailing_history"  # mailings of the last 100 days
    SUBSCRIBER_MAILING_HISTORY_ALL = "subscriber_mailing_history_all"  # only mailings older than 100 days
    # Third-party only (no vendor page names them, thrive-vendor-facts.md): read when the tenant serves them; a
    # kind whose grid the tenant refuses fails alone, naming the grid.
    MAILING_ACTIVITY_OPENS = "mailing_activity_opens"
    MAILING_ACTIVITY_CLICKS = "mailing_activity_clicks"
    SUBSCRIBER_FORM_USAGE = "subscriber_form_usage"
    SUBSCRIBER_WEB_TRACKING_PAGES = "subscriber_web_tracking_pages"


COUNT = "Count"  # ask for this element alone to get one record holding the number of matching rows
# How many members an interest has, in one call. OPEN: no vendor page says which grid answers it. The vendor's
# `subscriber_interests` table documents a Count ("Number of matches based on criteria") and the interest_name
# condition, and is live; `target_group_counts.target_group_count` (a third-party reading of that grid) is a count
# taken at `count_date`, so it may lag. The first is asked; a tenant that refuses it is asked the second.
MEMBER_COUNT_GRIDS = (Grid.SUBSCRIBER_INTERESTS, Grid.TARGET_GROUP_COUNTS)

# The data elements of each grid, in the documented spelling (replies may differ in case).
GRID_ELEMENTS: dict[Grid, tuple[str, ...]] = {
    Grid.SUBSCRIBER: (
        "subscriber_id", "email", "user_id", "modified_date", "service_since_date", "is_unsubscriber",
        "cancellation_date", "cancellation_mailing_instance_id", "bounce_date", "is_repeated_bouncer",
    ),
    Grid.SUBSCRIBER_INTERESTS: (
        "subscriber_to_interest_id", "subscriber_id", "email", "user_id", "interest_id", "interest_name",
        "service_since_date",
    ),
    # CONFIRMED (GridRequests - Subscriber Personal Information and Persona): one row per subscriber and
    # personalization field. OPEN: whether it carries the remote ID (`user_id`); its table shows `email`, so rows
    # are matched to contacts by email.
    Grid.SUBSCRIBER_PERSONAL_INFORMATION: (
        "subscriber_personal_information_id", "email", "personal_information_name", "personal_information_value",
    ),
    # CONFIRMED (GridRequests - Interest Target Group and Target Group Counts): no column says whether a group is
    # used by a campaign; `campaign_interests` reads target_group_counts.last_used_date and
    # mailing_instance.target_group_id instead.
    Grid.INTEREST_TARGET_GROUP: ("target_group_id", "target_group_name", "is_deleted"),
    # The grid is vendor-named; `last_used_date` is a third-party reading of its columns (thrive-grids.md §2).
    Grid.TARGET_GROUP_COUNTS: ("id", "name", "type_name", "target_group_count", "count_date", "last_used_date"),
    Grid.MAILING_INSTANCE: (
        "mailing_instance_id", "mailing_id", "mailing_date", "mailing_subject", "is_test", "target_group_id",
    ),
    # CONFIRMED (GridRequests - Subscriber Mailing Activity): per subscriber and instance, no timestamp.
    Grid.MAILING_ACTIVITY_SUBSCRIBER_ACTIONS: (
        "mailing_instance_id", "user_id", "email", "was_delivered", "was_opened", "was_clicked",
    ),
    Grid.UPLOAD_HISTORY: (
        "upload_id", "date", "status", "total_email_count", "invalid_email_count", "changed_email_count",
        "new_count", "previous_unsubscriber_count",
    ),
    Grid.SUBSCRIBER_MAILING_HISTORY: (
        "Subscriber_ID", "User_id", "Email", "Mailing_id", "Mailing_instance_id", "Mailing_name", "Mailing_date",
        "Was_Delivered",
    ),
    Grid.MAILING_ACTIVITY_OPENS: ("mailing_id", "mailing_instance_id", "email", "user_id", "open_date"),
    Grid.MAILING_ACTIVITY_CLICKS: (
        "Id", "Link", "link_name", "link_date", "mailing_id", "mailing_instance_id", "Email", "user_id",
    ),
    Grid.SUBSCRIBER_FORM_USAGE: ("subscriber_id", "email", "user_id", "form_id", "form_name", "activity_date"),
    Grid.SUBSCRIBER_WEB_TRACKING_PAGES: (
        "subscriber_id", "remote_id", "subscriber_email", "url", "page_title", "create_date",
    ),
}
GRID_ELEMENTS[Grid.SUBSCRIBER_MAILING_HISTORY_ALL] = GRID_ELEMENTS[Grid.SUBSCRIBER_MAILING_HISTORY]


@dataclass(frozen=True)
class EngagementGrid:
    """Where one engagement kind is read: grid tokens (all are read), its date element and its columns.

    The date element is both the window (`GTE start`, `LT end`) and the sort key; rows that tie on it keep
    the tenant's order, which the sandbox keeps stable (OPEN: the real tenant's tie order).
    """

    grids: tuple[Grid, ...]
    date_element: str
    contact_id_element: str
    email_element: str
    mailing_id_element: str | None = None
    mailing_instance_element: str | None = None
    url_element: str | None = None
    page_element: str | None = None

    def return_fields(self) -> tuple[str, ...]:
        names = (self.contact_id_element, self.email_element, self.date_element, self.mailing_id_element,
                 self.mailing_instance_element, self.url_element, self.page_element)
        return tuple(name for name in names if name)


ENGAGEMENT_GRIDS: dict[EngagementKind, EngagementGrid] = {
    # Vendor-named grid of the last 100 days; its `_all` twin (older mailings, third-party only) is read too
    # when a window reaches further back (see `engagement.grids_for_window`).
    EngagementKind.MAIL_SENT: EngagementGrid(
        (Grid.SUBSCRIBER_MAILING_HISTORY,), "Mailing_date", "User_id", "Email",
        mailing_id_element="Mailing_id", mailing_instance_element="Mailing_instance_id",
    ),
    EngagementKind.MAIL_OPEN: EngagementGrid(
        (Grid.MAILING_ACTIVITY_OPENS,), "open_date", "user_id", "email",
        mailing_id_element="mailing_id", mailing_instance_element="mailing_instance_id",
    ),
    EngagementKind.LINK_CLICK: EngagementGrid(
        (Grid.MAILING_ACTIVITY_CLICKS,), "link_date", "user_id", "Email",
        mailing_id_element="mailing_id", mailing_instance_element="mailing_instance_id", url_element="Link",
    ),
    # Vendor recipe: unsubscribes come from the subscriber grid by cancellation_date. It keeps only the latest
    # unsubscribe per subscriber, so a subscriber who unsubscribes twice in one window yields one event.
    EngagementKind.UNSUBSCRIBE: EngagementGrid(
        (Grid.SUBSCRIBER,), "cancellation_date", "user_id", "email",
        mailing_instance_element="cancellation_mailing_instance_id",
    ),
    # OPEN (third-party grid): form usage is the closest per-subscriber landing-page submit feed.
    EngagementKind.LANDING_PAGE_SUBMIT: EngagementGrid(
        (Grid.SUBSCRIBER_FORM_USAGE,), "activity_date", "user_id", "email", page_element="form_name",
    ),
    EngagementKind.WEB_PAGE_VISIT: EngagementGrid(
        (Grid.SUBSCRIBER_WEB_TRACKING_PAGES,), "create_date", "remote_id", "subscriber_email",
        url_element="url", page_element="page_title",
    ),
}
# Kinds no grid records, derived instead: Resubscribe from the subscriber state the previous run recorded
# (`engagement.resubscribes`), Bad Email from the malformed addresses the sync itself tried to add
# (`sync/bad_emails.py`). No vendor page names a resubscribe grid or a bad-email grid token.
DERIVED_KINDS = frozenset({EngagementKind.RESUBSCRIBE, EngagementKind.BAD_EMAIL})
MAIL_HISTORY_DAYS = 100  # subscriber_mailing_history holds this many days; `_all` holds the older ones

# OPEN: "Basic Outline for Integration" says to read upload_history.status by upload_id but shows no values;
# these are matched case-insensitively (the emulator's `--upload-status` switches between two readings).
UPLOAD_DONE_STATUSES = frozenset({"complete", "completed", "success", "succeeded", "finished", "done", "processed"})
UPLOAD_FAILED_STATUSES = frozenset({"failed", "failure", "error", "cancelled", "canceled", "aborted"})
