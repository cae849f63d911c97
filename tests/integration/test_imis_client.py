"""The iMIS client against the real iMIS sandbox on loopback: extraction, discovery, activities, faults, tokens."""

import multiprocessing
import threading
import time

import pandas as pd
import pytest

from include.imis_thrive.http_retry import RetryPolicy
from include.imis_thrive.imis.client import ImisClient, ImisConfig
from include.imis_thrive.imis.errors import ImisAuthError, ImisNotFound
from include.imis_thrive.imis.iqa_package import CONTACTS_IQA_PATH, MAILING_LISTS_FOLDER
from include.imis_thrive.imis.tokens import FileTokenStore, MemoryTokenStore
from sandbox.faults import FaultConfig
from sandbox.imis_app import ImisSandbox, ImisSandboxConfig
from sandbox.server import SandboxServer

pytestmark = pytest.mark.integration
USER, PASSWORD = "hl_integration", "sandbox-imis-password"
FAST = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05, max_retry_after=0.05)


def make_client(url, store=None, **settings):
    config = dict(base_url=url, username=USER, password=PASSWORD, timezone="America/New_York", retry=FAST)
    config.update(settings)
    return ImisClient(ImisConfig(**config), token_store=store or MemoryTokenStore())


@pytest.mark.parametrize("endpoint", ["query", "iqa"])
def test_contacts_extract_is_complete_and_typed(imis_server, endpoint):
    frame = make_client(imis_server.url, endpoint=endpoint, page_size=70).run_iqa(CONTACTS_IQA_PATH)
    assert len(frame) == 300 and frame["ID"].is_unique
    assert frame["ID"].str.fullmatch(r"\d+").all()
    assert str(frame["IsMember"].dtype) == "boolean"
    assert str(frame["MemberSince"].dtype) == "datetime64[us, America/New_York]"
    assert frame["Status"].isin(["A", "I", "S"]).all()


def test_both_endpoints_return_the_same_data(imis_server):
    via_query = make_client(imis_server.url, endpoint="query").run_iqa(CONTACTS_IQA_PATH)
    via_iqa = make_client(imis_server.url, endpoint="iqa").run_iqa(CONTACTS_IQA_PATH)
    columns = ["ID", "FirstName", "LastName", "IsMember", "MemberSince", "PrimaryEmailAddress"]
    pd.testing.assert_frame_equal(via_query[columns], via_iqa[columns], check_dtype=False)


def test_under_a_path_prefix():
    sandbox = ImisSandbox(ImisSandboxConfig(users={USER: PASSWORD}, contacts=40, path_prefix="/Asi.Scheduler_Prod"))
    with SandboxServer(sandbox.app) as server:
        frame = make_client(f"{server.url}/Asi.Scheduler_Prod").run_iqa(CONTACTS_IQA_PATH)
    assert len(frame) == 40


def test_list_iqas_are_discovered_and_their_definitions_read(imis_server):
    client = make_client(imis_server.url)
    documents = {doc.name: doc for doc in client.list_folder(MAILING_LISTS_FOLDER)}
    assert len([name for name in documents if not name.startswith("Broken")]) >= 3
    assert {"Broken - Prompted", "Broken - No ID Alias", "Broken - Not Shared"} <= documents.keys()
    prompted = client.query_definition(f"{MAILING_LISTS_FOLDER}/Broken - Prompted")
    assert prompted.prompts
    no_alias = client.query_definition(f"{MAILING_LISTS_FOLDER}/Broken - No ID Alias")
    assert no_alias.missing_aliases(no_alias.aliases) == ("ID",)


def test_a_list_not_shared_with_everyone_fails_with_that_reason(imis_server):
    with pytest.raises(ImisAuthError, match=r"Broken - Not Shared.*not shared with Everyone"):
        make_client(imis_server.url).run_iqa(f"{MAILING_LISTS_FOLDER}/Broken - Not Shared")


def test_unknown_iqa_is_not_found(imis_server):
    with pytest.raises(ImisNotFound, match=r"IQA \$/HigherLogic/Nope"):
        make_client(imis_server.url).run_iqa("$/HigherLogic/Nope")


