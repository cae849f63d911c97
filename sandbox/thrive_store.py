"""The Thrive sandbox's in-memory brand: subscribers, interests, uploads, mailings, engagement, and its grids.

Writes follow the vendor's rules where they are documented and the most likely behaviour elsewhere:
upserts match on the remote `<ID>` first, then on email; an unsubscribed subscriber is never resubscribed
by an upsert (only BulkUpload `ResubscribeSubscribers` does; no vendor grid records resubscribe events, so
one shows only as state: a subscriber whose unsubscribed state ended); a malformed email is refused and
recorded as a bad-email event. Grids (`thrive_vocab.GRIDS`) are pandas frames with lower-case
columns, filtered, sorted (stably) and paged the way `GridRequest` asks; each is rebuilt only when the
data it is made from changed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeAlias

import numpy as np
import pandas as pd

from sandbox.thrive_engagement import EVENT_COLUMNS, GeneratedEngagement, Recipients
from sandbox.thrive_vocab import (
    DEFAULT_UNSUBSCRIBE_REASON,
    EMAIL_MAX_LENGTH,
    GRIDS,
    HISTORY_DAYS,
    EventKind,
    FaultCode,
    InterestAction,
    parse_timestamp,
)

_DOUBLED_SUFFIX = re.compile(r"(\.[a-z]{2,})\1$", re.IGNORECASE)
_QUERY_CACHE_SIZE = 16


class SandboxFault(Exception):
    """Answered as a SOAP `InformzAAPIFault` with this code and reason."""

    def __init__(self, code: FaultCode, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


def malformed_email(email: str | None) -> str | None:
    """Why Thrive would call this address malformed (two `@`, a doubled `.com`, ...), or None."""
    if not email or not email.strip():
        return "email is missing"
    if len(email) > EMAIL_MAX_LENGTH:
        return f"email is longer than {EMAIL_MAX_LENGTH} characters"
    if email.count("@") != 1:
        return "email must contain exactly one @"
    local, domain = email.split("@")
    if not local or "." not in domain or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        return "email domain is malformed"
    if any(character.isspace() for character in email):
        return "email contains whitespace"
    if _DOUBLED_SUFFIX.search(domain):
        return "email domain repeats its suffix (e.g. .com.com)"
    return None


@dataclass
class SandboxSubscriber:
    subscriber_id: int
    email: str
    user_id: str | None
    fields: dict[str, str | None]
    service_since_date: datetime
    modified_date: datetime
    is_unsubscriber: bool = False
    cancellation_date: datetime | None = None
    cancellation_mailing_instance_id: int | None = None
    cancellation_message: str | None = None
    cancel_id: int | None = None
    bounce_date: datetime | None = None
    upload_id: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "subscriber_id": self.subscriber_id, "contact_id": self.user_id, "email": self.email,
            "fields": dict(self.fields), "is_unsubscriber": self.is_unsubscriber,
            "cancellation_date": self.cancellation_date, "bounce_date": self.bounce_date,
        }


@dataclass
class SandboxInterest:
    interest_id: int
    name: str
    is_deleted: bool = False
    campaign_since: datetime | None = None  # marked as mailed by an active campaign (the admin surface)
    last_mailed: datetime | None = None  # the latest mailing_instance that targeted it

    @property
    def in_active_campaign(self) -> bool:
        return self.campaign_since is not None

    @property
    def last_used_date(self) -> datetime | None:
        """target_group_counts.last_used_date: the documented signal of a group being mailed."""
        return max(filter(None, (self.campaign_since, self.last_mailed)), default=None)


@dataclass
class UploadRow:
    email: str
    user_id: str | None
    fields: dict[str, str | None]
    interests: list[SandboxInterest] = field(default_factory=list)  # a BulkUpload `Interest` column


@dataclass
class SandboxUpload:
    upload_id: int
    date: datetime
    action: InterestAction
    interests: list[SandboxInterest]
    rows: list[UploadRow]
    polls_left: int
    status: str
    status_recipients: tuple[str, ...] = ()
    counts: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Outcome:
    """What one upserted record came to: created / updated / unsubscribed / rejected (+ why)."""

    email: str
    user_id: str | None
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class ConditionSpec:
    element: str
    operator: str
    values: tuple[str, ...]


class ThriveStore:
    """One brand's data; not thread-safe by itself (the sandbox app serialises access)."""

    def __init__(self, clock: Callable[[], datetime], brand_id: str = "0",
                 upload_statuses: tuple[str, str] = ("Processing", "Complete")) -> None:
        self.clock = clock
        self.brand_id = brand_id
        self.upload_statuses = upload_statuses  # (while pending, when done): OPEN, selectable at start
        self.subscribers: dict[int, SandboxSubscriber] = {}
        self._by_user_id: dict[str, int] = {}
        self._by_email: dict[str, int] = {}
        self.interests: dict[str, SandboxInterest] = {}
        # interest_id -> subscriber_id -> (membership row id, member since)
        self.members: dict[int, dict[int, tuple[int, datetime]]] = {}
        self.uploads: dict[int, SandboxUpload] = {}
        self._events: dict[EventKind, list[pd.DataFrame]] = {kind: [] for kind in EventKind}
        self._pending: dict[EventKind, list[dict[str, object]]] = {kind: [] for kind in EventKind}
        self._mailings: list[pd.DataFrame] = []
        self._versions: Counter[str] = Counter()
        self._frames: dict[str, tuple[int, pd.DataFrame]] = {}
        self._queries: dict[tuple[object, ...], pd.DataFrame] = {}
        self._next_id = Counter({"subscriber": 1, "interest": 1, "upload": 1, "mailing": 1, "membership": 1,
                                "cancel": 1})

    def _new_id(self, what: str) -> int:
        value = self._next_id[what]
        self._next_id[what] += 1
        return value

    def _touch(self, *sources: str) -> None:
        for source in sources:
            self._versions[source] += 1

    # --- interests ----------------------------------------------------------------------------------------
    def add_interest(self, name: str, in_active_campaign: bool = False) -> SandboxInterest:
        interest = self.interests.get(name.lower())
        if interest is None:
            interest = SandboxInterest(self._new_id("interest"), name)
            self.interests[name.lower()] = interest
            self.members[interest.interest_id] = {}
        if in_active_campaign and interest.campaign_since is None:
            interest.campaign_since = self.clock()
        self._touch("interests")
        return interest

    def set_campaign_interests(self, names: Iterable[str]) -> None:
        wanted = {name.lower() for name in names}
        missing = wanted - set(self.interests)
        if missing:
            raise KeyError(f"no such interests: {sorted(missing)}")
        for key, interest in self.interests.items():
            if key not in wanted:
                interest.campaign_since = None
            elif interest.campaign_since is None:
                interest.campaign_since = self.clock()
        self._touch("interests")

    def interest(self, name: str) -> SandboxInterest:
        interest = self.interests.get(name.lower())
        if interest is None or interest.is_deleted:
            raise SandboxFault(FaultCode.ITEM_NOT_FOUND, f"Interest '{name}' does not exist in this brand")
        return interest

    def interest_members(self, name: str) -> list[SandboxSubscriber]:
        interest = self.interest(name)
        return [self.subscribers[sid] for sid in sorted(self.members[interest.interest_id])]

    # --- subscribers --------------------------------------------------------------------------------------
    def find(self, user_id: str | None, email: str | None) -> SandboxSubscriber | None:
        sid = self._by_user_id.get(user_id) if user_id else None
        if sid is None and email:
            sid = self._by_email.get(email.strip().lower())
        return self.subscribers.get(sid) if sid is not None else None

    def upsert(self, row: UploadRow, interests: Iterable[SandboxInterest]) -> Outcome:
        """Insert or update one subscriber, add it to `interests`; never resubscribes (consent wins)."""
        now = self.clock()
        if row.user_id is not None and not row.user_id.isdigit():
            return Outcome(row.email, row.user_id, "rejected", f"ID {row.user_id!r} is not an integer")
        problem = malformed_email(row.email)
        if problem:
            self.record_event(EventKind.BAD_EMAIL, None, row.user_id, row.email, now, page=problem)
            return Outcome(row.email, row.user_id, "rejected", problem)
        email = row.email.strip()
        subscriber = self.find(row.user_id, email)
        owner = self._by_email.get(email.lower())
        if owner is not None and (subscriber is None or owner != subscriber.subscriber_id or (
                row.user_id and subscriber.user_id and subscriber.user_id != row.user_id)):
            return Outcome(email, row.user_id, "rejected",
                           f"email already belongs to subscriber with ID {self.subscribers[owner].user_id}")
        if subscriber is None:
            subscriber = SandboxSubscriber(self._new_id("subscriber"), email, row.user_id, {}, now, now)
            self.subscribers[subscriber.subscriber_id] = subscriber
            status = "created"
        else:
            self._by_email.pop(subscriber.email.lower(), None)
            status = "unsubscribed" if subscriber.is_unsubscriber else "updated"
        if row.user_id:
            if subscriber.user_id and subscriber.user_id != row.user_id:
                self._by_user_id.pop(subscriber.user_id, None)
            subscriber.user_id = row.user_id
            self._by_user_id[row.user_id] = subscriber.subscriber_id
        subscriber.email = email
        self._by_email[email.lower()] = subscriber.subscriber_id
        subscriber.fields.update(row.fields)
        subscriber.modified_date = now
        for interest in interests:
            members = self.members[interest.interest_id]
            if subscriber.subscriber_id not in members:
                members[subscriber.subscriber_id] = (self._new_id("membership"), now)
        self._touch("subscribers", "members")
        return Outcome(email, subscriber.user_id, status)

    def replace_members(self, interests: Iterable[SandboxInterest], rows: Iterable[UploadRow]) -> None:
        """`ReplaceAllSubscribers`: afterwards each interest holds exactly these rows' subscribers."""
        found = (self.find(row.user_id, row.email) for row in rows)
        keep = {subscriber.subscriber_id for subscriber in found if subscriber is not None}
        for interest in interests:
            members = self.members[interest.interest_id]
            for sid in [sid for sid in members if sid not in keep]:
                del members[sid]
        self._touch("members")

    def remove_member(self, interest: SandboxInterest, row: UploadRow) -> bool:
        subscriber = self.find(row.user_id, row.email)
        if subscriber is None:
            return False
        self._touch("members")
        return self.members[interest.interest_id].pop(subscriber.subscriber_id, None) is not None

    # --- edits made in Thrive's own UI, behind the pipeline's back (test knobs) --------------------------------
    def drop_members(self, name: str, user_ids: Iterable[str]) -> int:
        """A marketer removes members of an interest by hand; returns how many were members."""
        members = self.members[self.interest(name).interest_id]
        found = (self.find(user_id, None) for user_id in user_ids)
        dropped = sum(members.pop(s.subscriber_id, None) is not None for s in found if s is not None)
        self._touch("members")
        return dropped

    def join_members(self, name: str, user_ids: Iterable[str]) -> int:
        """A marketer adds existing subscribers to an interest by hand; returns how many joined."""
        interest = self.interest(name)
        members = self.members[interest.interest_id]
        joined = 0
        for subscriber in filter(None, (self.find(user_id, None) for user_id in user_ids)):
            if subscriber.subscriber_id not in members:
                members[subscriber.subscriber_id] = (self._new_id("membership"), self.clock())
                joined += 1
        self._touch("members")
        return joined

    def edit_field(self, user_id: str, name: str, value: str | None) -> None:
        """A marketer edits one personalization field of a subscriber by hand."""
        subscriber = self.find(user_id, None)
        if subscriber is None:
            raise KeyError(f"no subscriber with contact ID {user_id}")
        subscriber.fields[name] = value
        subscriber.modified_date = self.clock()
        self._touch("subscribers")

    def unsubscribe(self, subscriber: SandboxSubscriber, when: datetime, mailing_instance_id: int | None,
                    reason: str | None = None) -> None:
        subscriber.is_unsubscriber = True
        subscriber.cancellation_date = when
        subscriber.cancellation_mailing_instance_id = mailing_instance_id
        subscriber.cancellation_message = reason or DEFAULT_UNSUBSCRIBE_REASON
        subscriber.cancel_id = self._new_id("cancel")
        subscriber.modified_date = max(subscriber.modified_date, when)
        self._touch("subscribers")

    def resubscribe(self, subscriber: SandboxSubscriber, when: datetime) -> bool:
        """Only the explicit resubscribe action gets here. No vendor grid records resubscribe events, so it is
        visible only as state: `is_unsubscriber` back to 0 and `modified_date` moved (the cancellation stays)."""
        if not subscriber.is_unsubscriber:
            return False
        subscriber.is_unsubscriber = False
        subscriber.modified_date = max(subscriber.modified_date, when)
        self._touch("subscribers")
        return True

    def subscribed_recipients(self, interests: Iterable[SandboxInterest] = ()) -> Recipients:
        """Subscribed members of `interests` (every subscribed subscriber when none), by subscriber id."""
        chosen = list(interests)
        ids = sorted({sid for interest in chosen for sid in self.members[interest.interest_id]}
                     if chosen else self.subscribers)
        live = [self.subscribers[sid] for sid in ids if not self.subscribers[sid].is_unsubscriber]
        return Recipients(
            subscriber_id=np.array([s.subscriber_id for s in live], dtype=np.int64),
            user_id=np.array([s.user_id for s in live], dtype=object),
            email=np.array([s.email for s in live], dtype=object),
        )

    # --- uploads ------------------------------------------------------------------------------------------
    def queue_upload(self, action: InterestAction, interests: list[SandboxInterest], rows: list[UploadRow],
                     polls: int, status_recipients: tuple[str, ...] = ()) -> SandboxUpload:
        upload = SandboxUpload(self._new_id("upload"), self.clock(), action, interests, rows, polls,
                               self.upload_statuses[0], status_recipients)
        self.uploads[upload.upload_id] = upload
        self._touch("uploads")
        return upload

    def advance_uploads(self) -> None:
        """One poll of upload_history: each pending upload gets one step closer to done."""
        for upload in self.uploads.values():
            if upload.status != self.upload_statuses[0]:
                continue
            if upload.polls_left > 0:
                upload.polls_left -= 1
            else:
                self._process_upload(upload)
            self._touch("uploads")

    def _process_upload(self, upload: SandboxUpload) -> None:
        now = self.clock()
        counts = upload.counts
        for row in upload.rows:
            counts["total"] += 1
            if upload.action in (InterestAction.ADD_OR_UPDATE, InterestAction.REPLACE_ALL):
                outcome = self.upsert(row, upload.interests + row.interests)
                counts[outcome.status] += 1
                if outcome.status != "rejected":
                    found = self.find(outcome.user_id, outcome.email)
                    if found is not None:
                        found.upload_id = upload.upload_id
                continue
            subscriber = self.find(row.user_id, row.email)
            if subscriber is None:
                counts["invalid" if malformed_email(row.email) else "unmatched"] += 1
            elif upload.action is InterestAction.REMOVE:
                counts["removed"] += sum(self.remove_member(interest, row) for interest in upload.interests)
            elif upload.action is InterestAction.UNSUBSCRIBE:
                self.unsubscribe(subscriber, now, None)
                counts["unsubscribed"] += 1
            else:
                counts["resubscribed"] += self.resubscribe(subscriber, now)
        if upload.action is InterestAction.REPLACE_ALL:
            self.replace_members(upload.interests, upload.rows)
        upload.rows = []
        upload.status = self.upload_statuses[1]

    # --- engagement ---------------------------------------------------------------------------------------
    def record_event(self, kind: EventKind, subscriber_id: int | None, user_id: str | None, email: str | None,
                     when: datetime, mailing_instance_id: int | None = None, url: str | None = None,
                     page: str | None = None) -> None:
        self._pending[kind].append({
            "subscriber_id": subscriber_id, "user_id": user_id, "email": email, "mailing_id": mailing_instance_id,
            "mailing_instance_id": mailing_instance_id, "occurred_at": pd.Timestamp(when), "url": url, "page": page,
        })
        self._touch(f"events:{kind.name}")

    def next_mailing_id(self) -> int:
        return self._next_id["mailing"]

    def apply_engagement(self, generated: GeneratedEngagement) -> None:
        """Store generated events; unsubscribes, resubscribes and bounces also change the subscribers."""
        self._next_id["mailing"] += len(generated.mailings)
        self._mailings.append(generated.mailings)
        self._touch("mailings")
        unsubscribes = generated.events[EventKind.UNSUBSCRIBE]
        for sid, when, instance in zip(unsubscribes["subscriber_id"], unsubscribes["occurred_at"],
                                       unsubscribes["mailing_instance_id"], strict=True):
            self.unsubscribe(self.subscribers[int(sid)], when.to_pydatetime(), int(instance))
        resubscribes = generated.events[EventKind.RESUBSCRIBE]
        for sid, when in zip(resubscribes["subscriber_id"], resubscribes["occurred_at"], strict=True):
            self.resubscribe(self.subscribers[int(sid)], when.to_pydatetime())
        by_id = {interest.interest_id: interest for interest in self.interests.values()}
        mailings = generated.mailings
        for target, when in zip(mailings["target_group_id"], mailings["mailing_date"], strict=True):
            interest = by_id.get(int(target)) if not pd.isna(target) else None
            if interest is not None:
                interest.last_mailed = max(filter(None, (interest.last_mailed, when.floor("us").to_pydatetime())))
        self._touch("interests")
        bounces = generated.events[EventKind.BAD_EMAIL]
        for sid, when in zip(bounces["subscriber_id"], bounces["occurred_at"], strict=True):
            subscriber = self.subscribers[int(sid)]
            subscriber.bounce_date = max(filter(None, (subscriber.bounce_date, when.to_pydatetime())))
        for kind, frame in generated.events.items():
            if kind not in (EventKind.UNSUBSCRIBE, EventKind.RESUBSCRIBE) and len(frame):
                self._events[kind].append(frame)
                self._touch(f"events:{kind.name}")
        self._touch("subscribers")

    def events(self, kind: EventKind) -> pd.DataFrame:
        """All stored events of one kind in `EVENT_COLUMNS` (unsubscribes live on the subscribers)."""
        pending = self._pending[kind]
        if pending:
            extra = pd.DataFrame(pending, columns=list(EVENT_COLUMNS))
            extra["occurred_at"] = pd.to_datetime(extra["occurred_at"], utc=True)
            for column in ("subscriber_id", "mailing_id", "mailing_instance_id"):
                extra[column] = pd.array(extra[column], dtype="Int64")
            self._events[kind].append(extra)
            pending.clear()
        chunks = self._events[kind]
        if len(chunks) > 1:
            self._events[kind] = chunks = [pd.concat(chunks, ignore_index=True)]
        return chunks[0] if chunks else pd.DataFrame(columns=list(EVENT_COLUMNS))

    # --- grids --------------------------------------------------------------------------------------------
    def _sources(self, grid: str) -> tuple[str, ...]:
        events = tuple(f"events:{kind.name}" for kind in _EVENT_SOURCES.get(grid, ()))
        return events + {
            "subscriber": ("subscribers",), "subscriber_interests": ("subscribers", "members", "interests"),
            "subscriber_personal_information": ("subscribers",),
            "interest_target_group": ("interests",), "target_group_counts": ("interests", "members"),
            "mailing_instance": ("mailings",), "upload_history": ("uploads",),
        }.get(grid, ()) + (("clock",) if grid in _CLOCK_SPLIT else ())

    def grid_frame(self, grid: str) -> pd.DataFrame:
        """The whole grid, lower-case columns, rebuilt only when its sources changed."""
        if grid in _CLOCK_SPLIT:  # the 100-day split moves with the clock
            self._versions["clock"] = int(self.clock().timestamp() // 3600)
        version = sum(self._versions[source] for source in self._sources(grid))
        cached = self._frames.get(grid)
        if cached is not None and cached[0] == version:
            return cached[1]
        frame = self._build(grid)
        self._frames[grid] = (version, frame)
        return frame

    def _build(self, grid: str) -> pd.DataFrame:
        builder = getattr(self, f"_grid_{grid}", None)
        if builder is None:
            raise SandboxFault(FaultCode.INVALID_GRID, f"Grid type '{grid}' is not a known grid")
        return builder()

    def _grid_subscriber(self) -> pd.DataFrame:
        return _frame("subscriber", [
            (s.subscriber_id, s.email, s.user_id, s.modified_date, s.service_since_date, int(s.is_unsubscriber),
             s.cancellation_date, s.cancellation_message, s.cancel_id, s.cancellation_mailing_instance_id,
             s.bounce_date, int(s.bounce_date is not None), s.upload_id, s.user_id)
            for s in self.subscribers.values()
        ])

    def _grid_subscriber_interests(self) -> pd.DataFrame:
        names = {interest.interest_id: interest.name for interest in self.interests.values()}
        rows = []
        for interest_id, members in self.members.items():
            for sid, (membership_id, since) in members.items():
                subscriber = self.subscribers[sid]
                rows.append((membership_id, sid, subscriber.email, subscriber.user_id, interest_id,
                             names[interest_id], since, None, None))
        return _frame("subscriber_interests", rows)

    def _grid_subscriber_personal_information(self) -> pd.DataFrame:
        """One row per subscriber and personalization field it holds; field ids in the order first seen."""
        field_ids: dict[str, int] = {}
        rows: list[tuple[object, ...]] = []
        for subscriber in self.subscribers.values():
            for name, value in subscriber.fields.items():
                field_id = field_ids.setdefault(name.lower(), len(field_ids) + 1)
                rows.append((len(rows) + 1, subscriber.email, field_id, name, value))
        return _frame("subscriber_personal_information", rows)

    def _grid_interest_target_group(self) -> pd.DataFrame:
        return _frame("interest_target_group", [
            (int(self.brand_id) if self.brand_id.isdigit() else None, int(i.is_deleted), i.interest_id, i.name)
            for i in self.interests.values()
        ])

    def _grid_target_group_counts(self) -> pd.DataFrame:
        now = self.clock()
        return _frame("target_group_counts", [
            (i.interest_id, i.name, None, "Interest", len(self.members[i.interest_id]), now, 0, i.last_used_date)
            for i in self.interests.values() if not i.is_deleted
        ])

    def _grid_mailing_instance(self) -> pd.DataFrame:
        frames = [frame for frame in self._mailings if len(frame)]
        if not frames:
            return _frame("mailing_instance", [])
        mailings = pd.concat(frames, ignore_index=True)
        return _columns("mailing_instance", len(mailings), {
            "mailing_instance_id": mailings["mailing_instance_id"], "mailing_id": mailings["mailing_id"],
            "mailing_date": mailings["mailing_date"], "mailing_subject": mailings["mailing_subject"],
            "is_test": mailings["is_test"], "target_group_id": mailings["target_group_id"],
        })

    def _grid_upload_history(self) -> pd.DataFrame:
        return _frame("upload_history", [
            (u.upload_id, int(self.brand_id) if self.brand_id.isdigit() else None, u.date, u.status,
             u.counts["total"], u.counts["invalid"] + u.counts["rejected"], u.counts["updated"],
             u.counts["duplicate"], u.counts["updated"] + u.counts["unsubscribed"], u.counts["created"],
             u.counts["unsubscribed"], u.status_recipients[0] if u.status_recipients else None)
            for u in self.uploads.values()
        ])

    def _sends(self, recent: bool | None) -> pd.DataFrame:
        """Mail Sent events with their was_opened / was_clicked flags; `recent` picks a side of the 100-day split."""
        sends = self.events(EventKind.MAIL_SENT)
        if recent is not None:
            newer = sends["occurred_at"] >= pd.Timestamp(self.clock() - timedelta(days=HISTORY_DAYS))
            sends = sends[newer if recent else ~newer]
        key = pd.MultiIndex.from_arrays([sends["mailing_instance_id"], sends["subscriber_id"]])
        flags = {}
        for name, kind in (("opened", EventKind.MAIL_OPEN), ("clicked", EventKind.LINK_CLICK)):
            other = self.events(kind)
            flags[name] = key.isin(pd.MultiIndex.from_arrays([other["mailing_instance_id"], other["subscriber_id"]]))
        return sends.assign(opened=flags["opened"].astype(np.int64), clicked=flags["clicked"].astype(np.int64))

    def _history(self, grid: str, recent: bool) -> pd.DataFrame:
        sends = self._sends(recent)
        return _columns(grid, len(sends), {
            "subscriber_id": sends["subscriber_id"], "user_id": sends["user_id"], "email": sends["email"],
            "mailing_id": sends["mailing_id"], "mailing_instance_id": sends["mailing_instance_id"],
            "mailing_name": [f"Sandbox mailing {m}" for m in sends["mailing_id"]],
            "mailing_date": sends["occurred_at"], "was_delivered": 1, "was_opened": sends["opened"],
            "was_clicked": sends["clicked"], "was_blocked": 0, "was_hard_bounced": 0, "was_repeat_bounced": 0,
            "was_soft_bounced": 0,
        })

    def _grid_subscriber_mailing_history(self) -> pd.DataFrame:
        return self._history("subscriber_mailing_history", recent=True)

    def _grid_subscriber_mailing_history_all(self) -> pd.DataFrame:
        return self._history("subscriber_mailing_history_all", recent=False)

    def _grid_mailing_activity_subscriber_actions(self) -> pd.DataFrame:
        sends = self._sends(recent=True)
        return _columns("mailing_activity_subscriber_actions", len(sends), {
            "was_clicked": sends["clicked"], "was_delivered": 1, "email": sends["email"],
            "mailing_instance_id": sends["mailing_instance_id"], "was_opened": sends["opened"],
            "user_id": sends["user_id"],
        })

    def _grid_mailing_activity_opens(self) -> pd.DataFrame:
        opens = self.events(EventKind.MAIL_OPEN)
        return _columns("mailing_activity_opens", len(opens), {
            "mailing_id": opens["mailing_id"], "mailing_instance_id": opens["mailing_instance_id"],
            "email": opens["email"], "user_id": opens["user_id"], "open_date": opens["occurred_at"],
        })

    def _grid_mailing_activity_clicks(self) -> pd.DataFrame:
        clicks = self.events(EventKind.LINK_CLICK)
        return _columns("mailing_activity_clicks", len(clicks), {
            "link": clicks["url"], "link_date": clicks["occurred_at"], "mailing_id": clicks["mailing_id"],
            "mailing_instance_id": clicks["mailing_instance_id"], "email": clicks["email"],
            "user_id": clicks["user_id"],
        })

    def _grid_suppressed_subscribers(self) -> pd.DataFrame:
        bad = self.events(EventKind.BAD_EMAIL)
        return _columns("suppressed_subscribers", len(bad), {
            "subscriber_match_id": np.arange(1, len(bad) + 1), "subscriber_id": bad["subscriber_id"],
            "email": bad["email"], "user_id": bad["user_id"], "reason": bad["page"], "mailing_id": bad["mailing_id"],
            "mailing_instance_id": bad["mailing_instance_id"], "mailing_date": bad["occurred_at"],
        })

    def _grid_subscriber_form_usage(self) -> pd.DataFrame:
        forms = self.events(EventKind.LANDING_PAGE_SUBMIT)
        return _columns("subscriber_form_usage", len(forms), {
            "subscriber_id": forms["subscriber_id"], "email": forms["email"], "user_id": forms["user_id"],
            "form_name": forms["page"], "activity_date": forms["occurred_at"],
        })

    def _grid_subscriber_web_tracking_pages(self) -> pd.DataFrame:
        visits = self.events(EventKind.WEB_PAGE_VISIT)
        return _columns("subscriber_web_tracking_pages", len(visits), {
            "subscriber_id": visits["subscriber_id"], "remote_id": visits["user_id"],
            "subscriber_email": visits["email"], "url": visits["url"], "page_title": visits["page"],
            "create_date": visits["occurred_at"],
        })

    def query(
        self, grid: str, conditions: list[ConditionSpec], sort_field: str | None, descending: bool
    ) -> pd.DataFrame:
        """Matching rows in order (stable: ties keep insertion order); cached per unchanged grid."""
        frame = self.grid_frame(grid)
        key = (grid, self._frames[grid][0], tuple(conditions), (sort_field or "").lower(), descending)
        cached = self._queries.get(key)
        if cached is not None:
            return cached
        mask = np.ones(len(frame), dtype=bool)
        for condition in conditions:
            mask &= _condition_mask(frame, grid, condition)
        result = frame[mask]
        if sort_field:
            column = _column(frame, grid, sort_field)
            result = result.sort_values(column, ascending=not descending, kind="stable", na_position="last")
        if len(self._queries) >= _QUERY_CACHE_SIZE:
            self._queries.pop(next(iter(self._queries)))
        self._queries[key] = result
        return result


_EVENT_SOURCES: dict[str, tuple[EventKind, ...]] = {
    "subscriber_mailing_history": (EventKind.MAIL_SENT, EventKind.MAIL_OPEN, EventKind.LINK_CLICK),
    "subscriber_mailing_history_all": (EventKind.MAIL_SENT, EventKind.MAIL_OPEN, EventKind.LINK_CLICK),
    "mailing_activity_subscriber_actions": (EventKind.MAIL_SENT, EventKind.MAIL_OPEN, EventKind.LINK_CLICK),
    "mailing_activity_opens": (EventKind.MAIL_OPEN,),
    "mailing_activity_clicks": (EventKind.LINK_CLICK,),
    "suppressed_subscribers": (EventKind.BAD_EMAIL,),
    "subscriber_form_usage": (EventKind.LANDING_PAGE_SUBMIT,),
    "subscriber_web_tracking_pages": (EventKind.WEB_PAGE_VISIT,),
}
_CLOCK_SPLIT = frozenset({"subscriber_mailing_history", "subscriber_mailing_history_all",
                          "mailing_activity_subscriber_actions"})
_TEXT_IDS = frozenset({"user_id", "remote_id", "imis_name_id"})  # remote IDs: kept as text


def _is_date(column: str) -> bool:
    return column == "date" or column.endswith("_date")


def _is_integer(column: str) -> bool:
    return column not in _TEXT_IDS and (column.endswith("_id") or column in ("id", "brand_id", "is_test")
                                        or column.startswith(("was_", "is_")) or column.endswith("_count"))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for column in frame.columns:
        if _is_date(column):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        elif _is_integer(column):
            frame[column] = pd.array(pd.to_numeric(frame[column], errors="coerce"), dtype="Int64")
    return frame


def _frame(grid: str, rows: Sequence[tuple[object, ...]]) -> pd.DataFrame:
    """A grid from row tuples in the order of its documented elements."""
    columns = [element.lower() for element in GRIDS[grid].elements]
    return _typed(pd.DataFrame.from_records(rows, columns=columns))


# One grid column: a frame's column, an array or list of values, or one flag for every row.
GridColumn: TypeAlias = pd.Series | np.ndarray | list[object] | int


def _columns(grid: str, length: int, values: dict[str, GridColumn]) -> pd.DataFrame:
    """A grid from columns; documented elements the emulator has no data for are NULL."""
    data: dict[str, pd.Series] = {}
    for element in GRIDS[grid].elements:
        column = element.lower()
        value = values.get(column)
        if value is None:
            data[column] = pd.Series(np.full(length, None, dtype=object))
        elif isinstance(value, pd.Series):
            data[column] = value.reset_index(drop=True)
        elif isinstance(value, int):
            data[column] = pd.Series(np.full(length, value))
        else:
            data[column] = pd.Series(value, dtype=object)
    return _typed(pd.DataFrame(data, index=pd.RangeIndex(length)))


def _column(frame: pd.DataFrame, grid: str, element: str) -> str:
    column = element.lower()
    if column not in frame.columns:
        raise SandboxFault(FaultCode.UNEXPECTED_INPUT, f"grid '{grid}' has no data element '{element}'")
    return column


def _condition_mask(frame: pd.DataFrame, grid: str, condition: ConditionSpec) -> np.ndarray:
    series = frame[_column(frame, grid, condition.element)]
    values: list[object]
    try:
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            values = [pd.Timestamp(parse_timestamp(value)) for value in condition.values]
        elif pd.api.types.is_numeric_dtype(series.dtype):
            values = [float(value) for value in condition.values]
        else:
            series = series.astype("str").str.lower().where(series.notna())
            values = [value.lower() for value in condition.values]  # values compare case-insensitively
    except ValueError as error:
        raise SandboxFault(
            FaultCode.INVALID_DATA_FORMAT,
            f"value {condition.values!r} does not fit data element '{condition.element}': {error}",
        ) from error
    operator = condition.operator
    if operator in ("IN", "NOTIN"):
        mask = series.isin(values)
        mask = ~mask if operator == "NOTIN" else mask
    elif operator == "BETWEEN":
        mask = (series >= values[0]) & (series <= values[-1])
    else:
        compare = {"EQ": "__eq__", "NE": "__ne__", "NEQ": "__ne__", "GT": "__gt__", "GTE": "__ge__",
                   "LT": "__lt__", "LTE": "__le__"}[operator]
        mask = getattr(series, compare)(values[0])
    return (mask & series.notna()).to_numpy(dtype=bool, na_value=False)
