"""The Thrive emulator as an independent witness: raw vendor-sample documents posted over HTTP.

The samples below are Higher Logic's own, as their pages publish them (support.higherlogic.com and the
Informz knowledge base; titles in each fixture), with only the credentials filled in. Replies are read with
ElementTree here, not with the client's `thrive/documents.py`, so nothing of the client takes part.
"""

from __future__ import annotations

import ast
import base64
import gzip
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from fastapi.testclient import TestClient

from sandbox.thrive_app import ThriveSandbox, ThriveSandboxConfig, alternatives_from_env

NS = "http://partner.informz.net/aapi/2009/08/"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
BRAND_ID, USER, PASSWORD = "9999", "testuser", "password"
CREDENTIALS = f'<Password>{PASSWORD}</Password><Brand id="{BRAND_ID}">Test Brand</Brand><User>{USER}</User>'
SAMPLE_INTERESTS = ["Sample Interest 1", "Sample Interest 2", "Sample Interest 3", "Test Interest"]

# "API Quick Start Guide - Bulk Upload" (informz.knowledgeowl.com/help/api-quick-start-guide---bulk-upload),
# as published; the stored copy is cut after the ID definition, so the third column (the name) is completed
# from the sample's own Data rows.
QUICK_START_BULK_UPLOAD = """<ActionRequest xmlns="http://partner.informz.net/aapi/2009/08/">
  <Brand id="9999">Test Brand</Brand>
  <User>testuser</User>
  <Password>password</Password>
  <Actions>
    <BulkUpload>
      <UploadDetails>
        <InterestDetails>
          <InterestNames>
            <InterestName>Sample Interest 1</InterestName>
            <InterestName>Sample Interest 2</InterestName>
            <InterestName>Sample Interest 3</InterestName>
          </InterestNames>
          <InterestAction>AddOrUpdateSubscribers</InterestAction>
        </InterestDetails>
        <StatusEmailRecipients>
          <Email>johndoe@example.com</Email>
        </StatusEmailRecipients>
        <ColumnDelimiter>,</ColumnDelimiter>
        <HasFieldsEnclosedInQuotes>1</HasFieldsEnclosedInQuotes>
        <RemovePersonalInfoIfBlank>0</RemovePersonalInfoIfBlank>      </UploadDetails>
      <FieldDefinitions>
        <FieldDefinition>
          <Name>Email</Name>
          <DataType>string</DataType>
          <ColumnIndex>1</ColumnIndex>
          <FieldType>Email</FieldType>
        </FieldDefinition>
        <FieldDefinition>
          <Name>ID</Name>
          <DataType>integer</DataType>
          <ColumnIndex>2</ColumnIndex>
          <FieldType>ID</FieldType>
        </FieldDefinition>
        <FieldDefinition>
          <Name>FirstName</Name>
          <DataType>string</DataType>
          <ColumnIndex>3</ColumnIndex>
          <FieldType>PersonalInfo</FieldType>
        </FieldDefinition>
      </FieldDefinitions>
      <Data>
      joe@example.com, 1374, Joe
      sally@example.com, 5463, Sally
      tom@example.com, 294, Tom
     alice@example.com, 99375, Alice
      </Data>
    </BulkUpload>
  </Actions>
</ActionRequest>"""

# "BulkUpload" (support.higherlogic.com/hc/en-us/articles/360032692112), "Request with Demographic", as
# published up to where the stored copy is cut (inside the first FieldDefinition); completed with one row.
DEMOGRAPHIC_BULK_UPLOAD = """<ActionRequest xmlns="http://partner.informz.net/aapi/2009/08/">
 <Password>password</Password>
 <Brand id="9999">Test Brand </Brand>
 <User>testuser</User>
 <Actions>
  <BulkUpload>
   <UploadDetails>
    <InterestDetails>
     <!-- 0 to n interest names -->
     <InterestNames>
      <InterestName>Test Interest</InterestName>
     </InterestNames>
     <!-- choices are AddOrUpdateSubscribers, ReplaceAllSubscribers or RemoveSubscribers-->
     <InterestAction>AddOrUpdateSubscribers</InterestAction>
    </InterestDetails>
    <StatusEmailRecipients>
     <Email>yournamehere@informz.com</Email>
    </StatusEmailRecipients>
    <ColumnDelimiter>,</ColumnDelimiter>
    <HasFieldsEnclosedInQuotes>1</HasFieldsEnclosedInQuotes>
    <!-- special column indexes that used to be here replaced with FieldDefinition FieldType-->
   </UploadDetails>
   <FieldDefinitions>
    <FieldDefinition>
     <Name>Email</Name>
     <DataType>string</DataType>
     <ColumnIndex>1</ColumnIndex>
     <!-- choices are PersonalInfo (default), Email, ID, Source, NewsFormat (maybe Interest and Demographics later?) -->
     <FieldType>Email</FieldType>
    </FieldDefinition>
    <FieldDefinition>
     <Name>Chapter</Name>
     <DataType>string</DataType>
     <ColumnIndex>2</ColumnIndex>
     <FieldType>PersonalInfo</FieldType>
    </FieldDefinition>
   </FieldDefinitions>
   <Data>"pat@example.com","North, East"</Data>
  </BulkUpload>
 </Actions>
</ActionRequest>"""

