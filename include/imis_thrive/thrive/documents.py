"""The Informz AAPI wire format, in one place: read this before pointing the client at a real tenant.

Thrive Marketing Professional (formerly Informz) has one SOAP 1.1 method, `PostInformzMessage(string)`.
Its argument is a whole XML document in the namespace `http://partner.informz.net/aapi/2009/08/`:

* `GridRequest` reads: `<Grids><Grid type="token">` with `Conditions`, `ReturnFields` (at least one, always),
  `SortField`, `StartRow` and `NumberOfRows` (<= 1,000). The reply is a `GridResponse` whose rows are
  `<Record row="n"><Fields><Field element="name">value</Field>...`; an empty result is `<Grid type="x"/>`.
  With compression, `<Grids>` holds base64 of a 4-byte little-endian length and gzip, both ways.
* `ActionRequest` writes: `<Actions><Subscribe>...</Subscribe></Actions>`. The reply is an
  `ActionResponse` with one element per action under `<Responses>`, each with an `ActionStatus`; Subscribe
  answers counts only (`NewSubscriberCount`, `PreviousSubscriberCount`).
* Every document carries the credentials: `<Password/><Brand id="n">name</Brand><User/>`; there is no token.
* Errors are SOAP faults (HTTP 500) naming a camel-case code (`InvalidCredentialsException`, ...).
* Times come back in UTC as `YYYY-MM-DDThh:mm:ss.fffffffZ` (7-digit fractions). Element names in replies
  differ in case from the documented spelling, so every lookup here is case-insensitive.

Evidence: `shared/reference/thrive-vendor-facts.md` lists what Higher Logic's own pages show, with their
titles (support.higherlogic.com and informz.knowledgeowl.com). Marks below say which: CONFIRMED (a vendor page
shows it), CONTRADICTED (an earlier guess a vendor page proved wrong, kept as a warning), OPEN (no vendor page
settles it: the client copes with every reading seen, and `bin/check-thrive` reports which one a tenant uses).
The emulator (`sandbox/thrive_*`) is written from those pages independently of this module, so a wrong guess
here fails a test instead of agreeing with itself.

Building uses ElementTree (it escapes `&`, `<`, `>` and quotes); parsing uses defusedxml only (no DTDs).
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from include.imis_thrive.thrive.errors import (
    ThriveCredentialsError,
    ThriveFault,
    ThriveItemNotFound,
    ThriveProtocolError,
    UnsendableValue,
)
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.thrive.models import Subscriber

# --- SOAP transport ---------------------------------------------------------------------------------------
NAMESPACE = "http://partner.informz.net/aapi/2009/08/"
SOAP_NAMESPACE = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ACTION = f"{NAMESPACE}IInformzWebServiceContract/PostInformzMessage"  # OPEN: seen in third-party code only
CONTENT_TYPE = "text/xml; charset=utf-8"
OPERATION = "PostInformzMessage"
ARGUMENT = "x"  # the WSDL's parameter name, per third-party code that pins the WSDL
RESPONSE_WRAPPER = "PostInformzMessageResponse"  # OPEN: WCF's default name for the reply wrapper
RESULT = "PostInformzMessageResult"
# OPEN: the fault's XML. "SOAP Fault Error Codes" names the type InformzAAPIFault and lists codes but shows no
# XML; the WSDL reportedly says InformzServiceFault. Both details are read, and a code only in a prefixed
# `faultcode` (`a:InvalidCredentialsException`) is classified the same (`fault_from`).
FAULT_DETAIL_NAMES = ("informzaapifault", "informzservicefault")

# --- limits -----------------------------------------------------------------------------------------------
MAX_GRID_ROWS = 1000
MAX_SUBSCRIBE = 1000
EMAIL_MAX_LENGTH = 100


class FaultCode(StrEnum):
    """The vendor's (explicitly partial) list of fault codes that this project raises or reacts to."""

    BRAND_NOT_FOUND = "BrandNotFoundException"
    INSUFFICIENT_DATA = "InsufficientDataToCreateSubscriberException"
    INSUFFICIENT_INFORMATION = "InsufficientInformationToCompleteActionException"
    INVALID_CREDENTIALS = "InvalidCredentialsException"
    INVALID_DATA_FORMAT = "InvalidDataFormatException"
    INVALID_DOCUMENT = "InvalidDocumentException"
    INVALID_GRID = "InvalidGridCategoryException"
    ITEM_NOT_FOUND = "ItemNotFoundException"
    NO_AVAILABLE_IP = "NoAvailableIPAddressException"
    NO_NAMESPACE = "NoNameSpaceSpecifiedException"
    UNEXPECTED_INPUT = "UnexpectedInputException"
    UNKNOWN_ACTION = "UnknownActionException"
    UNKNOWN_REQUEST = "UnknownRequestException"
    VALID_USER_NOT_FOUND = "ValidUserNotFoundException"


