"""Panel-field sync (the panel IQA -> Thrive personalization fields): the steps of `imis_to_thrive_panel_fields`.

The panel IQA `$/HigherLogic/Panels/PanelFields` is a template the customer extends with custom columns;
every column but `ID` is a Thrive personalization field of the same name, so a new column reaches Thrive
with no code change. Each public function is one task of the DAG, runs without Airflow, and returns a small
typed result (`results.py`: counts and field names, never member data):

1. `extract_panel_fields`: the IQA, validated with Great Expectations (a blocking rule fails here, before
   any load) and rendered as Thrive text; staged, not committed.
2. `upsert_panel_fields`: only contacts Thrive already holds (the committed `contacts` snapshot of the
   target-group sync, which also gives the email Thrive keys them by) and never a new subscriber. The rows
   are diffed against the `panel_fields` snapshot, which records what Thrive was last sent per contact, and
   each changed row sends only its changed fields (a contact never sent gets all of them). Rows sharing one
   set of changed fields go in one upsert, because the Thrive client clears a field on the records of a
   batch that lack it when others name it. Thrive's rejections are quarantined and retried next run; the
   snapshot is committed after the load, so a failed run resends.
3. `finish_run`: the run report (GX summary and counts); raises `MassChangeBlocked` if the guard stopped
   the load, so alerting fires.

The mass-change guard compares only columns the snapshot already had: a brand-new column filling values
for most contacts is the expected result of extending the template, not a rewrite of Thrive. A contact the
IQA stops returning is left as Thrive holds it (panel fields are never cleared by omission); an empty value in
a column the IQA still returns clears the field. A column the IQA stops returning (removed or renamed since
the last committed run, whose columns are recorded at `schema/panel_fields`) is schema drift: the run stops
before loading (`diff.SchemaDrift`) unless the mass-change override accepts it; Thrive keeps that field's values.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pandas as pd

from include.imis_thrive.imis.client import ImisClient
from include.imis_thrive.imis.iqa_package import ID_ALIAS, PANEL_FIELDS_IQA, PANEL_FIELDS_IQA_PATH
from include.imis_thrive.progress import page_progress
from include.imis_thrive.reports import render_panel_fields
from include.imis_thrive.sync.diff import (
    ContactDiff,
    SnapshotRows,
    check_schema_drift,
    diff_contacts,
    is_row_hash_column,
    key_frame,
)
from include.imis_thrive.sync.field_map import to_thrive_panel_fields
from include.imis_thrive.sync.guard import MassChangeBlocked, MassChangeLimits, check_contact_changes
from include.imis_thrive.sync.load_cycle import is_in, settle_upsert, write_report
from include.imis_thrive.sync.results import (
    ContactChanges,
    FieldSetCount,
    FieldSets,
    GuardVerdict,
    PanelExtract,
    PanelFieldsReport,
    PanelFieldsRun,
    PanelUpsert,
    PanelUpsertStatus,
    ValidationQuarantine,
)
from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.sync.target_groups import CONTACTS_SNAPSHOT, EMAIL_FIELD
from include.imis_thrive.sync.validation import IqaKind, validate_iqa
from include.imis_thrive.thrive.client import ThriveClient
from include.imis_thrive.thrive.models import Subscriber, UpsertResult

log = logging.getLogger(__name__)

PANEL_FIELDS_SNAPSHOT = "panel_fields"
SCHEMA_KEY = "schema/panel_fields"  # the panel IQA's columns as the last committed run saw them
REPORT_FOLDER = "reports/panel_fields"
REPORTED_FIELD_SETS = 20


# -- 1. extract ---------------------------------------------------------------------------------------------

def extract_panel_fields(imis: ImisClient | None, store: SnapshotStore, run_id: str,
                         fetched: pd.DataFrame | None = None) -> PanelExtract:
    """Extract, validate and render the panel IQA; raises `ValidationFailed` before anything is loaded.
    `fetched`: the IQA's rows as a fetch task read them (`sync/fetch.py`); then iMIS is not called."""
    started = time.monotonic()
    template_types = {column.alias: column.data_type.value for column in PANEL_FIELDS_IQA.columns}
    frame = fetched if fetched is not None else imis.run_iqa(  # type: ignore[union-attr]
        PANEL_FIELDS_IQA_PATH, declared_types=template_types,
        progress=page_progress(log, f"IQA {PANEL_FIELDS_IQA_PATH}"))
    outcome = validate_iqa(_with_id_column(frame), IqaKind.PANEL)
    candidate = to_thrive_panel_fields(outcome.clean)
    handle = store.stage(PANEL_FIELDS_SNAPSHOT, candidate, run_id)
    fields = [column for column in candidate.columns if column != ID_ALIAS]
    custom = [name for name in fields if name not in PANEL_FIELDS_IQA.aliases]
    log.info("panel fields: %d rows read, %d staged, fields %s (custom: %s)", len(frame), len(candidate),
             ", ".join(fields) or "none", ", ".join(custom) or "none")
    return PanelExtract(iqa=PANEL_FIELDS_IQA_PATH, handle=handle, rows=len(frame), staged=len(candidate),
                        fields=fields, custom_fields=custom,
                        quarantined=ValidationQuarantine.of(outcome.quarantine, by_field=True),
                        validation=outcome.summary, seconds=round(time.monotonic() - started, 2))