# "BulkUpload" (360032692112), the first "Request", exactly as published (an empty Data block).
RESUBSCRIBE_BULK_UPLOAD = """<ActionRequest xmlns="http://partner.informz.net/aapi/2009/08/">
 <Password>password</Password> <Brand id="9999">Test Brand</Brand> <User>testuser</User> <Actions> <BulkUpload>
 <UploadDetails> <InterestDetails> <InterestAction>ResubscribeSubscribers</InterestAction> </InterestDetails>
 <StatusEmailRecipients> <Email>yournamehere@informz.com</Email> </StatusEmailRecipients> </UploadDetails>
 <FieldDefinitions> <FieldDefinition> <Name>Email</Name> <DataType>string</DataType> <ColumnIndex>1</ColumnIndex>
 <FieldType>Email</FieldType> </FieldDefinition> </FieldDefinitions> <Data>{data}</Data> </BulkUpload> </Actions>
 </ActionRequest>"""

# "ActionRequests - Subscribe, Unsubscribe and Opt-Out" (360032692392), the Subscribe request as published.
SUBSCRIBE = """<ActionRequest xmlns="http://partner.informz.net/aapi/2009/08/">
<Brand id="9999">Test Brand</Brand>
<User>testuser</User><Password>password</Password>
<Actions>
<Subscribe>
<InterestDetails>
<InterestNames>
<InterestName>Sample Interest 1</InterestName>
<InterestName>Sample Interest 2</InterestName>
</InterestNames>
<InterestAction>ReplaceAllSubscribers</InterestAction>
</InterestDetails>
<SubscriberData>
<FieldDefinitions>
<FieldDefinition>
<Name>First_Name</Name>
<DataType>String</DataType>
<DefaultValue>Customer</DefaultValue>
</FieldDefinition>
<FieldDefinition>
<Name>Last_Name</Name>
<DataType>String</DataType>
<DefaultValue>McCustomer</DefaultValue>
</FieldDefinition>
</FieldDefinitions>
<Subscribers>
<Subscriber>
<Email>steve@example.com</Email>
<ID>321</ID>
<Fields>
<Field element="First_Name">Steve</Field>
<Field element="Last_Name">Sanders</Field>
</Fields>
</Subscriber>
<Subscriber>
<Email>mary@example.com</Email>
<ID>6612</ID>
<Fields>
<Field element="First_Name">Mary</Field>
<Field element="Last_Name">Lamb</Field>
</Fields>
</Subscriber>
<Subscriber>
<Email>chuck@example.com</Email>
<ID>5143</ID>
<Fields>
<Field element="First_Name">Chuck</Field>
<Field element="Last_Name">Norris</Field>
</Fields>
</Subscriber>
</Subscribers>
</SubscriberData>
</Subscribe>
</Actions>
</ActionRequest>"""

# "Unsubscribe" (360044667212), the request as published.
UNSUBSCRIBE = """<?xml version="1.0" encoding="utf-8"?> <ActionRequest xmlns="http://partner.informz.net/aapi/2009/08/">
 <Brand id="9999">Test Brand</Brand> <User>testuser</User> <Password>password</Password> <Actions> <Unsubscribe>
 <Subscribers> <Subscriber> <Email>test1@example.com</Email> <ID>1</ID>
 <UnsubscribeReason>Unsubscribe reason 1</UnsubscribeReason>
 </Subscriber> <Subscriber> <Email>test2@example.com</Email> <ID>2</ID>
 <UnsubscribeReason>Unsubscribe reason 2</UnsubscribeReason>
 </Subscriber> <Subscriber> <Email>test3@example.com</Email> <ID>3</ID>
 <UnsubscribeReason>Unsubscribe reason 3</UnsubscribeReason>
 </Subscriber> </Subscribers> </Unsubscribe> </Actions> </ActionRequest>"""