def test_extraction_survives_429_503_500_and_dropped_connections(imis_sandbox, imis_server):
    # One of each fault for certain, then random ones: 20% of requests, 12 attempts per page (a page then
    # fails only with probability 0.2**12, about 4e-9, so the test does not flake under concurrency).
    imis_sandbox.faults.configure(FaultConfig(script=[429, 503, 500, 0], rate_429=0.06, rate_503=0.05, rate_500=0.05,
                                              drop_rate=0.04, retry_after_s=0, seed=7, path_prefix="/api/"))
    retry = RetryPolicy(max_attempts=12, base_delay=0.01, max_delay=0.05, max_retry_after=0.05)
    frame = make_client(imis_server.url, page_size=20, max_concurrency=4, retry=retry).run_iqa(CONTACTS_IQA_PATH)
    assert len(frame) == 300 and frame["ID"].is_unique
    assert {"429", "503", "500", "drop"} <= imis_sandbox.faults.injected.keys()


def test_purged_tokens_mid_run_cost_one_relogin(imis_sandbox, imis_server):
    client = make_client(imis_server.url, page_size=25, max_concurrency=1)
    pages = client.iter_pages(CONTACTS_IQA_PATH)
    next(pages)
    imis_sandbox.purge_tokens()  # app-pool restart in the middle of the extraction
    rest = list(pages)
    assert sum(page.count for page in rest) == 300 - 25


def test_short_lived_tokens_are_renewed_before_they_expire():
    sandbox = ImisSandbox(ImisSandboxConfig(users={USER: PASSWORD}, contacts=20, token_lifetime_s=2))
    with SandboxServer(sandbox.app) as server:
        client = make_client(server.url, token_margin_s=1.5)
        client.run_iqa(CONTACTS_IQA_PATH)
        time.sleep(0.6)  # the token has 1.4 s or less left: inside the margin, though iMIS would still take it
        assert len(client.run_iqa(CONTACTS_IQA_PATH)) == 20
    # Renewed ahead of expiry (a second login), never by meeting an expired token: with no margin this fails.
    assert (sandbox.logins, sandbox.expired_refusals) == (2, 0)


def test_activity_written_and_found_by_its_key(imis_server):
    client = make_client(imis_server.url)
    party = client.run_iqa(CONTACTS_IQA_PATH)["ID"][0]
    seqn = client.post_activity(party, {"ACTIVITY_TYPE": "HLOGIC", "UF_1": "key-123", "DESCRIPTION": "Mail Open"})
    found = list(client.find_activities({"PartyId": party, "UF_1": "eq:key-123"}))
    assert [str(row["SEQN"]) for row in found] == [seqn]


def _extract_in_a_worker(url, store_dir, results):
    client = make_client(url, store=FileTokenStore(store_dir), page_size=10, max_concurrency=2)
    try:
        results.put(len(client.run_iqa(CONTACTS_IQA_PATH)))
    except Exception as error:  # reported to the parent, which asserts on it
        results.put(repr(error))


