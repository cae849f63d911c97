"""The Thrive emulator's SOAP/XML reader and writer (its own: nothing of the client's `thrive/` modules).

Reading: the SOAP 1.1 envelope of `PostInformzMessage`, the escaped request document inside `<x>`, and the
compressed `<Grids>`/`<Actions>` payloads of "Sample Message (Encryption & Compression)" (base64 of a 4-byte
little-endian length followed by gzip data). Parsing goes through defusedxml: entity expansion, external
entities and DTDs are refused. Writing: the reply envelope and a SOAP fault in one of three shapes, since no
vendor page shows the fault XML (OPEN): `aapi` (detail `InformzAAPIFault` with `Code`/`Reason`, the type
name the "SOAP Fault Error Codes" page gives), `service` (detail `InformzServiceFault` with `Code`/`Message`/
`Reason`, the WSDL's name per third-party code) and `faultcode` (no detail; the code only in a prefixed
`faultcode` such as `a:InvalidCredentialsException`).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import struct
import xml.etree.ElementTree as ET
from typing import Literal
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from sandbox.thrive_vocab import NAMESPACE, SOAP_NAMESPACE

FaultShape = Literal["aapi", "service", "faultcode"]
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


class XmlRefused(ValueError):
    """The message is not a document the emulator can read (malformed, hostile or not SOAP)."""


# --- element helpers (tags are compared by local name; case-sensitive, as "Create Mailing" says tags are) ------
def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def namespace_of(tag: str) -> str | None:
    return tag[1:].split("}", 1)[0] if isinstance(tag, str) and tag.startswith("{") else None


def child(element: ET.Element, name: str) -> ET.Element | None:
    for candidate in element:
        if local_name(candidate.tag) == name:
            return candidate
    return None


def children(element: ET.Element, name: str) -> list[ET.Element]:
    return [candidate for candidate in element if local_name(candidate.tag) == name]


def text_of(element: ET.Element, name: str) -> str | None:
    found = child(element, name)
    return None if found is None else (found.text or "")


def nested(element: ET.Element, container: str, name: str) -> list[ET.Element]:
    found = child(element, container)
    return children(found, name) if found is not None else []


def parse(text: str | bytes) -> ET.Element:
    """One XML document, hostile constructs refused; a leading declaration (`utf-16` in replies) is dropped."""
    if isinstance(text, str):
        text = _DECLARATION.sub("", text, count=1)
    try:
        return SafeET.fromstring(text)
    except (ET.ParseError, DefusedXmlException, ValueError) as error:
        raise XmlRefused(f"{type(error).__name__}: {error}") from error


def request_document(body: bytes) -> ET.Element:
    """The document a `PostInformzMessage` call carries in its `x` argument."""
    envelope = parse(body)
    soap_body = child(envelope, "Body")
    if local_name(envelope.tag) != "Envelope" or namespace_of(envelope.tag) != SOAP_NAMESPACE or soap_body is None:
        raise XmlRefused("not a SOAP 1.1 envelope with a Body")
    operation = next(iter(soap_body), None)
    if operation is None or local_name(operation.tag) != "PostInformzMessage":
        raise XmlRefused("the SOAP Body holds no <PostInformzMessage>")
    argument = child(operation, "x")
    if argument is None or not (argument.text or "").strip():
        raise XmlRefused("<PostInformzMessage> has no <x> argument")
    return parse(argument.text or "")


# --- compression ("Making the Call"; "Sample Message (Encryption & Compression)") ------------------------
def is_compressed(container: ET.Element) -> bool:
    """A `<Grids>`/`<Actions>` whose content is text (the base64 payload) instead of elements."""
    return len(container) == 0 and bool((container.text or "").strip())


def decompress_payload(text: str) -> str:
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
        length = struct.unpack("<I", raw[:4])[0]
        payload = gzip.decompress(raw[4:])
    except (binascii.Error, struct.error, OSError, EOFError) as error:
        raise XmlRefused(f"the compressed payload does not decode ({error})") from error
    if len(payload) != length:
        raise XmlRefused(f"the compressed payload's length prefix says {length} bytes, it holds {len(payload)}")
    return payload.decode("utf-8")


def compress_payload(text: str) -> str:
    data = text.encode("utf-8")
    return base64.b64encode(struct.pack("<I", len(data)) + gzip.compress(data)).decode("ascii")


def expand(container: ET.Element) -> list[ET.Element]:
    """The elements of a compressed container (one `<Grid>` per the sample, or several, or `<Subscribe>`...)."""
    inner = decompress_payload(container.text or "")
    wrapper = parse(f'<Payload xmlns="{NAMESPACE}">{_DECLARATION.sub("", inner, count=1)}</Payload>')
    return list(wrapper)


# --- writing ----------------------------------------------------------------------------------------------
def attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def response_envelope(document: str) -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP_NAMESPACE}"><s:Body><PostInformzMessageResponse xmlns="{NAMESPACE}">'
            f"<PostInformzMessageResult>{escape(document)}</PostInformzMessageResult>"
            "</PostInformzMessageResponse></s:Body></s:Envelope>").encode()


def fault_envelope(code: str, reason: str, shape: FaultShape = "aapi") -> bytes:
    if shape == "faultcode":
        fault = (f'<faultcode xmlns:a="{NAMESPACE}">a:{escape(code)}</faultcode>'
                 f'<faultstring xml:lang="en-US">{escape(reason)}</faultstring>')
    else:
        name = "InformzAAPIFault" if shape == "aapi" else "InformzServiceFault"
        message = f"<Message>{escape(reason)}</Message>" if shape == "service" else ""
        fault = (f'<faultcode>s:Client</faultcode><faultstring xml:lang="en-US">{escape(reason)}</faultstring>'
                 f'<detail><{name} xmlns="{NAMESPACE}"><Code>{escape(code)}</Code>{message}'
                 f"<Reason>{escape(reason)}</Reason></{name}></detail>")
    return (f'<s:Envelope xmlns:s="{SOAP_NAMESPACE}"><s:Body><s:Fault>{fault}</s:Fault></s:Body>'
            "</s:Envelope>").encode()


# --- BulkUpload <Data> --------------------------------------------------------------------------------------
def delimited_rows(data: str, delimiter: str, quoted: bool) -> list[list[str]]:
    """The rows of a BulkUpload `<Data>` block, one subscriber a line.

    Blanks around an unquoted cell are dropped (the Quick Start sample writes `joe@example.com, 1374, Joe`
    on indented lines); a quoted cell (`HasFieldsEnclosedInQuotes` 1) is kept exactly, `""` standing for a
    quote, and may hold the delimiter or a line break.
    """
    if len(delimiter) != 1:
        raise ValueError(f"ColumnDelimiter must be one character, got {delimiter!r}")
    rows: list[list[str]] = []
    row: list[str] = []
    cell: list[str] = []
    position, length = 0, len(data)
    in_quotes = was_quoted = False
    while position < length:
        char = data[position]
        if in_quotes:
            if char == '"' and data.startswith('""', position):
                cell.append('"')
                position += 1
            elif char == '"':
                in_quotes = False
            else:
                cell.append(char)
        elif quoted and char == '"' and not "".join(cell).strip():
            cell, in_quotes, was_quoted = [], True, True
        elif char == delimiter or char in "\r\n":
            row.append("".join(cell) if was_quoted else "".join(cell).strip())
            cell, was_quoted = [], False
            if char != delimiter:
                if any(value for value in row) or len(row) > 1:
                    rows.append(row)
                row = []
        elif not was_quoted:
            cell.append(char)
        elif not char.isspace():
            raise ValueError(f"text after a closing quote at character {position}")
        position += 1
    if in_quotes:
        raise ValueError("a quoted cell is not closed")
    row.append("".join(cell) if was_quoted else "".join(cell).strip())
    if any(value for value in row) or len(row) > 1:
        rows.append(row)
    return rows
