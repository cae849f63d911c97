"""
### Thrive reconciliation: weekly, every target group compared with what Thrive holds

Every run of `imis_to_thrive_target_groups` already counts each group in Thrive and repairs the membership
when the count differs from the snapshot. A count cannot see two changes that cancel out (one member removed by
hand, another added), nor a personalization field edited in Thrive. So once a week this DAG triggers
`imis_to_thrive_target_groups` for **every** group with `reconcile` on: each group's member list and its members'
synced fields are read back from Thrive, compared with iMIS and the snapshots, and what differs is repaired
through the same load (interest additions and removals, field upserts), after which the snapshots are committed
the same way, so they only ever claim what Thrive holds. The triggered run's report says, per group,
"drift: N missing in Thrive, M extra, K with other field values, repaired".

**Schedule**: Sundays at 03:00 New York time (change `start_date`'s zone to the association's own); *Trigger DAG*
runs it now.

**Params**: `report_only` (compare and report, repair nothing: the triggered run is a dry run),
`allow_mass_change` (repair even when a group's drift is above the mass-change guard's share, e.g. after a target
group was rebuilt empty in Thrive).

**When it fails**: this DAG only triggers; the reconciliation runs, alerts and reports as a run of
`imis_to_thrive_target_groups` (its run id starts with `reconciliation__`). A group stopped by the drift guard
fails that run with the group named: check Thrive, then trigger this DAG again with `allow_mass_change`.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag

from include.imis_thrive.airflow.runtime import DEFAULT_ARGS, RUN_FAILURE_ALERT, RUN_TYPES_BUT_BACKFILL

TARGET_GROUPS_DAG = "imis_to_thrive_target_groups"


@dag(
    schedule="0 3 * * 0",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=1,
    description="Weekly: every target group's members and synced fields compared with Thrive and repaired.",
    doc_md=__doc__,
    tags=["imis", "thrive", "sync", "target-groups", "reconciliation"],
    default_args=DEFAULT_ARGS,
    on_failure_callback=RUN_FAILURE_ALERT,
    allowed_run_types=RUN_TYPES_BUT_BACKFILL,  # a backfill would reconcile the present once per past week
    render_template_as_native_obj=True,  # the conf's params stay booleans, as the triggered DAG's params require
    params={
        "report_only": Param(False, type="boolean", title="Report only", section="How",
                             description="Compare every group with Thrive and report the drift; repair nothing."),
        "allow_mass_change": Param(False, type="boolean", title="Allow mass change", section="Mass-change guard",
                                   description="Repair even a group whose drift is above the mass-change "
                                               "guard's share (a group rebuilt or emptied in Thrive)."),
    },
)
def thrive_reconciliation():
    TriggerDagRunOperator(
        task_id="reconcile_target_groups",
        doc_md="Triggers every group's sync with `reconcile` on (and `dry_run` when `report_only`).",
        trigger_dag_id=TARGET_GROUPS_DAG,
        trigger_run_id="reconciliation__{{ run_id }}",
        conf={"reconcile": True, "dry_run": "{{ params.report_only }}",
              "allow_mass_change": "{{ params.allow_mass_change }}"},
        wait_for_completion=False,
    )


thrive_reconciliation()
