"""HTTP client for Thrive Marketing Professional's AAPI: grids page by page, subscriber upserts, interests.

Knows nothing of Airflow (include/imis_thrive/airflow/hooks/thrive.py builds it from the `thrive_default`
connection) and nothing of XML shapes (`envelope.py`, `documents.py` and `grids.py` own those). Every call goes
through `_post`, which retries what the shared policy says is worth retrying and turns everything else into a
typed `ThriveError` naming the call; grid pages are counted by the shared `Pager` (`paging.py`).

Never resubscribes anyone: the only interest actions it sends are add-or-update and membership removal.
"""

from __future__ import annotations

import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

import httpx
from pydantic import BaseModel, Field, SecretStr

from include.imis_thrive.http_retry import RetryPolicy, TransientHTTPError, send_with_retry
from include.imis_thrive.paging import Pager, Stop
from include.imis_thrive.thrive import documents, envelope, parsing
from include.imis_thrive.thrive.documents import Comparator, Condition, GridQuery, InterestAction, Record
from include.imis_thrive.thrive.errors import (
    InterestNotFound,
    ThriveActionFailed,
    ThriveConfigurationError,
    ThriveCredentialsError,
    ThriveFault,
    ThriveHTTPError,
    ThriveProtocolError,
    ThriveUnavailable,
    UploadFailed,
    UploadTimeout,
)
from include.imis_thrive.thrive.grids import (
    COUNT,
    GRID_ELEMENTS,
    MAX_GRID_ROWS,
    MEMBER_COUNT_GRIDS,
    UPLOAD_DONE_STATUSES,
    UPLOAD_FAILED_STATUSES,
    Grid,
)
from include.imis_thrive.thrive.models import (
    CampaignSelection,
    Interest,
    InterestMember,
    OutcomeStatus,
    Subscriber,
    SubscriberOutcome,
    UploadJournal,
    UploadStatus,
    UpsertResult,
)
from include.imis_thrive.tls import verification

log = logging.getLogger(__name__)
T = TypeVar("T")
INTEREST_FIELDS = ("target_group_id", "target_group_name", "is_deleted")
MEMBER_FIELDS = ("subscriber_id", "user_id", "email")
MAILED_GROUP_FIELDS = ("mailing_instance_id", "target_group_id")  # campaign signal 1: the groups mailings used
GROUP_USE_FIELDS = ("id", "name", "last_used_date")  # campaign signal 2: when each group was last used
FIELD_VALUE_FIELDS = ("email", "personal_information_name", "personal_information_value")
FIELDS_EMAILS_PER_CALL = 40  # subscribers per personal-information read: 40 x the 23 synced fields fit one page
# A domain ending in a doubled suffix (`example.com.com`): a typo Thrive refuses, and a Bad Email by the
# integration's own description; refused here so no Subscribe has to locate it by halving.
DOUBLED_SUFFIX = re.compile(r"(\.[a-z]{2,})\1$", re.IGNORECASE)
SYSTEMIC_REFUSALS = 20  # a Subscribe of at least this many with none taken is a broken request, not bad rows
THRIVE_REFUSED = "Thrive refused this subscriber (counted neither new nor previous in the Subscribe reply)"


