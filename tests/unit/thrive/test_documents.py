import base64
import csv
import gzip
import io
import struct
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import pytest

from include.imis_thrive.thrive import documents
from tests.unit.thrive import replies
from include.imis_thrive.thrive.errors import (
    ThriveCredentialsError,
    ThriveFault,
    ThriveItemNotFound,
    ThriveProtocolError,
    UnsendableValue,
)
from include.imis_thrive.thrive.models import Subscriber
from include.imis_thrive.thrive.documents import Comparator, Condition, GridQuery, InterestAction

BRAND = documents.Brand("7001", "Sandbox & Co", "api_user", "p<a>ss&word")
TRICKY = [
    "Ampersand & Sons",
    "<script>alert('x')</script>",
    'He said "hi" and \'bye\'',
    "emoji 🎉👩‍💻",
    "עברית RTL نص عربي",
    "line\nbreak\rcarriage\ttab",
    "]]> cdata end",
]


def _request_document(body: bytes) -> str:
    soap_body = documents.parse_envelope(body, "test")
    return documents.soap_argument(soap_body, documents.OPERATION, documents.ARGUMENT, "test")


def _fields(document: str) -> list[str]:
    root = documents.parse_document(document, "test")
    return [element.text or "" for element in root.iter() if documents.local_name(element.tag) == "Field"]


@pytest.mark.parametrize("value", TRICKY)
def test_personalization_values_round_trip_exactly_through_document_and_envelope(value):
    document = documents.action_request(BRAND, [documents.subscribe_action([Subscriber("12", "a@example.org", {"Name": value})])])

    assert _fields(_request_document(documents.request_envelope(document))) == [value]


def test_credentials_and_brand_name_are_escaped_in_the_header():
    root = documents.parse_document(documents.grid_request(BRAND, [GridQuery("subscriber", (), ("email",))]), "test")

    assert documents.child_text(root, "Password") == "p<a>ss&word"
    assert documents.child(root, "Brand").get("id") == "7001"
    assert documents.child_text(root, "Brand") == "Sandbox & Co"
    assert root.tag == f"{{{documents.NAMESPACE}}}GridRequest"


def test_brand_repr_hides_the_password():
    assert "p<a>ss" not in repr(BRAND)


def test_control_characters_are_refused_with_the_element_named():
    with pytest.raises(UnsendableValue, match="Field.*U\\+0007"):
        documents.subscribe_action([Subscriber("1", "a@example.org", {"Name": "bell\x07"})])


def test_subscribe_puts_email_first_and_upper_case_id_second():
    action = documents.subscribe_action([Subscriber("321", "steve@example.org", {"First_Name": "Steve"})], ["News"])
    record = action.find("SubscriberData/Subscribers/Subscriber")

    assert [child.tag for child in record] == ["Email", "ID", "Fields"]
    assert action.findtext("InterestDetails/InterestAction") == "AddOrUpdateSubscribers"
    assert action.findtext("SubscriberData/FieldDefinitions/FieldDefinition/Name") == "First_Name"


def test_subscribe_sends_a_field_some_records_lack_as_empty_so_every_record_says_the_same_fields():
    action = documents.subscribe_action([Subscriber("1", "a@example.org", {"A": "x"}), Subscriber("2", "b@example.org", {})])
    second = action.findall("SubscriberData/Subscribers/Subscriber")[1]

    assert [(f.get("element"), f.text) for f in second.find("Fields")] == [("A", "")]


def test_subscribe_refuses_more_than_one_thousand_subscribers():
    subscribers = [Subscriber(str(i), f"m{i}@example.org") for i in range(1001)]

    with pytest.raises(ValueError, match="at most 1000"):
        documents.subscribe_action(subscribers)


def _paths(element: ET.Element, prefix: str = "") -> list[str]:
    """Every element path of a tree, in document order: the layout, without the values."""
    here = f"{prefix}/{documents.local_name(element.tag)}" if prefix else documents.local_name(element.tag)
    return [here] + [path for item in element for path in _paths(item, here)]


