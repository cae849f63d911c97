"""The kind → activity mapping: properties per kind, local time with DST, lengths, lookups."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from include.imis_thrive.thrive.engagement import EngagementEvent
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback import activity_map
from include.imis_thrive.writeback.activity_map import (
    KIND_LAYOUT,
    carries_key,
    find_filters,
    local_transaction_date,
    plan_activity,
)
from include.imis_thrive.writeback.event_keys import event_key

NEW_YORK = ZoneInfo("America/New_York")
MOMENT = datetime(2026, 3, 8, 6, 30, 15, 999999, tzinfo=UTC)


def event(kind: EngagementKind, **overrides) -> EngagementEvent:
    values = dict(kind=kind, contact_id="1000004", email="a@example.org", mailing_id="12",
                  mailing_instance_id="34", occurred_at=MOMENT, url=None, page=None)
    return EngagementEvent(**(values | overrides))


def test_every_kind_has_a_layout():
    assert set(KIND_LAYOUT) == set(EngagementKind)


def test_mail_open_carries_type_kind_key_mailing_and_local_date():
    planned = plan_activity(event(EngagementKind.MAIL_OPEN), NEW_YORK)
    assert planned.properties == {
        "ACTIVITY_TYPE": "HLOGIC",
        "TRANSACTION_DATE": "2026-03-08T01:30:15",
        "DESCRIPTION": "Mail Open (mailing 12)",
        "SOURCE_CODE": "Mail Open",
        "UF_1": event_key(event(EngagementKind.MAIL_OPEN)),
        "UF_2": "34",
    }
    assert (planned.party_id, planned.kind, planned.occurred_at) == ("1000004", EngagementKind.MAIL_OPEN, MOMENT)


def test_link_click_names_and_keeps_the_url():
    planned = plan_activity(event(EngagementKind.LINK_CLICK, url="https://example.org/m/12/link-1"), NEW_YORK)
    assert planned.properties["DESCRIPTION"] == "Link Click: https://example.org/m/12/link-1 (mailing 12)"
    assert planned.properties["UF_3"] == "https://example.org/m/12/link-1"


def test_web_visit_reads_the_title_and_keeps_the_url():
    planned = plan_activity(event(EngagementKind.WEB_PAGE_VISIT, mailing_id=None, mailing_instance_id=None,
                                  url="https://example.org/careers", page="Career Center"), NEW_YORK)
    assert planned.properties["DESCRIPTION"] == "Web Tracking Page Visit: Career Center"
    assert planned.properties["UF_3"] == "https://example.org/careers"
    assert "UF_2" not in planned.properties


def test_landing_page_submit_and_bad_email_keep_the_page():
    form = plan_activity(event(EngagementKind.LANDING_PAGE_SUBMIT, mailing_id=None, mailing_instance_id=None,
                               page="Membership Renewal"), NEW_YORK)
    bounce = plan_activity(event(EngagementKind.BAD_EMAIL, page="Hard bounce"), NEW_YORK)
    assert form.properties["DESCRIPTION"] == "Landing Page Submit: Membership Renewal"
    assert form.properties["UF_3"] == "Membership Renewal"
    assert bounce.properties["DESCRIPTION"] == "Bad Email: Hard bounce (mailing 12)"


def test_unsubscribe_without_mailing_id_uses_the_instance():
    planned = plan_activity(event(EngagementKind.UNSUBSCRIBE, mailing_id=None, mailing_instance_id="77"), NEW_YORK)
    assert planned.properties["DESCRIPTION"] == "Unsubscribe"
    assert planned.properties["UF_2"] == "77"


@pytest.mark.parametrize(("utc", "local"), [
    (datetime(2026, 1, 15, 17, 0, tzinfo=UTC), "2026-01-15T12:00:00"),  # EST, UTC-5
    (datetime(2026, 7, 15, 17, 0, tzinfo=UTC), "2026-07-15T13:00:00"),  # EDT, UTC-4
    (datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC), "2026-03-08T01:59:59"),  # last second before spring forward
    (datetime(2026, 3, 8, 7, 0, 0, tzinfo=UTC), "2026-03-08T03:00:00"),  # 02:00 local never happens
    (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), "2026-11-01T01:30:00"),  # first 01:30 (EDT)
    (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), "2026-11-01T01:30:00"),  # second 01:30 (EST)
])
def test_transaction_dates_are_naive_local_time_across_dst(utc, local):
    assert local_transaction_date(utc, NEW_YORK) == local


def test_the_repeated_fall_back_hour_still_gives_two_keys():
    first = event(EngagementKind.MAIL_OPEN, occurred_at=datetime(2026, 11, 1, 5, 30, tzinfo=UTC))
    second = event(EngagementKind.MAIL_OPEN, occurred_at=datetime(2026, 11, 1, 6, 30, tzinfo=UTC))
    assert plan_activity(first, NEW_YORK).key != plan_activity(second, NEW_YORK).key


def test_naive_moments_are_refused():
    with pytest.raises(ValueError, match="naive"):
        local_transaction_date(datetime(2026, 1, 1), NEW_YORK)


def test_an_event_without_contact_cannot_be_planned():
    with pytest.raises(ValueError, match="no contact ID"):
        plan_activity(event(EngagementKind.MAIL_SENT, contact_id=None), NEW_YORK)


def test_long_values_are_cut_to_the_property_length():
    url = "https://example.org/" + "x" * 400
    planned = plan_activity(event(EngagementKind.LINK_CLICK, url=url), NEW_YORK)
    assert len(planned.properties["UF_3"]) == activity_map.DETAIL.max_length
    assert planned.properties["UF_3"].endswith("…")
    assert len(planned.properties["DESCRIPTION"]) == activity_map.DESCRIPTION.max_length


def test_lookup_filters_and_key_check():
    planned = plan_activity(event(EngagementKind.MAIL_OPEN), NEW_YORK)
    assert find_filters(planned) == {"PartyId": "1000004", "ACTIVITY_TYPE": "eq:HLOGIC", "UF_1": f"eq:{planned.key}"}
    assert carries_key({"uf_1": planned.key}, planned.key)
    assert not carries_key({"UF_1": "HL1-other"}, planned.key)
    assert not carries_key({"DESCRIPTION": planned.key}, planned.key)

