"""The Sync health page's figures, built from the DAGs' recent run reports: one small JSON document.

Per target group: the state of the last run that synced it, its members, its additions and removals over the recent
runs, drift found and repaired (when the report has it), what was kept from Thrive; the same for the contacts'
default fields, the panel fields and the activity writeback per engagement kind. Counts, reasons and iMIS contact
IDs only, as in the reports themselves: never an email address.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from include.imis_thrive.health.addresses import (
    ACTIVITIES_DAG,
    PANEL_FIELDS_DAG,
    TARGET_GROUPS_DAG,
    report_view_path,
    run_path,
)
from include.imis_thrive.health.runs import RecentReports
from include.imis_thrive.reports import drift_note
from include.imis_thrive.sync.results import (
    GroupOutcome,
    PanelFieldsReport,
    PlanStatus,
    RejectionSummary,
    TargetGroupsReport,
    ValidationQuarantine,
)
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback.results import ActivitiesReport

# Runs per DAG the page reads: a day of hourly activity runs, a few days of the others.
RECENT_RUNS = 24


class HealthModel(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunLink(HealthModel):
    """A run: when its report was written, its page in Airflow and its readable report (paths on the api-server)."""

    dag_id: str
    run_id: str
    finished_at: str
    airflow: str
    report: str

    @classmethod
    def of(cls, dag_id: str, run_id: str, finished_at: str) -> RunLink:
        return cls(dag_id=dag_id, run_id=run_id, finished_at=finished_at, airflow=run_path(dag_id, run_id),
                   report=report_view_path(dag_id, run_id))


class Held(HealthModel):
    """Rows kept from Thrive: how many, why (counted), and the first contact IDs."""

    count: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict)
    ids: list[str] = Field(default_factory=list)

    @classmethod
    def of_validation(cls, quarantine: ValidationQuarantine | None) -> Held:
        if quarantine is None:
            return cls()
        return cls(count=quarantine.rows, by_reason=dict(quarantine.by_reason), ids=list(quarantine.sample_ids))

    @classmethod
    def of_rejections(cls, summary: RejectionSummary | None) -> Held:
        """The rejection ledger's open entries (Thrive refused them; every run retries them)."""
        if summary is None:
            return cls()
        return cls(count=summary.open, by_reason=dict(summary.by_reason))

    @classmethod
    def stuck_of(cls, summary: RejectionSummary | None) -> Held:
        """Contacts Thrive refused `flag_after_runs` runs in a row: retrying will not help, iMIS needs a fix."""
        if summary is None or not summary.flagged_count:
            return cls()
        return cls(count=summary.flagged_count,
                   by_reason={f"rejected {summary.flag_after_runs} runs in a row": summary.flagged_count},
                   ids=list(summary.flagged_ids))


class GroupPoint(HealthModel):
    """One run's changes to a group (a bar of the chart)."""

    run_id: str
    finished_at: str
    state: str
    added: int = 0
    removed: int = 0


class GroupHealth(HealthModel):
    group: str
    state: str  # synced, dry run, skipped, blocked, failed
    reason: str | None = None
    last_run: RunLink
    members: int | None = None
    added: int = 0
    removed: int = 0
    to_add: int = 0
    to_remove: int = 0
    not_added: Held = Field(default_factory=Held)
    drift: dict[str, Any] | None = None  # what the run's drift check found and repaired (`_drift`), None without one
    history: list[GroupPoint] = Field(default_factory=list)


class FieldsPoint(HealthModel):
    """One run's contact-field changes (a bar of the chart)."""

    run_id: str
    finished_at: str
    state: str
    added: int = 0
    changed: int = 0
    sent: int = 0


class FieldsHealth(HealthModel):
    """The contacts' default fields (with the target-group runs) or the panel fields (their own DAG)."""

    state: str
    reason: str | None = None
    last_run: RunLink
    read: int | None = None
    fields: int | None = None
    added: int = 0
    changed: int = 0
    sent: int = 0
    rejected: int = 0
    quarantined: Held = Field(default_factory=Held)
    rejected_by_thrive: Held = Field(default_factory=Held)
    stuck: Held = Field(default_factory=Held)
    history: list[FieldsPoint] = Field(default_factory=list)


class HourPoint(HealthModel):
    """What one writeback run wrote of a kind in its interval (a bar of the chart)."""

    run_id: str
    start: str
    written: int


class KindHealth(HealthModel):
    kind: str
    read: int = 0
    written: int = 0
    already_written: int = 0
    unknown_contacts: int = 0
    quarantined: int = 0
    failed: str | None = None  # why Thrive would not serve the kind
    per_hour: list[HourPoint] = Field(default_factory=list)