def _with_id_column(frame: pd.DataFrame) -> pd.DataFrame:
    """An IQA that returned no rows returns no columns either; give it its key so the guard, not a
    misleading "no ID column" rule, judges an emptied panel IQA."""
    if len(frame) or ID_ALIAS in frame.columns:
        return frame
    keyed = frame.assign(**{ID_ALIAS: pd.Series(dtype="str")})
    keyed.attrs = dict(frame.attrs)
    return keyed


# -- 2. upsert ----------------------------------------------------------------------------------------------

def upsert_panel_fields(thrive: ThriveClient, store: SnapshotStore, extracted: PanelExtract, run_id: str,
                        dry_run: bool = False, override: bool = False,
                        limits: MassChangeLimits = MassChangeLimits()) -> PanelUpsert:
    """Send the changed panel fields of contacts Thrive holds, then commit what was sent.

    Returns status `blocked` (nothing sent; `finish_run` raises after writing the report), `dry_run`
    or `synced`.
    """
    started = time.monotonic()
    fields = list(extracted.fields)
    emails = thrive_emails(store)
    staged = store.load(extracted.handle)
    targets = staged[is_in(staged[ID_ALIAS], emails.index)].reset_index(drop=True)
    targets.attrs["iqa"] = PANEL_FIELDS_IQA_PATH
    baseline = store.current(PANEL_FIELDS_SNAPSHOT)
    # the snapshot's IDs and row hashes: the diff reads the other columns of the rows that differ only
    sent_before = None if baseline is None else store.load_keys(baseline)
    previous = None if sent_before is None else sent_before.where(is_in(sent_before.keys[ID_ALIAS], emails.index))
    # an IQA that returned no rows returns no columns either: the guard, not the drift check, judges that
    committed_columns = _committed_columns(store, sent_before) if len(staged) else None
    retired = check_schema_drift(committed_columns, fields, PANEL_FIELDS_IQA_PATH, override)
    if retired:
        log.warning("schema drift accepted by the override: IQA %s no longer returns %s; Thrive keeps their values",
                    PANEL_FIELDS_IQA_PATH, ", ".join(retired))
    diff = diff_contacts(previous, targets, columns=fields)
    sets = field_sets(diff, fields)
    counts = _field_set_counts(sets)
    planned = {"in_thrive": len(emails), "panel_rows": len(staged), "not_in_thrive": len(staged) - len(targets),
               "diff": ContactChanges.model_validate(diff.summary()), "to_send": len(sets), "field_sets": counts,
               "dry_run": dry_run}
    try:
        guard = panel_guard(previous, targets, override, limits)
    except MassChangeBlocked as blocked:
        # a warning here: the stop is finish_run's, which writes the report first and logs it as the run's one ERROR
        log.warning("%s", blocked)
        return PanelUpsert(**planned, status=PanelUpsertStatus.BLOCKED, reason=str(blocked),
                           guard=GuardVerdict.of(blocked.check), seconds=round(time.monotonic() - started, 2))
    if dry_run or sets.empty:
        if not dry_run and len(staged):
            _record_columns(store, fields, run_id)
        return PanelUpsert(**planned, status=PanelUpsertStatus.DRY_RUN if dry_run else PanelUpsertStatus.SYNCED,
                           guard=guard, seconds=round(time.monotonic() - started, 2))
    log.info("panel fields: sending %d contacts (%d never sent, %d changed) in %d field set(s)", len(sets),
             len(diff.added), len(diff.changed), counts.count)
    result = _upsert_by_field_set(thrive, targets.set_index(ID_ALIAS), emails, sets)
    figures = settle_upsert(store, PANEL_FIELDS_SNAPSHOT, run_id, result,
                            targets[is_in(targets[ID_ALIAS], sets.index)], baseline, hashed=fields)
    if len(staged):
        _record_columns(store, fields, run_id)
    return PanelUpsert(**planned, **dict(figures), status=PanelUpsertStatus.SYNCED, guard=guard,
                       seconds=round(time.monotonic() - started, 2))


def _committed_columns(store: SnapshotStore, sent_before: SnapshotRows | None) -> list[str] | None:
    """The panel IQA's columns at the last committed run: as recorded, else those of the committed snapshot
    (which keeps a retired column's last values, so it is only the fallback), else None (nothing to compare)."""
    recorded = store.read_json(SCHEMA_KEY)
    if recorded is not None:
        return list(recorded["columns"])
    return None if sent_before is None else [name for name in sent_before.columns
                                             if name != ID_ALIAS and not is_row_hash_column(name)]


