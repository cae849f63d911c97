"""What each step of the two iMIS → Thrive syncs returns: small typed results that travel through XCom.

`target_groups.py` and `panel_fields.py` return these; the DAGs pass `to_xcom()` between tasks and rebuild
them with `from_xcom()`; the run reports are made of them. Counts, names, contact IDs and snapshot handles
only, never member data.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pandas as pd
from pydantic import Field

from include.imis_thrive.imis.iqa_package import ID_ALIAS
from include.imis_thrive.step_result import StepResult
from include.imis_thrive.sync.guard import GuardCheck
from include.imis_thrive.sync.snapshots import SnapshotHandle

SAMPLE_IDS = 10


class PlanStatus(StrEnum):
    """A target group's plan: loaded this run, or not and why."""

    READY = "ready"
    SKIPPED = "skipped"  # the list fails a requirement
    BLOCKED = "blocked"  # the mass-change guard stopped it


class PanelUpsertStatus(StrEnum):
    BLOCKED = "blocked"  # the mass-change guard stopped the load: nothing sent
    DRY_RUN = "dry_run"
    SYNCED = "synced"


# -- parts shared by the steps ---------------------------------------------------------------------------

class ValidationQuarantine(StepResult):
    """Rows validation kept from Thrive: counts per rule (and per field, for panels) and a few IDs."""

    rows: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict)
    by_field: dict[str, int] | None = None
    sample_ids: list[str] = Field(default_factory=list)
    sample_reasons: dict[str, list[str]] = Field(default_factory=dict, description=(
        "For the sample IDs: each failed rule as `column: rule`, so a person knows which value to fix"))

    @classmethod
    def of(cls, quarantine: pd.DataFrame, by_field: bool = False) -> ValidationQuarantine:
        """Enough to fix the rows in iMIS, no member data."""
        if quarantine.empty:
            return cls(by_field={} if by_field else None)
        sample_ids = quarantine[ID_ALIAS].drop_duplicates().head(SAMPLE_IDS).tolist()
        sampled = quarantine[quarantine[ID_ALIAS].isin(sample_ids)]
        reasons: dict[str, list[str]] = {}
        for contact_id, column, reason in zip(sampled[ID_ALIAS], sampled["column"], sampled["reason"], strict=True):
            reasons.setdefault(str(contact_id), []).append(f"{column}: {reason}")
        return cls(rows=int(quarantine[ID_ALIAS].nunique()),
                   by_reason={str(k): int(v) for k, v in quarantine["reason"].value_counts().items()},
                   by_field={str(k): int(v) for k, v in quarantine["column"].value_counts().items()}
                   if by_field else None,
                   sample_ids=sample_ids, sample_reasons=reasons)


class RejectionSummary(StepResult):
    """The rejection ledger after a load (`RejectionLedger.summary`): what Thrive keeps refusing."""

    open: int
    by_reason: dict[str, int]
    flagged_count: int
    flagged_ids: list[str]
    flag_after_runs: int


class ContactChanges(StepResult):
    """`ContactDiff.summary`: counts only."""

    previous: int
    added: int
    changed: int
    removed: int
    unchanged: int
    changed_by_column: dict[str, int] = Field(default_factory=dict)


class MembershipChanges(StepResult):
    """`MembershipDiff.summary`: one group's joiners and leavers, counted."""

    target_group: str
    previous: int
    current: int
    added: int
    removed: int


class GuardVerdict(StepResult):
    """The mass-change guard's `GuardCheck`, or only `blocked=False, base=0` when there was nothing to compare."""

    blocked: bool
    base: int
    subject: str | None = None
    measure: str | None = None
    count: int | None = None
    share: float | None = None
    limit: float | None = None
    overridden: bool | None = None

    @classmethod
    def of(cls, check: GuardCheck) -> GuardVerdict:
        return cls.model_validate(check.as_dict())

    @classmethod
    def nothing_to_compare(cls) -> GuardVerdict:
        return cls(blocked=False, base=0)

    def check(self) -> GuardCheck:
        """The verdict as the guard's own type, e.g. to raise `MassChangeBlocked` again in `finish_run`."""
        return GuardCheck(**self.model_dump())


class UpsertFigures(StepResult):
    """What a Thrive upsert did, shared by the contacts and the panel-field loads (`load_cycle.settle_upsert`)."""

    sent: int = 0
    rejected: int = 0
    calls: int = 0
    records_sent: int | None = None
    outcomes: dict[str, int] | None = None
    quarantine: RejectionSummary | None = None


# -- target groups ---------------------------------------------------------------------------------------

class TargetGroup(StepResult):
    """A list IQA and the Thrive target group (interest) of the same name; `problem` says why it is skipped."""

    name: str
    iqa: str
    problem: str | None = None


class ContactsExtract(StepResult):
    """`extract_contacts`: the contacts IQA read, validated and staged (not committed)."""

    handle: SnapshotHandle
    rows: int
    staged: int
    quarantined: ValidationQuarantine
    validation: dict[str, Any]  # the GX summary (`validate_iqa`)
    new_bad_emails: int
    seconds: float


