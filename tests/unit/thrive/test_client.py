"""The client's batching, screening and error handling, over an in-process transport (no sockets)."""

import xml.etree.ElementTree as ET
from collections.abc import Callable

import httpx
import pytest

from include.imis_thrive.http_retry import RetryPolicy
from include.imis_thrive.thrive import documents, envelope, parsing
from include.imis_thrive.thrive.client import (
    THRIVE_REFUSED,
    ThriveClient,
    ThriveConfig,
    counted_outcomes,
    screen_subscribers,
    subscribe_counts,
)
from include.imis_thrive.thrive.errors import (
    InterestNotFound,
    ThriveActionFailed,
    ThriveConfigurationError,
    ThriveFault,
    ThriveHTTPError,
    ThriveProtocolError,
    ThriveUnavailable,
    UploadFailed,
    UploadTimeout,
)
from include.imis_thrive.thrive.models import OutcomeStatus, Subscriber
from sandbox.thrive_app import ThriveSandbox, ThriveSandboxConfig
from tests.unit.thrive import replies

ENDPOINT = "https://partner.example/aapi/InformzService.svc"


def _config(**overrides) -> ThriveConfig:
    settings = dict(endpoint=ENDPOINT, brand_id="7001", brand_name="Sandbox Association", user="hl_api_user",
                    password="sandbox-thrive-password", poll_interval_s=0, bulk_threshold=1500,
                    status_email_recipients=["data-team@example.org"],
                    retry=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001))
    return ThriveConfig(**{**settings, **overrides})


def _subscribers(count: int, first: int = 1) -> list[Subscriber]:
    return [Subscriber(str(i), f"m{i}@example.org", {"FirstName": f"N{i}"}) for i in range(first, first + count)]


@pytest.fixture
def sandbox() -> ThriveSandbox:
    return ThriveSandbox(ThriveSandboxConfig(interests=["Newsletter"]))


@pytest.fixture
def make_client(sandbox) -> Callable[..., ThriveClient]:
    def build(**overrides) -> ThriveClient:
        def answer(request: httpx.Request) -> httpx.Response:
            status, body = sandbox.handle(request.content)
            return httpx.Response(status, content=body)

        transport = httpx.MockTransport(answer)
        return ThriveClient(_config(**overrides), transport=transport, sleep=lambda _: None)

    return build


@pytest.mark.parametrize(("count", "subscribe_calls"), [(999, 1), (1000, 1), (1001, 2), (1500, 2)])
def test_upserts_go_as_subscribe_calls_of_at_most_one_thousand(make_client, sandbox, count, subscribe_calls):
    result = make_client().upsert_subscribers(_subscribers(count))

    assert (result.calls, result.accepted_count, result.uploads) == (subscribe_calls, count, [])
    assert sandbox.counters()["actions"] == {"Subscribe": subscribe_calls}
    assert sandbox.counters()["records_written"] == {"Subscribe": count}
    assert {outcome.status for outcome in result.outcomes} == {OutcomeStatus.CREATED}


def test_above_the_threshold_upserts_go_as_bulk_uploads_polled_to_completion(make_client, sandbox):
    result = make_client(bulk_chunk_size=1000).upsert_subscribers(_subscribers(1501))

    assert result.calls == 2
    done = sandbox.config.upload_statuses()[1]  # "Complete" or "Processed": the vendor shows no values
    assert [(u.status, u.total_count, u.new_count) for u in result.uploads] == [(done, 1000, 1000), (done, 501, 501)]
    assert sandbox.counters()["actions"] == {"BulkUpload": 2}
    assert len(sandbox.subscribers()) == 1501
    assert sandbox.subscriber("1501")["fields"] == {"FirstName": "N1501"}


