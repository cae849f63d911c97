from datetime import UTC, datetime

import pytest

from include.imis_thrive.thrive.engagement import EngagementKind, KindUnavailable, event_from_record, iter_engagement
from include.imis_thrive.thrive.errors import ThriveFault
from include.imis_thrive.thrive.grids import DERIVED_KINDS, ENGAGEMENT_GRIDS, Grid

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 3, 2, tzinfo=UTC)


def test_eight_kinds_each_have_a_grid_or_are_derived():
    assert [kind.value for kind in EngagementKind] == [
        "Bad Email", "Landing Page Submit", "Unsubscribe", "Resubscribe", "Web Tracking Page Visit",
        "Mail Sent", "Mail Open", "Link Click",
    ]
    assert set(ENGAGEMENT_GRIDS) | DERIVED_KINDS == set(EngagementKind)
    assert not set(ENGAGEMENT_GRIDS) & DERIVED_KINDS
    read = {grid for spec in ENGAGEMENT_GRIDS.values() for grid in spec.grids}
    assert "subscriber_resubscribes" not in read and "suppressed_subscribers" not in read


def test_a_click_row_becomes_a_normalised_event_whatever_the_case_of_its_elements():
    spec = ENGAGEMENT_GRIDS[EngagementKind.LINK_CLICK]
    record = {"user_id": "1001", "email": "a@example.org", "link_date": "2026-03-01T10:00:00.1234567Z",
              "mailing_id": "7", "mailing_instance_id": "70", "link": "https://example.org/?a=1&b=2"}

    event = event_from_record(EngagementKind.LINK_CLICK, spec, record)

    assert event.kind is EngagementKind.LINK_CLICK
    assert (event.contact_id, event.email) == ("1001", "a@example.org")
    assert (event.mailing_id, event.mailing_instance_id) == ("7", "70")
    assert event.occurred_at == datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert (event.url, event.page) == ("https://example.org/?a=1&b=2", None)


def test_a_web_visit_keeps_url_and_page_title_and_a_row_without_a_date_is_no_event():
    spec = ENGAGEMENT_GRIDS[EngagementKind.WEB_PAGE_VISIT]
    record = {"remote_id": "5", "subscriber_email": "b@example.org", "create_date": "2026-03-01T00:00:00.0000000Z",
              "url": "https://example.org/events", "page_title": "Events"}

    event = event_from_record(EngagementKind.WEB_PAGE_VISIT, spec, record)

    assert (event.contact_id, event.mailing_id) == ("5", None)
    assert (event.url, event.page) == ("https://example.org/events", "Events")
    assert event_from_record(EngagementKind.WEB_PAGE_VISIT, spec, {**record, "create_date": None}) is None


@pytest.mark.parametrize(("start", "end", "message"), [
    (datetime(2026, 3, 1), END, "timezone-aware"),
    (END, START, "empty engagement window"),
])
def test_windows_must_be_aware_and_non_empty(start, end, message):
    with pytest.raises(ValueError, match=message):
        next(iter_engagement(None, EngagementKind.MAIL_OPEN, start, end))


def test_an_unavailable_kind_names_it_as_the_dags_kinds_param_spells_it():
    fault = ThriveFault("grid mailing_activity_opens", "InvalidGridCategoryException", "unknown grid")
    message = str(KindUnavailable(EngagementKind.MAIL_OPEN, Grid.MAILING_ACTIVITY_OPENS, fault))

    assert message.startswith("Mail Open: Thrive refused grid mailing_activity_opens (InvalidGridCategoryException")
    assert "leave 'Mail Open' out of the DAG's `kinds` param" in message
    assert "EngagementKind" not in message
