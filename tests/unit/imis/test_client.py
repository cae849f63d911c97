"""ImisClient against an in-process fake iMIS (httpx.MockTransport): no network, every edge scripted."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

import httpx
import pytest

from include.imis_thrive.errors import FAILS_AT_ONCE
from include.imis_thrive.http_retry import AmbiguousWriteError, RetryPolicy
from include.imis_thrive.imis.client import ImisClient, ImisConfig
from include.imis_thrive.imis.errors import (
    ImisAnswerNotJson,
    ImisAuthError,
    ImisNotFound,
    ImisPagingError,
    ImisRequestError,
    ImisUnexpectedAnswer,
)
from include.imis_thrive.imis.tokens import MemoryTokenStore

FAST = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)


class FakeImis:
    """Just enough iMIS: /token, paged /api/query over `rows`, and a hook to override any response."""

    def __init__(self, total=0, page_cap=500):
        self.rows = [{"ID": str(1000 + i), "Name": f"n{i}"} for i in range(total)]
        self.page_cap = page_cap
        self.valid_tokens: set[str] = set()
        self.logins = 0
        self.requests: list[httpx.Request] = []
        self.override = None  # callable(request) -> Response | None
        self.lock = threading.Lock()

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
        if self.override:
            response = self.override(request)
            if response is not None:
                return response
        if request.url.path.endswith("/token"):
            form = parse_qs(request.content.decode())
            if form.get("password") != ["secret"]:
                return httpx.Response(400, json={"error": "invalid_grant",
                                                 "error_description": "The user name or password is incorrect."})
            with self.lock:
                self.logins += 1
                token = f"t{self.logins}"
                self.valid_tokens = {token}  # a new login kills the user's previous token
            return httpx.Response(200, json={"access_token": token, "token_type": "bearer", "expires_in": 1199})
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.valid_tokens:
            return httpx.Response(401, json={"Message": "Authorization has been denied for this request."})
        if "/api/query" in request.url.path:
            return self.page(request)
        return httpx.Response(404, json={"Message": "No HTTP resource was found"})

    def page(self, request):
        params = request.url.params
        limit = min(int(params.get("Limit", 100)), self.page_cap)
        offset = int(params.get("Offset", 0))
        rows = self.rows[offset:offset + limit]
        has_next = offset + len(rows) < len(self.rows)
        return httpx.Response(200, json={
            "$type": "Asi.Soa.Core.DataContracts.PagedResult, Asi.Contracts",
            "Items": {"$values": rows}, "Offset": offset, "Limit": limit, "Count": len(rows),
            "TotalCount": len(self.rows), "NextPageLink": None, "HasNext": has_next,
            "NextOffset": offset + len(rows) if has_next else 0})


def client_for(fake, **config):
    settings = dict(base_url="https://imis.test/Asi.Scheduler_Prod", username="hl", password="secret",
                    timezone="America/New_York", retry=FAST, max_concurrency=1)
    settings.update(config)
    return ImisClient(ImisConfig(**settings), token_store=MemoryTokenStore(),
                      transport=httpx.MockTransport(fake.handler), sleep=lambda s: None)


def test_extracts_every_page_sequentially_under_the_path_prefix():
    fake = FakeImis(total=1234)
    frame = client_for(fake).run_iqa("$/HigherLogic/Contacts/Contacts")
    assert len(frame) == 1234 and frame["ID"].is_unique
    assert [int(r.url.params["Offset"]) for r in fake.requests[1:]] == [0, 500, 1000]
    assert all(r.url.path.startswith("/Asi.Scheduler_Prod/api/query") for r in fake.requests[1:])


def test_concurrent_paging_returns_the_same_rows_in_order():
    fake = FakeImis(total=2600)
    frame = client_for(fake, max_concurrency=4).run_iqa("$/X")
    assert frame["ID"].tolist() == [str(1000 + i) for i in range(2600)]
    assert fake.logins == 1  # all threads shared one token


def test_the_effective_page_size_comes_from_the_response_not_the_request():
    fake = FakeImis(total=450, page_cap=100)  # a server capping pages at 100 despite Limit=500
    frame = client_for(fake, max_concurrency=3).run_iqa("$/X")
    assert len(frame) == 450
    assert sorted(int(r.url.params["Offset"]) for r in fake.requests[1:]) == [0, 100, 200, 300, 400]


def test_empty_result_is_one_request():
    fake = FakeImis(total=0)
    assert client_for(fake).run_iqa("$/X").empty
    assert len(fake.requests) == 2  # login + one page


def test_an_empty_page_that_claims_more_stops_and_says_rows_are_missing():
    fake = FakeImis(total=10)
    fake.override = lambda r: httpx.Response(200, json={
        "Items": {"$values": []}, "Offset": 0, "Limit": 500, "Count": 0, "TotalCount": 10,
        "HasNext": True, "NextOffset": 500}) if "/api/" in r.url.path else None
    with pytest.raises(ImisPagingError, match=r"IQA \$/X: the page at offset 0 holds 0 rows but says NextOffset 500"):
        client_for(fake).run_iqa("$/X")
    assert len(fake.requests) == 2  # login + one page: no loop on HasNext


def test_next_offset_that_does_not_advance_is_an_error_not_a_loop():
    fake = FakeImis()

    def stuck(request):
        if "/api/" not in request.url.path:
            return None
        offset = int(request.url.params["Offset"])
        return httpx.Response(200, json={"Items": {"$values": [{"ID": str(offset)}]}, "Offset": offset, "Limit": 1,
                                         "Count": 1, "HasNext": True, "NextOffset": 1 if offset == 0 else offset})

    fake.override = stuck
    with pytest.raises(ImisPagingError, match=r"IQA \$/Stuck: .*says NextOffset 1, not 2"):
        client_for(fake).run_iqa("$/Stuck")
    assert len(fake.requests) == 3


def _reshaped(fake, change):
    """`fake`'s pages passed through `change(offset, body)`: an envelope that lies in one scripted way."""
    plain = fake.page

    def handler(request):
        if "/api/" not in request.url.path:
            return None
        body = json.loads(plain(request).content)
        return httpx.Response(200, json=change(int(request.url.params.get("Offset", 0)), body))

    return handler


