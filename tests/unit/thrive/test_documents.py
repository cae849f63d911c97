"""Informz documents: requests built as the vendor lays them out, replies read whatever their case."""

import base64
import csv
import gzip
import io
import struct
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from include.imis_thrive.thrive import documents, envelope, parsing
from include.imis_thrive.thrive.documents import Comparator, Condition, GridQuery, InterestAction
from include.imis_thrive.thrive.errors import (
    ThriveProtocolError,
    UnsendableValue,
)
from include.imis_thrive.thrive.models import Subscriber
from tests.unit.thrive import replies

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
    soap_body = envelope.parse_envelope(body, "test")
    return envelope.soap_argument(soap_body, envelope.OPERATION, envelope.ARGUMENT, "test")


def _fields(document: str) -> list[str]:
    root = parsing.parse_document(document, "test")
    return [element.text or "" for element in root.iter() if parsing.local_name(element.tag) == "Field"]


@pytest.mark.parametrize("value", TRICKY)
def test_personalization_values_round_trip_exactly_through_document_and_envelope(value):
    subscriber = Subscriber("12", "a@example.org", {"Name": value})
    document = documents.action_request(BRAND, [documents.subscribe_action([subscriber])])

    assert _fields(_request_document(envelope.request_envelope(document))) == [value]


def test_credentials_and_brand_name_are_escaped_in_the_header():
    root = parsing.parse_document(documents.grid_request(BRAND, [GridQuery("subscriber", (), ("email",))]), "test")

    assert parsing.child_text(root, "Password") == "p<a>ss&word"
    assert parsing.child(root, "Brand").get("id") == "7001"
    assert parsing.child_text(root, "Brand") == "Sandbox & Co"
    assert root.tag == f"{{{envelope.NAMESPACE}}}GridRequest"


def test_brand_repr_hides_the_password():
    assert "p<a>ss" not in repr(BRAND)


def test_control_characters_are_refused_with_the_element_named():
    with pytest.raises(UnsendableValue, match=r"Field.*U\+0007"):
        documents.subscribe_action([Subscriber("1", "a@example.org", {"Name": "bell\x07"})])


def test_subscribe_puts_email_first_and_upper_case_id_second():
    action = documents.subscribe_action([Subscriber("321", "steve@example.org", {"First_Name": "Steve"})], ["News"])
    record = action.find("SubscriberData/Subscribers/Subscriber")

    assert [child.tag for child in record] == ["Email", "ID", "Fields"]
    assert action.findtext("InterestDetails/InterestAction") == "AddOrUpdateSubscribers"
    assert action.findtext("SubscriberData/FieldDefinitions/FieldDefinition/Name") == "First_Name"


def test_subscribe_sends_a_field_some_records_lack_as_empty_so_every_record_says_the_same_fields():
    action = documents.subscribe_action([Subscriber("1", "a@example.org", {"A": "x"}),
                                         Subscriber("2", "b@example.org", {})])
    second = action.findall("SubscriberData/Subscribers/Subscriber")[1]

    assert [(f.get("element"), f.text) for f in second.find("Fields")] == [("A", "")]


def test_subscribe_refuses_more_than_one_thousand_subscribers():
    subscribers = [Subscriber(str(i), f"m{i}@example.org") for i in range(1001)]

    with pytest.raises(ValueError, match="at most 1000"):
        documents.subscribe_action(subscribers)


def _paths(element: ET.Element, prefix: str = "") -> list[str]:
    """Every element path of a tree, in document order: the layout, without the values."""
    here = f"{prefix}/{parsing.local_name(element.tag)}" if prefix else parsing.local_name(element.tag)
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
    root = parsing.parse_document(documents.grid_request(BRAND, [query], compress=True), "t")
    packed = base64.b64decode(parsing.child_text(root, "Grids"))
    payload = gzip.decompress(packed[4:])

    assert struct.unpack("<I", packed[:4])[0] == len(payload)
    grid = parsing.parse_document(payload.decode(), "t")
    assert (grid.tag, grid.get("type")) == (f"{{{envelope.NAMESPACE}}}Grid", "mailing_instance")


def _compressed(xml: str) -> str:
    raw = xml.encode()
    return base64.b64encode(struct.pack("<I", len(raw)) + gzip.compress(raw)).decode()