class ActivitiesHealth(HealthModel):
    state: str  # written, incomplete, failed
    last_run: RunLink
    interval_start: str
    interval_end: str
    kinds: list[KindHealth]
    refused: Held = Field(default_factory=Held)
    quarantine_open: int = 0
    stuck: Held = Field(default_factory=Held)


class SyncHealth(HealthModel):
    """The page's JSON (`GET /sync-health/api/health`)."""

    generated_at: str
    runs_read: dict[str, int]
    target_groups: list[GroupHealth]
    contacts: FieldsHealth | None = None
    panel_fields: FieldsHealth | None = None
    activities: ActivitiesHealth | None = None
    notes: list[str] = Field(default_factory=list)


def build(target_groups: RecentReports[TargetGroupsReport], panel_fields: RecentReports[PanelFieldsReport],
          activities: RecentReports[ActivitiesReport], now: datetime | None = None) -> SyncHealth:
    notes = [f"{recent.unreadable} stored {dag_id} report(s) were written by another version and are left out"
             for dag_id, recent in ((TARGET_GROUPS_DAG, target_groups), (PANEL_FIELDS_DAG, panel_fields),
                                    (ACTIVITIES_DAG, activities)) if recent.unreadable]
    return SyncHealth(
        generated_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        runs_read={TARGET_GROUPS_DAG: len(target_groups.reports), PANEL_FIELDS_DAG: len(panel_fields.reports),
                   ACTIVITIES_DAG: len(activities.reports)},
        target_groups=group_health(target_groups.reports), contacts=contacts_health(target_groups.reports),
        panel_fields=panel_health(panel_fields.reports), activities=activities_health(activities.reports),
        notes=notes)


# -- target groups ---------------------------------------------------------------------------------------

def group_state(outcome: GroupOutcome) -> str:
    if outcome.status is not PlanStatus.READY:
        return str(outcome.status)
    if outcome.load is None:
        return "failed"
    return "dry run" if outcome.load.dry_run else "synced"


def _drift(outcome: GroupOutcome) -> dict[str, Any] | None:
    """The drift the run found in Thrive (counts from the plan's check, repairs from the load) and the report's
    sentence for it; None for a group whose run had nothing committed to check, or a report from before drift."""
    check = outcome.drift
    if check is None:
        return None
    load = outcome.load
    repaired = {} if load is None else {"readded": load.drift_readded, "removed": load.drift_removed,
                                        "fields_resent": load.drift_fields_resent}
    figures = check.model_dump(mode="json", exclude_none=True, exclude={"guard"})
    return {**figures, **{name: value for name, value in repaired.items() if value is not None},
            "note": drift_note(outcome, load) or "none"}


def group_health(reports: Sequence[TargetGroupsReport]) -> list[GroupHealth]:
    """Each group in the runs that planned it, by name; its figures are its last run's."""
    history: dict[str, list[GroupPoint]] = {}
    last: dict[str, tuple[TargetGroupsReport, GroupOutcome]] = {}
    for report in reports:
        for outcome in report.target_groups:
            load = outcome.load
            history.setdefault(outcome.group, []).append(GroupPoint(
                run_id=report.run_id, finished_at=report.finished_at, state=group_state(outcome),
                added=load.added if load else 0, removed=load.removed if load else 0))
            last[outcome.group] = (report, outcome)
    groups = []
    for name in sorted(last):
        report, outcome = last[name]
        load = outcome.load
        not_added = {reason: count for reason, count in
                     (("not in Thrive", load.not_in_thrive if load else 0),
                      ("rejected by Thrive", load.rejected if load else 0)) if count}
        groups.append(GroupHealth(
            group=name, state=group_state(outcome), reason=outcome.reason,
            last_run=RunLink.of(TARGET_GROUPS_DAG, report.run_id, report.finished_at),
            members=load.members if load and load.members is not None
            else (outcome.membership.current if outcome.membership else None),
            added=load.added if load else 0, removed=load.removed if load else 0,
            to_add=load.to_add if load else 0, to_remove=load.to_remove if load else 0,
            not_added=Held(count=sum(not_added.values()), by_reason=not_added),
            drift=_drift(outcome), history=history[name]))
    return groups