# The element layout both vendor BulkUpload samples show (support.higherlogic.com "BulkUpload" and
# informz.knowledgeowl.com "API Quick Start Guide - Bulk Upload"): no SubscriberData, InterestDetails and
# StatusEmailRecipients inside UploadDetails, FieldDefinitions and Data directly under BulkUpload.
VENDOR_BULK_UPLOAD_LAYOUT = [
    "BulkUpload", "BulkUpload/UploadDetails", "BulkUpload/UploadDetails/InterestDetails",
    "BulkUpload/UploadDetails/InterestDetails/InterestNames",
    "BulkUpload/UploadDetails/InterestDetails/InterestNames/InterestName",
    "BulkUpload/UploadDetails/InterestDetails/InterestAction",
    "BulkUpload/UploadDetails/StatusEmailRecipients", "BulkUpload/UploadDetails/StatusEmailRecipients/Email",
    "BulkUpload/UploadDetails/ColumnDelimiter", "BulkUpload/UploadDetails/HasFieldsEnclosedInQuotes",
    "BulkUpload/UploadDetails/RemovePersonalInfoIfBlank", "BulkUpload/FieldDefinitions",
    *["BulkUpload/FieldDefinitions/FieldDefinition", "BulkUpload/FieldDefinitions/FieldDefinition/Name",
      "BulkUpload/FieldDefinitions/FieldDefinition/DataType", "BulkUpload/FieldDefinitions/FieldDefinition/ColumnIndex",
      "BulkUpload/FieldDefinitions/FieldDefinition/FieldType"] * 3,
    "BulkUpload/Data",
]


def test_bulk_upload_is_laid_out_as_the_vendor_samples_show():
    subscribers = [Subscriber("1", "a@example.org", {"Org": "Acme"})]
    action = documents.bulk_upload_action(subscribers, ["News"], InterestAction.ADD_OR_UPDATE, ["ops@example.org"],
                                     {"Org": "String"})

    assert _paths(action) == VENDOR_BULK_UPLOAD_LAYOUT
    details = action.find("UploadDetails")
    assert details.findtext("StatusEmailRecipients/Email") == "ops@example.org"
    assert details.findtext("InterestDetails/InterestNames/InterestName") == "News"
    assert (details.findtext("HasFieldsEnclosedInQuotes"), details.findtext("RemovePersonalInfoIfBlank")) == ("1", "1")
    definitions = action.findall("FieldDefinitions/FieldDefinition")
    assert [(d.findtext("Name"), d.findtext("DataType"), d.findtext("ColumnIndex"), d.findtext("FieldType"))
            for d in definitions] == [("Email", "string", "1", "Email"), ("ID", "integer", "2", "ID"),
                                      ("Org", "string", "3", "PersonalInfo")]


def test_bulk_upload_refuses_to_build_without_status_email_recipients():
    with pytest.raises(ValueError, match="StatusEmailRecipients"):
        documents.bulk_upload_action([Subscriber("1", "a@example.org")], ["News"], InterestAction.REMOVE, [])


def test_bulk_upload_rows_survive_delimiters_quotes_and_newlines():
    subscribers = [Subscriber("1", "a@example.org", {"Org": 'Smith, "Jones"\n& Co'}), Subscriber("2", "b@example.org")]
    action = documents.bulk_upload_action(subscribers, ["News"], InterestAction.REMOVE, ["ops@example.org"])

    rows = list(csv.reader(io.StringIO(action.findtext("Data"))))
    assert rows == [["a@example.org", "1", 'Smith, "Jones"\n& Co'], ["b@example.org", "2", ""]]
    assert action.findtext("UploadDetails/InterestDetails/InterestAction") == "RemoveSubscribers"


