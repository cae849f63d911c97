"""What the activity writeback's steps return: small typed results that travel through XCom as JSON.

`activities.write_activities` returns an `ActivityWriteback`; `finish_run` stores an `ActivitiesReport`.
Counts per engagement kind, event keys, iMIS contact IDs and iMIS's reasons only; never an email.
"""

from __future__ import annotations

from pydantic import Field

from include.imis_thrive.step_result import StepResult


class Interval(StepResult):
    """`[start, end)` in UTC, ISO 8601."""

    start: str
    end: str


class UnknownContacts(StepResult):
    """Events skipped because iMIS has no such contact: counted, with the first IDs."""

    events: int = 0
    by_kind: dict[str, int] = Field(default_factory=dict)
    contacts: int = 0
    ids: list[str] = Field(default_factory=list)


class RefusedSample(StepResult):
    key: str
    contact_id: str
    kind: str


class Rejections(StepResult):
    """Events iMIS refused (a 400 other than an unknown contact), counted by iMIS's reason."""

    events: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict)
    sample: list[RefusedSample] = Field(default_factory=list)


class QuarantinedEvent(StepResult):
    """One quarantine entry as a report lists it (`writeback.quarantine.listed`)."""

    key: str
    contact_id: str
    kind: str
    reason: str
    runs: int
    attempts: int
    first_seen: str
    last_seen: str
    stuck: bool


class StuckSkipped(StepResult):
    events: int = 0
    entries: list[QuarantinedEvent] = Field(default_factory=list)


class WritebackQuarantine(StepResult):
    """Events iMIS failed every post of in this run, stuck ones skipped, and the quarantine's size."""

    events: int = 0
    stuck: int = 0
    entries: list[QuarantinedEvent] = Field(default_factory=list)
    stuck_skipped: StuckSkipped = Field(default_factory=StuckSkipped)
    released: int = 0
    open: int = 0
    attempts_per_run: int | None = None
    retry_runs: int | None = None


class LedgerFigures(StepResult):
    records_added: int
    records_compacted: int


class ActivityWriteback(StepResult):
    """`write_activities`: per kind, what was read and written, and what was not and why."""

    interval: Interval
    timezone: str
    read: dict[str, int] = Field(default_factory=dict)
    written: dict[str, int] = Field(default_factory=dict)
    found_in_imis: dict[str, int] = Field(default_factory=dict)
    already_written: dict[str, int] = Field(default_factory=dict)
    no_contact_id: dict[str, int] = Field(default_factory=dict)
    duplicates_in_read: int = 0
    checked_in_imis: int = 0
    unknown_contacts: UnknownContacts = Field(default_factory=UnknownContacts)
    rejected: Rejections = Field(default_factory=Rejections)
    quarantine: WritebackQuarantine = Field(default_factory=WritebackQuarantine)
    failed_kinds: dict[str, str] = Field(default_factory=dict)  # kind -> why Thrive would not serve it
    sources: dict[str, str] = Field(default_factory=dict)  # Mail Open / Link Click -> the grid read
    unsubscribed_tracked: int = 0
    ledger: LedgerFigures | None = None
    imis_calls: int = 0
    thrive_calls: int = 0
    seconds: float = 0.0
    activities_per_second: float | None = None


class ActivitiesReport(StepResult):
    """The run report of `thrive_to_imis_activities`; `writeback` is None when the write step failed."""

    run_id: str
    finished_at: str
    interval: Interval
    writeback: ActivityWriteback | None = None
    location: str | None = None  # where the JSON report is stored (set once it is)