CREDENTIAL_FAULTS = frozenset({
    FaultCode.INVALID_CREDENTIALS, FaultCode.BRAND_NOT_FOUND, FaultCode.NO_AVAILABLE_IP, FaultCode.VALID_USER_NOT_FOUND,
})


class Comparator(StrEnum):
    EQ = "EQ"
    NE = "NE"
    GT = "GT"
    GTE = "GTE"
    LT = "LT"
    LTE = "LTE"
    IN = "IN"


class InterestAction(StrEnum):
    """What an upload does to the named interests' membership."""

    ADD_OR_UPDATE = "AddOrUpdateSubscribers"
    REPLACE_ALL = "ReplaceAllSubscribers"
    REMOVE = "RemoveSubscribers"  # membership removal only: not an unsubscribe
    UNSUBSCRIBE = "UnsubscribeSubscribers"
    RESUBSCRIBE = "ResubscribeSubscribers"


# --- grids ------------------------------------------------------------------------------------------------
class Grid(StrEnum):
    SUBSCRIBER = "subscriber"
    SUBSCRIBER_INTERESTS = "subscriber_interests"
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

# CONFIRMED by both vendor BulkUpload samples ("BulkUpload"; "API Quick Start Guide - Bulk Upload"): a ","
# delimiter, ColumnIndex from 1, flags as 1/0, data types spelled `string`/`integer`. CONTRADICTED: the earlier
# guess (a SubscriberData element, InterestDetails outside UploadDetails, ColumnIndex from 0, `true` flags).
BULK_COLUMN_DELIMITER = ","
BULK_FIRST_COLUMN_INDEX = 1
BULK_TRUE = "1"
# Connection extras may say `String`/`Int` (the Subscribe sample's spelling); BulkUpload wants the samples' words.
BULK_DATA_TYPES = {"int": "integer", "number": "integer", "str": "string", "text": "string"}


# --- time -------------------------------------------------------------------------------------------------
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?)?\s*(Z|[+-]\d{2}:?\d{2})?$", re.IGNORECASE
)


