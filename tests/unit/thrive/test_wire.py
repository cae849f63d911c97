from datetime import UTC, datetime, timedelta, timezone

import pytest

from include.imis_thrive.thrive import wire
from include.imis_thrive.thrive.errors import (
    ThriveCredentialsError,
    ThriveFault,
    ThriveItemNotFound,
    ThriveProtocolError,
    UnsendableValue,
)
from include.imis_thrive.thrive.models import Subscriber
from include.imis_thrive.thrive.wire import Comparator, Condition, GridQuery, InterestAction

BRAND = wire.Brand("7001", "Sandbox & Co", "api_user", "p<a>ss&word")
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
    soap_body = wire.parse_envelope(body, "test")
    return wire.soap_argument(soap_body, wire.OPERATION, wire.ARGUMENT, "test")


def _fields(document: str) -> list[str]:
    root = wire.parse_document(document, "test")
    return [element.text or "" for element in root.iter() if wire.local_name(element.tag) == "Field"]


@pytest.mark.parametrize("value", TRICKY)
def test_personalization_values_round_trip_exactly_through_document_and_envelope(value):
    document = wire.action_request(BRAND, [wire.subscribe_action([Subscriber("12", "a@example.org", {"Name": value})])])

    assert _fields(_request_document(wire.request_envelope(document))) == [value]


def test_credentials_and_brand_name_are_escaped_in_the_header():
    root = wire.parse_document(wire.grid_request(BRAND, [GridQuery("subscriber")]), "test")

    assert wire.child_text(root, "Password") == "p<a>ss&word"
    assert wire.child(root, "Brand").get("id") == "7001"
    assert wire.child_text(root, "Brand") == "Sandbox & Co"
    assert root.tag == f"{{{wire.NAMESPACE}}}GridRequest"


def test_brand_repr_hides_the_password():
    assert "p<a>ss" not in repr(BRAND)


def test_control_characters_are_refused_with_the_element_named():
    with pytest.raises(UnsendableValue, match="Field.*U\\+0007"):
        wire.subscribe_action([Subscriber("1", "a@example.org", {"Name": "bell\x07"})])


def test_subscribe_puts_email_first_and_upper_case_id_second():
    action = wire.subscribe_action([Subscriber("321", "steve@example.org", {"First_Name": "Steve"})], ["News"])
    record = action.find("SubscriberData/Subscribers/Subscriber")

    assert [child.tag for child in record] == ["Email", "ID", "Fields"]
    assert action.findtext("InterestDetails/InterestAction") == "AddOrUpdateSubscribers"
    assert action.findtext("SubscriberData/FieldDefinitions/FieldDefinition/Name") == "First_Name"


def test_subscribe_sends_a_field_some_records_lack_as_empty_so_every_record_says_the_same_fields():
    action = wire.subscribe_action([Subscriber("1", "a@example.org", {"A": "x"}), Subscriber("2", "b@example.org", {})])
    second = action.findall("SubscriberData/Subscribers/Subscriber")[1]

    assert [(f.get("element"), f.text) for f in second.find("Fields")] == [("A", "")]


def test_subscribe_refuses_more_than_one_thousand_subscribers():
    subscribers = [Subscriber(str(i), f"m{i}@example.org") for i in range(1001)]

    with pytest.raises(ValueError, match="at most 1000"):
        wire.subscribe_action(subscribers)


def test_bulk_upload_rows_survive_delimiters_quotes_and_newlines():
    subscribers = [Subscriber("1", "a@example.org", {"Org": 'Smith, "Jones"\n& Co'}), Subscriber("2", "b@example.org")]
    action = wire.bulk_upload_action(subscribers, ["News"], InterestAction.REMOVE)

    assert wire.read_bulk_rows(action.findtext("SubscriberData/Data")) == [
        ["a@example.org", "1", 'Smith, "Jones"\n& Co'], ["b@example.org", "2", ""],
    ]
    definitions = action.findall("SubscriberData/FieldDefinitions/FieldDefinition")
    assert [(d.findtext("Name"), d.findtext("ColumnIndex"), d.findtext("FieldType")) for d in definitions] == [
        ("Email", "0", "Email"), ("ID", "1", "ID"), ("Org", "2", "PersonalInfo"),
    ]
    assert action.findtext("InterestDetails/InterestAction") == "RemoveSubscribers"


