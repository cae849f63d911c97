"""Event keys: the same event always gets the same key, and any identifying difference gives another."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from include.imis_thrive.thrive.engagement import EngagementEvent
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback.event_keys import event_key

CLICK = EngagementEvent(EngagementKind.LINK_CLICK, "1000004", "a@example.org", "12", "34",
                        datetime(2026, 3, 8, 6, 30, 15, 123456, tzinfo=UTC), url="https://example.org/a", page=None)


def test_key_is_stable_and_short():
    assert event_key(CLICK) == event_key(dataclasses.replace(CLICK))
    assert re.fullmatch(r"HL1-[0-9a-f]{32}", event_key(CLICK))


def test_the_same_moment_in_another_zone_is_the_same_event():
    eastern = CLICK.occurred_at.astimezone(timezone(timedelta(hours=-5)))
    assert event_key(dataclasses.replace(CLICK, occurred_at=eastern)) == event_key(CLICK)


@pytest.mark.parametrize("change", [
    {"kind": EngagementKind.MAIL_OPEN},
    {"contact_id": "1000005"},
    {"mailing_id": "13"},
    {"mailing_instance_id": "35"},
    {"occurred_at": CLICK.occurred_at + timedelta(microseconds=1)},
    {"url": "https://example.org/b"},
])
def test_each_identifying_part_changes_the_key(change):
    assert event_key(dataclasses.replace(CLICK, **change)) != event_key(CLICK)


def test_descriptive_text_and_email_do_not_change_the_key():
    reworded = dataclasses.replace(CLICK, page="A new page title", email="new@example.org")
    assert event_key(reworded) == event_key(CLICK)