def _record_columns(store: SnapshotStore, fields: list[str], run_id: str) -> None:
    store.write_json(SCHEMA_KEY, {"iqa": PANEL_FIELDS_IQA_PATH, "columns": fields, "run_id": run_id})


def thrive_emails(store: SnapshotStore) -> pd.Series:
    """Email by contact ID of every contact Thrive holds, from the target-group sync's committed snapshot."""
    contacts = store.read(CONTACTS_SNAPSHOT)
    if contacts is None:
        log.warning("no committed %r snapshot yet, so no contact is known to be in Thrive: run "
                    "imis_to_thrive_target_groups first; panel fields only go to contacts Thrive holds",
                    CONTACTS_SNAPSHOT)
        return pd.Series(dtype="str", index=pd.Index([], dtype="str", name=ID_ALIAS))
    return contacts.set_index(ID_ALIAS)[EMAIL_FIELD]


def field_sets(diff: ContactDiff, fields: list[str]) -> pd.Series:
    """Per contact to send, the tuple of fields it sends: all of them if never sent, else the changed ones."""
    never_sent = pd.Series([tuple(fields)] * len(diff.added), index=diff.added, dtype=object)
    sets = pd.concat([never_sent, diff.changed_columns]) if len(diff.changed_columns) else never_sent
    return sets.rename_axis(ID_ALIAS)


def panel_guard(previous: SnapshotRows | pd.DataFrame | None, targets: pd.DataFrame, override: bool,
                limits: MassChangeLimits) -> GuardVerdict:
    """The guard over contacts and columns the snapshot already had: a contact sent its panel fields for
    the first time, or a column the customer just added, is new data, not a rewrite."""
    if previous is None or previous.empty:
        return GuardVerdict.nothing_to_compare()
    known_columns = [name for name in previous.columns if name != ID_ALIAS and name in targets.columns]
    known = targets[is_in(targets[ID_ALIAS], key_frame(previous)[ID_ALIAS])]
    known.attrs["iqa"] = PANEL_FIELDS_IQA_PATH
    return GuardVerdict.of(check_contact_changes(diff_contacts(previous, known, columns=known_columns),
                                                 PANEL_FIELDS_IQA_PATH, limits, override))


def _field_set_counts(sets: pd.Series) -> FieldSets:
    """How many distinct field sets (one upsert each) and the largest ones, for the report."""
    counts = sets.value_counts()
    return FieldSets(count=len(counts), largest=[FieldSetCount(fields=list(fields), contacts=int(n))
                                                 for fields, n in counts.head(REPORTED_FIELD_SETS).items()])


def _upsert_by_field_set(thrive: ThriveClient, rows: pd.DataFrame, emails: pd.Series,
                         sets: pd.Series) -> UpsertResult:
    """One upsert per distinct field set, each record carrying exactly that set (see the module docstring)."""
    codes, distinct = pd.factorize(sets.to_numpy())
    result = UpsertResult()
    for code, positions in pd.Series(codes).groupby(codes).indices.items():
        field_set = distinct[code]
        ids = sets.index[positions]
        batch = rows.loc[ids, list(field_set)]
        log.info("panel fields: upserting %d contacts with field(s) %s", len(ids), ", ".join(field_set))
        result.extend(thrive.upsert_subscribers(_subscribers(batch, emails.reindex(ids))))
    return result


def _subscribers(batch: pd.DataFrame, emails: pd.Series) -> list[Subscriber]:
    """Panel values go as the rendered text; an empty one clears the field in Thrive."""
    records = batch.to_dict("records")
    return [Subscriber(contact_id=contact_id, email=email, fields=record)
            for contact_id, email, record in zip(batch.index, emails.fillna("").to_numpy(), records, strict=True)]


# -- 3. finish ----------------------------------------------------------------------------------------------

def report_key(run_id: str) -> str:
    """Where a run's report lives in the snapshot store (`SnapshotStore.read_json`)."""
    return f"{REPORT_FOLDER}/{snapshot_name(run_id)}"


def finish_run(store: SnapshotStore, run_id: str, extracted: PanelExtract, upserted: PanelUpsert,
               report_url: str | None = None) -> PanelFieldsRun:
    """Write the run report (counts, field names and the GX summary) next to the snapshots and return a
    short summary for XCom; raise `MassChangeBlocked` if the guard stopped the load, so alerting fires.
    `report_url` is where the report reads in Airflow (logged)."""
    report = PanelFieldsReport(run_id=run_id, finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
                               iqa=PANEL_FIELDS_IQA_PATH, extract=extracted, upsert=upserted)
    location = write_report(store, report_key(run_id), report, render_panel_fields(report), report_url)
    if upserted.status is PanelUpsertStatus.BLOCKED and upserted.guard is not None:
        raise MassChangeBlocked(upserted.guard.check())
    return PanelFieldsRun(report=location, status=upserted.status, fields=len(extracted.fields),
                          custom_fields=list(extracted.custom_fields), to_send=upserted.to_send,
                          sent=upserted.sent, rejected=upserted.rejected)
