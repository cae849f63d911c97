"""Deterministic engagement for the Thrive sandbox: sends, then the opens, clicks and the rest that follow.

Columnar (numpy) so a million events take about a second. Exactly `volume` events come out: the follow-up
counts are fixed from the rates first, and sends make up the rest. Every follow-up happens no earlier than
its cause (times are kept to the microsecond) and before `end`: an open after its send, a click after its
open, page visits and form submits after a click, a resubscribe after the same subscriber's unsubscribe.
Each subscriber unsubscribes at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from sandbox.thrive_vocab import EventKind

EVENT_COLUMNS = ("subscriber_id", "user_id", "email", "mailing_id", "mailing_instance_id", "occurred_at", "url", "page")
SITE = "https://www.example.org"
WEB_PAGES = (
    ("/events/annual-conference", "Annual Conference 2026"),
    ("/membership/renew", "Renew your membership"),
    ("/news/latest", "Latest news"),
    ("/careers", "Career Center"),
    ("/store/books", "Bookstore"),
)
FORMS = ("Conference Registration", "Membership Renewal", "Newsletter Preferences")
BOUNCE_REASON = "Hard bounce: mailbox does not exist"
LINKS_PER_MAILING = 4


@dataclass(frozen=True)
class EngagementRates:
    """Ratios typical of association email (opens per send, clicks per open, ...)."""

    open_per_send: float = 0.22
    click_per_open: float = 0.15
    unsubscribe_per_send: float = 0.002
    resubscribe_per_unsubscribe: float = 0.05
    bad_email_per_send: float = 0.004
    landing_submit_per_click: float = 0.08
    web_visit_per_click: float = 1.2

    def events_per_send(self) -> float:
        clicks = self.open_per_send * self.click_per_open
        return (1 + self.open_per_send + clicks + self.unsubscribe_per_send * (1 + self.resubscribe_per_unsubscribe)
                + self.bad_email_per_send + clicks * (self.landing_submit_per_click + self.web_visit_per_click))


@dataclass(frozen=True)
class Recipients:
    """The subscribed members a mailing goes to, as parallel arrays."""

    subscriber_id: np.ndarray
    user_id: np.ndarray  # object: str or None
    email: np.ndarray  # object: str

    def __len__(self) -> int:
        return len(self.subscriber_id)

    def ordered_by_contact(self) -> Recipients:
        order = np.argsort(np.array([str(contact) for contact in self.user_id], dtype=object), kind="stable")
        return Recipients(self.subscriber_id[order], self.user_id[order], self.email[order])


@dataclass
class GeneratedEngagement:
    """Mailing instances plus one frame of `EVENT_COLUMNS` per engagement kind."""

    mailings: pd.DataFrame
    events: dict[EventKind, pd.DataFrame]

    def counts(self) -> dict[EventKind, int]:
        return {kind: len(frame) for kind, frame in self.events.items()}


def _after(rng: np.random.Generator, cause_ns: np.ndarray, end_ns: int, skew: float) -> np.ndarray:
    """Moments strictly between each cause and `end`, front-loaded by `skew` (most follow-ups come soon)."""
    span = end_ns - cause_ns
    return cause_ns + np.floor(span * rng.random(len(cause_ns)) ** skew).astype(np.int64)


def _follow(rng: np.random.Generator, count: int, pool: int) -> np.ndarray:
    return rng.integers(0, pool, count) if pool else np.zeros(0, dtype=np.int64)


def generate_engagement(
    recipients: Recipients,
    start: datetime,
    end: datetime,
    volume: int,
    seed: int,
    rates: EngagementRates = EngagementRates(),
    first_mailing_id: int = 1,
    target_group_id: int | None = None,
) -> GeneratedEngagement:
    """`volume` events in `[start, end)` for these recipients, the same for the same arguments."""
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise ValueError("the engagement window needs timezone-aware bounds with start < end")
    if volume < 1:
        raise ValueError(f"volume must be at least 1, got {volume}")
    if len(recipients) == 0:
        raise ValueError("no subscribed members to send to: upsert subscribers (or seed the sandbox) first")
    rng = np.random.default_rng(seed)
    start_ns, end_ns = _ns(start), _ns(end)
    n_recipients = len(recipients)

    planned_sends = max(1, int(volume / rates.events_per_send()))
    n_open = round(planned_sends * rates.open_per_send)
    n_click = round(n_open * rates.click_per_open)
    n_unsub = min(round(planned_sends * rates.unsubscribe_per_send), n_recipients)
    n_resub = round(n_unsub * rates.resubscribe_per_unsubscribe)
    n_bad = round(planned_sends * rates.bad_email_per_send)
    n_land = round(n_click * rates.landing_submit_per_click)
    n_web = round(n_click * rates.web_visit_per_click)
    n_sends = volume - (n_open + n_click + n_unsub + n_resub + n_bad + n_land + n_web)
    if n_sends < 1:  # a tiny volume: sends only
        n_open = n_click = n_unsub = n_resub = n_bad = n_land = n_web = 0
        n_sends = volume
    n_bad = min(n_bad, n_sends)

    # Sends: instance i goes to recipients in order; the last instance may reach only the first few.
    n_instances = -(-n_sends // n_recipients)
    instance_ns = start_ns + (np.arange(n_instances, dtype=np.int64) * ((end_ns - start_ns) // 2)) // n_instances
    instance_ids = first_mailing_id + np.arange(n_instances, dtype=np.int64)
    send = np.arange(n_sends, dtype=np.int64)
    send_instance = send // n_recipients
    send_recipient = send % n_recipients
    send_ns = instance_ns[send_instance]

    def frame(instance: np.ndarray, recipient: np.ndarray, moments: np.ndarray,
              url: np.ndarray | None = None, page: np.ndarray | None = None, mailing: bool = True) -> pd.DataFrame:
        count = len(recipient)
        return pd.DataFrame({
            "subscriber_id": recipients.subscriber_id[recipient],
            "user_id": recipients.user_id[recipient],
            "email": recipients.email[recipient],
            "mailing_id": pd.array(instance_ids[instance] if mailing else [None] * count, dtype="Int64"),
            "mailing_instance_id": pd.array(instance_ids[instance] if mailing else [None] * count, dtype="Int64"),
            "occurred_at": pd.to_datetime(moments // 1000 * 1000, utc=True),  # Thrive keeps 100 ns; we keep us
            "url": url if url is not None else np.full(count, None, dtype=object),
            "page": page if page is not None else np.full(count, None, dtype=object),
        }, columns=list(EVENT_COLUMNS))

    opened = _follow(rng, n_open, n_sends)
    open_ns = _after(rng, send_ns[opened], end_ns, 3.0)
    clicked = _follow(rng, n_click, n_open)
    click_ns = _after(rng, open_ns[clicked], end_ns, 3.0)
    click_send = opened[clicked]
    link = rng.integers(0, LINKS_PER_MAILING, n_click)
    click_url = np.array([f"{SITE}/m/{m}/link-{k}"
                          for m, k in zip(instance_ids[send_instance[click_send]], link, strict=True)], dtype=object)
    landed = _follow(rng, n_land, n_click)
    visited = _follow(rng, n_web, n_click)
    page_index = rng.integers(0, len(WEB_PAGES), n_web)
    web_url = np.array([SITE + path for path, _ in WEB_PAGES], dtype=object)[page_index]
    web_title = np.array([title for _, title in WEB_PAGES], dtype=object)[page_index]
    form = np.array(FORMS, dtype=object)[rng.integers(0, len(FORMS), n_land)]

    # Unsubscribes: distinct recipients, each from one of the instances that reached them.
    quitter = rng.choice(n_recipients, n_unsub, replace=False) if n_unsub else np.zeros(0, dtype=np.int64)
    reached = n_sends // n_recipients + (quitter < n_sends % n_recipients)
    quit_instance = np.floor(rng.random(n_unsub) * reached).astype(np.int64)
    quit_ns = _after(rng, instance_ns[quit_instance], end_ns, 2.0)
    returner = rng.choice(n_unsub, n_resub, replace=False) if n_resub else np.zeros(0, dtype=np.int64)
    bounced = rng.choice(n_sends, n_bad, replace=False) if n_bad else np.zeros(0, dtype=np.int64)
    bounce_reason = np.full(n_bad, BOUNCE_REASON, dtype=object)

    events = {
        EventKind.MAIL_SENT: frame(send_instance, send_recipient, send_ns),
        EventKind.MAIL_OPEN: frame(send_instance[opened], send_recipient[opened], open_ns),
        EventKind.LINK_CLICK: frame(send_instance[click_send], send_recipient[click_send], click_ns,
                                         url=click_url),
        EventKind.LANDING_PAGE_SUBMIT: frame(
            send_instance[click_send[landed]], send_recipient[click_send[landed]],
            _after(rng, click_ns[landed], end_ns, 2.0), page=form, mailing=False),
        EventKind.WEB_PAGE_VISIT: frame(
            send_instance[click_send[visited]], send_recipient[click_send[visited]],
            _after(rng, click_ns[visited], end_ns, 2.0), url=web_url, page=web_title, mailing=False),
        EventKind.UNSUBSCRIBE: frame(quit_instance, quitter, quit_ns),
        EventKind.RESUBSCRIBE: frame(quit_instance[returner], quitter[returner],
                                          _after(rng, quit_ns[returner], end_ns, 1.0), mailing=False),
        EventKind.BAD_EMAIL: frame(send_instance[bounced], send_recipient[bounced],
                                        _after(rng, send_ns[bounced], end_ns, 8.0), page=bounce_reason),
    }
    mailings = pd.DataFrame({
        "mailing_instance_id": instance_ids,
        "mailing_id": instance_ids,
        "mailing_date": pd.to_datetime(instance_ns, utc=True),
        "mailing_subject": [f"Sandbox mailing {i}" for i in instance_ids],
        "is_test": np.zeros(n_instances, dtype=np.int64),
        "target_group_id": pd.array([target_group_id] * n_instances, dtype="Int64"),
    })
    return GeneratedEngagement(mailings=mailings, events=events)


def _ns(moment: datetime) -> int:
    return int(pd.Timestamp(moment.astimezone(UTC)).value)
