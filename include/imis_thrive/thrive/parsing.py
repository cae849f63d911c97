"""Reading Thrive's XML and values: safe parsing, case-insensitive lookups, bit flags and timestamps.

Element names in replies differ in case from the documented spelling, so every lookup here ignores case and
namespace. Parsing uses defusedxml only (no DTDs, no entities). Times come back in UTC as
`YYYY-MM-DDThh:mm:ss.fffffffZ` (7-digit fractions), and are written the same way.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from include.imis_thrive.thrive.errors import ThriveProtocolError

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


def safe_parse(text: str | bytes, what: str, part: str) -> ET.Element:
    """Parse with defusedxml; broken XML and hostile XML (entities, a DTD, external references) both raise a
    `ThriveProtocolError` naming the call, never a bare parser exception."""
    try:
        # Informz replies never carry a DTD, so any DTD is refused along with entities and external references.
        return SafeET.fromstring(text, forbid_dtd=True)
    except ET.ParseError as error:
        # Its size, never its text: a reply to a grid request lists subscribers and their emails.
        raise ThriveProtocolError(f"{what}: {part} is not XML ({error}; {len(text)} characters)") from error
    except DefusedXmlException as error:
        raise ThriveProtocolError(f"{what}: {part} was refused as unsafe XML ({type(error).__name__}: {error})"
                                  ) from error


def parse_document(text: str, what: str) -> ET.Element:
    """An Informz document from its string form; the `utf-16` declaration a real reply carries is dropped."""
    return safe_parse(_XML_DECLARATION.sub("", text, count=1), what, "the reply document")


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