# "Optout" (360044601832), the request as published.
OPTOUT = """<ActionRequest xmlns="http://partner.informz.net/aapi/2009/08/"> <Brand id="9999">Test Brand</Brand>
 <User>testuser</User><Password>password</Password> <Actions> <Optout> <InterestNames>
 <InterestName>Sample Interest 1</InterestName> <InterestName>Sample Interest 2</InterestName> </InterestNames>
 <Subscribers> <Subscriber> <Email>mike@example.com</Email> <ID>8462</ID> </Subscriber> <Subscriber>
 <Email>ann@example.com</Email> <ID>384</ID> </Subscriber> <Subscriber> <Email>jim@example.com</Email> <ID>6324</ID>
 </Subscriber> </Subscribers> </Optout> </Actions> </ActionRequest>"""

# "Making the Call" / "Sample Message (Encryption & Compression)" (360044600992): the Grid node compressed.
MAKING_THE_CALL_GRID = (
    '<Grid type="mailing_instance" xmlns="http://partner.informz.net/aapi/2009/08/"><Conditions><Condition>'
    "<Single><DataElement>Mailing_Date</DataElement><DataValue>2011-09-01</DataValue>"
    "<Comparator>GTE</Comparator></Single></Condition><Condition><Single>"
    "<DataElement>Mailing_Date</DataElement><DataValue>2011-09-02</DataValue><Comparator>LT</Comparator>"
    "</Single></Condition></Conditions><ReturnFields><DataElement>Count</DataElement></ReturnFields></Grid>"
)


# Pinned, so these tests mean the same whichever THRIVE_SANDBOX_ALTERNATIVES the suite runs under.
DEFAULTS = {"strict": True, "startrow_base": 0, "fault_shape": "aapi", "grids": "extended",
            "upload_status": "complete", "compression": "on-request", "subscriber_results": False}


class Emulator:
    """One emulated brand behind FastAPI's test client (httpx), posting whole SOAP envelopes."""

    def __init__(self, **options: object) -> None:
        self.sandbox = ThriveSandbox(ThriveSandboxConfig(**{
            "brand_id": BRAND_ID, "brand_name": "Test Brand", "users": {USER: PASSWORD},
            "interests": SAMPLE_INTERESTS, "upload_polls": 0, **DEFAULTS, **options}))
        self.http = TestClient(self.sandbox.app)

    def post(self, document: str) -> tuple[int, ET.Element]:
        """(HTTP status, the reply document, or the SOAP Fault element)."""
        envelope = (f'<s:Envelope xmlns:s="{SOAP}"><s:Body><PostInformzMessage xmlns="{NS}"><x>{escape(document)}'
                    "</x></PostInformzMessage></s:Body></s:Envelope>")
        response = self.http.post(self.sandbox.config.endpoint_path, content=envelope.encode(),
                                  headers={"Content-Type": "text/xml; charset=utf-8"})
        body = _find(ET.fromstring(response.content), f"{{{SOAP}}}Body")
        fault = body.find(f"{{{SOAP}}}Fault")
        if fault is not None:
            return response.status_code, fault
        result = _text(body, f"{{{NS}}}PostInformzMessageResponse/{{{NS}}}PostInformzMessageResult")
        assert result.startswith('<?xml version="1.0" encoding="utf-16"?>')
        return response.status_code, ET.fromstring(result.split("?>", 1)[1])

    def ok(self, document: str) -> ET.Element:
        status, reply = self.post(document)
        assert status == 200, ET.tostring(reply, encoding="unicode")
        return reply

    def upload(self, document: str) -> str:
        """Post a BulkUpload and poll `upload_history` once (the emulator processes an upload on a poll)."""
        upload_id = _upload_id(self.ok(document))
        _upload_status(self, upload_id)
        return upload_id

    def fault(self, document: str) -> tuple[str, str]:
        """(code, reason) of a fault in the `aapi` shape."""
        status, fault = self.post(document)
        assert status == 500 and fault.tag == f"{{{SOAP}}}Fault"
        detail = _find(fault, f"detail/{{{NS}}}InformzAAPIFault")
        return _text(detail, f"{{{NS}}}Code"), _text(detail, f"{{{NS}}}Reason")

    def grid(self, grid_xml: str) -> list[tuple[str, dict[str, str | None]]]:
        """The records of a one-grid request: (row attribute, {element: value})."""
        reply = self.ok(f'<GridRequest xmlns="{NS}">{CREDENTIALS}<Grids>{grid_xml}</Grids></GridRequest>')
        return [(record.attrib["row"], {field.attrib["element"]: field.text for field in record.iter(f"{{{NS}}}Field")})
                for record in reply.iter(f"{{{NS}}}Record")]