class ThriveConfig(BaseModel):
    """Where and how to reach one Thrive brand (built from the `thrive_default` connection)."""

    endpoint: str = Field(description="The full AAPI URL, e.g. https://partner.informz.net/aapi/InformzService.svc")
    brand_id: str
    brand_name: str
    user: str
    password: SecretStr
    timeout_s: float = 120.0
    verify: bool = Field(True, description="Verify the endpoint's TLS certificate; off only for a test host")
    ca_bundle: str | None = Field(None, description="PEM file of the CA that signed the endpoint's certificate")
    bulk_threshold: int = Field(5000, ge=0, description="Above this many subscribers, upsert with BulkUpload")
    bulk_chunk_size: int = Field(50_000, ge=1, description="Rows per BulkUpload")
    poll_interval_s: float = Field(5.0, ge=0)
    poll_timeout_s: float = Field(3600.0, gt=0)
    field_types: dict[str, str] = Field(default_factory=dict, description="Personalization field -> DataType")
    status_email_recipients: list[str] = Field(
        default_factory=list, description="Who gets BulkUpload status e-mails; the vendor requires at least one")
    compress_grids: bool = Field(False, description="Send grid requests compressed (and read compressed replies)")
    startrow_base: int | None = Field(
        None, ge=0, le=1, description="The tenant's first StartRow (0 or 1); None = detect on the first paged read")
    retry: RetryPolicy = RetryPolicy()

    def brand(self) -> documents.Brand:
        return documents.Brand(self.brand_id, self.brand_name, self.user, self.password.get_secret_value())


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def rejection_reason(subscriber: Subscriber) -> str | None:
    """Why Thrive would refuse this subscriber, checked before sending so one bad row never fails a batch."""
    if not subscriber.contact_id.isdigit():
        return f"contact ID {subscriber.contact_id!r} is not an integer (Thrive's remote <ID> is Int)"
    email = subscriber.email.strip()
    if not email:
        return "email is empty"
    if len(email) > documents.EMAIL_MAX_LENGTH:
        return f"email is longer than {documents.EMAIL_MAX_LENGTH} characters"
    local, at, domain = email.partition("@")
    if not at or not local or "@" in domain or "." not in domain or any(c.isspace() for c in email):
        return "email is malformed"
    if DOUBLED_SUFFIX.search(domain):
        return "email domain repeats its suffix (e.g. .com.com)"
    for name, value in subscriber.fields.items():
        reason = documents.unsendable_reason(name) or (documents.unsendable_reason(value) if value else None)
        if reason:
            return f"personalization field {name!r} {reason}"
    return None


def screen_subscribers(subscribers: Iterable[Subscriber]) -> tuple[list[Subscriber], list[SubscriberOutcome]]:
    """Split into what can be sent and what is rejected (unsendable, or a duplicate ID or email in this call)."""
    sendable: list[Subscriber] = []
    rejected: list[SubscriberOutcome] = []
    seen_ids: set[str] = set()
    seen_emails: set[str] = set()
    for subscriber in subscribers:
        reason = rejection_reason(subscriber)
        email_key = subscriber.email.strip().lower()
        if reason is None and subscriber.contact_id in seen_ids:
            reason = "contact ID appears more than once in this upsert"
        elif reason is None and email_key in seen_emails:
            reason = "email appears more than once in this upsert (Thrive keys subscribers by email too)"
        if reason:
            rejected.append(SubscriberOutcome(subscriber.contact_id, subscriber.email, OutcomeStatus.REJECTED, reason))
            continue
        seen_ids.add(subscriber.contact_id)
        seen_emails.add(email_key)
        sendable.append(subscriber)
    return sendable, rejected


def subscribe_counts(response: ET.Element, what: str) -> tuple[int, int]:
    """(`NewSubscriberCount`, `PreviousSubscriberCount`) of a Subscribe reply: all the vendor documents of it
    (ActionRequests - Subscribe, Unsubscribe and Opt-Out; a public 2013 caller reads exactly these)."""
    status, message = documents.action_status(response)
    if status != "success":
        raise ThriveActionFailed("Subscribe", status, message)
    counts = [parsing.descendant_text(response, name) for name in ("NewSubscriberCount", "PreviousSubscriberCount")]
    numbers = [int(count) for count in counts if count is not None and count.strip().isdigit()]
    if len(numbers) != len(counts):
        raise ThriveProtocolError(f"{what}: the Subscribe reply carries no NewSubscriberCount and "
                                  f"PreviousSubscriberCount (got {counts})")
    new, previous = numbers
    return new, previous


def counted_outcomes(sent: Sequence[Subscriber], new: int, previous: int) -> list[SubscriberOutcome]:
    """Per-subscriber outcomes a reply of counts alone allows: created when all were new, updated when none was."""
    status = (OutcomeStatus.CREATED if new == len(sent) else OutcomeStatus.UPDATED if previous == len(sent)
              else OutcomeStatus.ACCEPTED)
    return [SubscriberOutcome(subscriber.contact_id, subscriber.email, status) for subscriber in sent]


