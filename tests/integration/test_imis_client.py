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
from include.imis_thrive.sandbox.faults import FaultConfig
from include.imis_thrive.sandbox.imis_app import ImisSandbox, ImisSandboxConfig
from include.imis_thrive.sandbox.server import SandboxServer

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
    with pytest.raises(ImisAuthError, match="Broken - Not Shared.*not shared with Everyone"):
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
        time.sleep(0.6)
        assert len(client.run_iqa(CONTACTS_IQA_PATH)) == 20


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