class DriftCheck(StepResult):
    """What Thrive held of one group before the diff, against the group's committed snapshot (counts only).

    `reconciled` says the member list was read (the count differed, or a weekly reconciliation); then `missing`
    (in the snapshot, not in Thrive) and `extra` (in Thrive, not in the snapshot) are known, and `fields_differ`
    counts members whose synced fields Thrive holds otherwise than last sent (reconciliation only).
    """

    snapshot: int
    in_thrive: int
    reconciled: bool = False
    missing: int = 0
    extra: int = 0
    fields_checked: int | None = None
    fields_differ: int | None = None
    guard: GuardVerdict | None = None

    @property
    def drifted(self) -> bool:
        return bool(self.missing or self.extra or self.fields_differ or self.snapshot != self.in_thrive)


class TargetGroupPlan(StepResult):
    """`plan_target_group`: one list's staged membership changes, or why it is not loaded."""

    group: str
    iqa: str
    status: PlanStatus
    reason: str | None = None
    handle: SnapshotHandle | None = None
    baseline: SnapshotHandle | None = None  # the committed snapshot the diff was made against
    membership: MembershipChanges | None = None
    guard: GuardVerdict | None = None
    full_resync: bool | None = None
    # keys of earlier runs' uploads this plan settled (`pending_uploads.py`); cleared after the group's commit
    settled_uploads: list[str] | None = None
    uncertain: int | None = None  # contacts those uploads left uncertain, re-sent by this plan
    drift: DriftCheck | None = None  # Thrive's side, checked before the diff (None: nothing committed to check)

    @property
    def ready(self) -> bool:
        return self.status is PlanStatus.READY

    def staged(self) -> SnapshotHandle:
        """The staged changes of a ready plan."""
        if self.handle is None:
            raise ValueError(f"target group {self.group!r} is {self.status}, so it has no staged changes")
        return self.handle


class ContactsUpsert(UpsertFigures):
    """`upsert_contacts`: the members' fields sent to Thrive, once for all groups."""

    members: int
    missing_from_contacts_iqa: int
    diff: ContactChanges
    guard: GuardVerdict
    to_send: int
    dry_run: bool
    seconds: float
    refused_unchanged: int = 0  # Thrive refused these rows before and they have not changed: not sent again


class TargetGroupLoad(StepResult):
    """`load_target_group`: one group's interest additions and removals."""

    group: str
    to_add: int
    to_remove: int
    not_in_thrive: int
    dry_run: bool
    added: int = 0
    removed: int = 0
    rejected: int = 0
    records_sent: int = 0
    members: int | None = None
    calls: int = 0
    seconds: float | None = None
    # drift repaired by this load: members missing in Thrive added again, extra ones removed, members whose
    # fields Thrive held otherwise (re-sent by upsert_contacts)
    drift_readded: int | None = None
    drift_removed: int | None = None
    drift_fields_resent: int | None = None
    refused_unchanged: int = 0  # additions Thrive refused before, of contacts unchanged since: not sent again


class GroupOutcome(TargetGroupPlan):
    """One group in the run report: its plan and, when it ran, its load."""

    load: TargetGroupLoad | None = None


class TargetGroupsReport(StepResult):
    """The run report of `imis_to_thrive_target_groups`, stored as JSON (and Markdown) beside the snapshots."""

    run_id: str
    finished_at: str
    dry_run: bool = False  # then the loads' `to_add` / `to_remove` and the upsert's `to_send` are what a run would do
    contacts: ContactsExtract | None = None
    upsert: ContactsUpsert | None = None
    target_groups: list[GroupOutcome] = Field(default_factory=list)


class TargetGroupsRun(StepResult):
    """`finish_run`'s short summary."""

    report: str
    target_groups: int
    sent: int
    added: int
    removed: int


# -- panel fields ----------------------------------------------------------------------------------------

class PanelExtract(StepResult):
    """`extract_panel_fields`: the panel IQA read, validated, rendered as Thrive text and staged."""

    iqa: str
    handle: SnapshotHandle
    rows: int
    staged: int
    fields: list[str]
    custom_fields: list[str]
    quarantined: ValidationQuarantine
    validation: dict[str, Any]
    seconds: float


class FieldSetCount(StepResult):
    fields: list[str]
    contacts: int


class FieldSets(StepResult):
    """How many distinct field sets (one upsert each) and the largest ones."""

    count: int
    largest: list[FieldSetCount]


class PanelUpsert(UpsertFigures):
    """`upsert_panel_fields`: the changed fields sent, or why nothing was."""

    status: PanelUpsertStatus
    in_thrive: int
    panel_rows: int
    not_in_thrive: int
    diff: ContactChanges
    to_send: int
    field_sets: FieldSets
    dry_run: bool
    reason: str | None = None
    guard: GuardVerdict | None = None
    seconds: float


class PanelFieldsReport(StepResult):
    """The run report of `imis_to_thrive_panel_fields`."""

    run_id: str
    finished_at: str
    iqa: str
    extract: PanelExtract
    upsert: PanelUpsert


class PanelFieldsRun(StepResult):
    """`finish_run`'s short summary."""

    report: str
    status: PanelUpsertStatus
    fields: int
    custom_fields: list[str]
    to_send: int
    sent: int
    rejected: int