def contacts_health(reports: Sequence[TargetGroupsReport]) -> FieldsHealth | None:
    """The default fields and the preference token: one upsert per target-group run, for every group."""
    if not reports:
        return None
    points = []
    for report in reports:
        upsert = report.upsert
        points.append(FieldsPoint(
            run_id=report.run_id, finished_at=report.finished_at, state=_contacts_state(report),
            added=upsert.diff.added if upsert else 0, changed=upsert.diff.changed if upsert else 0,
            sent=upsert.sent if upsert else 0))
    report = reports[-1]
    contacts, upsert = report.contacts, report.upsert
    return FieldsHealth(
        state=_contacts_state(report), last_run=RunLink.of(TARGET_GROUPS_DAG, report.run_id, report.finished_at),
        read=contacts.rows if contacts else None, added=upsert.diff.added if upsert else 0,
        changed=upsert.diff.changed if upsert else 0, sent=upsert.sent if upsert else 0,
        rejected=upsert.rejected if upsert else 0,
        quarantined=Held.of_validation(contacts.quarantined if contacts else None),
        rejected_by_thrive=Held.of_rejections(upsert.quarantine if upsert else None),
        stuck=Held.stuck_of(upsert.quarantine if upsert else None), history=points)


def _contacts_state(report: TargetGroupsReport) -> str:
    if report.contacts is None or report.upsert is None:
        return "failed"
    if report.upsert.guard.blocked and not report.upsert.guard.overridden:
        return "blocked"
    return "dry run" if report.upsert.dry_run else "synced"


# -- panel fields ----------------------------------------------------------------------------------------

def panel_health(reports: Sequence[PanelFieldsReport]) -> FieldsHealth | None:
    if not reports:
        return None
    points = [FieldsPoint(run_id=r.run_id, finished_at=r.finished_at, state=_panel_state(r),
                          added=r.upsert.diff.added, changed=r.upsert.diff.changed, sent=r.upsert.sent)
              for r in reports]
    report = reports[-1]
    extract, upsert = report.extract, report.upsert
    return FieldsHealth(
        state=_panel_state(report), reason=upsert.reason,
        last_run=RunLink.of(PANEL_FIELDS_DAG, report.run_id, report.finished_at), read=extract.rows,
        fields=len(extract.fields), added=upsert.diff.added, changed=upsert.diff.changed, sent=upsert.sent,
        rejected=upsert.rejected, quarantined=Held.of_validation(extract.quarantined),
        rejected_by_thrive=Held.of_rejections(upsert.quarantine), stuck=Held.stuck_of(upsert.quarantine),
        history=points)


def _panel_state(report: PanelFieldsReport) -> str:
    return str(report.upsert.status).replace("_", " ")


# -- activity writeback ----------------------------------------------------------------------------------

def activities_health(reports: Sequence[ActivitiesReport]) -> ActivitiesHealth | None:
    """Per engagement kind: the last run's figures and what each recent run (one interval each) wrote."""
    if not reports:
        return None
    report = reports[-1]
    writeback = report.writeback
    names = [str(kind) for kind in EngagementKind]
    names += sorted({kind for r in reports if r.writeback for kind in r.writeback.read} - set(names))
    quarantined = Counter(entry.kind for entry in writeback.quarantine.entries) if writeback else Counter()
    kinds = [KindHealth(
        kind=kind, read=_count(writeback.read if writeback else {}, kind),
        written=_count(writeback.written if writeback else {}, kind),
        already_written=_count(writeback.already_written if writeback else {}, kind),
        unknown_contacts=_count(writeback.unknown_contacts.by_kind if writeback else {}, kind),
        quarantined=quarantined[kind], failed=writeback.failed_kinds.get(kind) if writeback else None,
        per_hour=[HourPoint(run_id=r.run_id, start=r.interval.start,
                            written=_count(r.writeback.written if r.writeback else {}, kind)) for r in reports])
        for kind in names]
    refused = writeback.rejected if writeback else None
    stuck = writeback.quarantine.stuck_skipped if writeback else None
    return ActivitiesHealth(
        state=_activities_state(report), last_run=RunLink.of(ACTIVITIES_DAG, report.run_id, report.finished_at),
        interval_start=report.interval.start, interval_end=report.interval.end, kinds=kinds,
        refused=Held(count=refused.events, by_reason=dict(refused.by_reason),
                     ids=[sample.contact_id for sample in refused.sample]) if refused else Held(),
        quarantine_open=writeback.quarantine.open if writeback else 0,
        stuck=Held(count=stuck.events, by_reason=dict(Counter(entry.reason for entry in stuck.entries)),
                   ids=[entry.contact_id for entry in stuck.entries]) if stuck else Held())


def _count(by_kind: Mapping[str, int], kind: str) -> int:
    return int(by_kind.get(kind, 0))


def _activities_state(report: ActivitiesReport) -> str:
    writeback = report.writeback
    if writeback is None:
        return "failed"
    if writeback.rejected.events or writeback.quarantine.events or writeback.failed_kinds:
        return "incomplete"
    return "written"