def test_rows_thrive_would_refuse_are_rejected_before_sending_with_a_reason():
    sendable, rejected = screen_subscribers([
        Subscriber("A-12", "a@example.org"), Subscriber("1", ""), Subscriber("2", "two@@example.org"),
        Subscriber("3", "x" * 95 + "@e.org"), Subscriber("4", "ok@example.org", {"Bio": "bell\x07"}),
        Subscriber("5", "five@example.org"), Subscriber("5", "again@example.org"), Subscriber("6", "FIVE@example.org"),
    ])

    assert [s.contact_id for s in sendable] == ["5"]
    assert [(o.contact_id, o.reason) for o in rejected] == [
        ("A-12", "contact ID 'A-12' is not an integer (Thrive's remote <ID> is Int)"),
        ("1", "email is empty"),
        ("2", "email is malformed"),
        ("3", "email is longer than 100 characters"),
        ("4", "personalization field 'Bio' contains character U+0007, which XML cannot carry"),
        ("5", "contact ID appears more than once in this upsert"),
        ("6", "email appears more than once in this upsert (Thrive keys subscribers by email too)"),
    ]


def test_subscribers_thrive_refuses_are_located_from_the_counts_alone(make_client, sandbox):
    client = make_client()
    client.upsert_subscribers(_subscribers(40))
    newcomers = _subscribers(40, first=41)
    newcomers[6] = Subscriber("47", "m1@example.org")  # Thrive keys subscribers by email too: owned by contact 1
    newcomers[29] = Subscriber("70", "m2@example.org")

    result = client.upsert_subscribers(newcomers)

    refused = [(o.contact_id, o.reason) for o in result.outcomes if o.status is OutcomeStatus.REJECTED]
    assert refused == [("47", THRIVE_REFUSED), ("70", THRIVE_REFUSED)]
    assert result.accepted_count == 38
    assert result.calls <= 1 + 2 * 6  # halving: about 2 log2(40) calls per refusal, at most
    assert len(sandbox.subscribers()) == 78


def test_many_refusals_are_all_located_and_a_wholly_refused_call_fails(make_client, sandbox):
    client = make_client()
    client.upsert_subscribers(_subscribers(30))
    reused = [Subscriber(str(100 + i), f"m{i + 1}@example.org") for i in range(30)]  # every email owned already

    mixed = client.upsert_subscribers(reused[:20] + _subscribers(10, first=200))

    assert [o.contact_id for o in mixed.rejected] == [str(100 + i) for i in range(20)]
    assert mixed.accepted_count == 10 and len(sandbox.subscribers()) == 40
    with pytest.raises(ThriveActionFailed, match="Thrive took none of the 30 subscribers"):
        client.upsert_subscribers(reused)
    single = client.upsert_subscribers(reused[:1])  # one refused row alone is a refusal, not a broken request
    assert [(o.contact_id, o.reason) for o in single.rejected] == [("100", THRIVE_REFUSED)] and single.calls == 1


def test_rows_expected_to_be_refused_go_last_in_a_call_of_their_own_that_names_them(make_client, sandbox):
    client = make_client()
    client.upsert_subscribers(_subscribers(30))
    taken = [Subscriber(str(100 + i), f"m{i + 1}@example.org") for i in range(25)]  # emails contacts 1-25 hold
    wrongly_suspected = Subscriber("300", "free@example.org")
    rows = [*taken[:10], *_subscribers(40, first=200), *taken[10:], wrongly_suspected]
    calls_before = client.calls

    result = client.upsert_subscribers(rows, likely_refused=[s.contact_id for s in [*taken, wrongly_suspected]])

    assert sorted(o.contact_id for o in result.rejected) == sorted(s.contact_id for s in taken)
    assert {o.reason for o in result.rejected} == {THRIVE_REFUSED}
    assert result.accepted_count == 41 and sandbox.subscriber("300")["email"] == "free@example.org"
    # 40 sent first and all taken: one call; the 26 suspects, 25 refused: located in the halves it took to find
    # the one Thrive took, never with the 40 re-sent; a whole call of 25 refused, expected, is not systemic
    assert result.calls == client.calls - calls_before < 1 + 1 + 2 * 5
    assert result.records_sent < 40 + 26 * 2
    exact = client.upsert_subscribers(taken, likely_refused=[s.contact_id for s in taken])
    assert len(exact.rejected) == 25 and exact.calls == 1


