"""Every Thrive client call against the real sandbox server on loopback, with and without injected faults."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from include.imis_thrive.http_retry import RetryPolicy
from include.imis_thrive.thrive import envelope
from include.imis_thrive.thrive.client import THRIVE_REFUSED, ThriveClient
from include.imis_thrive.thrive.documents import Comparator, Condition
from include.imis_thrive.thrive.engagement import (
    EngagementKind,
    KindUnavailable,
    iter_engagement,
    resubscribes,
    unsubscribed_state,
)
from include.imis_thrive.thrive.errors import (
    InterestNotFound,
    ThriveCredentialsError,
    ThriveFault,
    ThriveItemNotFound,
    ThriveUnavailable,
)
from include.imis_thrive.thrive.grids import Grid
from include.imis_thrive.thrive.models import InterestMember, OutcomeStatus, Subscriber
from sandbox.faults import DROP, FaultConfig
from tests.integration.engagement_expectations import GRID_KINDS, Source, engagement_sources

pytestmark = pytest.mark.integration

# A week ending two days ago: inside the 100 days every documented grid holds (the dates do not matter).
END = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
START = END - timedelta(days=7)
TRICKY_NAME = 'Zoë "Z" O\'Brien & <Sons> 🎉 שלום'


def _subscribers(count: int, first: int = 1) -> list[Subscriber]:
    return [Subscriber(str(i), f"m{i}@example.org", {"FirstName": f"N{i}", "LastName": "Member"})
            for i in range(first, first + count)]


def test_interests_and_the_ones_an_active_campaign_uses(thrive_client):
    interests = thrive_client.interests()

    assert [i.name for i in interests] == ["Newsletter", "Annual Conference", "Board & Committees"]
    selection = thrive_client.campaign_interests(datetime.now(UTC) - timedelta(days=30))
    assert selection.names == ["Newsletter"]
    assert selection.signal.startswith("mailing_instance.target_group_id and target_group_counts.last_used_date")
    assert thrive_client.require_interest("board & COMMITTEES").name == "Board & Committees"
    with pytest.raises(InterestNotFound, match="'Retired' does not exist"):
        thrive_client.require_interest("Retired")


def test_upsert_stores_fields_exactly_and_adds_to_the_interest(thrive_client, thrive_sandbox):
    subscribers = [*_subscribers(4), Subscriber("5", "five@example.org", {"FirstName": TRICKY_NAME, "LastName": None})]

    result = thrive_client.upsert_subscribers(subscribers, interest="Newsletter")

    assert [o.status for o in result.outcomes] == [OutcomeStatus.CREATED] * 5
    stored = thrive_sandbox.subscriber("5")
    assert stored["fields"] == {"FirstName": TRICKY_NAME, "LastName": None}
    assert stored["interests"] == ["Newsletter"]
    assert [m.contact_id for m in thrive_client.interest_members("Newsletter")] == ["1", "2", "3", "4", "5"]


def test_a_second_upsert_updates_in_place(thrive_client, thrive_sandbox):
    thrive_client.upsert_subscribers(_subscribers(3))

    result = thrive_client.upsert_subscribers([Subscriber("2", "new-two@example.org", {"FirstName": "Two"})])

    assert result.outcomes[0].status is OutcomeStatus.UPDATED
    assert thrive_sandbox.subscriber("2")["email"] == "new-two@example.org"
    assert len(thrive_sandbox.subscribers()) == 3


def test_an_email_owned_by_another_contact_is_refused_and_located(thrive_client, thrive_sandbox):
    thrive_client.upsert_subscribers(_subscribers(2))

    result = thrive_client.upsert_subscribers([Subscriber("3", "m1@example.org"), *_subscribers(5, first=10)])

    assert [(o.contact_id, o.reason) for o in result.rejected] == [("3", THRIVE_REFUSED)]
    assert thrive_sandbox.subscriber("3") is None


def test_bulk_upload_above_the_threshold_and_polling(thrive_config, thrive_sandbox):
    with ThriveClient(thrive_config.model_copy(update={"bulk_threshold": 100, "bulk_chunk_size": 150})) as client:
        result = client.upsert_subscribers(_subscribers(320), interest="Annual Conference")

    assert thrive_sandbox.counters()["actions"] == {"BulkUpload": 3}
    assert [u.total_count for u in result.uploads] == [150, 150, 20]
    assert {u.status for u in result.uploads} == {thrive_sandbox.config.upload_statuses()[1]}
    assert len(thrive_sandbox.interest_members("Annual Conference")) == 320


def test_add_and_remove_interest_members_without_unsubscribing(thrive_client, thrive_sandbox):
    thrive_client.upsert_subscribers(_subscribers(5))
    thrive_client.add_interest_members("Board & Committees", [InterestMember("1", "m1@example.org"),
                                                              InterestMember("2", "m2@example.org")])
    assert thrive_sandbox.subscriber("1")["fields"] == {"FirstName": "N1", "LastName": "Member"}

    statuses = thrive_client.remove_interest_members(
        "Board & Committees", [InterestMember("1", "m1@example.org"), InterestMember("9", "not-there@example.org")])

    assert statuses[0].status == thrive_sandbox.config.upload_statuses()[1]
    assert thrive_sandbox.interest_members("Board & Committees") == ["2"]
    assert thrive_sandbox.subscriber("1")["is_unsubscriber"] is False


def test_consent_wins_an_upsert_never_resubscribes(thrive_client, thrive_sandbox):
    thrive_client.upsert_subscribers(_subscribers(400), interest="Newsletter")
    counts = thrive_sandbox.generate_engagement(START, END, volume=60_000, seed=5)
    quitters = {s["contact_id"] for s in thrive_sandbox.subscribers() if s["is_unsubscriber"]}
    assert quitters and counts["Unsubscribe"] >= len(quitters)

    result = thrive_client.upsert_subscribers(_subscribers(400), interest="Newsletter")

    assert result.accepted_count == 400  # the reply counts them as previous subscribers; consent is Thrive's
    assert {s["contact_id"] for s in thrive_sandbox.subscribers() if s["is_unsubscriber"]} == quitters
    events, still = resubscribes(thrive_client, {q: END.isoformat() for q in quitters}, END, END + timedelta(days=1))
    assert events == [] and set(still) == quitters


def _per_event(thrive_sandbox) -> list[EngagementKind]:
    """The grid kinds whose per-event grid this emulator serves (all six unless `grids=documented`)."""
    return [kind for kind, source in engagement_sources(thrive_sandbox, START).items() if source is Source.GRID]


def test_engagement_readers_return_every_generated_event_normalised(thrive_client, thrive_sandbox):
    thrive_client.upsert_subscribers(_subscribers(300), interest="Newsletter")
    counts = thrive_sandbox.generate_engagement(START, END, volume=5000, seed=9)
    served = _per_event(thrive_sandbox)

    events = [event for kind in served for event in iter_engagement(thrive_client, kind, START, END)]

    read = {kind.value: sum(e.kind is kind for e in events) for kind in served}
    assert read == {kind.value: counts[kind.value] for kind in served}
    assert all(START <= e.occurred_at < END and e.occurred_at.tzinfo is UTC for e in events)
    sent = [e for e in events if e.kind is EngagementKind.MAIL_SENT]
    assert sent and [e.occurred_at for e in sent] == sorted(e.occurred_at for e in sent)
    if EngagementKind.LINK_CLICK in served:
        click = next(e for e in events if e.kind is EngagementKind.LINK_CLICK)
        assert click.url.startswith("https://www.example.org/m/") and click.contact_id and click.mailing_instance_id
    if EngagementKind.WEB_PAGE_VISIT in served:
        visit = next(e for e in events if e.kind is EngagementKind.WEB_PAGE_VISIT)
        assert visit.url and visit.page and visit.email.endswith("@example.org")
    for kind in set(GRID_KINDS) - set(served):  # refused by name, never an empty read
        with pytest.raises(KindUnavailable, match=f"{kind}: Thrive refused grid .*InvalidGridCategoryException"):
            list(iter_engagement(thrive_client, kind, START, END))


def test_resubscribes_are_derived_from_the_unsubscribed_state_a_run_recorded(thrive_client, thrive_sandbox):
    thrive_client.upsert_subscribers(_subscribers(300), interest="Newsletter")
    counts = thrive_sandbox.generate_engagement(START, END, volume=20_000, seed=9)
    unsubscribes = list(iter_engagement(thrive_client, EngagementKind.UNSUBSCRIBE, START, END))
    state = unsubscribed_state(unsubscribes)

    events, still = resubscribes(thrive_client, state, START, END)

    assert counts["Resubscribe"] > 0 and len(events) == counts["Resubscribe"]
    resubscribed = {e.contact_id for e in events}
    assert resubscribed.isdisjoint(still) and set(still) | resubscribed == set(state)
    assert all(START <= e.occurred_at < END for e in events)
    again, _ = resubscribes(thrive_client, state, START, END)
    assert again == events  # the same interval derives the same events, so the ledger recognises them


def test_engagement_windows_split_cleanly(thrive_client, thrive_sandbox):
    thrive_client.upsert_subscribers(_subscribers(50), interest="Newsletter")
    thrive_sandbox.generate_engagement(START, END, volume=2000, seed=2)
    middle = START + timedelta(days=3, hours=7)

    for kind in _per_event(thrive_sandbox):
        whole = list(iter_engagement(thrive_client, kind, START, END, page_size=97))
        halves = [*iter_engagement(thrive_client, kind, START, middle),
                  *iter_engagement(thrive_client, kind, middle, END)]

        assert whole and sorted(whole, key=repr) == sorted(halves, key=repr), kind


def test_grids_page_on_a_stable_key_and_count(thrive_client):
    thrive_client.upsert_subscribers(_subscribers(2500))
    condition = Condition.single("email", Comparator.NE, "m7@EXAMPLE.org")

    rows = list(thrive_client.iter_grid(Grid.SUBSCRIBER, "subscriber_id", [condition], ("subscriber_id", "EMAIL")))

    assert len(rows) == 2499 == thrive_client.count(Grid.SUBSCRIBER, [condition])
    assert [int(r["subscriber_id"]) for r in rows] == sorted(int(r["subscriber_id"]) for r in rows)
    assert len({r["email"] for r in rows}) == 2499
    assert thrive_client.count(Grid.SUBSCRIBER, [Condition("user_id", Comparator.IN, ("1", "2", "99999"))]) == 2


def test_wrong_credentials_are_a_typed_fault(thrive_config):
    with (ThriveClient(thrive_config.model_copy(update={"brand_id": "1"})) as client,
          pytest.raises(ThriveCredentialsError, match="InvalidCredentialsException")):
        client.interests()


def test_unknown_grids_and_elements_are_faults_naming_them(thrive_client):
    with pytest.raises(ThriveFault, match="InvalidGridCategoryException: Grid type 'mailing_nope'"):
        thrive_client.count("mailing_nope")
    with pytest.raises(ThriveFault, match="grid 'subscriber' has no data element 'shoe_size'"):
        thrive_client.count(Grid.SUBSCRIBER, [Condition.single("shoe_size", Comparator.EQ, "9")])


def test_an_interest_deleted_between_check_and_write_is_an_item_not_found_fault(thrive_client, thrive_sandbox):
    thrive_client.require_interest("Newsletter")
    thrive_sandbox.store.interests["newsletter"].is_deleted = True

    with pytest.raises(ThriveItemNotFound, match="Interest 'Newsletter' does not exist"):
        thrive_client._subscribe(_subscribers(1), ["Newsletter"])


def test_429_with_retry_after_is_honoured_then_the_call_succeeds(thrive_client, thrive_sandbox):
    thrive_sandbox.faults.configure(FaultConfig(script=[429, 429], retry_after_s=0))

    result = thrive_client.upsert_subscribers(_subscribers(10))

    assert result.accepted_count == 10
    assert thrive_sandbox.faults.injected == {"429": 2}
    assert thrive_sandbox.counters()["records_written"] == {"Subscribe": 10}


@pytest.mark.parametrize("script", [[500, 503], [DROP], [DROP, 500]])
def test_server_errors_and_dropped_connections_are_retried(thrive_client, thrive_sandbox, script):
    thrive_client.upsert_subscribers(_subscribers(30))
    thrive_sandbox.faults.configure(FaultConfig(script=script, retry_after_s=0))

    assert len(list(thrive_client.interest_members("Newsletter"))) == 0
    assert thrive_client.count(Grid.SUBSCRIBER) == 30
    assert sum(thrive_sandbox.faults.injected.values()) == len(script)


def test_a_retried_upsert_after_a_dropped_reply_changes_nothing_twice(thrive_client, thrive_sandbox):
    thrive_sandbox.faults.configure(FaultConfig(script=[DROP], retry_after_s=0))

    result = thrive_client.upsert_subscribers(_subscribers(5), interest="Newsletter")

    assert result.accepted_count == 5
    assert len(thrive_sandbox.subscribers()) == 5
    assert len(thrive_sandbox.interest_members("Newsletter")) == 5


def test_a_persistent_outage_ends_in_unavailable(thrive_client, thrive_sandbox):
    thrive_sandbox.faults.configure(FaultConfig(rate_503=1.0, retry_after_s=0))

    with pytest.raises(ThriveUnavailable, match="gave up after 4 attempts"):
        thrive_client.interests()


def test_random_fault_rates_still_deliver_every_record(thrive_config, thrive_sandbox):
    thrive_sandbox.faults.configure(FaultConfig(rate_429=0.1, rate_500=0.1, drop_rate=0.05, retry_after_s=0, seed=3))
    # 25% of calls fail at random: with 12 attempts a call gives up with probability 0.25**12 (6e-8), not 0.4%.
    patient = thrive_config.model_copy(update={"retry": RetryPolicy(max_attempts=12, base_delay=0.01, max_delay=0.05,
                                                                    max_retry_after=0.05)})
    with ThriveClient(patient) as thrive_client:
        result = thrive_client.upsert_subscribers(_subscribers(3000), interest="Newsletter")

    assert result.accepted_count == 3000
    assert len(thrive_sandbox.interest_members("Newsletter")) == 3000


def test_the_admin_surface_over_http(thrive_server, thrive_client, thrive_sandbox):
    thrive_client.upsert_subscribers(_subscribers(3), interest="Newsletter")
    admin = httpx.Client(base_url=f"{thrive_server.url}/_sandbox")

    assert admin.get("/subscribers/2").json()["interests"] == ["Newsletter"]
    assert admin.get("/subscribers/404").status_code == 404
    assert admin.get("/interests/Newsletter/members").json() == ["1", "2", "3"]
    assert admin.put("/interests/Retirees", params={"in_active_campaign": True}).status_code == 200
    assert admin.put("/campaign-interests", json=["Retirees"]).status_code == 200
    assert thrive_client.campaign_interests(datetime.now(UTC) - timedelta(days=1)).names == ["Retirees"]
    assert admin.post("/engagement", json={"start": START.isoformat(), "end": END.isoformat(), "volume": 50,
                                           "interests": ["Newsletter"]}).json()["Mail Sent"] > 0
    assert admin.get("/counters").json()["actions"] == {"Subscribe": 1}
    assert admin.post("/reset").status_code == 200
    assert admin.get("/subscribers").json() == []


def test_a_malformed_document_is_an_invalid_document_fault(thrive_config):
    response = httpx.post(thrive_config.endpoint, content=b"<not-soap", headers={"Content-Type": envelope.CONTENT_TYPE})

    assert response.status_code == 500
    with pytest.raises(ThriveFault) as caught:
        envelope.document_from_reply(response.content, "raw post")
    assert caught.value.code == "InvalidDocumentException"
