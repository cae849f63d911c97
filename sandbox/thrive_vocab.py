"""The Thrive emulator's own vocabulary, written from Higher Logic's pages, not from the client.

Nothing here is imported from `include/imis_thrive/thrive/`: the emulator is a second, independent reading
of the vendor documents (`shared/reference/thrive-vendor-facts.md`), so a wrong guess in the client fails a
test instead of being mirrored. Each constant names the vendor page it rests on; "OPEN" marks a detail no
vendor page settles, where the emulator can be started in each alternative (see `ThriveSandboxConfig`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum

# --- envelope (Making the Call; every sample) -------------------------------------------------------------
NAMESPACE = "http://partner.informz.net/aapi/2009/08/"
SOAP_NAMESPACE = "http://schemas.xmlsoap.org/soap/envelope/"
OPERATION = "PostInformzMessage"  # the one method; its argument is `x` (public hand-written callers)
ARGUMENT = "x"
RESPONSE_WRAPPER = "PostInformzMessageResponse"  # OPEN: WCF's default, no sample shows the reply wrapper
RESULT = "PostInformzMessageResult"
CONTENT_TYPE = "text/xml; charset=utf-8"

# --- limits -----------------------------------------------------------------------------------------------
MAX_GRID_ROWS = 1000  # "Grid Request Overview": at most 1,000 rows per request
MAX_SUBSCRIBE = 1000  # "ActionRequests - Subscribe...": Subscribe is for small sets, BulkUpload for > 1,000
EMAIL_MAX_LENGTH = 100  # Subscribe: <Email> String(100)
DEFAULT_UNSUBSCRIBE_REASON = "Unsubscribed via Informz Web Service"  # "Unsubscribe", note 2


class FaultCode(StrEnum):
    """Codes from "SOAP Fault Error Codes" (the page calls its list partial)."""

    BRAND_NOT_FOUND = "BrandNotFoundException"
    INSUFFICIENT_DATA = "InsufficientDataToCreateSubscriberException"
    INSUFFICIENT_INFORMATION = "InsufficientInformationToCompleteActionException"
    INVALID_CREDENTIALS = "InvalidCredentialsException"
    INVALID_DATA_FORMAT = "InvalidDataFormatException"
    INVALID_DOCUMENT = "InvalidDocumentException"
    INVALID_GRID = "InvalidGridCategoryException"
    INVALID_MESSAGE = "InvalidMessageException"
    ITEM_NOT_FOUND = "ItemNotFoundException"
    CONFLICTING_INFORMATION = "ConflictingInformationException"
    NO_NAMESPACE = "NoNameSpaceSpecifiedException"
    UNEXPECTED_INPUT = "UnexpectedInputException"
    UNKNOWN_ACTION = "UnknownActionException"
    UNKNOWN_REQUEST = "UnknownRequestException"


class InterestAction(StrEnum):
    """"BulkUpload": the five processing options; Subscribe allows only the first two."""

    ADD_OR_UPDATE = "AddOrUpdateSubscribers"
    REPLACE_ALL = "ReplaceAllSubscribers"
    REMOVE = "RemoveSubscribers"
    UNSUBSCRIBE = "UnsubscribeSubscribers"
    RESUBSCRIBE = "ResubscribeSubscribers"


SUBSCRIBE_ACTIONS = frozenset({InterestAction.ADD_OR_UPDATE, InterestAction.REPLACE_ALL})

# "BulkUpload" sample comment: "choices are PersonalInfo (default), Email, ID, Source, NewsFormat (maybe
# Interest and Demographics later?)"; "BulkUpload with Interests" adds a FieldDefinition called Interest.
BULK_FIELD_TYPES = frozenset({"personalinfo", "email", "id", "source", "newsformat", "interest", "demographic"})
# The samples spell DataType `string` and `integer`; the rest are the plausible siblings of those two.
BULK_DATA_TYPES = frozenset({"string", "integer", "date", "datetime", "decimal"})
BULK_FLAGS = frozenset({"0", "1"})  # HasFieldsEnclosedInQuotes / RemovePersonalInfoIfBlank: 1 | 0 in both samples
BULK_FIRST_COLUMN_INDEX = 1  # ColumnIndex starts at 1 in both samples


class EventKind(StrEnum):
    """What the emulator's engagement generator makes; the strings are the integration's activity kinds."""

    BAD_EMAIL = "Bad Email"
    LANDING_PAGE_SUBMIT = "Landing Page Submit"
    UNSUBSCRIBE = "Unsubscribe"
    RESUBSCRIBE = "Resubscribe"
    WEB_PAGE_VISIT = "Web Tracking Page Visit"
    MAIL_SENT = "Mail Sent"
    MAIL_OPEN = "Mail Open"
    LINK_CLICK = "Link Click"


# --- grids --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridSpec:
    """One grid type: its data elements in the documented spelling, and whether a vendor page names it."""

    token: str
    elements: tuple[str, ...]
    documented: bool
    source: str

    def canonical(self) -> dict[str, str]:
        return {element.lower(): element for element in self.elements}


COUNT = "count"  # "Grid Request Overview" / usage pattern: a Count request answers `row="0"`, element `count`

_GRID_LIST = (
    GridSpec("subscriber", (
        "subscriber_id", "email", "user_id", "modified_date", "service_since_date", "is_unsubscriber",
        "cancellation_date", "cancellation_message", "cancel_id", "cancellation_mailing_instance_id",
        "bounce_date", "is_repeated_bouncer", "subscriber_upload_id", "imis_name_id",
    ), True, "Basic Outline for Integration; Subscribers and Unsubscribers"),
    GridSpec("subscriber_interests", (
        "subscriber_to_interest_id", "subscriber_id", "email", "user_id", "interest_id", "interest_name",
        "service_since_date", "cancellation_date", "cancelled_id",
    ), True, "GridRequests - Subscriber Interests, Changes and Deletions"),
    # The vendor's table names `email` and `subscriber_personal_information_id` beside the sample's four return
    # fields; whether it also carries the remote ID is not shown, so the emulator answers by email only.
    GridSpec("subscriber_personal_information", (
        "subscriber_personal_information_id", "email", "personal_information_id", "personal_information_name",
        "personal_information_value",
    ), True, "GridRequests - Subscriber Personal Information and Persona"),
    GridSpec("interest_target_group", ("brand_ID", "is_deleted", "target_group_id", "target_group_name"),
             True, "GridRequests - Interest Target Group and Target Group Counts"),
    GridSpec("target_group_counts", (
        "id", "name", "description", "type_name", "target_group_count", "count_date",
        "target_group_count_error", "last_used_date",
    ), True, "GridRequests - Interest Target Group and Target Group Counts"),
    GridSpec("mailing_instance", (
        "mailing_instance_id", "mailing_id", "mailing_date", "mailing_subject", "is_test", "last_resend_date",
        "target_group_id",
    ), True, "Grid Request Usage Pattern; Basic Outline for Integration"),
    GridSpec("upload_history", (
        "upload_id", "brand_id", "date", "status", "total_email_count", "invalid_email_count",
        "changed_email_count", "duplicate_email_count", "previous_count", "new_count",
        "previous_unsubscriber_count", "uploader_email",
    ), True, "BulkUpload; Basic Outline for Integration (supply upload_id, return status)"),
    GridSpec("subscriber_mailing_history", (
        "Subscriber_ID", "User_id", "Email", "Mailing_id", "Mailing_instance_id", "Mailing_name", "Mailing_date",
        "Was_Delivered", "Was_Opened", "Was_Clicked", "was_blocked", "Was_Hard_bounced", "Was_Repeat_bounced",
        "Was_Soft_bounced",
    ), True, "Grid Requests Overview; Basic Outline for Integration"),
    GridSpec("mailing_activity_subscriber_actions", (
        "was_clicked", "was_delivered", "email", "mailing_instance_id", "was_opened", "user_id",
    ), True, "GridRequests - Subscriber Mailing Activity; Basic Outline for Integration"),
    # Third-party only (the MemberJunction catalogue, citing vendor article numbers no stored page shows).
    GridSpec("subscriber_mailing_history_all", (
        "Subscriber_ID", "User_id", "Email", "Mailing_id", "Mailing_instance_id", "Mailing_name", "Mailing_date",
        "Was_Delivered", "Was_Opened", "Was_Clicked",
    ), False, "third-party catalogue (MJ)"),
    GridSpec("mailing_activity_opens", (
        "mailing_id", "mailing_instance_id", "email", "user_id", "open_date", "email_client_name", "ip_address",
    ), False, "third-party catalogue (MJ -> article 360032692312)"),
    GridSpec("mailing_activity_clicks", (
        "Id", "Link", "link_name", "link_date", "mailing_id", "mailing_instance_id", "mailing_name", "Email",
        "user_id",
    ), False, "third-party catalogue (MJ -> article 360032692292)"),
    GridSpec("suppressed_subscribers", (
        "subscriber_match_id", "subscriber_id", "email", "user_id", "reason", "mailing_id", "mailing_instance_id",
        "mailing_date", "brand_id",
    ), False, "third-party catalogue (MJ -> article 360033049391)"),
    GridSpec("subscriber_form_usage", (
        "subscriber_id", "email", "user_id", "form_id", "form_name", "form_version", "activity_date",
        "is_new_subscriber", "brand_id",
    ), False, "third-party catalogue (MJ -> article 360033049151)"),
    GridSpec("subscriber_web_tracking_pages", (
        "subscriber_id", "remote_id", "subscriber_email", "url", "page_title", "create_date", "view_duration",
    ), False, "third-party catalogue (MJ -> article 360033049371)"),
)
GRIDS: dict[str, GridSpec] = {spec.token: spec for spec in _GRID_LIST}
DOCUMENTED_GRIDS = frozenset(token for token, spec in GRIDS.items() if spec.documented)
EXTENDED_GRIDS = frozenset(GRIDS)
# Never served in any mode: no vendor page names a grid of resubscribe events ("thrive-vendor-facts.md").
NEVER_SERVED = frozenset({"subscriber_resubscribes"})

HISTORY_DAYS = 100  # subscriber_mailing_history / mailing_activity_subscriber_actions: the last 100 days

# --- time ("API General Information - Time and Errors") -------------------------------------------------------
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


def format_timestamp(moment: datetime) -> str:
    """UTC with seven fractional digits: `2017-06-19T15:46:18.8130000Z`."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_timestamp(text: str) -> datetime:
    """A condition value (`2009-09-01` in every sample, or a full timestamp); no zone means UTC."""
    match = _TIMESTAMP.match(text.strip())
    if not match:
        raise ValueError(f"not a date or timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro,
                      tzinfo=UTC)
    if zone and zone.upper() != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        moment = moment.replace(tzinfo=timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))))
    return moment.astimezone(UTC)