def test_every_grid_request_names_its_return_fields():
    with pytest.raises(ValueError, match="grid interest_target_group: name at least one return field"):
        documents.grid_request(BRAND, [GridQuery("interest_target_group")])


def test_a_compressed_request_carries_its_grids_as_base64_of_length_and_gzip():
    query = GridQuery("mailing_instance", (), ("Count",))
    root = documents.parse_document(documents.grid_request(BRAND, [query], compress=True), "t")
    packed = base64.b64decode(documents.child_text(root, "Grids"))
    payload = gzip.decompress(packed[4:])

    assert struct.unpack("<I", packed[:4])[0] == len(payload)
    grid = documents.parse_document(payload.decode(), "t")
    assert (grid.tag, grid.get("type")) == (f"{{{documents.NAMESPACE}}}Grid", "mailing_instance")


def _compressed(xml: str) -> str:
    raw = xml.encode()
    return base64.b64encode(struct.pack("<I", len(raw)) + gzip.compress(raw)).decode()


def test_a_compressed_grids_reply_is_decoded_not_read_as_empty():
    grid = (f'<Grid type="subscriber" xmlns="{documents.NAMESPACE}"><Record row="1"><Fields>'
            '<Field element="email">a@example.org</Field></Fields></Record></Grid>')
    document = f'<GridResponse xmlns="{documents.NAMESPACE}"><Grids>{_compressed(grid)}</Grids></GridResponse>'

    assert documents.grid_records(documents.document_from_reply(_reply(document), "t"), "t") == {
        "subscriber": [{"email": "a@example.org"}]}


@pytest.mark.parametrize(("grids", "message"), [
    ("", "grid subscriber rows 0\\+1000: the GridResponse has no <Grids>"),
    ("<Grids>not a payload at all</Grids>", "grid subscriber rows 0\\+1000: <Grids> holds text that is not"),
])
def test_a_grid_reply_the_client_cannot_read_raises_instead_of_giving_zero_rows(grids, message):
    document = f'<GridResponse xmlns="{documents.NAMESPACE}">{grids}</GridResponse>'
    what = "grid subscriber rows 0+1000"

    with pytest.raises(ThriveProtocolError, match=message):
        documents.grid_records(documents.document_from_reply(_reply(document), what), what)


HOSTILE_DOCUMENTS = {
    "entity expansion": '<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><GridResponse>&b;</GridResponse>',
    "external entity": '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><GridResponse>&x;</GridResponse>',
    "a DTD": '<!DOCTYPE GridResponse SYSTEM "http://evil.invalid/x.dtd"><GridResponse/>',
}


@pytest.mark.parametrize("kind", HOSTILE_DOCUMENTS)
def test_hostile_xml_in_the_reply_document_is_a_thrive_error_naming_the_call(kind):
    with pytest.raises(ThriveProtocolError, match="^grid subscriber: the reply document was refused as unsafe XML"):
        documents.document_from_reply(_reply(HOSTILE_DOCUMENTS[kind]), "grid subscriber")


@pytest.mark.parametrize("kind", HOSTILE_DOCUMENTS)
def test_hostile_xml_as_the_envelope_itself_is_a_thrive_error_naming_the_call(kind):
    body = HOSTILE_DOCUMENTS[kind].replace("GridResponse", "Envelope").encode()

    with pytest.raises(ThriveProtocolError, match="^Subscribe 3: the reply was refused as unsafe XML"):
        documents.document_from_reply(body, "Subscribe 3")


def test_a_fault_whose_code_is_only_in_a_prefixed_faultcode_is_classified_like_the_detail_form():
    body = (f'<s:Envelope xmlns:s="{documents.SOAP_NAMESPACE}"><s:Body><s:Fault>'
            '<faultcode xmlns:a="http://partner.informz.net/aapi/2009/08/">a:InvalidCredentialsException</faultcode>'
            "<faultstring>Invalid credentials</faultstring></s:Fault></s:Body></s:Envelope>").encode()

    with pytest.raises(ThriveCredentialsError) as caught:
        documents.document_from_reply(body, "grid subscriber")
    assert caught.value.code == "InvalidCredentialsException"


