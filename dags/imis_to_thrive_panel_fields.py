"""
### iMIS → Thrive: panel (custom personalization) fields

Nightly, the panel IQA `$/HigherLogic/Panels/PanelFields` (the template the association extends with its own
display columns) is extracted, validated with Great Expectations, diffed against what Thrive was last sent,
and **only the changed fields** of the changed contacts are upserted. Every column but `ID` is a Thrive
personalization field of the same name: a column added to the IQA becomes a new field with no code change.
Only contacts Thrive already holds (put there by `imis_to_thrive_target_groups`) get panel fields; this DAG
never creates a subscriber.

**Schedule**: 02:00 New York time every night (change `start_date`'s zone to the association's own);
*Trigger DAG* runs it now. There is no backfill: each run syncs the IQA as it is at that moment, so Airflow
refuses a backfill of this DAG (`allowed_run_types`); backfill is for `thrive_to_imis_activities`.

**Params**: `dry_run` (compute and report the diff, load nothing, commit nothing), `allow_mass_change` with
`max_changed_share` (the mass-change guard, 20% by default; a new column filling values for most contacts
is not a mass change).

**Run report**: `reports/panel_fields/<run>.json` in the snapshot store: the GX summary, rows read and
quarantined, the fields (custom ones named), the diff per field, the guard's verdict and Thrive's outcomes.

**When it fails**
- `extract_panel_fields`: a blocking expectation failed (ID missing, null, duplicated, not numeric). The
  message names the IQA and the rule; nothing was loaded and the last good snapshot stays. Fix the IQA.
- `finish_run` with "mass-change guard stopped IQA ...": more than `max_changed_share` of the contacts would
  change (or the IQA returns far fewer rows). Nothing was loaded. Check the IQA; if the change is real,
  re-trigger with `allow_mass_change`.
- `upsert_panel_fields` after a connection error: it retries by itself; the snapshot is committed only after
  the load, so the next run resends what was missed. Rows Thrive rejects are in `quarantine/panel_fields`
  and retried each run; the report flags those rejected three runs in a row.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from include.imis_thrive.airflow.assets import THRIVE_PANEL_FIELDS, THRIVE_PANEL_FIELDS_CHANGES
from include.imis_thrive.airflow.runtime import DEFAULT_ARGS, RUN_FAILURE_ALERT, RUN_TYPES_BUT_BACKFILL


@dag(
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=1,
    description="iMIS panel IQA → Thrive custom personalization fields, nightly, changed fields only",
    doc_md=__doc__,
    tags=["imis", "thrive", "sync", "panel-fields"],
    default_args=DEFAULT_ARGS,
    on_failure_callback=RUN_FAILURE_ALERT,
    allowed_run_types=RUN_TYPES_BUT_BACKFILL,
    params={
        "dry_run": Param(False, type="boolean", title="Dry run", section="How",
                         description="Compute and report the diff; load nothing, commit nothing."),
        "allow_mass_change": Param(False, type="boolean", title="Allow mass change", section="Mass-change guard",
                                   description="Load even if the mass-change guard would stop the run."),
        "max_changed_share": Param(0.2, type="number", minimum=0, maximum=1, title="Max changed share",
                                   section="Mass-change guard",
                                   description="Stop if more than this share of the contacts already sent "
                                               "would have panel fields changed (or lose their panel row)."),
    },
)
def imis_to_thrive_panel_fields():
    @task(pool="imis_api")
    def fetch_panel_fields(run_id: str | None = None) -> dict:
        """The panel IQA's pages, staged as they came: the only task holding an `imis_api` slot."""
        from include.imis_thrive.airflow.hooks.imis import ImisHook
        from include.imis_thrive.airflow.runtime import retry_by_error_kind, snapshot_store
        from include.imis_thrive.sync import fetch

        with retry_by_error_kind(), ImisHook().get_client() as imis:
            return fetch.fetch_panel_fields(imis, snapshot_store(), run_id).to_xcom()

    @task
    def extract_panel_fields(fetched: dict, run_id: str | None = None) -> dict:
        """Panel IQA → typed frame → blocking expectations → Thrive text, staged for this run."""
        from include.imis_thrive.airflow.runtime import retry_by_error_kind, snapshot_store
        from include.imis_thrive.sync import fetch, panel_fields

        with retry_by_error_kind():
            store = snapshot_store()
            frame = fetch.fetched_frame(store, fetch.FetchedIqa.from_xcom(fetched))
            return panel_fields.extract_panel_fields(None, store, run_id, fetched=frame).to_xcom()

    @task
    def upsert_panel_fields(extracted: dict, params: dict, run_id: str | None = None) -> dict:
        """Changed fields of contacts Thrive holds, one upsert per field set; then the snapshot is committed."""
        from include.imis_thrive.airflow.hooks.thrive import ThriveHook
        from include.imis_thrive.airflow.runtime import retry_by_error_kind, snapshot_store
        from include.imis_thrive.sync import panel_fields
        from include.imis_thrive.sync.guard import MassChangeLimits
        from include.imis_thrive.sync.results import PanelExtract

        limits = MassChangeLimits(max_changed_share=params["max_changed_share"])
        with retry_by_error_kind(), ThriveHook().get_client() as thrive:
            return panel_fields.upsert_panel_fields(
                thrive, snapshot_store(), PanelExtract.from_xcom(extracted), run_id, dry_run=params["dry_run"],
                override=params["allow_mass_change"], limits=limits).to_xcom()

    @task(outlets=[THRIVE_PANEL_FIELDS_CHANGES])
    def finish_run(extracted: dict, upserted: dict, run_id: str | None = None, ti=None) -> dict:
        """The run report next to the snapshots; fails the run if the mass-change guard stopped the load."""
        from include.imis_thrive import reports
        from include.imis_thrive.airflow.assets import announce_change
        from include.imis_thrive.airflow.runtime import report_view_url, retry_by_error_kind, snapshot_store
        from include.imis_thrive.sync import panel_fields
        from include.imis_thrive.sync.results import PanelExtract, PanelUpsert

        with retry_by_error_kind():
            extract, upsert = PanelExtract.from_xcom(extracted), PanelUpsert.from_xcom(upserted)
            summary = panel_fields.finish_run(snapshot_store(), run_id, extract, upsert,
                                              report_url=report_view_url(ti.dag_id, run_id))
            announce_change(THRIVE_PANEL_FIELDS_CHANGES, THRIVE_PANEL_FIELDS, reports.panel_figures(extract, upsert))
            return summary.to_xcom()

    extracted = extract_panel_fields(fetch_panel_fields())
    finish_run(extracted, upsert_panel_fields(extracted))


imis_to_thrive_panel_fields()