def format_timestamp(moment: datetime) -> str:
    """UTC with 7 fractional digits, as Thrive writes it; naive datetimes are refused (ambiguous zone)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware (UTC) datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_timestamp(text: str) -> datetime:
    """Any Thrive date or timestamp as an aware UTC datetime; a value without a zone is read as UTC."""
    match = _TIMESTAMP.match(text.strip())
    if not match:
        raise ValueError(f"not a Thrive timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro,
                      tzinfo=UTC)
    if zone and zone.upper() != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset_minutes = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        moment = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes))).astimezone(UTC)
    return moment


# --- building ---------------------------------------------------------------------------------------------
_XML_UNSAFE = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def unsendable_reason(value: str) -> str | None:
    """Why XML 1.0 cannot carry `value`, or None when it can."""
    found = _XML_UNSAFE.search(value)
    return None if found is None else f"contains character U+{ord(found.group()):04X}, which XML cannot carry"


@dataclass(frozen=True)
class Brand:
    """The credentials every document carries; the password never appears in a repr or a log."""

    brand_id: str
    brand_name: str
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Condition:
    element: str
    comparator: Comparator
    values: tuple[str | int | datetime, ...]

    @classmethod
    def single(cls, element: str, comparator: Comparator, value: str | int | datetime) -> Condition:
        return cls(element, comparator, (value,))


@dataclass(frozen=True)
class GridQuery:
    grid: str
    conditions: tuple[Condition, ...] = ()
    return_fields: tuple[str, ...] = ()
    sort_field: str | None = None
    descending: bool = False
    start_row: int = 0
    number_of_rows: int = MAX_GRID_ROWS


def _root(name: str) -> ET.Element:
    # Tags are built unqualified under a literal default-namespace attribute: ElementTree's own namespace
    # handling would also demand qualified *attribute* names (`id`, `type`, `element`).
    return ET.Element(name, xmlns=NAMESPACE)


def _sub(parent: ET.Element, name: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, name, attrib)
    if text is not None:
        reason = unsendable_reason(text)
        if reason:
            raise UnsendableValue(f"<{name}> {reason}")
        element.text = text
    return element


def _header(root: ET.Element, brand: Brand) -> None:
    _sub(root, "Password", brand.password)
    _sub(root, "Brand", brand.brand_name, id=brand.brand_id)
    _sub(root, "User", brand.user)


def _value_text(value: str | int | datetime) -> str:
    return format_timestamp(value) if isinstance(value, datetime) else str(value)


def _serialize(root: ET.Element) -> str:
    # A raw carriage return would be normalised to a line feed by the reader's parser; a character reference
    # survives, so "\r" in a personalization value round-trips exactly.
    return ET.tostring(root, encoding="unicode").replace("\r", "&#13;")


def grid_request(brand: Brand, queries: Sequence[GridQuery], compress: bool = False) -> str:
    """A `GridRequest`; every grid names at least one return field, as the vendor requires (Grid Request
    Overview). With `compress`, the `<Grids>` content travels compressed (Making the Call)."""
    root = _root("GridRequest")
    _header(root, brand)
    grids = _sub(root, "Grids")
    for query in queries:
        if not query.return_fields:
            raise ValueError(f"grid {query.grid}: name at least one return field (the AAPI requires one)")
        grid = _sub(grids, "Grid", type=query.grid)
        if query.conditions:
            conditions = _sub(grid, "Conditions")
            for condition in query.conditions:
                _condition(_sub(conditions, "Condition"), condition)
        return_fields = _sub(grid, "ReturnFields")
        for name in query.return_fields:
            _sub(return_fields, "DataElement", name)
        if query.sort_field:
            _sub(grid, "SortField", query.sort_field, order="desc" if query.descending else "asc")
        _sub(grid, "StartRow", str(query.start_row))
        _sub(grid, "NumberOfRows", str(query.number_of_rows))
    if compress:
        payload = "".join(_serialize(_qualified(grid)) for grid in list(grids))
        for grid in list(grids):
            grids.remove(grid)
        grids.text = compress_text(payload)
    return _serialize(root)


def _qualified(element: ET.Element) -> ET.Element:
    """A copy of an unqualified child that carries the document namespace itself, as a compressed Grid must."""
    copy = ET.Element(element.tag, {**element.attrib, "xmlns": NAMESPACE})
    copy.extend(list(element))
    return copy


# --- compression (vendor page "Making the Call"): base64 of a 4-byte little-endian length, then gzip ---------
def compress_text(text: str) -> str:
    raw = text.encode("utf-8")
    return base64.b64encode(struct.pack("<I", len(raw)) + gzip.compress(raw)).decode("ascii")


def decompress_text(text: str, what: str) -> str:
    """The XML a compressed `<Grids>` holds; a payload that does not decode is a protocol error naming the call."""
    try:
        packed = base64.b64decode(text.strip(), validate=True)
        declared = struct.unpack("<I", packed[:4])[0]
        raw = gzip.decompress(packed[4:])
    except (ValueError, struct.error, OSError, EOFError) as error:
        raise ThriveProtocolError(f"{what}: <Grids> holds text that is not a compressed grid payload ({error}): "
                                  f"{text[:80]!r}") from error
    if len(raw) != declared:
        raise ThriveProtocolError(f"{what}: compressed <Grids> declares {declared} bytes but holds {len(raw)}")
    return raw.decode("utf-8")


def _condition(parent: ET.Element, condition: Condition) -> None:
    # OPEN: the `Collection`/`SetOperator` spelling of a set condition (vendor pages disagree).
    if condition.comparator is Comparator.IN:
        collection = _sub(parent, "Collection")
        _sub(collection, "DataElement", condition.element)
        for value in condition.values:
            _sub(collection, "DataValue", _value_text(value))
        _sub(collection, "SetOperator", condition.comparator.value)
        return
    single = _sub(parent, "Single")
    _sub(single, "DataElement", condition.element)
    _sub(single, "DataValue", _value_text(condition.values[0]))
    _sub(single, "Comparator", condition.comparator.value)


def action_request(brand: Brand, actions: Iterable[ET.Element]) -> str:
    root = _root("ActionRequest")
    _header(root, brand)
    _sub(root, "Actions").extend(actions)
    return _serialize(root)


def _interest_details(parent: ET.Element, interests: Sequence[str], action: InterestAction) -> None:
    details = _sub(parent, "InterestDetails")
    names = _sub(details, "InterestNames")
    for interest in interests:
        _sub(names, "InterestName", interest)
    _sub(details, "InterestAction", action.value)


def _field_definitions(parent: ET.Element, field_names: Sequence[str], field_types: Mapping[str, str]) -> None:
    definitions = _sub(parent, "FieldDefinitions")
    for name in field_names:
        definition = _sub(definitions, "FieldDefinition")
        _sub(definition, "Name", name)
        _sub(definition, "DataType", field_types.get(name, "String"))


def field_names_of(subscribers: Iterable[Subscriber]) -> list[str]:
    """Every personalization field named by any subscriber, in first-seen order."""
    return list(dict.fromkeys(name for subscriber in subscribers for name in subscriber.fields))


def subscribe_action(
    subscribers: Sequence[Subscriber],
    interests: Sequence[str] = (),
    field_types: Mapping[str, str] | None = None,
) -> ET.Element:
    """`Subscribe` (<= 1,000 upserts keyed by `<ID>`); `<Email>` first, `<ID>` second, as the vendor requires.

    A field one subscriber lacks is sent empty, i.e. cleared, so every record says the same fields.
    """
    if len(subscribers) > MAX_SUBSCRIBE:
        raise ValueError(f"Subscribe takes at most {MAX_SUBSCRIBE} subscribers, got {len(subscribers)}")
    action = ET.Element("Subscribe")
    if interests:
        _interest_details(action, interests, InterestAction.ADD_OR_UPDATE)
    data = _sub(action, "SubscriberData")
    names = field_names_of(subscribers)
    if names:
        _field_definitions(data, names, field_types or {})
    records = _sub(data, "Subscribers")
    for subscriber in subscribers:
        record = _sub(records, "Subscriber")
        _sub(record, "Email", subscriber.email)
        _sub(record, "ID", subscriber.contact_id)
        if names:
            fields = _sub(record, "Fields")
            for name in names:
                _sub(fields, "Field", subscriber.fields.get(name) or "", element=name)
    return action


def bulk_data_type(declared: str | None) -> str:
    """A personalization field's BulkUpload `DataType`, spelled as the vendor's samples spell it."""
    spelled = (declared or "string").strip().lower()
    return BULK_DATA_TYPES.get(spelled, spelled)


def bulk_upload_action(
    subscribers: Sequence[Subscriber],
    interests: Sequence[str],
    interest_action: InterestAction,
    status_email_recipients: Sequence[str],
    field_types: Mapping[str, str] | None = None,
) -> ET.Element:
    """`BulkUpload` as both vendor samples lay it out; processed asynchronously (poll `upload_history`).

    `UploadDetails` holds `InterestDetails`, the required `StatusEmailRecipients` and the CSV options;
    `FieldDefinitions` (ColumnIndex from 1) and `Data` sit directly under `BulkUpload` (vendor pages
    "BulkUpload" and "API Quick Start Guide - Bulk Upload", thrive-vendor-facts.md). Blank cells clear fields
    (`RemovePersonalInfoIfBlank` 1), matching what Subscribe does with an empty field.
    """
    if not status_email_recipients:
        raise ValueError("BulkUpload needs at least one StatusEmailRecipients address")
    action = ET.Element("BulkUpload")
    details = _sub(action, "UploadDetails")
    if interests:
        _interest_details(details, interests, interest_action)
    recipients = _sub(details, "StatusEmailRecipients")
    for address in status_email_recipients:
        _sub(recipients, "Email", address)
    _sub(details, "ColumnDelimiter", BULK_COLUMN_DELIMITER)
    _sub(details, "HasFieldsEnclosedInQuotes", BULK_TRUE)
    _sub(details, "RemovePersonalInfoIfBlank", BULK_TRUE)
    names = field_names_of(subscribers)
    definitions = _sub(action, "FieldDefinitions")
    columns = [("Email", "string", "Email"), ("ID", "integer", "ID")]
    columns += [(name, bulk_data_type((field_types or {}).get(name)), "PersonalInfo") for name in names]
    for index, (name, data_type, field_type) in enumerate(columns, start=BULK_FIRST_COLUMN_INDEX):
        definition = _sub(definitions, "FieldDefinition")
        _sub(definition, "Name", name)
        _sub(definition, "DataType", data_type)
        _sub(definition, "ColumnIndex", str(index))
        _sub(definition, "FieldType", field_type)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=BULK_COLUMN_DELIMITER, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for subscriber in subscribers:
        writer.writerow([subscriber.email, subscriber.contact_id, *(subscriber.fields.get(n) or "" for n in names)])
    _sub(action, "Data", buffer.getvalue())
    return action


def _envelope(wrapper: str, inner: str, document: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{SOAP_NAMESPACE}"><s:Body><{wrapper} xmlns="{NAMESPACE}">'
        f"<{inner}>{escape(document)}</{inner}></{wrapper}></s:Body></s:Envelope>"
    ).encode("utf-8")


def request_envelope(document: str) -> bytes:
    return _envelope(OPERATION, ARGUMENT, document)


# --- parsing ----------------------------------------------------------------------------------------------
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def flag(value: str | None) -> bool:
    """A grid's bit column (`1`/`0`; some tenants and third-party readers say `true`/`false`)."""
    return (value or "").strip().lower() in {"1", "true", "yes", "y"}


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def child(element: ET.Element, name: str) -> ET.Element | None:
    """The first child whose local name matches `name`, ignoring namespace and case."""
    wanted = name.lower()
    for candidate in element:
        if local_name(candidate.tag).lower() == wanted:
            return candidate
    return None


