"""The SOAP envelope: faults in every shape seen become typed errors; anything else is a protocol error."""

import pytest

from include.imis_thrive.thrive import envelope
from include.imis_thrive.thrive.errors import (
    ThriveCredentialsError,
    ThriveFault,
    ThriveItemNotFound,
    ThriveProtocolError,
)
from tests.unit.thrive import replies


def test_a_fault_whose_code_is_only_in_a_prefixed_faultcode_is_classified_like_the_detail_form():
    body = (f'<s:Envelope xmlns:s="{envelope.SOAP_NAMESPACE}"><s:Body><s:Fault>'
            '<faultcode xmlns:a="http://partner.informz.net/aapi/2009/08/">a:InvalidCredentialsException</faultcode>'
            "<faultstring>Invalid credentials</faultstring></s:Fault></s:Body></s:Envelope>").encode()

    with pytest.raises(ThriveCredentialsError) as caught:
        envelope.document_from_reply(body, "grid subscriber")
    assert caught.value.code == "InvalidCredentialsException"


def test_garbage_instead_of_an_envelope_is_a_protocol_error_naming_the_call():
    with pytest.raises(ThriveProtocolError, match=r"^grid subscriber: the reply is not XML"):
        envelope.document_from_reply(b"<html>Bad gateway", "grid subscriber")


@pytest.mark.parametrize(("code", "error_type"), [
    ("InvalidCredentialsException", ThriveCredentialsError),
    ("BrandNotFoundException", ThriveCredentialsError),
    ("ItemNotFoundException", ThriveItemNotFound),
    ("UnknownActionException", ThriveFault),
])
def test_soap_faults_become_typed_errors_carrying_code_and_reason(code, error_type):
    with pytest.raises(error_type) as caught:
        envelope.document_from_reply(replies.fault_envelope(code, "Interest 'News & Views' <missing>"), "Subscribe 3")

    assert type(caught.value) is error_type
    assert (caught.value.code, caught.value.reason) == (code, "Interest 'News & Views' <missing>")
    assert str(caught.value).startswith("Subscribe 3: ")


def test_credential_fault_message_says_which_connection_fields_to_check():
    with pytest.raises(ThriveCredentialsError, match="login, password and brand_id"):
        envelope.document_from_reply(replies.fault_envelope("InvalidCredentialsException", "no"), "grid subscriber")


def test_fault_detail_named_informz_service_fault_with_message_only_is_read_too():
    body = (
        f'<s:Envelope xmlns:s="{envelope.SOAP_NAMESPACE}"><s:Body><s:Fault><faultcode>s:Server</faultcode>'
        "<faultstring>generic</faultstring><detail>"
        f'<InformzServiceFault xmlns="{envelope.NAMESPACE}"><CODE>InvalidGridCategoryException</CODE>'
        "<Message>Grid 'nope' unknown</Message></InformzServiceFault></detail></s:Fault></s:Body></s:Envelope>"
    ).encode()
    fault = envelope.fault_from(envelope.parse_envelope(body, "t"), "grid nope")

    assert (fault.code, fault.reason) == ("InvalidGridCategoryException", "Grid 'nope' unknown")


def test_a_fault_without_detail_falls_back_to_faultcode_and_faultstring():
    body = (f'<s:Envelope xmlns:s="{envelope.SOAP_NAMESPACE}"><s:Body><s:Fault><faultcode>s:Server</faultcode>'
            "<faultstring>Object reference not set</faultstring></s:Fault></s:Body></s:Envelope>").encode()
    fault = envelope.fault_from(envelope.parse_envelope(body, "t"), "t")

    assert (fault.code, fault.reason) == ("Server", "Object reference not set")


def test_a_request_carries_its_document_escaped_as_the_single_argument():
    document = '<GridRequest xmlns="urn:x"><User>a&amp;b</User></GridRequest>'
    soap_body = envelope.parse_envelope(envelope.request_envelope(document), "t")

    assert envelope.soap_argument(soap_body, envelope.OPERATION, envelope.ARGUMENT, "t") == document
    assert envelope.fault_from(soap_body, "t") is None


def test_a_reply_that_is_not_xml_is_described_by_its_size_never_quoted():
    """A grid reply lists subscribers: the first bytes of a broken one are member emails."""
    broken = b"<GridResponse><Record><email>jane.member@example.org</email><user_id>1000</user"
    with pytest.raises(ThriveProtocolError, match=rf"is not XML \(.*; {len(broken)} characters\)") as refused:
        envelope.document_from_reply(broken, "grid subscriber rows 0+1000")
    assert "jane.member" not in str(refused.value)


def test_xml_without_a_soap_body_names_its_root_element_not_its_content():
    reply = b"<GridResponse><Record><email>jane.member@example.org</email></Record></GridResponse>"
    with pytest.raises(ThriveProtocolError, match=r"no SOAP Body \(its root element is <GridResponse>") as refused:
        envelope.document_from_reply(reply, "grid subscriber rows 0+1000")
    assert "jane.member" not in str(refused.value)
