"""What the client takes and returns, in the sync's words; wire details stay in `documents.py` and `envelope.py`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True)
class Subscriber:
    """One contact to upsert: the iMIS ID (Thrive's remote `<ID>`), the email and personalization fields.

    `fields` maps Thrive personalization field names to values; None clears the field in Thrive.
    """

    contact_id: str
    email: str
    fields: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class InterestMember:
    """A subscriber as an interest (target group) membership lists it."""

    contact_id: str | None
    email: str


@dataclass(frozen=True)
class Interest:
    """A mailable interest; the Thrive UI calls it a target group."""

    interest_id: int
    name: str
    is_deleted: bool


@dataclass(frozen=True)
class CampaignSelection:
    """The interests a campaign uses, and the documented signal that said so (logged with every selection)."""

    names: list[str]
    signal: str


class OutcomeStatus(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    ACCEPTED = "accepted"  # the tenant reported only counts, not whether this record was new
    KEPT_UNSUBSCRIBED = "kept_unsubscribed"  # fields updated; the unsubscribe stands (consent wins)
    REJECTED = "rejected"


@dataclass(frozen=True)
class SubscriberOutcome:
    contact_id: str
    email: str
    status: OutcomeStatus
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is not OutcomeStatus.REJECTED


@dataclass(frozen=True)
class UploadStatus:
    """One row of the `upload_history` grid, as far as the client needs it."""

    upload_id: int
    status: str
    total_count: int | None
    new_count: int | None
    changed_count: int | None
    invalid_email_count: int | None
    uploaded_at: datetime | None


class UploadJournal(Protocol):
    """Where a caller records each BulkUpload before it is sent and its `UploadID` once Thrive queued it.

    Thrive applies a queued upload on its own time, even after the process that sent it died, so a caller that
    keeps a snapshot of what Thrive holds must know of every upload that may still land (`sync/pending_uploads.py`).
    """

    def before_upload(self, what: str, contact_ids: Sequence[str]) -> str:
        """Record an upload about to be sent; returns the entry's key."""

    def queued(self, entry: str, upload_id: int) -> None:
        """Thrive answered with this `UploadID` for the entry."""


@dataclass
class UpsertResult:
    """Per-subscriber outcomes of one upsert, plus how many calls and which uploads it took."""

    outcomes: list[SubscriberOutcome] = field(default_factory=list)
    calls: int = 0
    uploads: list[UploadStatus] = field(default_factory=list)
    records_sent: int = 0  # subscriber records that reached Thrive, re-sends that located refusals included

    @property
    def rejected(self) -> list[SubscriberOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.accepted]

    @property
    def accepted_count(self) -> int:
        return sum(outcome.accepted for outcome in self.outcomes)

    def extend(self, other: UpsertResult) -> None:
        self.outcomes.extend(other.outcomes)
        self.calls += other.calls
        self.uploads.extend(other.uploads)
        self.records_sent += other.records_sent