def children(element: ET.Element, name: str) -> list[ET.Element]:
    wanted = name.lower()
    return [candidate for candidate in element if local_name(candidate.tag).lower() == wanted]


def nested(element: ET.Element, container: str, name: str) -> list[ET.Element]:
    """The `name` children of `element`'s `container` child; empty when there is no container."""
    found = child(element, container)
    return children(found, name) if found is not None else []


def descendant_text(element: ET.Element, name: str) -> str | None:
    """The text of the first descendant whose local name matches `name` (case-insensitive), wherever nested."""
    wanted = name.lower()
    for item in element.iter():
        if item is not element and local_name(item.tag).lower() == wanted:
            return item.text or ""
    return None


def child_text(element: ET.Element, name: str) -> str | None:
    found = child(element, name)
    return None if found is None else (found.text or "")


def _safe_parse(text: str | bytes, what: str, part: str) -> ET.Element:
    """Parse with defusedxml; broken XML and hostile XML (entities, a DTD, external references) both raise a
    `ThriveProtocolError` naming the call, never a bare parser exception."""
    try:
        # Informz replies never carry a DTD, so any DTD is refused along with entities and external references.
        return SafeET.fromstring(text, forbid_dtd=True)
    except ET.ParseError as error:
        preview = text[:200] if isinstance(text, bytes) else text[:200].encode()
        raise ThriveProtocolError(f"{what}: {part} is not XML ({error}): {preview!r}") from error
    except DefusedXmlException as error:
        raise ThriveProtocolError(f"{what}: {part} was refused as unsafe XML ({type(error).__name__}: {error})"
                                  ) from error