@pytest.mark.parametrize("workers", [1, 4])
def test_a_page_holding_fewer_rows_than_its_neighbours_is_a_skip_not_a_short_result(workers):
    fake = FakeImis(total=1000, page_cap=100)

    def second_page_short(offset, body):
        if offset == 100:  # holds 60 rows, but says the next page starts at 200 (rows 160-199 never come)
            body["Items"]["$values"] = body["Items"]["$values"][:60]
            body["Count"] = 60
            body["NextOffset"] = 200
        return body

    fake.override = _reshaped(fake, second_page_short)
    with pytest.raises(ImisPagingError, match=r"IQA \$/X: the page at offset 100 holds 60 rows but says "
                                              r"NextOffset 200, not 160"):
        client_for(fake, max_concurrency=workers).run_iqa("$/X")


def test_a_page_answering_for_another_offset_is_a_repeat():
    fake = FakeImis(total=300, page_cap=100)
    fake.override = _reshaped(fake, lambda offset, body: body | {"Offset": 100} if offset == 200 else body)
    with pytest.raises(ImisPagingError, match=r"IQA \$/X: the page at offset 100 repeats rows: after 200 rows"):
        client_for(fake, max_concurrency=3).run_iqa("$/X")


def test_a_total_that_changes_between_pages_fails_the_run():
    fake = FakeImis(total=300, page_cap=100)
    fake.override = _reshaped(fake, lambda offset, body: body | {"TotalCount": 301} if offset == 200 else body)
    with pytest.raises(ImisPagingError, match=r"IQA \$/X: the page at offset 200 says TotalCount 301, the first "
                                              r"page said 300"):
        client_for(fake).run_iqa("$/X")


def test_count_that_disagrees_with_the_rows_held_is_an_error():
    fake = FakeImis(total=10)
    fake.override = _reshaped(fake, lambda offset, body: body | {"Count": 9})
    with pytest.raises(ImisPagingError, match=r"IQA \$/X: the page at offset 0 says Count 9 but holds 10 rows"):
        client_for(fake).run_iqa("$/X")


def test_missing_total_count_falls_back_to_following_next_offset():
    fake = FakeImis(total=7)
    plain = fake.page

    def without_total(request):
        if "/api/" not in request.url.path:
            return None
        body = json.loads(plain(request).content)
        body.pop("TotalCount")
        return httpx.Response(200, json=body)

    fake.override = without_total
    assert len(client_for(fake, page_size=3, max_concurrency=4).run_iqa("$/X")) == 7


def test_expired_token_triggers_one_relogin_and_the_request_is_replayed():
    fake = FakeImis(total=3)
    client = client_for(fake)
    client.run_iqa("$/X")
    fake.valid_tokens.clear()  # app-pool restart / purge system cache
    assert len(client.run_iqa("$/X")) == 3
    assert fake.logins == 2


def test_token_is_renewed_before_it_expires():
    fake = FakeImis(total=1)
    client = client_for(fake, token_margin_s=1500)  # margin above the 1199 s lifetime: always stale
    client.run_iqa("$/X")
    client.run_iqa("$/X")
    assert fake.logins == 2


