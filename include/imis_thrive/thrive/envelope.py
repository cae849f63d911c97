"""The SOAP 1.1 envelope around every AAPI call, and the faults it can carry instead of a reply.

Thrive Marketing Professional (formerly Informz) has one SOAP 1.1 method, `PostInformzMessage(string)`: its
argument is a whole Informz document (`documents.py`) as escaped text, and so is its result. Errors are SOAP
faults (HTTP 500) naming a camel-case code (`InvalidCredentialsException`, ...). Marks below follow
`documents.py`: OPEN = no vendor page settles it, the client copes with every reading seen.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from enum import StrEnum
from xml.sax.saxutils import escape

from include.imis_thrive.thrive.errors import (
    ThriveCredentialsError,
    ThriveFault,
    ThriveItemNotFound,
    ThriveProtocolError,
)
from include.imis_thrive.thrive.parsing import child, child_text, local_name, parse_document, safe_parse

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


def _envelope(wrapper: str, inner: str, document: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{SOAP_NAMESPACE}"><s:Body><{wrapper} xmlns="{NAMESPACE}">'
        f"<{inner}>{escape(document)}</{inner}></{wrapper}></s:Body></s:Envelope>"
    ).encode()


def request_envelope(document: str) -> bytes:
    return _envelope(OPERATION, ARGUMENT, document)


def parse_envelope(body: bytes, what: str) -> ET.Element:
    envelope = safe_parse(body, what, "the reply")
    soap_body = child(envelope, "Body")
    if local_name(envelope.tag) != "Envelope" or soap_body is None:
        raise ThriveProtocolError(f"{what}: the reply has no SOAP Body (its root element is "
                                  f"<{local_name(envelope.tag)}>, {len(body)} bytes)")
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
    code = ((child_text(info, "Code") if info is not None else None) or child_text(fault, "faultcode")
            or "UnknownFault")
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