def parse_document(text: str, what: str) -> ET.Element:
    """An Informz document from its string form; the `utf-16` declaration a real reply carries is dropped."""
    return _safe_parse(_XML_DECLARATION.sub("", text, count=1), what, "the reply document")


def parse_envelope(body: bytes, what: str) -> ET.Element:
    envelope = _safe_parse(body, what, "the reply")
    soap_body = child(envelope, "Body")
    if local_name(envelope.tag) != "Envelope" or soap_body is None:
        raise ThriveProtocolError(f"{what}: the reply has no SOAP Body: {body[:200]!r}")
    return soap_body


def fault_from(soap_body: ET.Element, what: str) -> ThriveFault | None:
    """The typed exception a SOAP fault stands for, or None when the body holds no fault."""
    fault = child(soap_body, "Fault")
    if fault is None:
        return None
    detail = child(fault, "detail")
    info = next((item for item in (detail if detail is not None else [])
                 if local_name(item.tag).lower() in FAULT_DETAIL_NAMES), None)
    # A tenant may name the code only in a prefixed `faultcode` (`a:InvalidCredentialsException`): strip the prefix.
    code = ((child_text(info, "Code") if info is not None else None) or child_text(fault, "faultcode") or "UnknownFault")
    code = code.strip().rsplit(":", 1)[-1]
    reason = next(
        (text for text in ((child_text(info, "Reason") if info is not None else None),
                           (child_text(info, "Message") if info is not None else None),
                           child_text(fault, "faultstring")) if text),
        "no reason given",
    )
    if code in CREDENTIAL_FAULTS:
        return ThriveCredentialsError(what, code, reason)
    if code == FaultCode.ITEM_NOT_FOUND:
        return ThriveItemNotFound(what, code, reason)
    return ThriveFault(what, code, reason)