def test_a_second_401_after_relogin_names_the_query_and_the_likely_cause():
    fake = FakeImis()
    fake.override = lambda r: httpx.Response(401, json={"Message": "Authorization has been denied for this request."}) \
        if "/api/" in r.url.path else None
    with pytest.raises(ImisAuthError, match=r"IQA \$/HigherLogic/MailingLists/Secret .*refused 3 fresh tokens.*"
                                            r"not shared with Everyone.*keeps logging in as 'hl'.*token_store"):
        client_for(fake).run_iqa("$/HigherLogic/MailingLists/Secret")
    assert fake.logins == 3


def test_a_token_another_login_keeps_killing_is_renewed_and_the_request_replayed():
    """iMIS keeps one token per user: a second machine logging in kills ours, twice here, mid-request."""
    fake = FakeImis(total=3)
    kills = iter([True, True])

    def another_login(request: httpx.Request) -> None:
        if "/api/" in request.url.path and next(kills, False):
            fake.valid_tokens.clear()
        return None

    fake.override = another_login
    assert len(client_for(fake).run_iqa("$/X")) == 3
    assert fake.logins == 3


def test_bad_credentials_fail_at_once_with_the_servers_reason_and_no_password():
    fake = FakeImis()
    client = client_for(fake, password="wrong-password")
    with pytest.raises(ImisAuthError) as caught:
        client.run_iqa("$/X")
    assert "The user name or password is incorrect" in str(caught.value)
    assert "'hl'" in str(caught.value) and "wrong-password" not in str(caught.value)
    assert len(fake.requests) == 1


def test_unknown_query_is_a_not_found_naming_it():
    fake = FakeImis()
    fake.override = lambda r: httpx.Response(404, json={"Message": "Query not found"}) \
        if "/api/" in r.url.path else None
    with pytest.raises(ImisNotFound, match=r"IQA \$/Nope \(offset 0\): not found \(Query not found\)"):
        client_for(fake).run_iqa("$/Nope")


def test_server_errors_are_retried_then_succeed():
    fake = FakeImis(total=2)
    failures = iter([503, 500])

    def flaky(request):
        if "/api/" in request.url.path:
            status = next(failures, None)
            if status:
                return httpx.Response(status, headers={"Retry-After": "0"})
        return None

    fake.override = flaky
    assert len(client_for(fake).run_iqa("$/X")) == 2


def test_parameters_are_sent_positionally_including_empty_ones():
    fake = FakeImis(total=1)
    client_for(fake).fetch_page("$/X", parameters=["", "smith", "eq:42"])
    assert fake.requests[-1].url.params.get_list("Parameter") == ["", "smith", "eq:42"]


def test_iqa_endpoint_choice():
    fake = FakeImis()
    fake.override = lambda r: httpx.Response(200, json={"Items": {"$values": []}, "Count": 0, "HasNext": False,
                                                        "NextOffset": 0}) if "/api/IQA" in r.url.path else None
    client_for(fake, endpoint="iqa").run_iqa("$/X")
    assert fake.requests[-1].url.path.endswith("/api/IQA")


def test_activity_post_returns_seqn_and_rejections_name_the_party():
    fake = FakeImis()

    def activity(request):
        if request.url.path.endswith("/api/Activity"):
            body = json.loads(request.content)
            props = {p["Name"]: p.get("Value") for p in body["Properties"]["$values"]}
            if props["PartyId"] == "404":
                return httpx.Response(400, json={"Errors": {"$values": [{"Message": "Party 404 does not exist"}]}})
            return httpx.Response(201, json={**body, "Identity": {"IdentityElements": {"$values": ["9001"]}}})
        return None

    fake.override = activity
    client = client_for(fake)
    assert client.post_activity("23456", {"ACTIVITY_TYPE": "HLOGIC"}) == "9001"
    with pytest.raises(ImisRequestError, match="activity for party 404: rejected with HTTP 400: Party 404 does not"):
        client.post_activity("404", {"ACTIVITY_TYPE": "HLOGIC"})


def test_activity_post_with_an_ambiguous_failure_is_not_resent():
    fake = FakeImis()
    posts = []

    def boom(request):
        if request.url.path.endswith("/api/Activity"):
            posts.append(request)
            raise httpx.ReadTimeout("timed out", request=request)
        return None

    fake.override = boom
    with pytest.raises(AmbiguousWriteError):
        client_for(fake).post_activity("1", {"ACTIVITY_TYPE": "HLOGIC"})
    assert len(posts) == 1