def upload_status_from(record: Record) -> UploadStatus:
    def number(name: str) -> int | None:
        value = record.get(name)
        return int(value) if value not in (None, "") else None

    uploaded = record.get("date")
    return UploadStatus(
        upload_id=number("upload_id") or 0,
        status=record.get("status") or "",
        total_count=number("total_email_count"),
        new_count=number("new_count"),
        changed_count=number("changed_email_count"),
        invalid_email_count=number("invalid_email_count"),
        uploaded_at=parsing.parse_timestamp(uploaded) if uploaded else None,
    )


class ThriveClient:
    """One brand's AAPI endpoint over one pooled httpx client; use one client per thread."""

    def __init__(
        self,
        config: ThriveConfig,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._brand = config.brand()
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s)),
            transport=transport,
            verify=verification(config.verify, config.ca_bundle),
            headers={"Content-Type": envelope.CONTENT_TYPE, "SOAPAction": f'"{envelope.SOAP_ACTION}"'},
        )
        self.calls = 0
        self._startrow_base: int | None = None
        self._member_count_grid: Grid | None = None  # which of MEMBER_COUNT_GRIDS this tenant answers
        self._interests: list[Interest] | None = None  # the last `interests()` read, what `require_interest` checks

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ThriveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ----------------------------------------------------------------------------------------
    def _post(self, document: str, what: str) -> ET.Element:
        """Send one document and return the reply document.

        Every AAPI call is sent as idempotent: grids are reads, Subscribe is an upsert, and a repeated
        BulkUpload re-applies the same upsert or removal, so resending after an unknown outcome is safe.
        """
        body = envelope.request_envelope(document)

        def send() -> httpx.Response:
            self.calls += 1
            response = self._http.post(self.config.endpoint, content=body)
            if response.status_code >= 400 and b"Fault" in response.content:
                # A SOAP fault arrives as HTTP 500 but is the tenant's final word: raise it, never retry it.
                fault = envelope.fault_from(envelope.parse_envelope(response.content, what), what)
                if fault is not None:
                    raise fault
            return response

        try:
            response = send_with_retry(send, what, self.config.retry, idempotent=True, sleep=self._sleep)
        except TransientHTTPError as error:
            attempts = self.config.retry.max_attempts
            raise ThriveUnavailable(f"{what}: gave up after {attempts} attempts: {error}") from error
        except httpx.TransportError as error:
            raise ThriveUnavailable(
                f"{what}: could not reach {self.config.endpoint} after {self.config.retry.max_attempts} attempts: "
                f"{type(error).__name__}: {error}"
            ) from error
        if response.status_code != 200:
            raise ThriveHTTPError(what, response.status_code, response.text[:200])
        return envelope.document_from_reply(response.content, what)

    # --- grids --------------------------------------------------------------------------------------------
    def grid_page(self, query: GridQuery) -> list[Record]:
        what = f"grid {query.grid} rows {query.start_row}+{query.number_of_rows}"
        document = documents.grid_request(self._brand, [query], compress=self.config.compress_grids)
        grids = documents.grid_records(self._post(document, what), what)
        if query.grid.lower() not in grids:
            raise ThriveProtocolError(f"{what}: the reply holds no <Grid type={query.grid!r}> (grids: {sorted(grids)})")
        return grids[query.grid.lower()]

    def iter_grid(
        self,
        grid: str,
        sort_field: str,
        conditions: Sequence[Condition] = (),
        return_fields: Sequence[str] = (),
        descending: bool = False,
        page_size: int = MAX_GRID_ROWS,
    ) -> Iterator[Record]:
        """Every matching row exactly once, page by page; `sort_field` must be a stable key or pages may skip rows.

        Pages start at the tenant's StartRow base (0 or 1: the vendor says "ordinal placement of the first row"
        and shows no example), pinned by the `startrow_base` extra or detected once per client.
        """
        if not 0 < page_size <= MAX_GRID_ROWS:
            raise ValueError(f"page_size must be 1..{MAX_GRID_ROWS}, got {page_size}")
        if not return_fields:
            raise ValueError(f"grid {grid}: name the return fields (the AAPI requires at least one)")
        query = GridQuery(grid, tuple(conditions), tuple(return_fields), sort_field, descending, 0, page_size)
        pager = Pager(f"grid {grid}", Stop.SHORT_PAGE, limit=page_size, start=self.startrow_base(query))
        while pager.more:
            rows = self.grid_page(replace(query, start_row=pager.next_offset))
            pager.add(len(rows))
            yield from rows

    def startrow_base(self, query: GridQuery) -> int:
        """The tenant's first StartRow, from the extra, an earlier detection, or two one-row probes of `query`.

        Row 0 and row 1 of the same sorted query tell the readings apart: a 0-based tenant answers two different
        rows; a 1-based one answers nothing (or a fault) for 0, or the same first row for both. With no
        matching row the probe proves nothing and 0 is used for this read (an empty read is empty either way).
        """
        if self.config.startrow_base is not None:
            return self.config.startrow_base
        if self._startrow_base is not None:
            return self._startrow_base
        probe = replace(query, number_of_rows=1)
        try:
            at_zero = self.grid_page(replace(probe, start_row=0))
        except ThriveFault as fault:
            if isinstance(fault, ThriveCredentialsError):
                raise
            # Only a refusal that StartRow 1 does not repeat is about the StartRow (a refused grid faults both).
            self.grid_page(replace(probe, start_row=1))
            log.info("StartRow 0 refused (%s) where 1 is taken: this tenant counts rows from 1", fault.code)
            self._startrow_base = 1
            return 1
        at_one = self.grid_page(replace(probe, start_row=1))
        if not at_zero and not at_one:
            return 0
        self._startrow_base = 0 if at_zero and at_zero != at_one else 1
        log.info("StartRow base detected on grid %s: the first row is %d", query.grid, self._startrow_base)
        return self._startrow_base

    def count(self, grid: str, conditions: Sequence[Condition] = ()) -> int:
        rows = self.grid_page(GridQuery(grid, tuple(conditions), (COUNT,), number_of_rows=1))
        value = rows[0].get("count") if rows else None
        if value is None or not value.strip().isdigit():
            raise ThriveProtocolError(f"grid {grid}: the Count reply holds no number: {rows[:1]}")
        return int(value)

    # --- interests ----------------------------------------------------------------------------------------
    def interests(self) -> list[Interest]:
        """Every interest (target group) of the brand, deleted ones flagged; always read afresh."""
        self._interests = [
            Interest(
                interest_id=int(row.get("target_group_id") or 0),
                name=row.get("target_group_name") or "",
                is_deleted=parsing.flag(row.get("is_deleted")),
            )
            for row in self.iter_grid(Grid.INTEREST_TARGET_GROUP, "target_group_id", (), INTEREST_FIELDS)
        ]
        return list(self._interests)

    def campaign_interests(self, since: datetime, interests: Sequence[Interest] | None = None) -> CampaignSelection:
        """The live interests a campaign used since `since`: the ones to re-sync hourly.

        No grid flags an interest as "in a campaign" (thrive-vendor-facts.md: `interest_target_group` has no such
        column), so two documented signals are read: the target groups of mailing instances dated since then
        (`mailing_instance.target_group_id`) and the groups whose `target_group_counts.last_used_date` is that
        recent. A signal the tenant refuses is logged and the other used; both refused raises. Pass `interests`
        when the caller has just read them, to save reading them again.
        """
        if interests is None:
            interests = self.interests()
        live = {interest.interest_id: interest.name for interest in interests if not interest.is_deleted}
        used: set[int] = set()
        signals, refused = [], []
        for signal, read in (("mailing_instance.target_group_id", self._mailed_group_ids),
                             ("target_group_counts.last_used_date", self._recently_used_group_ids)):
            try:
                used |= read(since)
                signals.append(signal)
            except ThriveFault as fault:
                if isinstance(fault, ThriveCredentialsError):
                    raise
                log.warning("campaign groups: signal %s refused by the tenant (%s); using the other", signal, fault)
                refused.append(fault)
        if not signals:
            raise refused[0]
        names = sorted((live[group] for group in used if group in live), key=str.casefold)
        return CampaignSelection(names, f"{' and '.join(signals)} since {since.date().isoformat()}")

    def _mailed_group_ids(self, since: datetime) -> set[int]:
        rows = self.iter_grid(Grid.MAILING_INSTANCE, "mailing_instance_id",
                              (Condition.single("mailing_date", Comparator.GTE, since),),
                              MAILED_GROUP_FIELDS)
        return _ids(row.get("target_group_id") for row in rows)

    def _recently_used_group_ids(self, since: datetime) -> set[int]:
        rows = self.iter_grid(Grid.TARGET_GROUP_COUNTS, "id",
                              (Condition.single("last_used_date", Comparator.GTE, since),),
                              GROUP_USE_FIELDS)
        return _ids(row.get("id") for row in rows)

    def require_interest(self, name: str) -> Interest:
        """The live interest of that name (compared case-insensitively, as Thrive compares values).

        Checked against this client's last read of the interests, so a run's additions and removals read them
        once, not once a call; a name that read lacks is read afresh before it is called missing. One deleted
        since is refused by Thrive itself (`ItemNotFoundException`) when the write names it. The AAPI has no
        action that creates an interest, so a missing one is an error a person must fix.
        """
        found = _live_interest(self._interests or (), name) or _live_interest(self.interests(), name)
        if found is None:
            raise InterestNotFound(name)
        return found

    def interest_member_count(self, interest: str) -> int:
        """How many members Thrive holds in one interest: one Count request (`grids.MEMBER_COUNT_GRIDS`).

        `subscriber_interests` is asked first; a tenant that refuses that Count (a fault other than credentials)
        is asked `target_group_counts` instead, for the rest of this client's life.
        """
        live, counted = MEMBER_COUNT_GRIDS
        if self._member_count_grid in (None, live):
            try:
                count = self.count(live, (Condition.single("interest_name", Comparator.EQ, interest),))
                self._member_count_grid = live
                return count
            except ThriveFault as fault:
                if isinstance(fault, ThriveCredentialsError) or self._member_count_grid is not None:
                    raise
                log.warning("member count: the tenant refused a %s Count (%s); reading %s.target_group_count "
                            "instead", live, fault.code, counted)
                self._member_count_grid = counted
        rows = self.grid_page(GridQuery(counted,
                                        (Condition.single("name", Comparator.EQ, interest),),
                                        ("name", "target_group_count"), "id", number_of_rows=1))
        value = rows[0].get("target_group_count") if rows else None
        if value is None or not value.strip().isdigit():
            raise ThriveProtocolError(f"grid {counted}: no target_group_count for interest "
                                      f"{interest!r}: {rows[:1]}")
        return int(value)

    def subscriber_fields(self, emails: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, str]]:
        """The personalization values Thrive holds for these subscribers, by lower-cased email then field name.

        Read from `subscriber_personal_information` (the vendor's grid of a subscriber's values), a few dozen
        subscribers a request; a field Thrive holds no row for is absent. Values compare as Thrive returns them.
        """
        wanted = {name.lower(): name for name in fields}
        held: dict[str, dict[str, str]] = {}
        for chunk in batched(sorted({email.strip().lower() for email in emails if email}), FIELDS_EMAILS_PER_CALL):
            condition = Condition(element="email", comparator=Comparator.IN, values=tuple(chunk))
            for row in self.iter_grid(Grid.SUBSCRIBER_PERSONAL_INFORMATION, "subscriber_personal_information_id",
                                      (condition,), FIELD_VALUE_FIELDS):
                name = wanted.get((row.get("personal_information_name") or "").lower())
                email = (row.get("email") or "").strip().lower()
                if name is not None and email:
                    held.setdefault(email, {})[name] = row.get("personal_information_value") or ""
        return held

    def interest_members(self, interest: str) -> Iterator[InterestMember]:
        """Current members of one interest, ordered by Thrive's subscriber id (a stable paging key)."""
        condition = Condition.single("interest_name", Comparator.EQ, interest)
        for row in self.iter_grid(Grid.SUBSCRIBER_INTERESTS, "subscriber_id", [condition],
                                  MEMBER_FIELDS):
            yield InterestMember(contact_id=row.get("user_id"), email=row.get("email") or "")

    # --- writes -------------------------------------------------------------------------------------------
    def upsert_subscribers(self, subscribers: Iterable[Subscriber], interest: str | None = None,
                           journal: UploadJournal | None = None,
                           likely_refused: Collection[str] = ()) -> UpsertResult:
        """Insert or update subscribers (keyed by contact ID) with their personalization fields.

        Up to `bulk_threshold` records go as `Subscribe` calls of <= 1,000; more go as BulkUploads of
        `bulk_chunk_size` rows, each polled in `upload_history` until done. With `interest`, each record is
        also added to that interest. An unsubscribed subscriber stays unsubscribed. A field that some
        records name and others lack is cleared on the others, so pass every record's full field set.
        Each BulkUpload is recorded in `journal` (when given) before it is sent, and its `UploadID` once queued.

        `likely_refused`: contact IDs the caller expects Thrive to refuse (e.g. their email is another
        subscriber's). They are still sent, for Thrive to decide, but last and in Subscribe calls of their own: a
        Subscribe reply holds counts only, so a call of them all refused names them with no locating calls, and
        the other calls, refused nothing, need none either.
        """
        interests = [self.require_interest(interest).name] if interest else []
        sendable, rejected = screen_subscribers(subscribers)
        result = UpsertResult(outcomes=list(rejected))
        if rejected:
            log.warning("upsert: %d subscribers rejected before sending (first: contact %s, %s)",
                        len(rejected), rejected[0].contact_id, rejected[0].reason)
        bulk = len(sendable) > self.config.bulk_threshold
        size = self.config.bulk_chunk_size if bulk else documents.MAX_SUBSCRIBE
        suspects = set(likely_refused) if likely_refused and not bulk else set()
        likely = [subscriber for subscriber in sendable if subscriber.contact_id in suspects]
        chunks = [(chunk, False) for chunk in batched([s for s in sendable if s.contact_id not in suspects], size)]
        chunks += [(chunk, True) for chunk in batched(likely, size)]
        batches = len(chunks)
        started, done = time.monotonic(), 0
        for number, (chunk, expected) in enumerate(chunks, start=1):
            result.extend(self._bulk_upsert(chunk, interests, journal) if bulk
                          else self._subscribe(chunk, interests, refusals_expected=expected))
            done += len(chunk)
            log.info("upsert: batch %d/%d sent, %s/%s subscribers, %s/s", number, batches, f"{done:,}",
                     f"{len(sendable):,}", f"{done / max(time.monotonic() - started, 1e-6):,.0f}")
        return result

    def add_interest_members(self, interest: str, members: Iterable[Subscriber | InterestMember],
                             journal: UploadJournal | None = None) -> UpsertResult:
        """Add subscribers to an interest without touching their personalization fields."""
        subscribers = [Subscriber(member.contact_id or "", member.email) for member in members]
        return self.upsert_subscribers(subscribers, interest=interest, journal=journal)

    def remove_interest_members(
        self, interest: str, members: Iterable[Subscriber | InterestMember], journal: UploadJournal | None = None
    ) -> list[UploadStatus]:
        """Take subscribers out of one interest (BulkUpload `RemoveSubscribers`): not an unsubscribe.

        Members not in the interest are counted as processed by Thrive, not reported as errors. Each upload is
        recorded in `journal` (when given) before it is sent: Thrive applies it even if this process dies.
        """
        name = self.require_interest(interest).name
        rows = [Subscriber(member.contact_id or "", member.email) for member in members]
        statuses = []
        for chunk in batched(rows, self.config.bulk_chunk_size):
            what = f"remove {len(chunk)} members from interest {name!r}"
            action = documents.bulk_upload_action(chunk, [name], InterestAction.REMOVE, self._status_recipients(what))
            statuses.append(self._run_upload(action, what, [row.contact_id for row in chunk], journal))
        return statuses

    def _subscribe(self, chunk: Sequence[Subscriber], interests: Sequence[str],
                   refusals_expected: bool = False) -> UpsertResult:
        """One Subscribe; when the counts say Thrive took fewer than were sent, find which by halving.

        The reply holds counts only, so a refused subscriber (counted neither new nor previous) is located by
        re-sending halves (Subscribe is an idempotent upsert): about 2 log2(n) calls per refusal, at most 2n in
        all; a call refused whole names its subscribers with no more calls. A whole call of `SYSTEMIC_REFUSALS`
        or more refused is a systemic problem and fails, unless the caller expected these refusals.
        """
        what = f"Subscribe {len(chunk)} subscribers" + (f" into interest {interests[0]!r}" if interests else "")
        if refusals_expected:
            what += " (expected to be refused)"
        new, previous = self._subscribe_counts(chunk, interests, what)
        refused = len(chunk) - new - previous
        if refused <= 0:
            outcomes = counted_outcomes(chunk, new, previous)
            log.info("%s: %d new, %d already known", what, new, previous)
            return UpsertResult(outcomes=outcomes, calls=1, records_sent=len(chunk))
        if refused == len(chunk) >= SYSTEMIC_REFUSALS and not refusals_expected:
            raise ThriveActionFailed("Subscribe", "refused", (
                f"{what}: Thrive took none of the {len(chunk)} subscribers (counted neither new nor previous); that "
                "is not a few bad rows: check the personalization fields' definitions in Thrive"))
        located, calls, resent = self._locate_refused(chunk, interests, refused, what)
        log.warning("%s: Thrive refused %d subscribers (contact IDs %s), found in %d more calls", what, len(located),
                    ", ".join(sorted(located)), calls)
        outcomes = [SubscriberOutcome(s.contact_id, s.email, OutcomeStatus.REJECTED, THRIVE_REFUSED)
                    if s.contact_id in located else SubscriberOutcome(s.contact_id, s.email, OutcomeStatus.ACCEPTED)
                    for s in chunk]
        return UpsertResult(outcomes=outcomes, calls=1 + calls, records_sent=len(chunk) + resent)

    def _subscribe_counts(self, chunk: Sequence[Subscriber], interests: Sequence[str], what: str) -> tuple[int, int]:
        action = documents.subscribe_action(chunk, interests, self.config.field_types)
        document = documents.action_request(self._brand, [action])
        responses = documents.action_responses(self._post(document, what), what)
        if not responses:
            raise ThriveProtocolError(f"{what}: the ActionResponse holds no Subscribe response")
        return subscribe_counts(responses[0], what)

    def _locate_refused(self, chunk: Sequence[Subscriber], interests: Sequence[str], refused: int,
                        what: str) -> tuple[set[str], int, int]:
        """The contact IDs of the `refused` subscribers of `chunk`, and the calls and records it took to find them."""
        located: set[str] = set()
        calls = resent = 0
        pending = [(chunk, refused)]
        while pending:
            part, missing = pending.pop()
            if len(part) == missing:
                located.update(subscriber.contact_id for subscriber in part)
                continue
            left, right = part[:len(part) // 2], part[len(part) // 2:]
            new, previous = self._subscribe_counts(left, interests, f"{what} (locating refusals)")
            calls += 1
            resent += len(left)
            left_missing = len(left) - new - previous
            pending += [(half, count) for half, count in ((left, left_missing), (right, missing - left_missing))
                        if count > 0]
        return located, calls, resent

    def _bulk_upsert(self, chunk: Sequence[Subscriber], interests: Sequence[str],
                     journal: UploadJournal | None = None) -> UpsertResult:
        what = f"BulkUpload {len(chunk)} subscribers" + (f" into interest {interests[0]!r}" if interests else "")
        action = documents.bulk_upload_action(chunk, interests, InterestAction.ADD_OR_UPDATE,
                                              self._status_recipients(what),
                                         self.config.field_types)
        status = self._run_upload(action, what, [s.contact_id for s in chunk], journal)
        # BulkUpload reports counts only (per-row outcomes go to the status e-mail), so rows are "accepted".
        outcomes = [SubscriberOutcome(s.contact_id, s.email, OutcomeStatus.ACCEPTED) for s in chunk]
        if status.invalid_email_count:
            log.warning("%s: Thrive counted %d invalid emails (named only in its status e-mail)",
                        what, status.invalid_email_count)
        return UpsertResult(outcomes=outcomes, calls=1, uploads=[status], records_sent=len(chunk))

    def _status_recipients(self, what: str) -> list[str]:
        if not self.config.status_email_recipients:
            raise ThriveConfigurationError(
                f"{what}: BulkUpload requires StatusEmailRecipients; set the thrive connection's extra "
                "status_email_recipients to the address(es) that should receive Thrive's upload reports")
        return self.config.status_email_recipients

    def _run_upload(self, action: ET.Element, what: str, contact_ids: Sequence[str] = (),
                    journal: UploadJournal | None = None) -> UploadStatus:
        entry = journal.before_upload(what, contact_ids) if journal is not None else None
        responses = documents.action_responses(self._post(documents.action_request(self._brand, [action]), what), what)
        if not responses:
            raise ThriveProtocolError(f"{what}: the ActionResponse holds no BulkUpload response")
        status, message = documents.action_status(responses[0])
        if status != "success":
            raise ThriveActionFailed("BulkUpload", status, message)
        upload_id = documents.upload_id_of(responses[0], what)
        log.info("%s: upload %d queued", what, upload_id)
        if journal is not None and entry is not None:
            journal.queued(entry, upload_id)
        return self.wait_for_upload(upload_id, what)

    # --- uploads ------------------------------------------------------------------------------------------
    def upload_status(self, upload_id: int) -> UploadStatus | None:
        condition = Condition.single("upload_id", Comparator.EQ, upload_id)
        rows = self.grid_page(GridQuery(Grid.UPLOAD_HISTORY, (condition,), GRID_ELEMENTS[Grid.UPLOAD_HISTORY],
                                        "upload_id", number_of_rows=1))
        return upload_status_from(rows[0]) if rows else None

    def uploads_since(self, since: datetime) -> list[UploadStatus]:
        """Every upload of the brand dated `since` or later (`upload_history`, the grid's documented filter)."""
        condition = Condition.single("date", Comparator.GTE, since)
        return [upload_status_from(row) for row in self.iter_grid(Grid.UPLOAD_HISTORY, "upload_id", (condition,),
                                                                  GRID_ELEMENTS[Grid.UPLOAD_HISTORY])]

    def wait_for_uploads_since(self, since: datetime, what: str = "uploads") -> list[UploadStatus]:
        """Poll until no upload dated `since` or later is still pending (an upload whose `UploadID` was never
        read, because the process that sent it died, is among them); raises `UploadTimeout` like one upload."""
        started = time.monotonic()
        slept = 0.0
        while True:
            uploads = self.uploads_since(since)
            settled = UPLOAD_DONE_STATUSES | UPLOAD_FAILED_STATUSES
            pending = [upload for upload in uploads if upload.status.strip().lower() not in settled]
            if not pending:
                return uploads
            waited = max(time.monotonic() - started, slept)
            if waited >= self.config.poll_timeout_s:
                raise UploadTimeout(pending[0].upload_id, what, waited, pending[0].status)
            self._sleep(self.config.poll_interval_s)
            slept += self.config.poll_interval_s

    def wait_for_upload(self, upload_id: int, what: str = "BulkUpload") -> UploadStatus:
        """Poll `upload_history` until the upload is done; raises `UploadFailed` or `UploadTimeout`."""
        started = time.monotonic()
        slept = 0.0
        while True:
            status = self.upload_status(upload_id)
            state = status.status.strip().lower() if status else "not yet listed"
            if status is not None and state in UPLOAD_DONE_STATUSES:
                log.info("%s: upload %d %s (%s rows, %s new)", what, upload_id, status.status,
                         status.total_count, status.new_count)
                return status
            if state in UPLOAD_FAILED_STATUSES:
                raise UploadFailed(upload_id, what, state)
            waited = max(time.monotonic() - started, slept)
            if waited >= self.config.poll_timeout_s:
                raise UploadTimeout(upload_id, what, waited, state)
            self._sleep(self.config.poll_interval_s)
            slept += self.config.poll_interval_s


def _live_interest(interests: Iterable[Interest], name: str) -> Interest | None:
    return next((i for i in interests if not i.is_deleted and i.name.lower() == name.lower()), None)


def _ids(values: Iterable[str | None]) -> set[int]:
    """The numeric ids among grid cells (an empty or non-numeric cell names no group)."""
    return {int(value) for value in values if value is not None and value.strip().isdigit()}