def test_two_concurrent_extractions_in_separate_processes_both_finish(imis_sandbox, imis_server, tmp_path):
    """Two Airflow tasks on one machine: each logging in on its own would kill the other's token."""
    imis_sandbox.faults.configure(FaultConfig(latency_ms=5))
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_extract_in_a_worker, args=(imis_server.url, tmp_path, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    purger = threading.Timer(0.3, imis_sandbox.purge_tokens)  # and an app-pool restart while they run
    purger.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    purger.join()
    assert outcomes == [300, 300]


# ---- what real tenants answer (issue 10), against the sandbox's realistic shapes -------------------------

@pytest.mark.parametrize("endpoint", ["query", "iqa"])
@pytest.mark.parametrize("concurrency", [1, 4])
def test_pages_smaller_than_the_echoed_limit_lose_no_rows(endpoint, concurrency):
    """The instance echoes Limit 500 but serves 100 rows a page: the pager must step by what pages hold."""
    sandbox = ImisSandbox(ImisSandboxConfig(users={USER: PASSWORD}, contacts=1234, page_cap=100))
    with SandboxServer(sandbox.app) as server:
        client = make_client(server.url, endpoint=endpoint, max_concurrency=concurrency)
        assert client.fetch_page(CONTACTS_IQA_PATH).limit == 500  # the echo the old pager strode by
        frame = client.run_iqa(CONTACTS_IQA_PATH)
    assert frame["ID"].tolist() == sandbox.seed.contacts["ID"].tolist()


def test_a_result_that_shrinks_while_it_is_read_fails_naming_the_iqa(imis_sandbox, imis_server):
    """Rows removed between pages (offset drift): an error, never a silently shorter list."""
    from include.imis_thrive.imis.errors import ImisPagingError

    client = make_client(imis_server.url, page_size=50, max_concurrency=1)
    path = f"{MAILING_LISTS_FOLDER}/Newsletter"
    pages = client.iter_pages(path)
    next(pages)
    imis_sandbox.seed.lists["Newsletter"].members = imis_sandbox.seed.lists["Newsletter"].members[5:]  # staff edit
    with pytest.raises(ImisPagingError, match=r"IQA \$/HigherLogic/MailingLists/Newsletter: the page at offset 50"):
        list(pages)


def test_definitions_are_read_by_alias_on_both_flavors(imis_flavor):
    """Empty Alias (EMS) and GUID Name + Caption (2017): the columns are still the rows' keys."""
    from include.imis_thrive.imis.iqa_package import CONTACTS_IQA, PANEL_FIELDS_IQA

    for flavor in ("ems", "2017"):
        sandbox = ImisSandbox(ImisSandboxConfig(users={USER: PASSWORD}, contacts=20, broken_lists=True,
                                                flavor=flavor))
        with SandboxServer(sandbox.app) as server:
            client = make_client(server.url)
            contacts = client.query_definition(CONTACTS_IQA_PATH)
            panel = client.query_definition(PANEL_FIELDS_IQA.path)
            conference = client.query_definition(f"{MAILING_LISTS_FOLDER}/All Members")
            no_id = client.query_definition(f"{MAILING_LISTS_FOLDER}/Broken - No ID Alias")
        assert contacts.aliases == CONTACTS_IQA.aliases, flavor
        assert [c.data_type for c in panel.columns] == [c.data_type for c in PANEL_FIELDS_IQA.columns], flavor
        assert [(f.property_name, f.operation) for f in conference.filters] == [("IsMember", "Equal"),
                                                                              ("Status", "Equal")], flavor
        assert no_id.aliases == ("ContactKey", "FullName", "Status"), flavor


def test_query_rows_with_an_integer_id_and_byte_array_wrappers_are_typed(imis_server):
    client = make_client(imis_server.url, endpoint="query")
    path = f"{MAILING_LISTS_FOLDER}/Annual Conference 2026"
    raw = client.fetch_page(path, limit=5).rows
    assert isinstance(raw[0]["ID"], int) and raw[0]["TimeStamp"]["$type"] == "System.Byte[], mscorlib"
    frame = client.run_iqa(path)
    assert frame["ID"].map(type).eq(str).all() and frame["ID"].str.fullmatch(r"\d{7}").all()
    assert str(frame["TimeStamp"].dtype) == "str" and frame["TimeStamp"].iloc[0] == raw[0]["TimeStamp"]["$value"]


def test_iqa_dates_sent_as_plain_strings_become_local_datetimes(imis_server):
    """/api/IQA sends DateTime values unwrapped: typed from the package's declared types, or from their shape."""
    from include.imis_thrive.imis.iqa_package import PANEL_FIELDS_IQA

    client = make_client(imis_server.url, endpoint="iqa")
    raw = client.fetch_page(PANEL_FIELDS_IQA.path, limit=50).rows
    dates = [p["Value"] for row in raw for p in row["Properties"]["$values"]
             if p["Name"] == "LastEventDate" and "Value" in p]
    assert dates and all(isinstance(value, str) for value in dates)
    declared = {c.alias: c.data_type.value for c in PANEL_FIELDS_IQA.columns}
    for types in (declared, None):
        frame = client.run_iqa(PANEL_FIELDS_IQA.path, declared_types=types)
        assert str(frame["LastEventDate"].dtype) == "datetime64[us, America/New_York]"
        assert frame["LastEventDate"].notna().any() and frame["LastEventDate"].isna().any()


def test_found_activities_carry_seqn_and_party_from_their_identities(imis_server):
    """Real Activity rows have no SEQN property: the SEQN is in Identity, the party in PrimaryParentIdentity."""
    client = make_client(imis_server.url)
    party = client.run_iqa(CONTACTS_IQA_PATH)["ID"][1]
    seqn = client.post_activity(party, {"ACTIVITY_TYPE": "HLOGIC", "UF_1": "key-9"})
    [row] = client.find_activities({"PartyId": party, "UF_1": "eq:key-9"})
    assert (row["SEQN"], row["PartyId"], row["UF_1"]) == (seqn, party, "key-9")


def test_a_refused_activity_names_imis_reason_from_the_validation_body(imis_server):
    from include.imis_thrive.imis.errors import ImisRequestError

    client = make_client(imis_server.url)
    with pytest.raises(ImisRequestError, match=r"activity for party 999: rejected with HTTP 400: "
                                               r"Party '999' does not exist"):
        client.post_activity("999", {"ACTIVITY_TYPE": "HLOGIC"})
