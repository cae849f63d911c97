"""The Thrive sandbox's in-memory brand: subscribers, interests, uploads, mailings, engagement, and its grids.

Writes follow the vendor's rules where they are documented and the most likely behaviour elsewhere:
upserts match on the remote `<ID>` first, then on email; an unsubscribed subscriber is never resubscribed
by an upsert (only the explicit resubscribe action does that, and it is recorded as an event); a
malformed email is refused and recorded as a bad-email event. Grids are pandas frames with lower-case
columns, filtered, sorted (stably) and paged the way `GridRequest` asks; each is rebuilt only when the
data it is made from changed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from include.imis_thrive.sandbox.thrive_engagement import EVENT_COLUMNS, GeneratedEngagement, Recipients
from include.imis_thrive.thrive import wire
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.thrive.wire import FaultCode, Grid, InterestAction

HISTORY_DAYS = 100  # subscriber_mailing_history holds the last 100 days; the `_all` twin holds the rest
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
    if len(email) > wire.EMAIL_MAX_LENGTH:
        return f"email is longer than {wire.EMAIL_MAX_LENGTH} characters"
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
    bounce_date: datetime | None = None

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
    in_active_campaign: bool = False


@dataclass
class UploadRow:
    email: str
    user_id: str | None
    fields: dict[str, str | None]


@dataclass
class SandboxUpload:
    upload_id: int
    date: datetime
    action: InterestAction
    interests: list[SandboxInterest]
    rows: list[UploadRow]
    polls_left: int
    status: str = "Processing"
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

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.subscribers: dict[int, SandboxSubscriber] = {}
        self._by_user_id: dict[str, int] = {}
        self._by_email: dict[str, int] = {}
        self.interests: dict[str, SandboxInterest] = {}
        # interest_id -> subscriber_id -> (membership row id, member since)
        self.members: dict[int, dict[int, tuple[int, datetime]]] = {}
        self.uploads: dict[int, SandboxUpload] = {}
        self._events: dict[EngagementKind, list[pd.DataFrame]] = {kind: [] for kind in EngagementKind}
        self._pending: dict[EngagementKind, list[dict[str, object]]] = {kind: [] for kind in EngagementKind}
        self._mailings: list[pd.DataFrame] = []
        self._versions: Counter[str] = Counter()
        self._frames: dict[str, tuple[int, pd.DataFrame]] = {}
        self._queries: dict[tuple[object, ...], pd.DataFrame] = {}
        self._next_id = Counter({"subscriber": 1, "interest": 1, "upload": 1, "mailing": 1, "membership": 1})

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
        interest.in_active_campaign = in_active_campaign or interest.in_active_campaign
        self._touch("interests")
        return interest

    def set_campaign_interests(self, names: Iterable[str]) -> None:
        wanted = {name.lower() for name in names}
        missing = wanted - set(self.interests)
        if missing:
            raise KeyError(f"no such interests: {sorted(missing)}")
        for key, interest in self.interests.items():
            interest.in_active_campaign = key in wanted
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
            self.record_event(EngagementKind.BAD_EMAIL, None, row.user_id, row.email, now, page=problem)
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

    def unsubscribe(self, subscriber: SandboxSubscriber, when: datetime, mailing_instance_id: int | None) -> None:
        subscriber.is_unsubscriber = True
        subscriber.cancellation_date = when
        subscriber.cancellation_mailing_instance_id = mailing_instance_id
        subscriber.modified_date = max(subscriber.modified_date, when)
        self._touch("subscribers")

    def resubscribe(self, subscriber: SandboxSubscriber, when: datetime) -> bool:
        """Only the explicit resubscribe action gets here; recorded as a Resubscribe event."""
        if not subscriber.is_unsubscriber:
            return False
        subscriber.is_unsubscriber = False
        subscriber.modified_date = max(subscriber.modified_date, when)
        self.record_event(EngagementKind.RESUBSCRIBE, subscriber.subscriber_id, subscriber.user_id,
                          subscriber.email, when)
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
                     polls: int) -> SandboxUpload:
        upload = SandboxUpload(self._new_id("upload"), self.clock(), action, interests, rows, polls)
        self.uploads[upload.upload_id] = upload
        self._touch("uploads")
        return upload

    def advance_uploads(self) -> None:
        """One poll of upload_history: each pending upload gets one step closer to done."""
        for upload in self.uploads.values():
            if upload.status != "Processing":
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
                outcome = self.upsert(row, upload.interests)
                counts[outcome.status] += 1
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
        upload.status = "Complete"

    # --- engagement ---------------------------------------------------------------------------------------
    def record_event(self, kind: EngagementKind, subscriber_id: int | None, user_id: str | None, email: str | None,
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
        unsubscribes = generated.events[EngagementKind.UNSUBSCRIBE]
        for sid, when, instance in zip(unsubscribes["subscriber_id"], unsubscribes["occurred_at"],
                                       unsubscribes["mailing_instance_id"]):
            self.unsubscribe(self.subscribers[int(sid)], when.to_pydatetime(), int(instance))
        resubscribes = generated.events[EngagementKind.RESUBSCRIBE]
        for sid in resubscribes["subscriber_id"]:
            self.subscribers[int(sid)].is_unsubscriber = False
        bounces = generated.events[EngagementKind.BAD_EMAIL]
        for sid, when in zip(bounces["subscriber_id"], bounces["occurred_at"]):
            subscriber = self.subscribers[int(sid)]
            subscriber.bounce_date = max(filter(None, (subscriber.bounce_date, when.to_pydatetime())))
        for kind, frame in generated.events.items():
            if kind is not EngagementKind.UNSUBSCRIBE and len(frame):
                self._events[kind].append(frame)
                self._touch(f"events:{kind.name}")
        self._touch("subscribers")

    def events(self, kind: EngagementKind) -> pd.DataFrame:
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
    def _sources(self, grid: Grid) -> tuple[str, ...]:
        kind = _EVENT_GRIDS.get(grid)
        if kind is not None:
            return (f"events:{kind.name}",)
        return {
            Grid.SUBSCRIBER: ("subscribers",), Grid.SUBSCRIBER_INTERESTS: ("subscribers", "members", "interests"),
            Grid.INTEREST_TARGET_GROUP: ("interests",), Grid.MAILING_INSTANCE: ("mailings",),
            Grid.TARGET_GROUP_COUNTS: ("interests", "members"),
            Grid.UPLOAD_HISTORY: ("uploads",),
        }[grid]

    def grid_frame(self, grid: Grid) -> pd.DataFrame:
        """The whole grid, lower-case columns, rebuilt only when its sources changed."""
        version = sum(self._versions[source] for source in self._sources(grid))
        cached = self._frames.get(grid)
        if cached is not None and cached[0] == version:
            return cached[1]
        frame = self._build(grid)
        self._frames[grid] = (version, frame)
        return frame

    def _build(self, grid: Grid) -> pd.DataFrame:
        if grid in _EVENT_GRIDS:
            return self._event_grid(grid, _EVENT_GRIDS[grid])
        if grid is Grid.SUBSCRIBER:
            return self._subscriber_grid()
        if grid is Grid.SUBSCRIBER_INTERESTS:
            return self._membership_grid()
        if grid is Grid.INTEREST_TARGET_GROUP:
            rows = [(i.interest_id, i.name, int(i.is_deleted)) for i in self.interests.values()]
            return _frame(grid, rows)
        if grid is Grid.TARGET_GROUP_COUNTS:
            # A campaign interest was "last used" now; the others never were.
            now = datetime.now(UTC)
            members = self._membership_grid()
            rows = [(i.interest_id, i.name, "Demographic", int((members["interest_id"] == i.interest_id).sum()), now,
                     now if i.in_active_campaign else None) for i in self.interests.values()]
            return _frame(grid, rows)
        if grid is Grid.MAILING_INSTANCE:
            frames = [frame for frame in self._mailings if len(frame)]
            return (pd.concat(frames, ignore_index=True) if frames else _frame(grid, [])).rename(columns=str.lower)
        return _frame(grid, [
            (u.upload_id, u.date, u.status, u.counts["total"], u.counts["invalid"] + u.counts["rejected"],
             u.counts["updated"], u.counts["created"], u.counts["unsubscribed"])
            for u in self.uploads.values()
        ])

    def _subscriber_grid(self) -> pd.DataFrame:
        rows = [
            (s.subscriber_id, s.email, s.user_id, s.modified_date, s.service_since_date, int(s.is_unsubscriber),
             s.cancellation_date, s.cancellation_mailing_instance_id, s.bounce_date, 0)
            for s in self.subscribers.values()
        ]
        return _frame(Grid.SUBSCRIBER, rows)

    def _membership_grid(self) -> pd.DataFrame:
        names = {interest.interest_id: interest.name for interest in self.interests.values()}
        rows = []
        for interest_id, members in self.members.items():
            for sid, (membership_id, since) in members.items():
                subscriber = self.subscribers[sid]
                rows.append((membership_id, sid, subscriber.email, subscriber.user_id, interest_id,
                             names[interest_id], since))
        return _frame(Grid.SUBSCRIBER_INTERESTS, rows)

    def _event_grid(self, grid: Grid, kind: EngagementKind) -> pd.DataFrame:
        events = self.events(kind)
        spec = wire.ENGAGEMENT_GRIDS[kind]
        if kind is EngagementKind.MAIL_SENT:
            recent = events["occurred_at"] >= pd.Timestamp(self.clock() - timedelta(days=HISTORY_DAYS))
            events = events[recent if grid is Grid.SUBSCRIBER_MAILING_HISTORY else ~recent]
        source = {
            spec.contact_id_element: "user_id", spec.email_element: "email", spec.date_element: "occurred_at",
            spec.mailing_id_element: "mailing_id", spec.mailing_instance_element: "mailing_instance_id",
            spec.url_element: "url", spec.page_element: "page", "subscriber_id": "subscriber_id",
        }
        columns = {}
        for element in wire.GRID_ELEMENTS[grid]:
            column = source.get(element) or source.get(element.lower())
            if column is not None:
                columns[element.lower()] = events[column].to_numpy()
            elif element.lower() == "was_delivered":
                columns[element.lower()] = np.ones(len(events), dtype=np.int64)
            else:
                columns[element.lower()] = np.full(len(events), None, dtype=object)
        frame = pd.DataFrame(columns, index=pd.RangeIndex(len(events)))
        frame[spec.date_element.lower()] = pd.to_datetime(frame[spec.date_element.lower()], utc=True)
        return frame

    def query(
        self, grid: Grid, conditions: list[ConditionSpec], sort_field: str | None, descending: bool
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


_EVENT_GRIDS: dict[Grid, EngagementKind] = {
    grid: kind for kind, spec in wire.ENGAGEMENT_GRIDS.items() for grid in spec.grids if grid is not Grid.SUBSCRIBER
} | {Grid.SUBSCRIBER_MAILING_HISTORY_ALL: EngagementKind.MAIL_SENT}
_DATE_ELEMENTS = {"modified_date", "service_since_date", "cancellation_date", "bounce_date", "mailing_date", "date",
                  "count_date", "last_used_date"}


def _frame(grid: Grid, rows: list[tuple[object, ...]]) -> pd.DataFrame:
    columns = [element.lower() for element in wire.GRID_ELEMENTS[grid]]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for column in columns:
        if column in _DATE_ELEMENTS:
            frame[column] = pd.to_datetime(frame[column], utc=True)
        elif column.endswith("_id") and column != "user_id":
            frame[column] = pd.array(frame[column], dtype="Int64")
    return frame


def _column(frame: pd.DataFrame, grid: Grid, element: str) -> str:
    column = element.lower()
    if column not in frame.columns:
        raise SandboxFault(FaultCode.UNEXPECTED_INPUT, f"grid '{grid.value}' has no data element '{element}'")
    return column


def _condition_mask(frame: pd.DataFrame, grid: Grid, condition: ConditionSpec) -> np.ndarray:
    series = frame[_column(frame, grid, condition.element)]
    values: list[object]
    try:
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            values = [pd.Timestamp(wire.parse_timestamp(value)) for value in condition.values]
        elif pd.api.types.is_numeric_dtype(series.dtype):
            values = [float(value) for value in condition.values]
        else:
            series = series.astype("str").str.lower().where(series.notna())
            values = [value.lower() for value in condition.values]
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