def soap_argument(soap_body: ET.Element, wrapper: str, inner: str, what: str) -> str:
    """The escaped document inside `<wrapper><inner>` (the request's `x`, or the reply's result)."""
    outer = child(soap_body, wrapper)
    found = child(outer, inner) if outer is not None else None
    if found is None:
        raise ThriveProtocolError(f"{what}: the SOAP body has no <{wrapper}><{inner}> element")
    return found.text or ""


def document_from_reply(body: bytes, what: str) -> ET.Element:
    """The reply document of a `PostInformzMessage` call; raises the typed fault if the reply is one."""
    soap_body = parse_envelope(body, what)
    fault = fault_from(soap_body, what)
    if fault is not None:
        raise fault
    return parse_document(soap_argument(soap_body, RESPONSE_WRAPPER, RESULT, what), what)


Record = dict[str, str | None]


def grid_records(document: ET.Element, what: str) -> dict[str, list[Record]]:
    """Each grid's rows, keyed by lower-case grid type; element names lower-cased; empty fields are None.

    A reply without `<Grids>`, or with text there that is not a compressed payload, raises: an empty result
    is only ever an explicit empty `<Grid type="x"/>`.
    """
    if local_name(document.tag) != "GridResponse":
        raise ThriveProtocolError(f"{what}: expected a GridResponse, got <{local_name(document.tag)}>")
    container = child(document, "Grids")
    if container is None:
        raise ThriveProtocolError(f"{what}: the GridResponse has no <Grids>")
    if len(container) == 0 and (container.text or "").strip():
        payload = decompress_text(container.text or "", what)
        container = parse_document(f"<Grids>{payload}</Grids>", what)
    grids: dict[str, list[Record]] = {}
    for grid in children(container, "Grid"):
        grids[(grid.get("type") or "").lower()] = [
            {(item.get("element") or "").lower(): (item.text or None)
             for item in record.iter() if "element" in item.attrib}
            for record in children(grid, "Record")
        ]
    return grids


def action_responses(document: ET.Element, what: str) -> list[ET.Element]:
    """One element per action, in request order."""
    if local_name(document.tag) != "ActionResponse":
        raise ThriveProtocolError(f"{what}: expected an ActionResponse, got <{local_name(document.tag)}>")
    responses = child(document, "Responses")
    if responses is None:
        raise ThriveProtocolError(f"{what}: the ActionResponse has no <Responses>")
    return list(responses)


def action_status(response: ET.Element) -> tuple[str, str]:
    """`ActionStatus/Status` (lower-cased; "success" when a tenant omits it) and its `Message`."""
    status = child(response, "ActionStatus")
    if status is None:
        return "success", ""
    return (child_text(status, "Status") or "success").strip().lower(), child_text(status, "Message") or ""


def upload_id_of(response: ET.Element, what: str) -> int:
    """The `UploadID` a BulkUpload response carries, wherever it is nested (OPEN: the nesting)."""
    for element in response.iter():
        if local_name(element.tag).lower() == "uploadid" and (element.text or "").strip().isdigit():
            return int(element.text.strip())
    raise ThriveProtocolError(f"{what}: the BulkUpload response carries no UploadID")
