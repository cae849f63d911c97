from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from include.imis_thrive.thrive.kinds import EngagementKind
from sandbox.thrive_engagement import Recipients, generate_engagement
from sandbox.thrive_vocab import EventKind

START = datetime(2026, 2, 1, tzinfo=UTC)
END = datetime(2026, 2, 8, tzinfo=UTC)


def _recipients(count: int) -> Recipients:
    ids = np.arange(1, count + 1)
    return Recipients(ids, np.array([str(100 + i) for i in ids], dtype=object),
                      np.array([f"m{i}@example.org" for i in ids], dtype=object))


@pytest.fixture(scope="module")
def generated():
    return generate_engagement(_recipients(5000), START, END, volume=200_000, seed=11)


def test_exactly_the_requested_volume_comes_out_at_realistic_ratios(generated):
    counts = generated.counts()
    sends = counts[EventKind.MAIL_SENT]

    assert sum(counts.values()) == 200_000
    assert set(counts) == set(EventKind) == set(EngagementKind)  # the integration's eight kinds, no more
    assert counts[EventKind.MAIL_OPEN] / sends == pytest.approx(0.22, rel=0.01)
    assert counts[EventKind.LINK_CLICK] / counts[EventKind.MAIL_OPEN] == pytest.approx(0.15, rel=0.01)
    assert 0 < counts[EventKind.RESUBSCRIBE] < counts[EventKind.UNSUBSCRIBE] < counts[EventKind.BAD_EMAIL]


def test_the_same_seed_gives_the_same_events_and_another_seed_does_not():
    first, again, other = (generate_engagement(_recipients(500), START, END, volume=20_000, seed=seed)
                           for seed in (11, 11, 12))

    for kind in EventKind:
        pd.testing.assert_frame_equal(first.events[kind], again.events[kind])
    assert not first.events[EventKind.MAIL_OPEN].equals(other.events[EventKind.MAIL_OPEN])


def test_every_event_falls_in_the_window(generated):
    for kind, frame in generated.events.items():
        assert frame["occurred_at"].min() >= pd.Timestamp(START), kind
        assert frame["occurred_at"].max() < pd.Timestamp(END), kind


def test_follow_ups_come_after_their_cause(generated):
    sends = generated.events[EventKind.MAIL_SENT]
    sent_at = sends.groupby(["mailing_instance_id", "subscriber_id"])["occurred_at"].min()
    opens = generated.events[EventKind.MAIL_OPEN]
    open_sent = sent_at.loc[list(zip(opens["mailing_instance_id"], opens["subscriber_id"], strict=True))].to_numpy()
    assert (opens["occurred_at"].to_numpy() >= open_sent).all()

    unsubscribes = generated.events[EventKind.UNSUBSCRIBE].set_index("subscriber_id")["occurred_at"]
    resubscribes = generated.events[EventKind.RESUBSCRIBE]
    assert unsubscribes.index.is_unique
    assert (resubscribes["occurred_at"].to_numpy() >= unsubscribes.loc[resubscribes["subscriber_id"]].to_numpy()).all()


def test_sends_reach_every_recipient_once_per_full_mailing(generated):
    sends = generated.events[EventKind.MAIL_SENT]

    per_instance = sends.groupby("mailing_instance_id")["subscriber_id"].nunique()
    assert (per_instance.iloc[:-1] == 5000).all()
    assert len(generated.mailings) == len(per_instance)


def test_clicks_carry_a_link_of_their_mailing_and_visits_a_page():
    result = generate_engagement(_recipients(50), START, END, volume=5000, seed=3)
    clicks = result.events[EventKind.LINK_CLICK]
    visits = result.events[EventKind.WEB_PAGE_VISIT]

    assert all(url.startswith(f"https://www.example.org/m/{m}/")
               for url, m in zip(clicks["url"], clicks["mailing_id"], strict=True))
    assert visits["url"].notna().all() and visits["page"].notna().all()


def test_a_tiny_volume_is_sends_only_and_nobody_to_send_to_is_an_error():
    tiny = generate_engagement(_recipients(3), START, END, volume=2, seed=0)

    assert tiny.counts()[EventKind.MAIL_SENT] == 2 and sum(tiny.counts().values()) == 2
    with pytest.raises(ValueError, match="no subscribed members"):
        generate_engagement(_recipients(0), START, END, volume=10, seed=0)