def _find(element: ET.Element, path: str) -> ET.Element:
    """The element at `path`, which the document must hold: a test fails naming the path, not on None."""
    found = element.find(path)
    assert found is not None, f"no {path} in {ET.tostring(element, encoding='unicode')[:300]}"
    return found


def _text(element: ET.Element, path: str) -> str:
    return _find(element, path).text or ""


def grid(grid_type: str, *fields: str, extra: str = "") -> str:
    returned = "".join(f"<DataElement>{name}</DataElement>" for name in fields)
    return f'<Grid type="{grid_type}">{extra}<ReturnFields>{returned}</ReturnFields></Grid>'


def action(*actions: str) -> str:
    return f'<ActionRequest xmlns="{NS}">{CREDENTIALS}<Actions>{"".join(actions)}</Actions></ActionRequest>'


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


def _bulk(details: str = "<StatusEmailRecipients><Email>ops@example.org</Email></StatusEmailRecipients>",
          interests: str = "<InterestDetails><InterestNames><InterestName>Test Interest</InterestName></InterestNames>"
                           "<InterestAction>AddOrUpdateSubscribers</InterestAction></InterestDetails>",
          first_index: int = 1, flags: str = "<HasFieldsEnclosedInQuotes>1</HasFieldsEnclosedInQuotes>",
          outside: str = "", wrap_data: bool = False, data_type: str = "integer") -> str:
    definitions = (f"<FieldDefinitions><FieldDefinition><Name>Email</Name><DataType>string</DataType>"
                   f"<ColumnIndex>{first_index}</ColumnIndex><FieldType>Email</FieldType></FieldDefinition>"
                   f"<FieldDefinition><Name>ID</Name><DataType>{data_type}</DataType>"
                   f"<ColumnIndex>{first_index + 1}</ColumnIndex><FieldType>ID</FieldType></FieldDefinition>"
                   "</FieldDefinitions><Data>\"a@example.org\",\"11\"</Data>")
    body = f"<SubscriberData>{definitions}</SubscriberData>" if wrap_data else definitions
    return action(f"<BulkUpload>{outside}<UploadDetails>{interests}{details}<ColumnDelimiter>,</ColumnDelimiter>"
                  f"{flags}</UploadDetails>{body}</BulkUpload>")


def _upload_id(reply: ET.Element) -> str:
    return _text(reply, f"{{{NS}}}Responses/{{{NS}}}BulkUpload/{{{NS}}}UploadID")


def _upload_status(emulator: Emulator, upload_id: str) -> str | None:
    condition = (f"<Conditions><Condition><Single><DataElement>upload_id</DataElement><DataValue>{upload_id}"
                 "</DataValue><Comparator>EQ</Comparator></Single></Condition></Conditions>")
    [(_, row)] = emulator.grid(grid("upload_history", "upload_id", "status", extra=condition))
    return row["status"]


# --- BulkUpload: both vendor samples accepted, the old layout refused ---------------------------------------
def test_the_quick_start_bulk_upload_sample_is_accepted_as_published(emulator):
    upload_id = _upload_id(emulator.ok(QUICK_START_BULK_UPLOAD))

    assert upload_id and _upload_status(emulator, upload_id) == "Complete"
    joe = emulator.sandbox.subscriber("1374")
    assert (joe["email"], joe["fields"], joe["interests"]) == (
        "joe@example.com", {"FirstName": "Joe"}, ["Sample Interest 1", "Sample Interest 2", "Sample Interest 3"])
    assert sorted(emulator.sandbox.interest_members("Sample Interest 2")) == ["1374", "294", "5463", "99375"]


def test_the_bulk_upload_sample_with_a_demographic_is_accepted_as_published(emulator):
    emulator.upload(DEMOGRAPHIC_BULK_UPLOAD)

    [pat] = emulator.sandbox.subscribers()
    assert (pat["email"], pat["fields"]) == ("pat@example.com", {"Chapter": "North, East"})
    assert emulator.sandbox.interest_members("Test Interest") == [None]


