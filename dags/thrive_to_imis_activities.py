"""
### Thrive → iMIS: engagement as `HLOGIC` activities

Every hour, for the run's data interval `[data_interval_start, data_interval_end)`, reads the eight engagement
kinds from Thrive (Bad Email, Landing Page Submit, Unsubscribe, Resubscribe, Web Tracking Page Visit, Mail
Sent, Mail Open, Link Click) and writes **one iMIS activity per event**, type `HLOGIC`, on the contact whose
iMIS ID Thrive holds. Times are converted from UTC to the iMIS instance's time zone (the `timezone` extra of
`imis_default`). Which activity field carries what is set in `include/imis_thrive/writeback/activity_map.py`.

**Exactly once.** Each event has a deterministic key, written into the activity (`UF_1`) and into a ledger next
to the snapshots. Re-running a run, a task retry, or backfilling an interval again writes nothing twice; a run
killed halfway loses nothing (the next run checks iMIS for the keys it may have written, then writes the rest).
An attempt orphaned by a killed worker and its retry never write at once: the interval has a lease in the store,
renewed while a writer runs; the retry waits for it, or takes it over once it expired (ttl + grace after the last
renewal, the Variable `imis_thrive_writeback_lease`), and re-reads the ledger before each batch.

**Backfill** (the schedule has real data intervals; a run's logical date is its interval's start, and both
dates are included), e.g. the three days of 2–4 March 2026 as 72 hourly runs:
`airflow backfill create --dag-id thrive_to_imis_activities --from-date 2026-03-02T00:00 --to-date 2026-03-04T23:00`
(add `--reprocess-behavior completed` to run intervals again: safe, they write 0), or *Trigger → Backfill*.

**Params**: `kinds`, the engagement kinds to write (default: all eight), e.g. to backfill only link clicks;
`retry_stuck` (default off), to post stuck events once more (see below), e.g. after fixing them in iMIS.

**One event iMIS cannot take never stalls the others.** An event iMIS fails every post of (real iMIS answers
HTTP 500 "An error occurred. Please contact the administrator." to a payload it cannot take) gets 5 posts a run,
each followed by a look-up in iMIS, and is then *quarantined* (`quarantine/activities.json` in the store: its key,
contact ID, iMIS's text, first/last seen, counts); every other event is written. Running the interval again
(clear the run) looks it up, then tries it again; after 3 failed runs it is *stuck*: reported by every run of its
interval, not tried, until `retry_stuck` is set or its entry is deleted from that document. Fifty events failing
in a row is iMIS being down, not bad events: the task fails and retries, quarantining none of them.

**When it fails**
- `write_activities`: a connection error or iMIS stayed unreachable; it retries by itself, and each retry
  writes only what is missing. If iMIS refused the first activities outright, the log names the reason: check
  that the `HLOGIC` activity type exists and the property names in `activity_map.py`.
- `finish_run`: iMIS refused some events (the run report lists the reasons and keys), events were quarantined
  (the alert and the report list each one's key, contact ID and iMIS's answer; everything else was written), or
  `write_activities` failed. Contacts unknown to iMIS, and stuck events, are listed without failing the run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from include.imis_thrive.airflow.assets import IMIS_HLOGIC_ACTIVITIES, IMIS_HLOGIC_ACTIVITIES_CHANGES
from include.imis_thrive.airflow.runtime import DEFAULT_ARGS, RUN_FAILURE_ALERT
from include.imis_thrive.thrive.kinds import EngagementKind  # a bare enum: cheap at parse time

ENGAGEMENT_KINDS = [kind.value for kind in EngagementKind]


@dag(
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description="Thrive engagement → iMIS HLOGIC activities, hourly per data interval, each event once; "
                "backfillable",
    doc_md=__doc__,
    tags=["imis", "thrive", "writeback", "activities"],
    default_args=DEFAULT_ARGS,
    on_failure_callback=RUN_FAILURE_ALERT,
    params={
        # `examples` is the trigger form's pick list: an array with examples renders as a multi-select.
        "kinds": Param(ENGAGEMENT_KINDS, type="array", items={"type": "string", "enum": ENGAGEMENT_KINDS},
                       examples=ENGAGEMENT_KINDS, minItems=1, title="Engagement kinds", section="What to write",
                       description="Write only these kinds of engagement (default: all eight)."),
        "retry_stuck": Param(False, type="boolean", title="Retry stuck events", section="What to write",
                             description="Post events that failed in 3 runs once more (default: skip them)."),
    },
)
def thrive_to_imis_activities():
    @task(pool="imis_api")
    def write_activities(params: dict, data_interval_start=None, data_interval_end=None) -> dict:
        """The interval's engagement from Thrive, each event once as an iMIS activity."""
        from include.imis_thrive.airflow.hooks.imis import ImisHook
        from include.imis_thrive.airflow.hooks.thrive import ThriveHook
        from include.imis_thrive.airflow.runtime import retry_by_error_kind, snapshot_store, writeback_lease_terms
        from include.imis_thrive.writeback import activities

        kinds = [EngagementKind(kind) for kind in params["kinds"]]
        with retry_by_error_kind(), ImisHook().get_client() as imis, ThriveHook().get_client() as thrive:
            return activities.write_activities(imis, thrive, snapshot_store(), data_interval_start,
                                               data_interval_end, kinds=kinds,
                                               retry_stuck=bool(params.get("retry_stuck")),
                                               lease=writeback_lease_terms()).to_xcom()

    @task(trigger_rule="all_done", outlets=[IMIS_HLOGIC_ACTIVITIES_CHANGES])
    def finish_run(run_id: str | None = None, data_interval_start=None, data_interval_end=None, ti=None) -> dict:
        """The run report next to the snapshots; fails the run if iMIS refused events or the write failed."""
        from include.imis_thrive import reports
        from include.imis_thrive.airflow.assets import announce_change
        from include.imis_thrive.airflow.runtime import report_view_url, retry_by_error_kind, snapshot_store
        from include.imis_thrive.writeback import activities
        from include.imis_thrive.writeback.results import ActivityWriteback

        with retry_by_error_kind():
            pulled = ti.xcom_pull(task_ids="write_activities", default=None)
            written = pulled and ActivityWriteback.from_xcom(pulled)
            report = activities.finish_run(snapshot_store(), run_id, data_interval_start, data_interval_end, written,
                                           report_url=report_view_url(ti.dag_id, run_id))
            announce_change(IMIS_HLOGIC_ACTIVITIES_CHANGES, IMIS_HLOGIC_ACTIVITIES,
                            reports.activity_figures(report.writeback))
            return report.to_xcom()

    write_activities() >> finish_run()


thrive_to_imis_activities()
