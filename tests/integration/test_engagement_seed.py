"""`make airflow`'s day of engagement: nothing until a sync puts members into Thrive's campaign groups, then
one day, hour by hour up to the end of the current hour, which the Thrive client reads back per hourly interval."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from include.imis_thrive.thrive.engagement import iter_engagement
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.thrive.models import Subscriber
from sandbox.__main__ import ENGAGEMENT_HOURS, seed_engagement_day, seed_engagement_when_synced
from sandbox.thrive_vocab import EventKind

NOW = datetime(2026, 3, 2, 10, 25, tzinfo=UTC)


def test_no_members_no_engagement_yet(thrive_sandbox):
    with pytest.raises(ValueError, match="no subscribed members"):
        seed_engagement_day(thrive_sandbox, NOW)


def test_a_day_of_engagement_every_hour_up_to_the_end_of_this_hour(thrive_client, thrive_sandbox):
    thrive_client.upsert_subscribers([Subscriber(str(i), f"m{i}@example.org", {}) for i in range(1, 101)],
                                     interest="Newsletter")

    totals = seed_engagement_day(thrive_sandbox, NOW, per_hour=120)

    assert sum(totals.values()) == 120 * ENGAGEMENT_HOURS
    end = datetime(2026, 3, 2, 11, tzinfo=UTC)
    for hour in (end - timedelta(hours=ENGAGEMENT_HOURS), end - timedelta(hours=1)):  # the first and the current
        sent = list(iter_engagement(thrive_client, EngagementKind.MAIL_SENT, hour, hour + timedelta(hours=1)))
        assert sent, hour
    before = end - timedelta(hours=ENGAGEMENT_HOURS + 1)
    assert not list(iter_engagement(thrive_client, EngagementKind.MAIL_SENT, before, before + timedelta(hours=1)))


def test_the_seeder_waits_for_the_first_sync_then_seeds_once(thrive_client, thrive_sandbox):
    stop = threading.Event()
    seeder = threading.Thread(target=seed_engagement_when_synced, args=(thrive_sandbox, stop, 0.05))
    seeder.start()
    try:
        assert seeder.is_alive()
        thrive_client.upsert_subscribers([Subscriber("1", "m1@example.org", {})], interest="Newsletter")
        seeder.join(timeout=30)
        assert not seeder.is_alive()
    finally:
        stop.set()
        seeder.join(timeout=5)
    sends = thrive_sandbox.store.events(EventKind.MAIL_SENT)
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    assert len(sends) and sends["occurred_at"].max() < this_hour + timedelta(hours=1)