def test_the_resubscribe_sample_ends_an_unsubscribed_state_which_shows_only_on_the_subscriber(emulator):
    emulator.ok(SUBSCRIBE.replace("ReplaceAllSubscribers", "AddOrUpdateSubscribers"))
    emulator.ok(action("<Unsubscribe><Subscribers><Subscriber><Email>mary@example.com</Email><ID>6612</ID>"
                       "</Subscriber></Subscribers></Unsubscribe>"))
    assert emulator.sandbox.subscriber("6612")["is_unsubscriber"] is True
    empty = emulator.ok(RESUBSCRIBE_BULK_UPLOAD.format(data=""))
    assert _upload_status(emulator, _upload_id(empty)) == "Complete"

    emulator.upload(RESUBSCRIBE_BULK_UPLOAD.format(data="mary@example.com"))

    rows = emulator.grid(grid("subscriber", "user_id", "is_unsubscriber", "cancellation_date", "cancellation_message"))
    mary = next(row for _, row in rows if row["user_id"] == "6612")
    assert mary["is_unsubscriber"] == "0" and mary["cancellation_date"]  # the unsubscribe stays on record
    assert mary["cancellation_message"] == "Unsubscribed via Informz Web Service"
    with pytest.raises(AssertionError):
        emulator.ok(f'<GridRequest xmlns="{NS}">{CREDENTIALS}<Grids>{grid("subscriber_resubscribes", "user_id")}'
                    "</Grids></GridRequest>")


@pytest.mark.parametrize(("document", "code", "reason"), [
    (_bulk(wrap_data=True), "UnexpectedInputException", "no <SubscriberData>"),
    (_bulk(interests="", outside="<InterestDetails><InterestNames><InterestName>Test Interest</InterestName>"
                                 "</InterestNames><InterestAction>AddOrUpdateSubscribers</InterestAction>"
                                 "</InterestDetails>"),
     "UnexpectedInputException", "<InterestDetails> belongs inside <UploadDetails>"),
    (_bulk(first_index=0), "InvalidDataFormatException", "columns count from 1"),
    (_bulk(details=""), "InsufficientInformationToCompleteActionException", "StatusEmailRecipients"),
    (_bulk(flags="<HasFieldsEnclosedInQuotes>true</HasFieldsEnclosedInQuotes>"), "InvalidDataFormatException",
     "is 1 or 0"),
    (_bulk(data_type="Int"), "InvalidDataFormatException", "unknown DataType 'Int'"),
], ids=["SubscriberData", "InterestDetails-outside", "ColumnIndex-from-0", "no-StatusEmailRecipients",
        "flag-true", "DataType-Int"])
def test_the_old_bulk_upload_layout_is_refused(emulator, document, code, reason):
    got_code, got_reason = emulator.fault(document)

    assert got_code == code and reason in got_reason
    assert emulator.sandbox.counters()["records_written"] == {}


def test_the_old_layout_is_accepted_only_when_strictness_is_switched_off():
    lenient = Emulator(strict=False)

    lenient.ok(_bulk(wrap_data=True, details="", first_index=0,
                     flags="<HasFieldsEnclosedInQuotes>true</HasFieldsEnclosedInQuotes>"))

    assert lenient.sandbox.counters()["records_written"] == {"BulkUpload": 1}
    assert ThriveSandboxConfig.model_fields["strict"].default is True


# --- grid requests --------------------------------------------------------------------------------------------
def test_a_grid_request_without_return_fields_is_refused(emulator):
    document = f'<GridRequest xmlns="{NS}">{CREDENTIALS}<Grids><Grid type="subscriber"/></Grids></GridRequest>'

    code, reason = emulator.fault(document)

    assert code == "InsufficientInformationToCompleteActionException" and "ReturnFields" in reason


@pytest.mark.parametrize(("grid_xml", "code", "reason"), [
    (grid("mailing_nope", "count"), "InvalidGridCategoryException", "Grid type 'mailing_nope'"),
    (grid("subscriber_resubscribes", "user_id"), "InvalidGridCategoryException", "subscriber_resubscribes"),
    (grid("interest_target_group", "is_in_active_campaign"), "UnexpectedInputException",
     "no data element 'is_in_active_campaign'"),
    (grid("subscriber", "shoe_size"), "UnexpectedInputException", "no data element 'shoe_size'"),
    (grid("subscriber", "email", extra="<SortField>shoe_size</SortField>"), "UnexpectedInputException", "shoe_size"),
    (grid("subscriber", "email", extra="<NumberOfRows>1001</NumberOfRows>"), "InvalidDataFormatException",
     "above the limit of 1000"),
])
def test_unknown_grids_elements_and_oversized_pages_are_faults(emulator, grid_xml, code, reason):
    got_code, got_reason = emulator.fault(f'<GridRequest xmlns="{NS}">{CREDENTIALS}<Grids>{grid_xml}</Grids>'
                                          "</GridRequest>")

    assert got_code == code and reason in got_reason