def test_grid_request_writes_single_and_collection_conditions_and_paging():
    start = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    query = GridQuery("mailing_instance", (
        Condition.single("mailing_date", Comparator.GTE, start),
        Condition("mailing_id", Comparator.IN, (1, 2)),
    ), ("mailing_instance_id",), "mailing_instance_id", True, 2000, 500)
    grid = wire.parse_document(wire.grid_request(BRAND, [query]), "t").find(f"{{{wire.NAMESPACE}}}Grids")[0]
    ns = {"a": wire.NAMESPACE}

    assert grid.get("type") == "mailing_instance"
    assert grid.findtext("a:Conditions/a:Condition/a:Single/a:DataValue", namespaces=ns) == "2026-01-02T03:04:05.6789010Z"
    assert [v.text for v in grid.findall("a:Conditions/a:Condition/a:Collection/a:DataValue", ns)] == ["1", "2"]
    assert grid.find("a:SortField", ns).get("order") == "desc"
    assert (grid.findtext("a:StartRow", namespaces=ns), grid.findtext("a:NumberOfRows", namespaces=ns)) == ("2000", "500")


def _reply(document: str) -> bytes:
    return wire.response_envelope(document)


def test_grid_records_match_element_names_case_insensitively_and_read_empty_fields_as_null():
    document = (
        '<?xml version="1.0" encoding="utf-16"?>'
        f'<GridResponse xmlns="{wire.NAMESPACE}"><Brand id="1">B</Brand><User/><Grids>'
        '<Grid type="Subscriber"><Record row="1"><Fields><Field element="EMAIL">a@example.org</Field>'
        '<Field element="User_ID">42</Field><Field element="bounce_date"/></Fields></Record></Grid>'
        '<Grid type="mailing_instance"/></Grids></GridResponse>'
    )
    grids = wire.grid_records(wire.document_from_reply(_reply(document), "t"), "t")

    assert grids == {"subscriber": [{"email": "a@example.org", "user_id": "42", "bounce_date": None}],
                     "mailing_instance": []}


def test_a_reply_that_is_not_a_grid_response_is_a_protocol_error():
    document = f'<ActionResponse xmlns="{wire.NAMESPACE}"><Responses/></ActionResponse>'

    with pytest.raises(ThriveProtocolError, match="expected a GridResponse"):
        wire.grid_records(wire.document_from_reply(_reply(document), "grid x"), "grid x")


def test_garbage_instead_of_an_envelope_is_a_protocol_error_naming_the_call():
    with pytest.raises(ThriveProtocolError, match="^grid subscriber: the reply is not a SOAP envelope"):
        wire.document_from_reply(b"<html>Bad gateway", "grid subscriber")


@pytest.mark.parametrize(("code", "error_type"), [
    ("InvalidCredentialsException", ThriveCredentialsError),
    ("BrandNotFoundException", ThriveCredentialsError),
    ("ItemNotFoundException", ThriveItemNotFound),
    ("UnknownActionException", ThriveFault),
])
def test_soap_faults_become_typed_errors_carrying_code_and_reason(code, error_type):
    with pytest.raises(error_type) as caught:
        wire.document_from_reply(wire.fault_envelope(code, "Interest 'News & Views' <missing>"), "Subscribe 3")

    assert type(caught.value) is error_type
    assert (caught.value.code, caught.value.reason) == (code, "Interest 'News & Views' <missing>")
    assert str(caught.value).startswith("Subscribe 3: ")


def test_credential_fault_message_says_which_connection_fields_to_check():
    with pytest.raises(ThriveCredentialsError, match="login, password and brand_id"):
        wire.document_from_reply(wire.fault_envelope("InvalidCredentialsException", "no"), "grid subscriber")


