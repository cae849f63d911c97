"""Target-group sync (iMIS list IQAs -> Thrive interests): the steps of `imis_to_thrive_target_groups`.

Each public function is one task of the DAG and runs without Airflow: it takes the clients and the
snapshot store, returns a small typed result (`results.py`: counts, names, snapshot handles; never member
data) that travels through XCom as JSON, and raises a typed error a person can act on. The order, and why:

1. `discover_target_groups`: the IQAs of `$/HigherLogic/MailingLists`, each checked against the list
   requirements its definition can show (ID alias, no prompts, a matching Thrive target group).
2. `extract_contacts`: the contacts IQA, validated (blocking rules fail here, before any load) and mapped
   to Thrive fields; staged, not committed.
3. `plan_target_group` (one per list): the list extracted and checked (shared with Everyone, one active
   record), its membership diffed against the group's snapshot and passed through the mass-change guard.
   A list that fails a requirement is planned as skipped with the reason; the others go on. Before the diff,
   Thrive's count of the group is checked against the snapshot; when they differ (drift), the diff is made
   against Thrive's own member list instead.
4. `upsert_contacts`: the fields of members that are new to Thrive or changed since they were last sent,
   in one upsert for all groups; Thrive's rejections are quarantined. Commits the contacts snapshot.
5. `load_target_group` (one per list): interest additions for members Thrive now holds, removals (never an
   unsubscribe) for those who left; then commits the group's snapshot.
6. `finish_run`: the run report; raises if any list was skipped or blocked, so alerting fires.

A failed or killed run leaves every snapshot it did not commit as it was, so the next run resends. Where a kill
could make a snapshot claim more than Thrive holds: a BulkUpload (a removal, or a large add or upsert) that
Thrive queued and applies after the run died, and an attempt's sends that the uncommitted snapshot cannot say
happened or not. So `upsert_contacts` records the attempt before it sends (`attempts.py`), each BulkUpload is
recorded before it is sent (`pending_uploads.py`), and the next plan waits for those uploads and re-sends the
state of every contact they or the attempt touched; the guard measures it against the attempt, not against
the older commit, so a re-run after a kill needs no override.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from include.imis_thrive.errors import BadConfiguration, BadData
from include.imis_thrive.imis.client import ImisClient
from include.imis_thrive.imis.errors import ImisAuthError, ImisNotFound, ImisUnexpectedAnswer
from include.imis_thrive.imis.iqa_package import (
    ACTIVE_STATUS,
    CONTACTS_IQA,
    CONTACTS_IQA_PATH,
    ID_ALIAS,
    LIST_IQA_COLUMNS,
    MAILING_LISTS_FOLDER,
    STATUS_ALIAS,
    ListRequirement,
)
from include.imis_thrive.progress import page_progress
from include.imis_thrive.reports import render_target_groups
from include.imis_thrive.sync import pending_uploads
from include.imis_thrive.sync.attempts import last_attempt, record_attempt
from include.imis_thrive.sync.bad_emails import record_bad_emails
from include.imis_thrive.sync.diff import (
    ContactDiff,
    SnapshotRows,
    diff_contacts,
    diff_membership,
    is_row_hash_column,
    key_frame,
)
from include.imis_thrive.sync.fetch import declared_types as _declared_types
from include.imis_thrive.sync.field_map import to_thrive_contacts
from include.imis_thrive.sync.guard import (
    DriftBlocked,
    MassChangeBlocked,
    MassChangeLimits,
    check_contact_changes,
    check_drift,
    check_membership_removals,
)
from include.imis_thrive.sync.load_cycle import is_in, settle_upsert, write_report
from include.imis_thrive.sync.merge import merge_members
from include.imis_thrive.sync.pending_uploads import UploadJournal
from include.imis_thrive.sync.quarantine import RejectionLedger
from include.imis_thrive.sync.results import (
    ContactChanges,
    ContactsExtract,
    ContactsUpsert,
    DriftCheck,
    GroupOutcome,
    GuardVerdict,
    MembershipChanges,
    PlanStatus,
    RejectionSummary,
    TargetGroup,
    TargetGroupLoad,
    TargetGroupPlan,
    TargetGroupsReport,
    TargetGroupsRun,
    ValidationQuarantine,
)
from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.sync.validation import IqaKind, ValidationFailed, validate_iqa
from include.imis_thrive.thrive.client import ThriveClient
from include.imis_thrive.thrive.models import (
    CampaignSelection,
    Interest,
    InterestMember,
    Subscriber,
    SubscriberOutcome,
)

log = logging.getLogger(__name__)

CONTACTS_SNAPSHOT = "contacts"
EMAIL_FIELD = "PrimaryEmailAddress"
CHANGE_COLUMN = "change"  # in a membership plan: "add", "remove" or "keep"
DRIFT_COLUMN = "drift"  # in a membership plan: the drift in Thrive a row repairs, or ""
DRIFT_MISSING, DRIFT_EXTRA, DRIFT_FIELDS = "missing", "extra", "fields"
CAMPAIGN_GROUPS_VARIABLE = "imis_thrive_campaign_groups"  # names the hourly run syncs; wins over Thrive's signals
CAMPAIGN_LOOKBACK_DAYS = 30  # a group a mailing used this recently counts as a campaign group


class UnknownTargetGroup(BadConfiguration):
    """A manual run named a target group that is not a list IQA."""


class TargetGroupSkipped(BadData):
    """The list fails a requirement (or the guard); nothing was loaded for it."""


class SyncIncomplete(BadData):
    """The run loaded what it could, but some lists were skipped or blocked; the report says which.

    `alert_lines`: one line per group not synced (its name and why), what the run's failure alert lists."""

    def __init__(self, message: str, alert_lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.alert_lines = list(alert_lines)


def group_snapshot(name: str) -> str:
    return f"target_groups/{snapshot_name(name)}"


def requirement_problem(iqa: str, requirement: ListRequirement, detail: str) -> str:
    return f"list IQA {iqa} is skipped: it must be an IQA that {requirement.value} ({detail})"


# -- 1. discover ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CampaignOnly:
    """A scheduled run syncs only campaign groups: those the Variable lists, else those Thrive's signals show."""

    listed_groups: Sequence[str] = ()
    lookback: timedelta = timedelta(days=CAMPAIGN_LOOKBACK_DAYS)

    def select(self, thrive: ThriveClient, now: datetime, interests: Sequence[Interest]) -> CampaignSelection:
        if self.listed_groups:
            return CampaignSelection(list(self.listed_groups), f"the Airflow Variable {CAMPAIGN_GROUPS_VARIABLE}")
        return thrive.campaign_interests(now - self.lookback, interests)


def discover_target_groups(imis: ImisClient, thrive: ThriveClient, only: str | None = None,
                           campaign_only: CampaignOnly | None = None) -> list[TargetGroup]:
    """The list IQAs to sync this run: one named group, the groups of active campaigns, or all of them."""
    documents = imis.list_folder(MAILING_LISTS_FOLDER)
    every_interest = thrive.interests()
    interests = {i.name.casefold(): i for i in every_interest if not i.is_deleted}
    if only:
        chosen = [d for d in documents if d.name.casefold() == only.strip().casefold()]
        if not chosen:
            available = ", ".join(sorted(d.name for d in documents)) or "none"
            raise UnknownTargetGroup(
                f"no list IQA named {only!r} in {MAILING_LISTS_FOLDER} (available: {available})")
        documents = chosen
    elif campaign_only is not None:
        selection = campaign_only.select(thrive, datetime.now(UTC), every_interest)
        wanted = {name.casefold() for name in selection.names}
        documents = [d for d in documents if d.name.casefold() in wanted]
        if documents:
            log.info("campaign groups, by %s: %s", selection.signal, ", ".join(sorted(d.name for d in documents)))
        else:
            log.warning("campaign-only run selects no target group: %s names %s, and no list IQA matches; nothing "
                        "syncs this run. If campaigns use groups Thrive does not report, list them in the Airflow "
                        "Variable %s (a JSON list of names)", selection.signal,
                        ", ".join(selection.names) or "no group", CAMPAIGN_GROUPS_VARIABLE)
    groups = []
    for document in sorted(documents, key=lambda d: d.name.casefold()):
        iqa = document.path or f"{MAILING_LISTS_FOLDER}/{document.name}"
        problem = _definition_problem(imis, iqa)
        if problem is None and document.name.casefold() not in interests:
            problem = (f"list IQA {iqa} is skipped: Thrive has no target group named {document.name!r}; "
                       "create it in Thrive (the AAPI cannot) or rename the IQA")
        groups.append(TargetGroup(name=document.name, iqa=iqa, problem=problem))
    log.info("discovered %d target group(s): %s", len(groups), ", ".join(g.name for g in groups) or "none")
    return groups


def _definition_problem(imis: ImisClient, iqa: str) -> str | None:
    try:
        definition = imis.query_definition(iqa)
    except ImisAuthError as denied:
        return requirement_problem(iqa, ListRequirement.SHARED_WITH_EVERYONE, str(denied))
    except (ImisNotFound, ImisUnexpectedAnswer) as unreadable:  # one broken list never stops the others
        return f"list IQA {iqa} is skipped: its query definition could not be read ({unreadable})"
    if definition.missing_aliases(definition.aliases):
        columns = ", ".join(definition.aliases) or "none"
        return requirement_problem(iqa, ListRequirement.ID_ALIAS, f"its display columns are: {columns}")
    if definition.prompts:
        prompts = ", ".join(f"{p.property_name} ({p.prompt})" for p in definition.prompts)
        return requirement_problem(iqa, ListRequirement.NO_PROMPTS, f"prompted filters: {prompts}")
    return None


# -- 2. contacts -------------------------------------------------------------------------------------------

def extract_contacts(imis: ImisClient | None, store: SnapshotStore, run_id: str,
                     fetched: pd.DataFrame | None = None) -> ContactsExtract:
    """Extract, validate and map the contacts IQA; raises `ValidationFailed` before anything is loaded.
    `fetched`: the IQA's rows as a fetch task read them (`sync/fetch.py`); then iMIS is not called."""
    started = time.monotonic()
    frame = fetched if fetched is not None else imis.run_iqa(  # type: ignore[union-attr]
        CONTACTS_IQA_PATH, declared_types=_declared_types(CONTACTS_IQA.columns),
        progress=page_progress(log, f"IQA {CONTACTS_IQA_PATH}"))
    outcome = validate_iqa(frame, IqaKind.CONTACTS)
    new_bad_emails = record_bad_emails(store, frame, ID_ALIAS, EMAIL_FIELD)
    candidate = to_thrive_contacts(outcome.clean)
    candidate[STATUS_ALIAS] = outcome.clean[STATUS_ALIAS].to_numpy()  # for the lists' active-record check
    handle = store.stage(CONTACTS_SNAPSHOT, candidate, run_id)
    quarantined = outcome.quarantine
    log.info("contacts: %d read, %d quarantined by validation, %d staged", len(frame),
             quarantined[ID_ALIAS].nunique() if len(quarantined) else 0, len(candidate))
    return ContactsExtract(handle=handle, rows=len(frame), staged=len(candidate),
                           quarantined=ValidationQuarantine.of(quarantined), validation=outcome.summary,
                           new_bad_emails=new_bad_emails, seconds=round(time.monotonic() - started, 2))


# -- 3. plan one group -------------------------------------------------------------------------------------

def plan_target_group(imis: ImisClient | None, thrive: ThriveClient, store: SnapshotStore, group: TargetGroup,
                      contacts: ContactsExtract, run_id: str, full_resync: bool = False,
                      override: bool = False, limits: MassChangeLimits = MassChangeLimits(),
                      fetched: pd.DataFrame | None = None, denied: str | None = None,
                      reconcile: bool = False) -> TargetGroupPlan:
    """Extract and check one list, diff its membership and stage the plan; never raises for a bad list.
    `fetched` / `denied`: what a fetch task got for the list (`sync/fetch.py`); then iMIS is not called.

    Drift: the diff is made against what Thrive holds, not only what the snapshot claims. Every run asks Thrive
    how many members the group has (one Count call); when that differs from the committed snapshot, Thrive's
    member list is read and the diff made against it, so members removed behind the pipeline's back are added
    again and ones added behind its back removed (`DriftCheck`). `reconcile` (the weekly reconciliation) reads
    the list whatever the count, and compares the members' synced fields too: those Thrive holds otherwise are
    re-sent. Drift above the guard's share stops the group unless `override`."""
    if group.problem:
        return TargetGroupPlan(group=group.name, iqa=group.iqa, status=PlanStatus.SKIPPED, reason=group.problem)
    try:
        members = _list_members(imis, store, group, contacts, fetched, denied)
    except TargetGroupSkipped as skipped:
        return TargetGroupPlan(group=group.name, iqa=group.iqa, status=PlanStatus.SKIPPED, reason=str(skipped))
    # Uploads an earlier run queued and never saw through are waited for first, so none lands after this
    # run's sends. What an attempt that did not commit changed is unknown (sent or not, applied or not): the
    # contacts of its plan and of its uploads are re-sent in whichever direction the list now says.
    settled = pending_uploads.settle(thrive, store, group_snapshot(group.name))
    baseline = store.current(group_snapshot(group.name))
    attempted = None if full_resync else last_attempt(store, group_snapshot(group.name), baseline)
    previous: Sequence[str] | pd.Series | None
    uncertain = pd.Index(sorted(settled.uncertain), dtype="str")
    if attempted is not None:
        uncertain = uncertain.union(pd.Index(attempted.loc[attempted[CHANGE_COLUMN] != "keep", ID_ALIAS], dtype="str"))
    committed = None if baseline is None else pd.Index(store.load(baseline)[ID_ALIAS], dtype="str")
    in_thrive: pd.Index | None = None
    drift: DriftCheck | None = None
    if full_resync:
        in_thrive = _thrive_members(thrive, group.name)
    elif committed is not None and (reconcile or uncertain.empty):
        # An attempt that did not commit leaves the count unknowable (its sends are re-sent anyway); a
        # reconciliation reads the list after the settling, which is certain either way.
        counted = None if reconcile else thrive.interest_member_count(group.name)
        if counted is None or counted != len(committed):
            in_thrive = _thrive_members(thrive, group.name)
            drift = DriftCheck(snapshot=len(committed), in_thrive=len(in_thrive), reconciled=True,
                               missing=len(committed.difference(in_thrive)),
                               extra=len(in_thrive.difference(committed)))
        else:
            drift = DriftCheck(snapshot=len(committed), in_thrive=counted)
    if in_thrive is not None:
        previous = in_thrive
        uncertain = uncertain[:0]  # Thrive's own list, read after the settling, is certain
    else:
        previous = committed
    member_ids = pd.Index(members, dtype="str")
    fields_drifted = pd.Index([], dtype="str")
    if drift is not None and drift.reconciled and in_thrive is not None:
        if reconcile:
            fields_drifted, checked = _fields_drifted(thrive, store, in_thrive.intersection(member_ids))
            drift = drift.model_copy(update={"fields_checked": checked, "fields_differ": len(fields_drifted)})
        if drift.missing or drift.extra:
            log.warning("target group %r: drift in Thrive: %d member(s) missing, %d extra against the %d of the last "
                        "sync (Thrive counts %d)", group.name, drift.missing, drift.extra, drift.snapshot,
                        drift.in_thrive)
            try:
                drift_guard = check_drift(group.name, drift.missing, drift.extra, drift.snapshot, limits, override)
            except DriftBlocked as blocked:
                return TargetGroupPlan(group=group.name, iqa=group.iqa, status=PlanStatus.BLOCKED,
                                       reason=str(blocked), guard=GuardVerdict.of(blocked.check),
                                       drift=drift.model_copy(update={"guard": GuardVerdict.of(blocked.check)}))
            drift = drift.model_copy(update={"guard": GuardVerdict.of(drift_guard)})
    sure = previous if previous is None or uncertain.empty else pd.Index(previous, dtype="str").difference(uncertain)
    diff = diff_membership(group.name, sure, members)
    removed = diff.removed.union(uncertain.difference(member_ids))
    membership = MembershipChanges.model_validate(diff.summary() | {"removed": len(removed)})
    guarded = diff if attempted is None else diff_membership(
        group.name, attempted.loc[attempted[CHANGE_COLUMN] != "remove", ID_ALIAS], members)
    try:
        guard = check_membership_removals(guarded, limits, override)
    except MassChangeBlocked as blocked:
        return TargetGroupPlan(group=group.name, iqa=group.iqa, status=PlanStatus.BLOCKED, reason=str(blocked),
                               membership=membership, guard=GuardVerdict.of(blocked.check))
    changes = pd.concat([
        pd.DataFrame({ID_ALIAS: diff.added, CHANGE_COLUMN: "add"}),
        pd.DataFrame({ID_ALIAS: removed, CHANGE_COLUMN: "remove"}),
        pd.DataFrame({ID_ALIAS: member_ids.difference(diff.added), CHANGE_COLUMN: "keep"}),
    ], ignore_index=True).astype({ID_ALIAS: "str", CHANGE_COLUMN: "str"})
    changes[DRIFT_COLUMN] = _drift_marks(changes, committed, in_thrive if drift is not None else None, fields_drifted)
    handle = store.stage(group_snapshot(group.name), changes, run_id)
    log.info("target group %r: %d members, %d to add, %d to remove (%d uncertain: an attempt did not commit)",
             group.name, diff.current_count, len(diff.added), len(removed), len(uncertain))
    return TargetGroupPlan(group=group.name, iqa=group.iqa, status=PlanStatus.READY, handle=handle,
                           baseline=baseline, membership=membership, guard=GuardVerdict.of(guard),
                           full_resync=full_resync, settled_uploads=list(settled.keys) or None,
                           uncertain=len(uncertain) or None, drift=drift)


def _thrive_members(thrive: ThriveClient, name: str) -> pd.Index:
    """The contact IDs Thrive's own member list of the group holds."""
    return pd.Index(sorted({m.contact_id for m in thrive.interest_members(name) if m.contact_id}), dtype="str")


def _fields_drifted(thrive: ThriveClient, store: SnapshotStore, members: pd.Index) -> tuple[pd.Index, int]:
    """Members whose synced fields Thrive holds otherwise than the contacts snapshot says they were sent, and how
    many were compared. A field Thrive returns for no one (e.g. one it keeps as the email itself) is not compared;
    one it returns for others but not this member counts as cleared."""
    sent = store.read(CONTACTS_SNAPSHOT)
    if sent is None or members.empty:
        return pd.Index([], dtype="str"), 0
    sent = sent[is_in(sent[ID_ALIAS], members)]
    fields = [column for column in sent.columns
              if column not in (ID_ALIAS, STATUS_ALIAS) and not is_row_hash_column(column)]
    held = thrive.subscriber_fields(sent[EMAIL_FIELD].astype("str").tolist(), fields)
    compared = sorted({name for values in held.values() for name in values})
    if not compared:
        return pd.Index([], dtype="str"), len(sent)
    emails = sent[EMAIL_FIELD].astype("str").str.strip().str.lower()
    in_thrive = pd.DataFrame([held.get(email, {}) for email in emails], columns=compared, index=sent.index)
    expected = sent[compared].astype(object).where(sent[compared].notna(), "").astype("str")
    differs = (in_thrive.fillna("").astype("str").apply(lambda c: c.str.strip())
               != expected.apply(lambda c: c.str.strip())).any(axis=1)
    return pd.Index(sent.loc[differs, ID_ALIAS], dtype="str"), len(sent)


def _drift_marks(changes: pd.DataFrame, committed: pd.Index | None, in_thrive: pd.Index | None,
                 fields_drifted: pd.Index) -> pd.Series:
    """Per planned row, which drift it repairs: `missing` (added again), `extra` (removed), `fields` (re-sent)."""
    marks = pd.Series("", index=changes.index, dtype="str")
    if committed is None or in_thrive is None:
        return marks
    ids, change = changes[ID_ALIAS], changes[CHANGE_COLUMN]
    marks[(change == "add") & is_in(ids, committed.difference(in_thrive))] = DRIFT_MISSING
    marks[(change == "remove") & is_in(ids, in_thrive.difference(committed))] = DRIFT_EXTRA
    marks[(change == "keep") & is_in(ids, fields_drifted)] = DRIFT_FIELDS
    return marks


def _list_members(imis: ImisClient | None, store: SnapshotStore, group: TargetGroup, contacts: ContactsExtract,
                  fetched: pd.DataFrame | None = None, denied: str | None = None) -> pd.Series:
    """The list's member IDs, after the requirements only running it can show."""
    if denied is not None:
        raise TargetGroupSkipped(requirement_problem(group.iqa, ListRequirement.SHARED_WITH_EVERYONE, denied))
    try:
        frame = fetched if fetched is not None else imis.run_iqa(  # type: ignore[union-attr]
            group.iqa, declared_types=_declared_types(LIST_IQA_COLUMNS),
            progress=page_progress(log, f"IQA {group.iqa}"))
    except ImisAuthError as refused:
        raise TargetGroupSkipped(requirement_problem(group.iqa, ListRequirement.SHARED_WITH_EVERYONE,
                                                     str(refused))) from refused
    if ID_ALIAS not in frame.columns:
        columns = ", ".join(frame.columns) or "none"
        raise TargetGroupSkipped(requirement_problem(group.iqa, ListRequirement.ID_ALIAS,
                                                     f"it returned the columns: {columns}"))
    if STATUS_ALIAS in frame.columns:
        active = (frame[STATUS_ALIAS] == ACTIVE_STATUS).any()
    else:
        active = contacts_status(store, contacts).reindex(frame[ID_ALIAS]).eq(ACTIVE_STATUS).any()
    if not active:
        raise TargetGroupSkipped(requirement_problem(
            group.iqa, ListRequirement.ACTIVE_RECORD, f"none of its {len(frame):,} rows is an active contact"))
    try:
        clean = validate_iqa(frame, IqaKind.LIST).clean
    except ValidationFailed as failed:
        raise TargetGroupSkipped(f"list IQA {group.iqa} is skipped: {failed}") from failed
    return clean[ID_ALIAS]


def contacts_status(store: SnapshotStore, contacts: ContactsExtract) -> pd.Series:
    """Status by contact ID, from the contacts this run staged (`extract_contacts`'s result)."""
    staged = store.load(contacts.handle)
    return staged.set_index(ID_ALIAS)[STATUS_ALIAS]


# -- 4. contacts upsert ------------------------------------------------------------------------------------

def upsert_contacts(thrive: ThriveClient, store: SnapshotStore, contacts: ContactsExtract,
                    plans: Sequence[TargetGroupPlan], run_id: str, dry_run: bool = False,
                    full_resync: bool = False, override: bool = False,
                    limits: MassChangeLimits = MassChangeLimits()) -> ContactsUpsert:
    """Send the fields of the synced groups' members that Thrive lacks or holds stale, once for all groups.

    Contacts in no synced group are not pushed. The contacts snapshot records what Thrive was sent, per
    contact, so a contact whose fields changed while it was in no synced group is sent when it joins one.
    """
    started = time.monotonic()
    staged = store.load(contacts.handle).drop(columns=[STATUS_ALIAS])
    fields = [column for column in staged.columns if column != ID_ALIAS]
    members = _planned_members(store, plans)
    targets = staged[is_in(staged[ID_ALIAS], members)].reset_index(drop=True)
    targets.attrs["iqa"] = CONTACTS_IQA_PATH
    settled = pending_uploads.settle(thrive, store, CONTACTS_SNAPSHOT)  # a killed run's BulkUploads, done first
    baseline = store.current(CONTACTS_SNAPSHOT)
    # the snapshot's IDs, emails and row hashes: the diff reads the other fields of the rows that differ only
    sent_before = None if full_resync or baseline is None else store.load_keys(baseline, [EMAIL_FIELD])
    previous = None if sent_before is None else sent_before.where(is_in(sent_before.keys[ID_ALIAS], members))
    attempted = None if full_resync else last_attempt(store, CONTACTS_SNAPSHOT, baseline)
    uncertain = pd.Index(sorted(settled.uncertain), dtype="str").union(_drift_resends(store, plans))
    if attempted is not None:  # what an attempt that did not commit sent may or may not be what Thrive holds
        uncertain = uncertain.union(pd.Index(attempted[ID_ALIAS], dtype="str"))
    sure = previous
    if previous is not None and len(uncertain):  # sent again: what Thrive holds of them is not known
        sure = previous.where(~is_in(previous.keys[ID_ALIAS], uncertain))
    diff = diff_contacts(sure, targets, columns=fields)
    # The guard measures against what Thrive holds had the last attempt finished; without one, that is the diff's
    # own baseline, so the diff is reused rather than computed again.
    guard_diff = (diff.without_added() if sure is previous
                  else _diff_known(_as_attempted(previous, attempted), targets, fields))
    guard = _contacts_guard(previous, guard_diff, override, limits)
    to_send = diff.upserts(targets)
    ledger = RejectionLedger.load(store, CONTACTS_SNAPSHOT)
    refused = (np.zeros(len(to_send), dtype=bool) if full_resync or diff.hash_column is None
               else ledger.refused_unchanged(to_send[ID_ALIAS], to_send[diff.hash_column])
               & ~_email_freed(ledger, to_send, None if sent_before is None else sent_before.keys))
    held = to_send.loc[refused, ID_ALIAS].tolist()  # Thrive refused these very rows: sent again once they change
    to_send = to_send[~refused]
    planned = {"members": len(members), "missing_from_contacts_iqa": len(members) - len(targets),
               "diff": ContactChanges.model_validate(diff.summary()), "guard": guard, "to_send": len(to_send),
               "refused_unchanged": len(held), "dry_run": dry_run}
    if dry_run:
        return ContactsUpsert(**planned, records_sent=0, seconds=round(time.monotonic() - started, 2))
    for plan in plans:  # every guard passed: this attempt starts loading (see attempts.py)
        if plan.ready:
            record_attempt(store, group_snapshot(plan.group), plan.staged())
    if to_send.empty:
        quarantine = None
        if held:
            ledger.record(run_id, accepted=[], rejected=[], held=held)
            ledger.save(store)
            quarantine = RejectionSummary.model_validate(ledger.summary())
        return ContactsUpsert(**planned, records_sent=0, quarantine=quarantine,
                              seconds=round(time.monotonic() - started, 2))
    record_attempt(store, CONTACTS_SNAPSHOT, store.stage(CONTACTS_SNAPSHOT, to_send, run_id))
    log.info("contacts: sending %d (%d new to Thrive, %d changed; %d refused before and unchanged, held back)",
             len(to_send), len(diff.added), len(diff.changed), len(held))
    journal = UploadJournal(store, CONTACTS_SNAPSHOT, run_id)
    holders = _email_holders(to_send, None if sent_before is None else sent_before.keys)
    to_send, likely_refused = _in_sending_order(to_send, holders)
    result = thrive.upsert_subscribers(_subscribers(to_send, fields), journal=journal, likely_refused=likely_refused)
    figures = settle_upsert(store, CONTACTS_SNAPSHOT, run_id, result, to_send, baseline, uncertain,
                            hashed=fields, held=held, email_holders=holders)
    pending_uploads.clear(store, CONTACTS_SNAPSHOT, [*settled.keys, *journal.keys])
    return ContactsUpsert(**planned, **dict(figures), seconds=round(time.monotonic() - started, 2))


def _email_holders(rows: pd.DataFrame, in_thrive: pd.DataFrame | None) -> dict[str, str]:
    """For each row whose email another contact holds in Thrive (by the contacts snapshot), that contact's ID:
    Thrive refuses a second subscriber with one email."""
    if in_thrive is None or rows.empty:
        return {}
    emails = in_thrive[EMAIL_FIELD].astype("str").str.casefold()
    by_email = pd.Series(in_thrive[ID_ALIAS].to_numpy(), index=emails.to_numpy())
    by_email = by_email[~by_email.index.duplicated()]
    holder = by_email.reindex(rows[EMAIL_FIELD].astype("str").str.casefold().to_numpy()).to_numpy()
    other = pd.notna(holder) & (holder != rows[ID_ALIAS].to_numpy())
    return dict(zip(rows[ID_ALIAS].to_numpy()[other], holder[other], strict=True))


def _in_sending_order(rows: pd.DataFrame, holders: dict[str, str]) -> tuple[pd.DataFrame, list[str]]:
    """The rows to send, and those Thrive will likely refuse: their email is another contact's there, who keeps it.

    A row whose email's holder is sent in this run with another email is sent after the others, so Thrive has
    freed the email when it arrives; the likely refused go last of all, in calls of their own (`upsert_subscribers`),
    so Thrive's counts name them without a search."""
    if not holders:
        return rows, []
    ids = rows[ID_ALIAS].astype("str")
    emails = pd.Series(rows[EMAIL_FIELD].astype("str").str.casefold().to_numpy(), index=ids.to_numpy())
    holder = ids.map(holders)
    has_holder = holder.notna().to_numpy()
    holder_sent_elsewhere = has_holder & is_in(holder.fillna(""), ids) & (
        emails.reindex(holder.fillna("").to_numpy()).to_numpy() != emails.to_numpy())
    later = pd.Series(np.where(holder_sent_elsewhere, 1, np.where(has_holder, 2, 0)), index=rows.index)
    ordered = rows.loc[later.sort_values(kind="stable").index]
    return ordered, ids[has_holder & ~holder_sent_elsewhere].tolist()


def _email_freed(ledger: RejectionLedger, rows: pd.DataFrame, in_thrive: pd.DataFrame | None) -> np.ndarray:
    """Per row, whether the contact that held its email in Thrive when it was refused holds it no more (changed it,
    or left the snapshot): the row may now be taken, though it did not change."""
    holders = ledger.email_holders(rows[ID_ALIAS])
    if in_thrive is None or holders.isna().all():
        return np.zeros(len(rows), dtype=bool)
    held_now = in_thrive.set_index(ID_ALIAS)[EMAIL_FIELD].astype("str").str.casefold().reindex(holders.fillna(""))
    mine = rows[EMAIL_FIELD].astype("str").str.casefold().to_numpy()
    return holders.notna().to_numpy() & (held_now.to_numpy() != mine)


def _as_attempted(previous: SnapshotRows | None, attempted: pd.DataFrame | None) -> SnapshotRows | pd.DataFrame | None:
    """The contacts as Thrive would hold them had the last attempt finished: its rows over the committed ones
    (read whole: an attempt that did not commit is rare)."""
    if previous is None or attempted is None:
        return previous
    committed = previous.frame()
    attempted = attempted[is_in(attempted[ID_ALIAS], committed[ID_ALIAS])]
    kept = committed[~is_in(committed[ID_ALIAS], attempted[ID_ALIAS])]
    return pd.concat([kept, attempted.reindex(columns=committed.columns)], ignore_index=True)


def _planned_members(store: SnapshotStore, plans: Sequence[TargetGroupPlan]) -> pd.Index:
    """Everyone who is (or stays) a member of a group ready to load this run."""
    frames = [store.load(plan.staged()) for plan in plans if plan.ready]
    if not frames:
        return pd.Index([], dtype="str")
    plan = pd.concat(frames, ignore_index=True)
    return pd.Index(plan.loc[plan[CHANGE_COLUMN] != "remove", ID_ALIAS], dtype="str").unique()


def _drift_resends(store: SnapshotStore, plans: Sequence[TargetGroupPlan]) -> pd.Index:
    """Members a plan found missing from Thrive, or holding other fields there: their fields are sent again (an
    emptied or rebuilt Thrive may have lost the subscriber itself)."""
    frames = [store.load(plan.staged()) for plan in plans if plan.ready and plan.drift and plan.drift.reconciled]
    marked = [frame.loc[frame[DRIFT_COLUMN].isin((DRIFT_MISSING, DRIFT_FIELDS)), ID_ALIAS] for frame in frames]
    return pd.Index(pd.concat(marked, ignore_index=True) if marked else [], dtype="str").unique()


def _contacts_guard(previous: SnapshotRows | None, diff: ContactDiff, override: bool,
                    limits: MassChangeLimits) -> GuardVerdict:
    """The guard over contacts Thrive already holds (`diff` without the newly synced members: new people, not
    a rewrite)."""
    if previous is None or previous.empty:
        return GuardVerdict.nothing_to_compare()
    return GuardVerdict.of(check_contact_changes(diff, CONTACTS_IQA_PATH, limits, override))


def _diff_known(previous: SnapshotRows | pd.DataFrame | None, targets: pd.DataFrame, fields: list[str]) -> ContactDiff:
    """The diff of the targets `previous` holds, against it."""
    known = targets if previous is None else targets[is_in(targets[ID_ALIAS], key_frame(previous)[ID_ALIAS])]
    known.attrs["iqa"] = CONTACTS_IQA_PATH
    return diff_contacts(previous, known, columns=fields)


def _subscribers(rows: pd.DataFrame, fields: list[str]) -> list[Subscriber]:
    values = rows[fields].astype(object).where(rows[fields].notna(), None)
    return [Subscriber(contact_id=contact_id, email=record.get(EMAIL_FIELD) or "", fields=record)
            for contact_id, record in zip(rows[ID_ALIAS], values.to_dict("records"), strict=True)]


# -- 5. load one group -------------------------------------------------------------------------------------

def load_target_group(thrive: ThriveClient, store: SnapshotStore, plan: TargetGroupPlan, run_id: str,
                      dry_run: bool = False, contacts: ContactsExtract | None = None) -> TargetGroupLoad:
    """Apply one group's membership changes, then commit its snapshot. Raises for a skipped/blocked list.
    A dry run counts what a real one would add: the members Thrive holds, or would hold once this run's staged
    `contacts` were upserted (a dry run upserts none, so Thrive's snapshot alone would say "add nobody")."""
    if not plan.ready:
        raise TargetGroupSkipped(plan.reason)
    started = time.monotonic()
    name = plan.group
    changes = store.load(plan.staged())
    in_thrive = store.read(CONTACTS_SNAPSHOT)
    emails = (pd.Series(dtype="str") if in_thrive is None
              else in_thrive.set_index(ID_ALIAS)[EMAIL_FIELD].astype(object))
    wanted = changes.loc[changes[CHANGE_COLUMN] == "add", ID_ALIAS]
    holds = emails.index
    if dry_run and contacts is not None:
        holds = pd.Index(store.load(contacts.handle)[ID_ALIAS], dtype="str").union(pd.Index(holds, dtype="str"))
    addable = wanted[wanted.isin(holds)]
    # An addition Thrive refused is not in the group's snapshot, so every plan has it again: it is sent again
    # only once the contact's row changed since (its hash in the contacts snapshot is not the one refused).
    ledger = RejectionLedger.load(store, group_snapshot(name))
    contact_hashes = _contact_hashes(in_thrive, addable)
    refused = (np.zeros(len(addable), dtype=bool) if contact_hashes is None
               else ledger.refused_unchanged(addable, contact_hashes))
    held = addable[refused]
    addable = addable[~refused]
    leaving = changes.loc[changes[CHANGE_COLUMN] == "remove", ID_ALIAS]
    planned = {"group": name, "to_add": len(addable), "to_remove": len(leaving),
               "not_in_thrive": len(wanted) - len(addable) - len(held), "refused_unchanged": len(held),
               "dry_run": dry_run}
    if dry_run:
        return TargetGroupLoad(**planned)
    rejected: list[SubscriberOutcome] = []
    accepted: list[str] = []
    calls = records_sent = 0
    journal = UploadJournal(store, group_snapshot(name), run_id)  # each BulkUpload, recorded before it is sent
    if len(addable):
        result = thrive.add_interest_members(name, _members(addable, emails), journal=journal)
        rejected = [o for o in result.outcomes if not o.accepted]
        accepted = [o.contact_id for o in result.outcomes if o.accepted]
        calls += result.calls
        records_sent = result.records_sent
    if len(leaving):
        calls += len(thrive.remove_interest_members(name, _members(leaving, emails), journal=journal))
    rejected_ids = {o.contact_id for o in rejected}
    kept = changes.loc[changes[CHANGE_COLUMN] == "keep", ID_ALIAS]
    added = addable[~addable.isin(rejected_ids)]
    mine = pd.concat([kept, added], ignore_index=True).astype("str")
    committed = store.commit_over(
        group_snapshot(name), run_id, plan.baseline,
        lambda theirs, base: pd.DataFrame({ID_ALIAS: merge_members(
            mine, None if theirs is None else theirs[ID_ALIAS], None if base is None else base[ID_ALIAS])}))
    if rejected or len(held) or ledger.entries:
        refused_hashes = _contact_hashes(in_thrive, pd.Series(sorted(rejected_ids), dtype="str"))
        ledger.record(run_id, accepted=[*accepted, *leaving], rejected=rejected, held=held.tolist(),
                      hashes={} if refused_hashes is None else dict(zip(
                          sorted(rejected_ids), refused_hashes.astype("uint64").tolist(), strict=True)))
        ledger.save(store)
    pending_uploads.clear(store, group_snapshot(name), [*(plan.settled_uploads or ()), *journal.keys])
    log.info("target group %r: %d added, %d removed, %d not added (not in Thrive, rejected, or refused before and "
             "unchanged)", name, len(added), len(leaving), len(wanted) - len(added))
    repaired = _drift_repaired(changes, added) if plan.drift is not None and plan.drift.reconciled else {}
    return TargetGroupLoad(**planned, added=len(added), removed=len(leaving), rejected=len(rejected_ids),
                           members=committed.rows, calls=calls, records_sent=records_sent,
                           seconds=round(time.monotonic() - started, 2), **repaired)


def _drift_repaired(changes: pd.DataFrame, added: pd.Series) -> dict[str, int]:
    """What this load repaired of the drift its plan found (`_drift_marks`)."""
    marks = changes[DRIFT_COLUMN]
    return {"drift_readded": int(is_in(added, changes.loc[marks == DRIFT_MISSING, ID_ALIAS]).sum()),
            "drift_removed": int(((marks == DRIFT_EXTRA) & (changes[CHANGE_COLUMN] == "remove")).sum()),
            "drift_fields_resent": int((marks == DRIFT_FIELDS).sum())}


def _contact_hashes(in_thrive: pd.DataFrame | None, ids: pd.Series) -> np.ndarray | None:
    """The row hash the contacts snapshot holds for each of `ids` (0 where it has none), or None for a snapshot
    that stores no hashes (written before it did): then nothing is held back and nothing is remembered."""
    if in_thrive is None:
        return None
    column = next((name for name in in_thrive.columns if is_row_hash_column(name)), None)
    if column is None:
        return None
    stored = in_thrive.set_index(ID_ALIAS)[column].reindex(pd.Index(ids, dtype="str"))
    return stored.to_numpy(dtype="uint64", na_value=0)


def _members(ids: pd.Series, emails: pd.Series) -> list[InterestMember]:
    found = emails.reindex(ids.to_numpy())
    return [InterestMember(contact_id=contact_id, email=email if isinstance(email, str) else "")
            for contact_id, email in zip(ids, found, strict=True)]


# -- 6. finish ----------------------------------------------------------------------------------------------

def finish_run(store: SnapshotStore, run_id: str, plans: Sequence[TargetGroupPlan],
               contacts: ContactsExtract | None, upsert: ContactsUpsert | None,
               loads: Sequence[TargetGroupLoad], dry_run: bool = False,
               report_url: str | None = None) -> TargetGroupsRun:
    """Write the run report (counts only) next to the snapshots; then raise `SyncIncomplete` naming each
    list that was not synced, so the run ends failed and alerting fires. A step that did not finish is None
    (or, for a group's load, missing). `report_url` is where the report reads in Airflow (logged)."""
    by_group = {load.group: load for load in loads}
    report = TargetGroupsReport(
        run_id=run_id, finished_at=datetime.now(UTC).isoformat(timespec="seconds"), dry_run=dry_run,
        contacts=contacts,
        upsert=upsert,
        target_groups=[GroupOutcome(**dict(plan), load=by_group.get(plan.group)) for plan in plans])
    location = write_report(store, f"reports/target_groups/{snapshot_name(run_id)}", report,
                            render_target_groups(report), report_url)
    problems = [f"{step} did not finish; see its log" for step, result in
                (("extract_contacts", contacts), ("upsert_contacts", upsert)) if result is None]
    problems += [f"{plan.group}: {plan.reason}" for plan in plans if not plan.ready]
    failed_loads = [plan.group for plan in plans if plan.ready and plan.group not in by_group]
    problems += [f"{group}: its load did not finish (see that task's log)" for group in failed_loads]
    if problems:
        readable_at = report_url or location  # the alert's reader opens the Airflow view, not the store's JSON
        raise SyncIncomplete(f"the run did not sync everything (report: {readable_at}):\n" + "\n".join(problems),
                             alert_lines=[*problems, f"report: {readable_at}"])
    return TargetGroupsRun(report=location, target_groups=len(plans), sent=upsert.sent if upsert else 0,
                           added=sum(load.added for load in loads), removed=sum(load.removed for load in loads))