def test_a_count_request_answers_one_record_row_zero_with_a_lower_case_count(emulator):
    emulator.upload(QUICK_START_BULK_UPLOAD)

    assert emulator.grid(grid("subscriber", "Count")) == [("0", {"count": "4"})]


def test_interest_target_group_has_exactly_the_documented_columns_and_counts_carry_the_last_use(emulator):
    emulator.sandbox.set_campaign_interests(["Test Interest"])

    rows = emulator.grid(grid("interest_target_group", "brand_ID", "is_deleted", "target_group_id",
                              "target_group_name"))
    counts = emulator.grid(grid("target_group_counts", "name", "last_used_date"))

    assert rows[0] == ("1", {"brand_ID": "9999", "is_deleted": "0", "target_group_id": "1",
                             "target_group_name": "Sample Interest 1"})
    assert [row["name"] for _, row in counts if row["last_used_date"]] == ["Test Interest"]


@pytest.mark.parametrize("mode", ["documented", "extended"])
def test_documented_mode_serves_only_the_grids_vendor_pages_name(mode):
    emulator = Emulator(grids=mode)
    documented = {"subscriber": "email", "subscriber_interests": "email", "interest_target_group": "brand_ID",
                  "target_group_counts": "last_used_date", "mailing_instance": "target_group_id",
                  "upload_history": "status", "subscriber_mailing_history": "Mailing_date",
                  "mailing_activity_subscriber_actions": "was_opened"}
    third_party = {"mailing_activity_opens": "open_date", "mailing_activity_clicks": "link_date",
                   "subscriber_form_usage": "activity_date", "subscriber_web_tracking_pages": "create_date",
                   "suppressed_subscribers": "reason", "subscriber_mailing_history_all": "Mailing_date"}

    for token, element in documented.items():
        emulator.grid(grid(token, element))
    for token, element in third_party.items():
        request = f'<GridRequest xmlns="{NS}">{CREDENTIALS}<Grids>{grid(token, element)}</Grids></GridRequest>'
        if mode == "extended":
            emulator.ok(request)
        else:
            assert emulator.fault(request)[0] == "InvalidGridCategoryException"


def test_mailing_activity_subscriber_actions_has_the_documented_columns(emulator):
    emulator.upload(QUICK_START_BULK_UPLOAD)
    from datetime import UTC, datetime, timedelta
    end = datetime.now(UTC)
    emulator.sandbox.generate_engagement(end - timedelta(days=2), end, volume=200, interests=["Sample Interest 1"])

    rows = emulator.grid(grid("mailing_activity_subscriber_actions", "was_clicked", "was_delivered", "email",
                              "mailing_instance_id", "was_opened", "user_id"))

    assert rows and set(rows[0][1]) == {"was_clicked", "was_delivered", "email", "mailing_instance_id",
                                        "was_opened", "user_id"}
    assert {row["was_delivered"] for _, row in rows} == {"1"}


@pytest.mark.parametrize("base", [0, 1])
def test_start_row_is_the_ordinal_of_the_first_row_in_either_base(base):
    emulator = Emulator(startrow_base=base)
    emulator.upload(QUICK_START_BULK_UPLOAD)

    def page(start: int) -> list[str | None]:
        extra = f'<SortField order="asc">user_id</SortField><StartRow>{start}</StartRow><NumberOfRows>2</NumberOfRows>'
        return [row["user_id"] for _, row in emulator.grid(grid("subscriber", "user_id", extra=extra))]

    assert page(base) == ["1374", "294"]  # sorted as text, as the tenant compares string values
    assert page(base + 2) == ["5463", "99375"]
    assert page(0) == ["1374", "294"]  # base 1 reads StartRow 0 as the first row too