def test_fault_detail_named_informz_service_fault_with_message_only_is_read_too():
    body = (
        f'<s:Envelope xmlns:s="{wire.SOAP_NAMESPACE}"><s:Body><s:Fault><faultcode>s:Server</faultcode>'
        "<faultstring>generic</faultstring><detail>"
        f'<InformzServiceFault xmlns="{wire.NAMESPACE}"><CODE>InvalidGridCategoryException</CODE>'
        "<Message>Grid 'nope' unknown</Message></InformzServiceFault></detail></s:Fault></s:Body></s:Envelope>"
    ).encode()
    fault = wire.fault_from(wire.parse_envelope(body, "t"), "grid nope")

    assert (fault.code, fault.reason) == ("InvalidGridCategoryException", "Grid 'nope' unknown")


def test_a_fault_without_detail_falls_back_to_faultcode_and_faultstring():
    body = (f'<s:Envelope xmlns:s="{wire.SOAP_NAMESPACE}"><s:Body><s:Fault><faultcode>s:Server</faultcode>'
            "<faultstring>Object reference not set</faultstring></s:Fault></s:Body></s:Envelope>").encode()
    fault = wire.fault_from(wire.parse_envelope(body, "t"), "t")

    assert (fault.code, fault.reason) == ("s:Server", "Object reference not set")


def test_action_response_helpers_tolerate_missing_status_and_find_nested_upload_id():
    document = (f'<ActionResponse xmlns="{wire.NAMESPACE}"><Responses><BulkUpload><Result><UploadID> 77 </UploadID>'
                "</Result></BulkUpload><Subscribe><ActionStatus><Status>FAILURE</Status><Message>bad</Message>"
                "</ActionStatus></Subscribe></Responses></ActionResponse>")
    bulk, subscribe = wire.action_responses(wire.parse_document(document, "t"), "t")

    assert wire.action_status(bulk) == ("success", "")
    assert wire.upload_id_of(bulk, "t") == 77
    assert wire.action_status(subscribe) == ("failure", "bad")
    assert wire.subscriber_results(subscribe) == []
    with pytest.raises(ThriveProtocolError, match="no UploadID"):
        wire.upload_id_of(subscribe, "BulkUpload 5 rows")


@pytest.mark.parametrize(("text", "expected"), [
    ("2017-06-19T15:46:18.8130000Z", datetime(2017, 6, 19, 15, 46, 18, 813000, tzinfo=UTC)),
    ("2017-06-19T15:46:18.1234567z", datetime(2017, 6, 19, 15, 46, 18, 123456, tzinfo=UTC)),
    ("2017-06-19T15:46:18", datetime(2017, 6, 19, 15, 46, 18, tzinfo=UTC)),
    ("2009-09-01", datetime(2009, 9, 1, tzinfo=UTC)),
    ("2020-01-01T00:00:00-05:00", datetime(2020, 1, 1, 5, tzinfo=UTC)),
])
def test_timestamps_parse_to_aware_utc(text, expected):
    assert wire.parse_timestamp(text) == expected


def test_timestamps_format_with_seven_fraction_digits_in_utc_and_refuse_naive_datetimes():
    eastern = timezone(timedelta(hours=-5))

    assert wire.format_timestamp(datetime(2017, 6, 19, 10, 46, 18, 813000, tzinfo=eastern)) == "2017-06-19T15:46:18.8130000Z"
    with pytest.raises(ValueError, match="naive"):
        wire.format_timestamp(datetime(2017, 6, 19))
    with pytest.raises(ValueError, match="not a Thrive timestamp"):
        wire.parse_timestamp("yesterday")


def test_every_engagement_grid_reads_elements_its_grid_declares():
    for kind, spec in wire.ENGAGEMENT_GRIDS.items():
        for grid in spec.grids:
            declared = {element.lower() for element in wire.GRID_ELEMENTS[grid]}
            assert {name.lower() for name in spec.return_fields()} <= declared, kind