def test_grid_request_writes_single_and_collection_conditions_and_paging():
    start = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    query = GridQuery("mailing_instance", (
        Condition.single("mailing_date", Comparator.GTE, start),
        Condition("mailing_id", Comparator.IN, (1, 2)),
    ), ("mailing_instance_id",), "mailing_instance_id", True, 2000, 500)
    grid = documents.parse_document(documents.grid_request(BRAND, [query]), "t").find(f"{{{documents.NAMESPACE}}}Grids")[0]
    ns = {"a": documents.NAMESPACE}

    assert grid.get("type") == "mailing_instance"
    assert grid.findtext("a:Conditions/a:Condition/a:Single/a:DataValue", namespaces=ns) == "2026-01-02T03:04:05.6789010Z"
    assert [v.text for v in grid.findall("a:Conditions/a:Condition/a:Collection/a:DataValue", ns)] == ["1", "2"]
    assert grid.find("a:SortField", ns).get("order") == "desc"
    assert (grid.findtext("a:StartRow", namespaces=ns), grid.findtext("a:NumberOfRows", namespaces=ns)) == ("2000", "500")


def _reply(document: str) -> bytes:
    return replies.response_envelope(document)


def test_grid_records_match_element_names_case_insensitively_and_read_empty_fields_as_null():
    document = (
        '<?xml version="1.0" encoding="utf-16"?>'
        f'<GridResponse xmlns="{documents.NAMESPACE}"><Brand id="1">B</Brand><User/><Grids>'
        '<Grid type="Subscriber"><Record row="1"><Fields><Field element="EMAIL">a@example.org</Field>'
        '<Field element="User_ID">42</Field><Field element="bounce_date"/></Fields></Record></Grid>'
        '<Grid type="mailing_instance"/></Grids></GridResponse>'
    )
    grids = documents.grid_records(documents.document_from_reply(_reply(document), "t"), "t")

    assert grids == {"subscriber": [{"email": "a@example.org", "user_id": "42", "bounce_date": None}],
                     "mailing_instance": []}


def test_a_reply_that_is_not_a_grid_response_is_a_protocol_error():
    document = f'<ActionResponse xmlns="{documents.NAMESPACE}"><Responses/></ActionResponse>'

    with pytest.raises(ThriveProtocolError, match="expected a GridResponse"):
        documents.grid_records(documents.document_from_reply(_reply(document), "grid x"), "grid x")


def test_garbage_instead_of_an_envelope_is_a_protocol_error_naming_the_call():
    with pytest.raises(ThriveProtocolError, match="^grid subscriber: the reply is not XML"):
        documents.document_from_reply(b"<html>Bad gateway", "grid subscriber")


@pytest.mark.parametrize(("code", "error_type"), [
    ("InvalidCredentialsException", ThriveCredentialsError),
    ("BrandNotFoundException", ThriveCredentialsError),
    ("ItemNotFoundException", ThriveItemNotFound),
    ("UnknownActionException", ThriveFault),
])
def test_soap_faults_become_typed_errors_carrying_code_and_reason(code, error_type):
    with pytest.raises(error_type) as caught:
        documents.document_from_reply(replies.fault_envelope(code, "Interest 'News & Views' <missing>"), "Subscribe 3")

    assert type(caught.value) is error_type
    assert (caught.value.code, caught.value.reason) == (code, "Interest 'News & Views' <missing>")
    assert str(caught.value).startswith("Subscribe 3: ")


def test_credential_fault_message_says_which_connection_fields_to_check():
    with pytest.raises(ThriveCredentialsError, match="login, password and brand_id"):
        documents.document_from_reply(replies.fault_envelope("InvalidCredentialsException", "no"), "grid subscriber")


