"""Run reports built in code, as the three `finish_run`s write them, and a store to put them in."""

from __future__ import annotations

from collections.abc import Mapping

from include.imis_thrive import reports
from include.imis_thrive.health.addresses import ACTIVITIES_DAG, PANEL_FIELDS_DAG, TARGET_GROUPS_DAG
from include.imis_thrive.health.runs import report_key
from include.imis_thrive.step_result import StepResult
from include.imis_thrive.sync.load_cycle import write_report
from include.imis_thrive.sync.results import (
    ContactChanges,
    ContactsExtract,
    ContactsUpsert,
    FieldSets,
    GroupOutcome,
    GuardVerdict,
    MembershipChanges,
    PanelExtract,
    PanelFieldsReport,
    PanelUpsert,
    PanelUpsertStatus,
    PlanStatus,
    RejectionSummary,
    TargetGroupLoad,
    TargetGroupsReport,
    ValidationQuarantine,
)
from include.imis_thrive.sync.snapshots import SnapshotHandle, SnapshotStore
from include.imis_thrive.writeback.results import (
    ActivitiesReport,
    ActivityWriteback,
    Interval,
    QuarantinedEvent,
    RefusedSample,
    Rejections,
    UnknownContacts,
    WritebackQuarantine,
)

HANDLE = SnapshotHandle(name="contacts", key="contacts/snapshots/x.parquet", run_id="r", rows=3,
                        staged_at="20260302T100000000000Z")


def changes(added: int = 0, changed: int = 0) -> ContactChanges:
    return ContactChanges(previous=100, added=added, changed=changed, removed=0, unchanged=100 - changed)


def group(name: str, added: int = 0, removed: int = 0, members: int = 100, status: PlanStatus = PlanStatus.READY,
          reason: str | None = None, dry_run: bool = False, loaded: bool = True, not_in_thrive: int = 0,
          rejected: int = 0) -> GroupOutcome:
    """One group of a target-group report: planned, and loaded unless `loaded` is False (its load failed)."""
    ready = status is PlanStatus.READY
    load = TargetGroupLoad(group=name, to_add=added, to_remove=removed, not_in_thrive=not_in_thrive,
                           dry_run=dry_run, added=0 if dry_run else added, removed=0 if dry_run else removed,
                           rejected=rejected, members=members, calls=2) if ready and loaded else None
    membership = MembershipChanges(target_group=name, previous=members - added + removed, current=members,
                                   added=added, removed=removed)
    return GroupOutcome(group=name, iqa=f"$/HigherLogic/MailingLists/{name}", status=status, reason=reason,
                        membership=membership if ready else None, load=load)


def target_groups_report(run_id: str, finished_at: str, groups: list[GroupOutcome], changed: int = 0,
                         quarantined: Mapping[str, list[str]] | None = None, stuck: list[str] | None = None,
                         dry_run: bool = False) -> TargetGroupsReport:
    """`quarantined`: validation's reasons with the IDs it kept back; `stuck`: IDs Thrive refused 3 runs running."""
    by_reason = {reason: len(ids) for reason, ids in (quarantined or {}).items()}
    sample = [contact_id for ids in (quarantined or {}).values() for contact_id in ids]
    contacts = ContactsExtract(handle=HANDLE, rows=500, staged=500 - len(sample),
                               quarantined=ValidationQuarantine(rows=len(sample), by_reason=by_reason,
                                                                sample_ids=sample),
                               validation={}, new_bad_emails=0, seconds=1.0)
    flagged = stuck or []
    upsert = ContactsUpsert(members=400, missing_from_contacts_iqa=0, diff=changes(changed=changed),
                            guard=GuardVerdict.nothing_to_compare(), to_send=changed, dry_run=dry_run,
                            sent=0 if dry_run else changed, rejected=len(flagged),
                            quarantine=RejectionSummary(open=len(flagged),
                                                        by_reason={"malformed": len(flagged)} if flagged else {},
                                                        flagged_count=len(flagged), flagged_ids=flagged,
                                                        flag_after_runs=3), seconds=1.0)
    return TargetGroupsReport(run_id=run_id, finished_at=finished_at, contacts=contacts, upsert=upsert,
                              target_groups=groups)


def panel_fields_report(run_id: str, finished_at: str, changed: int, sent: int,
                        status: PanelUpsertStatus = PanelUpsertStatus.SYNCED) -> PanelFieldsReport:
    extract = PanelExtract(iqa="$/HigherLogic/Panels/PanelFields", handle=HANDLE, rows=300, staged=300,
                           fields=["Region", "Chapter"], custom_fields=["Chapter"],
                           quarantined=ValidationQuarantine(by_field={}), validation={}, seconds=1.0)
    upsert = PanelUpsert(status=status, in_thrive=290, panel_rows=300, not_in_thrive=10, diff=changes(changed=changed),
                         to_send=changed, field_sets=FieldSets(count=1, largest=[]),
                         dry_run=status is PanelUpsertStatus.DRY_RUN, sent=sent, seconds=1.0)
    return PanelFieldsReport(run_id=run_id, finished_at=finished_at, iqa=extract.iqa, extract=extract, upsert=upsert)


def activities_report(run_id: str, start: str, end: str, written: Mapping[str, int],
                      refused: Mapping[str, int] | None = None, quarantined_kinds: list[str] | None = None,
                      unknown: Mapping[str, int] | None = None) -> ActivitiesReport:
    interval = Interval(start=start, end=end)
    entries = [QuarantinedEvent(key=f"k{index}", contact_id=str(900 + index), kind=kind, reason="500 from iMIS",
                                runs=1, attempts=3, first_seen=start, last_seen=start, stuck=False)
               for index, kind in enumerate(quarantined_kinds or [])]
    refused = refused or {}
    writeback = ActivityWriteback(
        interval=interval, timezone="UTC", read=dict(written), written=dict(written),
        unknown_contacts=UnknownContacts(events=sum((unknown or {}).values()), by_kind=dict(unknown or {})),
        rejected=Rejections(events=sum(refused.values()), by_reason=dict(refused),
                            sample=[RefusedSample(key="r1", contact_id="77", kind="Mail Open")] if refused else []),
        quarantine=WritebackQuarantine(events=len(entries), entries=entries, open=len(entries)))
    return ActivitiesReport(run_id=run_id, finished_at=end, interval=interval, writeback=writeback)


def store_report(store: SnapshotStore, report: StepResult) -> None:
    """As `load_cycle.write_report` stores it: JSON and Markdown at the DAG's key for the run."""
    if isinstance(report, TargetGroupsReport):
        dag_id, readable = TARGET_GROUPS_DAG, reports.render_target_groups(report)
    elif isinstance(report, PanelFieldsReport):
        dag_id, readable = PANEL_FIELDS_DAG, reports.render_panel_fields(report)
    else:
        assert isinstance(report, ActivitiesReport)
        dag_id, readable = ACTIVITIES_DAG, reports.render_activities(report)
    write_report(store, report_key(dag_id, report.run_id), report, readable)