def test_a_compressed_grids_reply_is_decoded_not_read_as_empty():
    grid = (f'<Grid type="subscriber" xmlns="{envelope.NAMESPACE}"><Record row="1"><Fields>'
            '<Field element="email">a@example.org</Field></Fields></Record></Grid>')
    document = f'<GridResponse xmlns="{envelope.NAMESPACE}"><Grids>{_compressed(grid)}</Grids></GridResponse>'

    assert documents.grid_records(envelope.document_from_reply(_reply(document), "t"), "t") == {
        "subscriber": [{"email": "a@example.org"}]}


@pytest.mark.parametrize(("grids", "message"), [
    ("", "grid subscriber rows 0\\+1000: the GridResponse has no <Grids>"),
    ("<Grids>not a payload at all</Grids>", "grid subscriber rows 0\\+1000: <Grids> holds text that is not"),
])
def test_a_grid_reply_the_client_cannot_read_raises_instead_of_giving_zero_rows(grids, message):
    document = f'<GridResponse xmlns="{envelope.NAMESPACE}">{grids}</GridResponse>'
    what = "grid subscriber rows 0+1000"

    with pytest.raises(ThriveProtocolError, match=message):
        documents.grid_records(envelope.document_from_reply(_reply(document), what), what)


def test_grid_request_writes_single_and_collection_conditions_and_paging():
    start = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    query = GridQuery("mailing_instance", (
        Condition.single("mailing_date", Comparator.GTE, start),
        Condition("mailing_id", Comparator.IN, (1, 2)),
    ), ("mailing_instance_id",), "mailing_instance_id", True, 2000, 500)
    grid = parsing.parse_document(documents.grid_request(BRAND, [query]), "t").find(f"{{{envelope.NAMESPACE}}}Grids")[0]
    ns = {"a": envelope.NAMESPACE}

    assert grid.get("type") == "mailing_instance"
    condition = "a:Conditions/a:Condition"
    assert grid.findtext(f"{condition}/a:Single/a:DataValue", namespaces=ns) == "2026-01-02T03:04:05.6789010Z"
    assert [v.text for v in grid.findall(f"{condition}/a:Collection/a:DataValue", ns)] == ["1", "2"]
    assert grid.find("a:SortField", ns).get("order") == "desc"
    assert grid.findtext("a:StartRow", namespaces=ns) == "2000"
    assert grid.findtext("a:NumberOfRows", namespaces=ns) == "500"


def _reply(document: str) -> bytes:
    return replies.response_envelope(document)


def test_grid_records_match_element_names_case_insensitively_and_read_empty_fields_as_null():
    document = (
        '<?xml version="1.0" encoding="utf-16"?>'
        f'<GridResponse xmlns="{envelope.NAMESPACE}"><Brand id="1">B</Brand><User/><Grids>'
        '<Grid type="Subscriber"><Record row="1"><Fields><Field element="EMAIL">a@example.org</Field>'
        '<Field element="User_ID">42</Field><Field element="bounce_date"/></Fields></Record></Grid>'
        '<Grid type="mailing_instance"/></Grids></GridResponse>'
    )
    grids = documents.grid_records(envelope.document_from_reply(_reply(document), "t"), "t")

    assert grids == {"subscriber": [{"email": "a@example.org", "user_id": "42", "bounce_date": None}],
                     "mailing_instance": []}


def test_a_reply_that_is_not_a_grid_response_is_a_protocol_error():
    document = f'<ActionResponse xmlns="{envelope.NAMESPACE}"><Responses/></ActionResponse>'

    with pytest.raises(ThriveProtocolError, match="expected a GridResponse"):
        documents.grid_records(envelope.document_from_reply(_reply(document), "grid x"), "grid x")


def test_action_response_helpers_tolerate_missing_status_and_find_nested_upload_id():
    document = (f'<ActionResponse xmlns="{envelope.NAMESPACE}"><Responses><BulkUpload><Result><UploadID> 77 </UploadID>'
                "</Result></BulkUpload><Subscribe><ActionStatus><Status>FAILURE</Status><Message>bad</Message>"
                "</ActionStatus></Subscribe></Responses></ActionResponse>")
    bulk, subscribe = documents.action_responses(parsing.parse_document(document, "t"), "t")

    assert documents.action_status(bulk) == ("success", "")
    assert documents.upload_id_of(bulk, "t") == 77
    assert documents.action_status(subscribe) == ("failure", "bad")
    with pytest.raises(ThriveProtocolError, match="no UploadID"):
        documents.upload_id_of(subscribe, "BulkUpload 5 rows")