def test_fault_detail_named_informz_service_fault_with_message_only_is_read_too():
    body = (
        f'<s:Envelope xmlns:s="{documents.SOAP_NAMESPACE}"><s:Body><s:Fault><faultcode>s:Server</faultcode>'
        "<faultstring>generic</faultstring><detail>"
        f'<InformzServiceFault xmlns="{documents.NAMESPACE}"><CODE>InvalidGridCategoryException</CODE>'
        "<Message>Grid 'nope' unknown</Message></InformzServiceFault></detail></s:Fault></s:Body></s:Envelope>"
    ).encode()
    fault = documents.fault_from(documents.parse_envelope(body, "t"), "grid nope")

    assert (fault.code, fault.reason) == ("InvalidGridCategoryException", "Grid 'nope' unknown")


def test_a_fault_without_detail_falls_back_to_faultcode_and_faultstring():
    body = (f'<s:Envelope xmlns:s="{documents.SOAP_NAMESPACE}"><s:Body><s:Fault><faultcode>s:Server</faultcode>'
            "<faultstring>Object reference not set</faultstring></s:Fault></s:Body></s:Envelope>").encode()
    fault = documents.fault_from(documents.parse_envelope(body, "t"), "t")

    assert (fault.code, fault.reason) == ("Server", "Object reference not set")


def test_action_response_helpers_tolerate_missing_status_and_find_nested_upload_id():
    document = (f'<ActionResponse xmlns="{documents.NAMESPACE}"><Responses><BulkUpload><Result><UploadID> 77 </UploadID>'
                "</Result></BulkUpload><Subscribe><ActionStatus><Status>FAILURE</Status><Message>bad</Message>"
                "</ActionStatus></Subscribe></Responses></ActionResponse>")
    bulk, subscribe = documents.action_responses(documents.parse_document(document, "t"), "t")

    assert documents.action_status(bulk) == ("success", "")
    assert documents.upload_id_of(bulk, "t") == 77
    assert documents.action_status(subscribe) == ("failure", "bad")
    with pytest.raises(ThriveProtocolError, match="no UploadID"):
        documents.upload_id_of(subscribe, "BulkUpload 5 rows")


@pytest.mark.parametrize(("text", "expected"), [
    ("2017-06-19T15:46:18.8130000Z", datetime(2017, 6, 19, 15, 46, 18, 813000, tzinfo=UTC)),
    ("2017-06-19T15:46:18.1234567z", datetime(2017, 6, 19, 15, 46, 18, 123456, tzinfo=UTC)),
    ("2017-06-19T15:46:18", datetime(2017, 6, 19, 15, 46, 18, tzinfo=UTC)),
    ("2009-09-01", datetime(2009, 9, 1, tzinfo=UTC)),
    ("2020-01-01T00:00:00-05:00", datetime(2020, 1, 1, 5, tzinfo=UTC)),
])
def test_timestamps_parse_to_aware_utc(text, expected):
    assert documents.parse_timestamp(text) == expected


def test_timestamps_format_with_seven_fraction_digits_in_utc_and_refuse_naive_datetimes():
    eastern = timezone(timedelta(hours=-5))

    assert documents.format_timestamp(datetime(2017, 6, 19, 10, 46, 18, 813000, tzinfo=eastern)) == "2017-06-19T15:46:18.8130000Z"
    with pytest.raises(ValueError, match="naive"):
        documents.format_timestamp(datetime(2017, 6, 19))
    with pytest.raises(ValueError, match="not a Thrive timestamp"):
        documents.parse_timestamp("yesterday")


def test_every_engagement_grid_reads_elements_its_grid_declares():
    for kind, spec in documents.ENGAGEMENT_GRIDS.items():
        for grid in spec.grids:
            declared = {element.lower() for element in documents.GRID_ELEMENTS[grid]}
            assert {name.lower() for name in spec.return_fields()} <= declared, kind