def test_an_interest_is_looked_up_once_for_a_clients_writes_and_read_again_when_missing(make_client, sandbox):
    client = make_client(startrow_base=0)  # no StartRow probes: each read of the interests is one request
    client.upsert_subscribers(_subscribers(3))

    client.add_interest_members("Newsletter", _subscribers(2))
    client.remove_interest_members("Newsletter", _subscribers(1))
    client.add_interest_members("newsletter", _subscribers(3))
    sandbox.add_interest("Board")
    client.add_interest_members("Board", _subscribers(1))  # created since the client read the interests

    assert sandbox.counters()["grids"]["interest_target_group"] == 2
    assert sandbox.interest_members("Newsletter") == ["1", "2", "3"] and sandbox.interest_members("Board") == ["1"]
    with pytest.raises(InterestNotFound):
        client.add_interest_members("Retired", _subscribers(1))
    assert sandbox.counters()["grids"]["interest_target_group"] == 3


def _subscribe_response(counts: str, status: str = "success", message: str = "") -> ET.Element:
    """The `<Subscribe>` element of an ActionResponse carrying `counts` and an ActionStatus."""
    document = (f'<ActionResponse xmlns="{envelope.NAMESPACE}"><Responses><Subscribe>{counts}<ActionStatus>'
                f"<Status>{status}</Status><Message>{message}</Message></ActionStatus></Subscribe></Responses>"
                "</ActionResponse>")
    return documents.action_responses(parsing.parse_document(document, "t"), "t")[0]


def test_a_tenant_whose_counts_add_up_gets_one_call_and_no_search():
    response = _subscribe_response("<NewSubscriberCount>1</NewSubscriberCount>"
                                   "<PreviousSubscriberCount>1</PreviousSubscriberCount>")

    assert subscribe_counts(response, "Subscribe 2") == (1, 1)
    assert [o.status for o in counted_outcomes(_subscribers(2), 1, 1)] == [OutcomeStatus.ACCEPTED] * 2
    assert [o.status for o in counted_outcomes(_subscribers(2), 2, 0)] == [OutcomeStatus.CREATED] * 2


def test_a_subscribe_reply_without_its_counts_is_a_protocol_error_not_all_accepted():
    response = _subscribe_response("")

    with pytest.raises(ThriveProtocolError, match="Subscribe 2: the Subscribe reply carries no NewSubscriberCount"):
        subscribe_counts(response, "Subscribe 2")


def test_a_failure_status_without_a_fault_is_raised_naming_the_action():
    response = _subscribe_response("", status="failure", message="quota exceeded")

    with pytest.raises(ThriveActionFailed, match="Subscribe: Thrive reported status 'failure': quota exceeded"):
        subscribe_counts(response, "Subscribe 1")


def test_an_unknown_interest_fails_before_anything_is_written(make_client, sandbox):
    with pytest.raises(InterestNotFound, match="'Board' does not exist in Thrive; create the target group"):
        make_client().upsert_subscribers(_subscribers(3), interest="Board")

    assert sandbox.counters()["records_written"] == {}