# --- Subscribe, Unsubscribe, Optout -----------------------------------------------------------------------------
def test_the_subscribe_sample_is_answered_with_counts_only(emulator):
    first = emulator.ok(SUBSCRIBE).find(f"{{{NS}}}Responses/{{{NS}}}Subscribe")
    again = emulator.ok(SUBSCRIBE).find(f"{{{NS}}}Responses/{{{NS}}}Subscribe")

    assert first.findtext(f"{{{NS}}}ActionStatus/{{{NS}}}Status") == "success"
    assert (first.findtext(f"{{{NS}}}NewSubscriberCount"), first.findtext(f"{{{NS}}}PreviousSubscriberCount")) == (
        "3", "0")
    assert (again.findtext(f"{{{NS}}}NewSubscriberCount"), again.findtext(f"{{{NS}}}PreviousSubscriberCount")) == (
        "0", "3")
    assert [element.tag.split("}")[1] for element in first] == [
        "NewSubscriberCount", "PreviousSubscriberCount", "ActionStatus"]
    assert emulator.sandbox.subscriber("321")["fields"] == {"First_Name": "Steve", "Last_Name": "Sanders"}


@pytest.mark.parametrize(("record", "reason"), [
    ("<ID>1</ID><Email>a@example.org</Email>", "<Email> must be the first"),
    ("<Email>a@example.org</Email><Id>1</Id>", "must be upper case"),
    ("<Email>a@example.org</Email><ID>A-1</ID>", "is an integer"),
])
def test_subscribe_refuses_what_the_page_rules_out(emulator, record, reason):
    code, got = emulator.fault(action(f"<Subscribe><SubscriberData><Subscribers><Subscriber>{record}</Subscriber>"
                                      "</Subscribers></SubscriberData></Subscribe>"))

    assert code == "InvalidDataFormatException" and reason in got


def test_the_unsubscribe_sample_unsubscribes_globally_and_answers_as_published(emulator):
    emulator.ok(action("<Subscribe><SubscriberData><Subscribers>" + "".join(
        f"<Subscriber><Email>test{n}@example.com</Email><ID>{n}</ID></Subscriber>" for n in (1, 2, 3))
        + "</Subscribers></SubscriberData></Subscribe>"))

    reply = emulator.ok(UNSUBSCRIBE).find(f"{{{NS}}}Responses/{{{NS}}}Unsubscribe")

    assert reply.findtext(f"{{{NS}}}Count") == "3"
    assert reply.findtext(f"{{{NS}}}ActionStatus/{{{NS}}}Message") == "3 email addresses unsubscribed."
    rows = emulator.grid(grid("subscriber", "user_id", "is_unsubscriber", "cancellation_message"))
    assert sorted((row["user_id"], row["is_unsubscriber"], row["cancellation_message"]) for _, row in rows) == [
        (str(n), "1", f"Unsubscribe reason {n}") for n in (1, 2, 3)]


def test_the_optout_sample_takes_members_out_and_counts_everyone_processed(emulator):
    emulator.ok(action("<Subscribe><InterestDetails><InterestNames><InterestName>Sample Interest 1</InterestName>"
                       "</InterestNames><InterestAction>AddOrUpdateSubscribers</InterestAction></InterestDetails>"
                       "<SubscriberData><Subscribers><Subscriber><Email>mike@example.com</Email><ID>8462</ID>"
                       "</Subscriber></Subscribers></SubscriberData></Subscribe>"))

    reply = emulator.ok(OPTOUT).find(f"{{{NS}}}Responses/{{{NS}}}Optout")

    assert reply.findtext(f"{{{NS}}}Count") == "3"
    assert emulator.sandbox.interest_members("Sample Interest 1") == []
    assert emulator.sandbox.subscriber("8462")["is_unsubscriber"] is False  # an opt-out is not an unsubscribe
    assert emulator.fault(OPTOUT.replace("Sample Interest 2", "No Such Interest"))[0] == "ItemNotFoundException"


# --- compression, faults, hostile documents, upload status values -------------------------------------------------
def _compress(text: str) -> str:
    data = text.encode()
    return base64.b64encode(struct.pack("<I", len(data)) + gzip.compress(data)).decode()


def test_a_compressed_grid_request_is_answered_with_compressed_grids(emulator):
    reply = emulator.ok(f'<GridRequest xmlns="{NS}">{CREDENTIALS}<Grids>{_compress(MAKING_THE_CALL_GRID)}</Grids>'
                        "</GridRequest>")

    raw = base64.b64decode(reply.findtext(f"{{{NS}}}Grids"))
    payload = gzip.decompress(raw[4:])
    assert struct.unpack("<I", raw[:4])[0] == len(payload)
    answered = ET.fromstring(payload)
    assert answered.tag == f"{{{NS}}}Grid" and answered.get("type") == "mailing_instance"
    assert [(r.get("row"), f.get("element"), f.text) for r in answered for f in r.iter(f"{{{NS}}}Field")] == [
        ("0", "count", "0")]


