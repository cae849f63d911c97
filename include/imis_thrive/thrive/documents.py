"""The Informz AAPI documents, built and read: read this before pointing the client at a real tenant.

Every AAPI call carries one XML document in the namespace `http://partner.informz.net/aapi/2009/08/`, inside the
SOAP envelope of `envelope.py`:

* `GridRequest` reads: `<Grids><Grid type="token">` with `Conditions`, `ReturnFields` (at least one, always),
  `SortField`, `StartRow` and `NumberOfRows` (<= 1,000). The reply is a `GridResponse` whose rows are
  `<Record row="n"><Fields><Field element="name">value</Field>...`; an empty result is `<Grid type="x"/>`.
  With compression, `<Grids>` holds base64 of a 4-byte little-endian length and gzip, both ways. Which grids
  exist and what they hold is `grids.py`.
* `ActionRequest` writes: `<Actions><Subscribe>...</Subscribe></Actions>`. The reply is an
  `ActionResponse` with one element per action under `<Responses>`, each with an `ActionStatus`; Subscribe
  answers counts only (`NewSubscriberCount`, `PreviousSubscriberCount`).
* Every document carries the credentials: `<Password/><Brand id="n">name</Brand><User/>`; there is no token.

Evidence: `shared/reference/thrive-vendor-facts.md` lists what Higher Logic's own pages show, with their
titles (support.higherlogic.com and informz.knowledgeowl.com). Marks here and in `envelope.py` and `grids.py`
say which: CONFIRMED (a vendor page shows it), CONTRADICTED (an earlier guess a vendor page proved wrong, kept
as a warning), OPEN (no vendor page settles it: the client copes with every reading seen, and
`bin/check-thrive` reports which one a tenant uses). The emulator (`sandbox/thrive_*`) is written from those
pages independently of these modules, so a wrong guess here fails a test instead of agreeing with itself.

Building uses ElementTree (it escapes `&`, `<`, `>` and quotes); reading uses `parsing.py` (defusedxml only).
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
from datetime import datetime
from enum import StrEnum

from include.imis_thrive.thrive.envelope import NAMESPACE
from include.imis_thrive.thrive.errors import ThriveProtocolError, UnsendableValue
from include.imis_thrive.thrive.grids import MAX_GRID_ROWS
from include.imis_thrive.thrive.models import Subscriber
from include.imis_thrive.thrive.parsing import child, child_text, children, format_timestamp, local_name, parse_document

# --- limits -----------------------------------------------------------------------------------------------
MAX_SUBSCRIBE = 1000
EMAIL_MAX_LENGTH = 100


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


# CONFIRMED by both vendor BulkUpload samples ("BulkUpload"; "API Quick Start Guide - Bulk Upload"): a ","
# delimiter, ColumnIndex from 1, flags as 1/0, data types spelled `string`/`integer`. CONTRADICTED: the earlier
# guess (a SubscriberData element, InterestDetails outside UploadDetails, ColumnIndex from 0, `true` flags).
BULK_COLUMN_DELIMITER = ","
BULK_FIRST_COLUMN_INDEX = 1
BULK_TRUE = "1"
# Connection extras may say `String`/`Int` (the Subscribe sample's spelling); BulkUpload wants the samples' words.
BULK_DATA_TYPES = {"int": "integer", "number": "integer", "str": "string", "text": "string"}


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


# --- replies ----------------------------------------------------------------------------------------------
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
        text = (element.text or "").strip()
        if local_name(element.tag).lower() == "uploadid" and text.isdigit():
            return int(text)
    raise ThriveProtocolError(f"{what}: the BulkUpload response carries no UploadID")