def test_threads_posting_at_once_share_one_token_and_a_purge_mid_run_costs_one_login():
    fake = FakeImis()
    posted: list[str] = []

    def activity(request):
        if not request.url.path.endswith("/api/Activity"):
            return None
        if request.headers["Authorization"].removeprefix("Bearer ") not in fake.valid_tokens:
            return httpx.Response(401, json={"Message": "Authorization has been denied for this request."})
        assert request.headers["Content-Type"] == "application/json"
        body = json.loads(request.content)
        with fake.lock:
            posted.append(body["Properties"]["$values"][1]["Value"])
            seqn = str(len(posted))
            if len(posted) == 20:
                fake.valid_tokens = set()  # an app-pool restart in the middle of the run kills the token
        return httpx.Response(201, json={**body, "Identity": {"IdentityElements": {"$values": [seqn]}}})

    fake.override = activity
    client = client_for(fake, max_concurrency=8)
    keys = [f"HL1-{n:032x}" for n in range(80)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        seqns = list(pool.map(lambda key: client.post_activity("23456", {"UF_1": key}), keys))
    assert sorted(posted) == keys and sorted(map(int, seqns)) == list(range(1, 81))
    assert fake.logins == 2  # the first token, and one renewal that every thread refused with it then shared


def test_an_activity_search_whose_pages_fall_short_of_the_total_is_an_error_not_a_short_result():
    fake = FakeImis()
    row = {"Identity": {"IdentityElements": {"$values": ["7"]}}, "Properties": {"$values": []}}
    fake.override = lambda r: httpx.Response(200, json={
        "Items": {"$values": [row]}, "Offset": 0, "Limit": 500, "Count": 1, "TotalCount": 3,
        "HasNext": False, "NextOffset": 0}) if "/api/Activity" in r.url.path else None
    with pytest.raises(ImisPagingError, match=r"activities \{'PartyId': '1'\}: the page at offset 0 says HasNext "
                                              r"false, yet only 1 of TotalCount 3"):
        list(client_for(fake).find_activities({"PartyId": "1"}))


def test_a_page_that_is_not_json_names_the_iqa_and_offset_and_quotes_no_member_data():
    """Issue 13, defect 9: the error quoted 200 raw bytes of the page (member data) and named no IQA or offset."""
    fake = FakeImis(total=700)
    truncated = b'{"Items":{"$values":[{"ID":"1000","PrimaryEmailAddress":"jane.doe@example.org","Na'

    def cut_short(request):
        if "/api/query" in request.url.path and request.url.params.get("Offset") == "500":
            return httpx.Response(200, content=truncated, headers={"Content-Type": "application/json"})
        return None

    fake.override = cut_short
    with pytest.raises(ImisAnswerNotJson) as failed:
        client_for(fake).run_iqa("$/X")
    message = str(failed.value)
    assert message.startswith(f"IQA $/X (offset 500): the answer to GET /Asi.Scheduler_Prod/api/query is not JSON "
                              f"({len(truncated)} bytes, application/json; Input data was truncated)")
    assert "jane" not in message and "1000" not in message
    assert issubclass(ImisAnswerNotJson, FAILS_AT_ONCE)


def test_json_that_is_not_a_paging_envelope_is_an_unexpected_answer_naming_the_call():
    fake = FakeImis(total=3)
    fake.override = lambda r: httpx.Response(200, json=["not", "a", "page"]) if "/api/query" in r.url.path else None
    with pytest.raises(ImisUnexpectedAnswer,
                       match=r"IQA \$/X \(offset 0\): expected a paged result .* got a JSON list"):
        client_for(fake).run_iqa("$/X")


@pytest.mark.parametrize("endpoint", ["query", "iqa"])
def test_rows_of_no_known_shape_are_an_unexpected_answer_naming_the_call_not_an_empty_frame(endpoint):
    """Each endpoint's rows are decoded by a typed decoder (`iqa_wire`); a row of neither documented shape stops
    the read, naming the IQA, the offset and where the shape differs, and quoting no member data."""
    fake = FakeImis(total=700)
    odd = {"ID": "1000", "Address": {"Street": "1 Jane Doe Lane"}}

    def odd_second_page(request):
        if request.url.params.get("Offset") == "500" and "/api/" in request.url.path:
            return httpx.Response(200, json={"Items": {"$values": [odd]}, "Offset": 500, "Limit": 500, "Count": 1,
                                             "TotalCount": 700, "HasNext": False, "NextOffset": 0})
        if "/api/IQA" in request.url.path:
            return fake.page(request)
        return None

    fake.override = odd_second_page
    with pytest.raises(ImisUnexpectedAnswer) as failed:
        client_for(fake, endpoint=endpoint).run_iqa("$/X")
    message = str(failed.value)
    assert message.startswith("IQA $/X (offset 500): the rows of the answer to GET /Asi.Scheduler_Prod/api/")
    assert "shape the client does not know" in message and "$.Items.$values[0]" in message
    assert "Jane" not in message and "1000" not in message
    assert issubclass(ImisUnexpectedAnswer, FAILS_AT_ONCE)


def test_fetch_page_still_gives_plain_json_rows():
    fake = FakeImis(total=3)
    assert client_for(fake).fetch_page("$/X").rows[0] == {"ID": "1000", "Name": "n0"}