def test_compressed_actions_get_compressed_responses_and_never_mode_answers_plain(emulator):
    subscribe = ("<Subscribe><SubscriberData><Subscribers><Subscriber><Email>z@example.org</Email><ID>5</ID>"
                 "</Subscriber></Subscribers></SubscriberData></Subscribe>")
    document = f'<ActionRequest xmlns="{NS}">{CREDENTIALS}<Actions>{_compress(subscribe)}</Actions></ActionRequest>'

    packed = emulator.ok(document).findtext(f"{{{NS}}}Responses")
    plain = Emulator(compression="never").ok(document)

    assert ET.fromstring(gzip.decompress(base64.b64decode(packed)[4:])).findtext(f"{{{NS}}}NewSubscriberCount") == "1"
    assert plain.findtext(f"{{{NS}}}Responses/{{{NS}}}Subscribe/{{{NS}}}NewSubscriberCount") == "1"


@pytest.mark.parametrize("shape", ["aapi", "service", "faultcode"])
def test_each_fault_shape_carries_the_vendor_code(shape):
    emulator = Emulator(fault_shape=shape)

    status, fault = emulator.post(grid("subscriber", "email").join(
        [f'<GridRequest xmlns="{NS}"><Password>wrong</Password><Brand id="{BRAND_ID}">Test Brand</Brand>'
         f"<User>{USER}</User><Grids>", "</Grids></GridRequest>"]))

    assert status == 500
    if shape == "faultcode":
        assert fault.find("detail") is None
        assert fault.findtext("faultcode") == "a:InvalidCredentialsException"
    else:
        name = "InformzAAPIFault" if shape == "aapi" else "InformzServiceFault"
        detail = _find(fault, f"detail/{{{NS}}}{name}")
        assert detail.findtext(f"{{{NS}}}Code") == "InvalidCredentialsException"
        assert (detail.find(f"{{{NS}}}Message") is not None) == (shape == "service")


def test_the_faultcode_prefix_is_bound_to_the_aapi_namespace():
    body = Emulator(fault_shape="faultcode").http.post("/aapi/InformzService.svc", content=b"<not-soap").content

    assert f'xmlns:a="{NS}"' in body.decode() and b"a:InvalidDocumentException" in body


@pytest.mark.parametrize("hostile", [
    '<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><GridRequest xmlns="' + NS + '">&b;</GridRequest>',
    '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><GridRequest xmlns="' + NS + '">&e;</GridRequest>',
])
def test_hostile_documents_are_invalid_document_faults(emulator, hostile):
    assert emulator.fault(hostile)[0] == "InvalidDocumentException"


@pytest.mark.parametrize(("preset", "pending", "done"), [("complete", "Processing", "Complete"),
                                                          ("processed", "Pending", "Processed"),
                                                          ("Queued:Finished", "Queued", "Finished")])
def test_upload_status_values_are_selectable(preset, pending, done):
    emulator = Emulator(upload_status=preset, upload_polls=1)
    upload_id = _upload_id(emulator.ok(QUICK_START_BULK_UPLOAD))

    assert [_upload_status(emulator, upload_id) for _ in range(3)] == [pending, done, done]


def test_the_alternatives_come_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv("THRIVE_SANDBOX_ALTERNATIVES", "startrow_base=1, fault-shape=faultcode,grids=documented")

    config = ThriveSandboxConfig(grids="extended")

    assert (config.startrow_base, config.fault_shape, config.grids) == (1, "faultcode", "extended")
    monkeypatch.delenv("THRIVE_SANDBOX_ALTERNATIVES")
    assert ThriveSandboxConfig().model_dump(include=set(DEFAULTS)) == DEFAULTS
    with pytest.raises(ValueError, match="shoe_size"):
        alternatives_from_env({"THRIVE_SANDBOX_ALTERNATIVES": "shoe_size=9"})


def test_the_emulator_imports_nothing_of_the_client():
    sandbox = Path(__file__).resolve().parents[3] / "sandbox"
    forbidden = ("include.imis_thrive.thrive", "include.imis_thrive.imis", "include.imis_thrive.sync",
                 "include.imis_thrive.writeback")
    emulator = sorted(sandbox.glob("thrive_*.py"))
    assert emulator, f"no Thrive emulator modules (thrive_*.py) found in {sandbox}: has it moved?"
    for path in emulator:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [name for name in names if name.startswith(forbidden)], path.name