def _scripted(responses: list[httpx.Response]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses.pop(0)

    return httpx.MockTransport(handler), seen


def _grid_reply(rows: int) -> httpx.Response:
    records = "".join(f'<Record row="{i}"><Fields><Field element="upload_id">{i}</Field></Fields></Record>'
                      for i in range(rows))
    document = (f'<GridResponse xmlns="{envelope.NAMESPACE}"><Grids><Grid type="upload_history">{records}</Grid>'
                "</Grids></GridResponse>")
    return httpx.Response(200, content=replies.response_envelope(document))


def test_a_soap_fault_is_final_and_never_retried():
    transport, seen = _scripted([httpx.Response(500, content=replies.fault_envelope("UnknownActionException", "nope"))])
    client = ThriveClient(_config(), transport=transport, sleep=lambda _: None)

    with pytest.raises(ThriveFault, match="UnknownActionException: nope"):
        client.count("subscriber")
    assert len(seen) == 1


def test_transient_statuses_are_retried_then_succeed():
    transport, seen = _scripted([httpx.Response(503, headers={"Retry-After": "0"}), httpx.Response(500, text="oops"),
                                 _grid_reply(1)])
    client = ThriveClient(_config(), transport=transport, sleep=lambda _: None)

    assert client.upload_status(0).upload_id == 0
    assert len(seen) == 3
    assert seen[0].headers["SOAPAction"] == f'"{envelope.SOAP_ACTION}"'


def test_retries_running_out_raise_unavailable_naming_the_call():
    transport, _ = _scripted([httpx.Response(502)] * 3)
    client = ThriveClient(_config(), transport=transport, sleep=lambda _: None)

    with pytest.raises(ThriveUnavailable, match=r"^grid upload_history rows 0\+1: gave up after 3 attempts"):
        client.upload_status(9)


def test_a_non_soap_error_status_points_at_the_connection_host():
    transport, _ = _scripted([httpx.Response(404, text="Not Found")])
    client = ThriveClient(_config(), transport=transport, sleep=lambda _: None)

    with pytest.raises(ThriveHTTPError, match="HTTP 404 from the Thrive endpoint \\(check the connection host\\)"):
        client.count("subscriber")


def _request_grid(request: httpx.Request) -> ET.Element:
    """The `Grid` element of a grid request as the client sent it, out of its SOAP envelope."""
    document = envelope.soap_argument(envelope.parse_envelope(request.content, "t"), envelope.OPERATION,
                                      envelope.ARGUMENT, "t")
    return parsing.parse_document(document, "t").find(f".//{{{envelope.NAMESPACE}}}Grid")


def _start_rows(seen: list[httpx.Request]) -> list[str]:
    return [_request_grid(r).findtext(f"{{{envelope.NAMESPACE}}}StartRow") for r in seen]


def test_grid_paging_stops_on_a_short_page_and_advances_start_row():
    transport, seen = _scripted([_grid_reply(3), _grid_reply(3), _grid_reply(1)])
    client = ThriveClient(_config(startrow_base=0), transport=transport, sleep=lambda _: None)

    rows = list(client.iter_grid("upload_history", "upload_id", (), ("upload_id",), page_size=3))

    assert len(rows) == 7
    assert _start_rows(seen) == ["0", "3", "6"]


def _tenant(reading: str, total: int) -> httpx.MockTransport:
    """A tenant holding `total` rows whose StartRow means what `reading` says:
    `zero` (OFFSET: 0 is the first row), `between` (1 is the first; rows [start, start+n-1], so 0 loses a row),
    `clamp` (1 is the first; 0 is read as 1), `refuse` (1 is the first; 0 is a fault)."""
    def handler(request: httpx.Request) -> httpx.Response:
        grid = _request_grid(request)
        start = int(grid.findtext(f"{{{envelope.NAMESPACE}}}StartRow"))
        size = int(grid.findtext(f"{{{envelope.NAMESPACE}}}NumberOfRows"))
        if reading == "refuse" and start == 0:
            fault = replies.fault_envelope("UnexpectedInputException", "StartRow must be >= 1")
            return httpx.Response(500, content=fault)
        first = {"zero": start, "between": start - 1, "clamp": max(start, 1) - 1, "refuse": start - 1}[reading]
        numbers = [n for n in range(max(first, 0), first + size) if n < total and n >= 0]
        records = "".join(f'<Record row="{n}"><Fields><Field element="upload_id">{n}</Field></Fields></Record>'
                          for n in numbers)
        document = (f'<GridResponse xmlns="{envelope.NAMESPACE}"><Grids><Grid type="upload_history">{records}</Grid>'
                    "</Grids></GridResponse>")
        return httpx.Response(200, content=replies.response_envelope(document))

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("reading", ["zero", "between", "clamp", "refuse"])
@pytest.mark.parametrize("total", [1, 7, 9])
def test_paging_returns_every_row_exactly_once_whatever_startrow_base_the_tenant_uses(reading, total):
    client = ThriveClient(_config(), transport=_tenant(reading, total), sleep=lambda _: None)

    rows = [row["upload_id"] for row in client.iter_grid("upload_history", "upload_id", (), ("upload_id",),
                                                          page_size=3)]

    assert rows == [str(n) for n in range(total)]


def test_a_refused_grid_is_not_mistaken_for_a_one_based_tenant():
    refusal = replies.fault_envelope("InvalidGridCategoryException", "Grid type 'nope' is not a known grid")
    transport, _ = _scripted([httpx.Response(500, content=refusal), httpx.Response(500, content=refusal)])
    client = ThriveClient(_config(), transport=transport, sleep=lambda _: None)

    with pytest.raises(ThriveFault, match="InvalidGridCategoryException"):
        list(client.iter_grid("nope", "id", (), ("id",)))
    assert client._startrow_base is None  # the next grid is probed afresh, not read from row 1


def test_the_detected_startrow_base_is_kept_for_later_reads():
    client = ThriveClient(_config(), transport=_tenant("between", 9), sleep=lambda _: None)
    list(client.iter_grid("upload_history", "upload_id", (), ("upload_id",), page_size=3))
    calls = client.calls

    assert len(list(client.iter_grid("upload_history", "upload_id", (), ("upload_id",), page_size=3))) == 9
    assert client.calls - calls == 4  # pages only: no second probe


def test_a_reply_without_the_requested_grid_raises_naming_the_call():
    document = f'<GridResponse xmlns="{envelope.NAMESPACE}"><Grids><Grid type="subscriber"/></Grids></GridResponse>'
    transport, _ = _scripted([httpx.Response(200, content=replies.response_envelope(document))])
    client = ThriveClient(_config(), transport=transport, sleep=lambda _: None)

    with pytest.raises(ThriveProtocolError, match="grid upload_history rows 0\\+1: the reply holds no <Grid type"):
        client.upload_status(5)


def test_a_bulk_upload_without_status_email_recipients_fails_before_sending():
    transport, seen = _scripted([])
    client = ThriveClient(_config(status_email_recipients=[], startrow_base=0), transport=transport,
                          sleep=lambda _: None)
    subscribers = [Subscriber(str(i), f"m{i}@example.org") for i in range(3)]

    with pytest.raises(ThriveConfigurationError, match="set the thrive connection's extra status_email_recipients"):
        client._bulk_upsert(subscribers, [])
    assert seen == []


def _upload_reply(status: str) -> httpx.Response:
    document = (f'<GridResponse xmlns="{envelope.NAMESPACE}"><Grids><Grid type="upload_history"><Record row="1">'
                f'<Fields><Field element="upload_id">5</Field><Field element="status">{status}</Field></Fields>'
                "</Record></Grid></Grids></GridResponse>")
    return httpx.Response(200, content=replies.response_envelope(document))


def test_a_failed_upload_is_raised_with_its_id():
    transport, _ = _scripted([_upload_reply("Processing"), _upload_reply("Failed")])
    client = ThriveClient(_config(), transport=transport, sleep=lambda _: None)

    with pytest.raises(UploadFailed, match="BulkUpload 5 ended with status 'failed'"):
        client.wait_for_upload(5)


def test_an_upload_still_running_after_the_poll_timeout_says_rerunning_is_safe():
    transport, _ = _scripted([_upload_reply("Processing")] * 4)
    client = ThriveClient(_config(poll_interval_s=1, poll_timeout_s=3), transport=transport, sleep=lambda _: None)

    with pytest.raises(UploadTimeout, match=r"still 'processing' after 3s.*safe"):
        client.wait_for_upload(5)


class _Journal:
    """Records what the client tells an `UploadJournal`, in order, with what the sandbox had received by then."""

    def __init__(self, sandbox: ThriveSandbox) -> None:
        self.sandbox = sandbox
        self.events: list[tuple] = []

    def before_upload(self, what: str, contact_ids) -> str:
        self.events.append(("before", list(contact_ids), dict(self.sandbox.counters().get("actions", {}))))
        return f"entry-{len(self.events)}"

    def queued(self, entry: str, upload_id: int) -> None:
        self.events.append(("queued", entry, upload_id))


def test_each_removal_upload_is_journaled_before_it_is_sent_and_its_upload_id_once_queued(make_client, sandbox):
    client = make_client(bulk_chunk_size=2)
    client.upsert_subscribers(_subscribers(3), interest="Newsletter")
    journal = _Journal(sandbox)

    client.remove_interest_members("Newsletter", _subscribers(3), journal=journal)

    ids = [upload.upload_id for upload in sandbox.store.uploads.values()]
    assert journal.events == [("before", ["1", "2"], {"Subscribe": 1}), ("queued", "entry-1", ids[0]),
                              ("before", ["3"], {"Subscribe": 1, "BulkUpload": 1}), ("queued", "entry-3", ids[1])]


def test_a_bulk_upsert_is_journaled_and_a_subscribe_is_not(make_client, sandbox):
    journal = _Journal(sandbox)
    make_client(bulk_threshold=2).upsert_subscribers(_subscribers(3), journal=journal)
    make_client().upsert_subscribers(_subscribers(1, first=9), journal=journal)  # synchronous: nothing queued

    assert [event[0] for event in journal.events] == ["before", "queued"]
    assert journal.events[0][1] == ["1", "2", "3"]


def test_waiting_for_uploads_since_a_moment_polls_until_none_is_pending(make_client, sandbox):
    from datetime import UTC, datetime, timedelta

    client = make_client(bulk_threshold=0)
    sandbox.store.queue_upload(documents.InterestAction.REMOVE, [], [], polls=2)
    sandbox.store.queue_upload(documents.InterestAction.REMOVE, [], [], polls=0)

    uploads = client.wait_for_uploads_since(datetime.now(UTC) - timedelta(hours=1))

    done = sandbox.config.upload_statuses()[1]
    assert [(u.upload_id, u.status) for u in uploads] == [(1, done), (2, done)]


def _count_reply(grid: str, element: str, value: int) -> httpx.Response:
    document = (f'<GridResponse xmlns="{envelope.NAMESPACE}"><Grids><Grid type="{grid}"><Record row="0"><Fields>'
                f'<Field element="{element}">{value}</Field></Fields></Record></Grid></Grids></GridResponse>')
    return httpx.Response(200, content=replies.response_envelope(document))


def test_a_group_is_counted_with_one_subscriber_interests_count(make_client, sandbox):
    client = make_client()
    client.upsert_subscribers(_subscribers(7), interest="Newsletter")
    calls = client.calls

    assert client.interest_member_count("newsletter") == 7  # values compare case-insensitively
    assert client.calls - calls == 1


def test_a_tenant_refusing_that_count_is_asked_target_group_counts_from_then_on():
    transport, seen = _scripted([
        httpx.Response(500, content=replies.fault_envelope("UnexpectedInputException", "no Count here")),
        _count_reply("target_group_counts", "target_group_count", 41),
        _count_reply("target_group_counts", "target_group_count", 42),
    ])
    client = ThriveClient(_config(), transport=transport, sleep=lambda _: None)

    assert [client.interest_member_count("Newsletter"), client.interest_member_count("Newsletter")] == [41, 42]
    assert [b"target_group_counts" in request.content for request in seen] == [False, True, True]


def test_subscriber_fields_are_read_back_by_email_for_the_synced_fields_only(make_client):
    client = make_client()
    client.upsert_subscribers(_subscribers(3), interest="Newsletter")
    client.upsert_subscribers([Subscriber("2", "m2@example.org", {"FirstName": "Edited", "Other": "x"})])

    held = client.subscriber_fields(["M1@example.org", "m2@example.org", "nobody@example.org"], ["FirstName"])

    assert held == {"m1@example.org": {"FirstName": "N1"}, "m2@example.org": {"FirstName": "Edited"}}
