"""
### iMIS → Thrive: target groups, contact fields and the preference token

Each IQA in `$/HigherLogic/MailingLists` is a Thrive target group (an interest of the same name). A run
extracts `$/HigherLogic/Contacts/Contacts` and every list, validates them with Great Expectations, diffs them
against the last committed snapshot and loads **only the changes**: the 22 default personalization fields and
`iMISv2 - Token` for members new to Thrive or changed, interest additions, and interest removals (never an
unsubscribe). Contacts in no synced group are not pushed.

**Schedules and triggers**
- hourly: the groups used in an active Thrive campaign: those the Variable `imis_thrive_campaign_groups` lists
  (a JSON list of names), else those a mailing instance or `target_group_counts.last_used_date` shows used in the
  last 30 days (Thrive has no "in a campaign" flag); the log names the signal, and says so when it selects none;
- manual: *Trigger DAG* with `target_group` set syncs one group (empty: every group);
- pre-publish refresh: `bin/refresh-target-group "<group>"` (or `POST /api/v2/dags/imis_to_thrive_target_groups/dagRuns`
  with `{"conf": {"target_group": "<group>"}}`), see the README.

**Params**: `target_group`, `dry_run` (compute and report the diff, load nothing), `full_resync` (ignore the
snapshots: resend every member's fields and reconcile membership with Thrive's own list), `reconcile` (compare
every group's membership and synced fields with Thrive and repair what differs; weekly, `thrive_reconciliation`
triggers it), `allow_mass_change` with `max_removed_share` / `max_changed_share` (the mass-change guard, 20% by
default; it also stops a group whose drift in Thrive is larger).

**Drift**: each run counts every group's members in Thrive (one call per group); when Thrive's count is not the
snapshot's, the group's member list is read and the diff made against what Thrive really holds, so members lost
or added behind the pipeline's back are repaired in the same run. The report says
"drift: N missing in Thrive, M extra, repaired".

**No backfill**: a run sends iMIS as it is now, whatever its logical date, so Airflow refuses a backfill of this
DAG (`allowed_run_types`). Backfill is for `thrive_to_imis_activities`; to send everything again, trigger this DAG
with `full_resync`.

**When it fails**
- `fetch_contacts` / `fetch_target_group`: iMIS did not answer (they retry by themselves); these are the only tasks
  that hold an `imis_api` pool slot.
- `plan_target_group` / `load_target_group` **skipped** for one list: the list breaks a requirement (shared with
  Everyone, alias `ID`, no prompts, one active record) or has no Thrive target group; the WARNING line of its log
  says which, the other lists still synced, and `finish_run` fails the run naming it. Fix the IQA.
- `load_target_group` failed for one list: the mass-change guard stopped it (its log's ERROR line says by how
  much). Check the IQA; re-trigger with `allow_mass_change` if the change is real.
- `extract_contacts`: a blocking expectation failed (ID missing, null, duplicated, not numeric; a required column
  missing; no active record). Nothing was loaded; the last good snapshot stays.
- any task after a connection error: it retries by itself; a failed run leaves the snapshots as they were, so the
  next run resends what was missed.
- a killed task (a lost worker, an OOM kill): just re-run. The next run waits for any BulkUpload the killed one
  left queued in Thrive and re-sends what it touched; its guard counts only what is new since the killed attempt.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from include.imis_thrive.airflow.assets import (
    THRIVE_CONTACTS,
    THRIVE_CONTACTS_CHANGES,
    THRIVE_TARGET_GROUPS,
    target_group_asset,
)
from include.imis_thrive.airflow.runtime import DEFAULT_ARGS, RUN_FAILURE_ALERT, RUN_TYPES_BUT_BACKFILL


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description="iMIS list IQAs → Thrive target groups: contact fields, preference token and membership, "
                "changes only",
    doc_md=__doc__,
    tags=["imis", "thrive", "sync", "target-groups"],
    default_args=DEFAULT_ARGS,
    on_failure_callback=RUN_FAILURE_ALERT,
    allowed_run_types=RUN_TYPES_BUT_BACKFILL,
    params={
        "target_group": Param(None, type=["null", "string"], title="Target group", section="What to sync",
                              description="Sync only this group (the list IQA's name). Empty: every group "
                                          "(scheduled runs: the groups of active campaigns)."),
        "dry_run": Param(False, type="boolean", title="Dry run", section="How",
                         description="Compute and report the diff; load nothing, commit nothing."),
        "full_resync": Param(False, type="boolean", title="Full resync", section="How",
                             description="Ignore snapshots: resend every member's fields and reconcile "
                                         "membership with Thrive's own member list."),
        "reconcile": Param(False, type="boolean", title="Reconcile with Thrive", section="How",
                           description="Read every group's member list and members' synced fields from Thrive "
                                       "and repair what differs (with dry_run: report it only)."),
        "allow_mass_change": Param(False, type="boolean", title="Allow mass change", section="Mass-change guard",
                                   description="Load even if the mass-change guard would stop the run."),
        "max_removed_share": Param(0.2, type="number", minimum=0, maximum=1, title="Max removed share",
                                   section="Mass-change guard",
                                   description="Stop a group losing more than this share of its members."),
        "max_changed_share": Param(0.2, type="number", minimum=0, maximum=1, title="Max changed share",
                                   section="Mass-change guard",
                                   description="Stop if more than this share of contacts changed fields."),
    },
)
def imis_to_thrive_target_groups():
    @task(pool="imis_api")
    def discover_target_groups(params: dict, dag_run=None) -> list[dict]:
        """The list IQAs to sync, each checked against the requirements its definition shows."""
        from include.imis_thrive.airflow.hooks.imis import ImisHook
        from include.imis_thrive.airflow.hooks.thrive import ThriveHook
        from include.imis_thrive.airflow.runtime import campaign_only_choice, retry_by_error_kind
        from include.imis_thrive.sync import target_groups

        with retry_by_error_kind():
            scheduled = dag_run is not None and str(dag_run.run_type).lower().endswith("scheduled")
            campaign_only = campaign_only_choice() if scheduled and not params["target_group"] else None
            with ImisHook().get_client() as imis, ThriveHook().get_client() as thrive:
                groups = target_groups.discover_target_groups(imis, thrive, only=params["target_group"],
                                                              campaign_only=campaign_only)
            return [group.to_xcom() for group in groups]

    # Only the fetch tasks talk to iMIS, so only they hold an `imis_api` slot; validation, diff and snapshot writes
    # of one DAG overlap the fetches of another (include/imis_thrive/sync/fetch.py).
    @task(pool="imis_api")
    def fetch_contacts(run_id: str | None = None) -> dict:
        """The contacts IQA's pages, staged as they came."""
        from include.imis_thrive.airflow.hooks.imis import ImisHook
        from include.imis_thrive.airflow.runtime import retry_by_error_kind, snapshot_store
        from include.imis_thrive.sync import fetch

        with retry_by_error_kind(), ImisHook().get_client() as imis:
            return fetch.fetch_contacts(imis, snapshot_store(), run_id).to_xcom()

    @task
    def extract_contacts(fetched: dict, run_id: str | None = None) -> dict:
        """Contacts IQA → typed frame → blocking expectations → Thrive fields, staged for this run."""
        from include.imis_thrive.airflow.runtime import retry_by_error_kind, snapshot_store
        from include.imis_thrive.sync import fetch, target_groups

        with retry_by_error_kind():
            store = snapshot_store()
            frame = fetch.fetched_frame(store, fetch.FetchedIqa.from_xcom(fetched))
            return target_groups.extract_contacts(None, store, run_id, fetched=frame).to_xcom()

    @task(pool="imis_api", map_index_template="{{ target_group }}")
    def fetch_target_group(group: dict, run_id: str | None = None) -> dict:
        """One list IQA's pages, staged as they came (or iMIS's refusal to run it)."""
        from include.imis_thrive.airflow.hooks.imis import ImisHook
        from include.imis_thrive.airflow.runtime import retry_by_error_kind, snapshot_store
        from include.imis_thrive.sync import fetch
        from include.imis_thrive.sync.results import TargetGroup

        get_current_context()["target_group"] = group["name"]
        with retry_by_error_kind(), ImisHook().get_client() as imis:
            fetched = fetch.fetch_target_group(imis, snapshot_store(), TargetGroup.from_xcom(group), run_id)
            return {"group": group, "fetched": fetched.to_xcom()}

    @task(map_index_template="{{ target_group }}")
    def plan_target_group(fetched: dict, contacts: dict, params: dict, run_id: str | None = None) -> dict:
        """One list: checked, diffed against its snapshot, guarded; a list that breaks a requirement ends skipped
        with the reason (its plan is still the XCom, for the load mapped over it and for finish_run)."""
        from include.imis_thrive.airflow.hooks.thrive import ThriveHook
        from include.imis_thrive.airflow.runtime import retry_by_error_kind, skip_task, snapshot_store
        from include.imis_thrive.sync import fetch, target_groups
        from include.imis_thrive.sync.guard import MassChangeLimits
        from include.imis_thrive.sync.results import ContactsExtract, PlanStatus, TargetGroup

        group, listed = TargetGroup.from_xcom(fetched["group"]), fetch.FetchedIqa.from_xcom(fetched["fetched"])
        get_current_context()["target_group"] = group.name
        with retry_by_error_kind():
            limits = MassChangeLimits(params["max_removed_share"], params["max_changed_share"])
            store = snapshot_store()
            with ThriveHook().get_client() as thrive:
                plan = target_groups.plan_target_group(
                    None, thrive, store, group, ContactsExtract.from_xcom(contacts), run_id,
                    full_resync=params["full_resync"], override=params["allow_mass_change"], limits=limits,
                    fetched=fetch.fetched_frame(store, listed), denied=listed.denied,
                    reconcile=params["reconcile"])
        if plan.status is PlanStatus.SKIPPED:
            skip_task(plan.reason or f"target group {group.name!r} is skipped", xcom=plan.to_xcom())
        return plan.to_xcom()

    # none_failed: a skipped list's plan must not skip the other groups' upsert and loads.
    @task(trigger_rule="none_failed", outlets=[THRIVE_CONTACTS_CHANGES])
    def upsert_contacts(contacts: dict, plans: list[dict], params: dict, run_id: str | None = None) -> dict:
        """Fields of members new to Thrive or changed, in one upsert for all groups; commits the contacts."""
        from include.imis_thrive import reports
        from include.imis_thrive.airflow.assets import announce_change
        from include.imis_thrive.airflow.hooks.thrive import ThriveHook
        from include.imis_thrive.airflow.runtime import retry_by_error_kind, snapshot_store
        from include.imis_thrive.sync import target_groups
        from include.imis_thrive.sync.guard import MassChangeLimits
        from include.imis_thrive.sync.results import ContactsExtract, TargetGroupPlan

        with retry_by_error_kind():
            limits = MassChangeLimits(params["max_removed_share"], params["max_changed_share"])
            extracted = ContactsExtract.from_xcom(contacts)
            with ThriveHook().get_client() as thrive:
                upserted = target_groups.upsert_contacts(
                    thrive, snapshot_store(), extracted, [TargetGroupPlan.from_xcom(plan) for plan in plans], run_id,
                    dry_run=params["dry_run"], full_resync=params["full_resync"],
                    override=params["allow_mass_change"], limits=limits)
            announce_change(THRIVE_CONTACTS_CHANGES, THRIVE_CONTACTS, reports.contacts_figures(extracted, upserted))
            return upserted.to_xcom()

    @task(map_index_template="{{ target_group }}", trigger_rule="none_failed", outlets=[THRIVE_TARGET_GROUPS])
    def load_target_group(plan: dict, contacts: dict, params: dict, run_id: str | None = None) -> dict:
        """Interest additions and removals for one group, then its snapshot is committed; a skipped list's ends
        skipped too."""
        from include.imis_thrive import reports
        from include.imis_thrive.airflow.assets import announce_change
        from include.imis_thrive.airflow.hooks.thrive import ThriveHook
        from include.imis_thrive.airflow.runtime import retry_by_error_kind, skip_task, snapshot_store
        from include.imis_thrive.sync import target_groups
        from include.imis_thrive.sync.results import ContactsExtract, PlanStatus, TargetGroupPlan

        planned = TargetGroupPlan.from_xcom(plan)
        get_current_context()["target_group"] = planned.group
        if planned.status is PlanStatus.SKIPPED:
            skip_task(planned.reason or f"target group {planned.group!r} is skipped")
        with retry_by_error_kind():
            with ThriveHook().get_client() as thrive:
                loaded = target_groups.load_target_group(thrive, snapshot_store(), planned, run_id,
                                                         dry_run=params["dry_run"],
                                                         contacts=ContactsExtract.from_xcom(contacts))
            announce_change(THRIVE_TARGET_GROUPS, target_group_asset(planned.group),
                            reports.target_group_figures(planned, loaded))
            return loaded.to_xcom()

    @task(trigger_rule="all_done")
    def finish_run(params: dict, run_id: str | None = None, ti=None) -> dict:
        """The run report next to the snapshots; fails the run if any list was skipped or blocked."""
        from include.imis_thrive.airflow.runtime import report_view_url, retry_by_error_kind, snapshot_store
        from include.imis_thrive.sync import target_groups
        from include.imis_thrive.sync.results import ContactsExtract, ContactsUpsert, TargetGroupLoad, TargetGroupPlan

        with retry_by_error_kind():
            plans = [TargetGroupPlan.from_xcom(plan)
                     for plan in _mapped_results(ti.xcom_pull(task_ids="plan_target_group", default=None))]
            loads = [TargetGroupLoad.from_xcom(load)
                     for load in _mapped_results(ti.xcom_pull(task_ids="load_target_group", default=None))]
            contacts = ti.xcom_pull(task_ids="extract_contacts", default=None)
            upserted = ti.xcom_pull(task_ids="upsert_contacts", default=None)
            return target_groups.finish_run(
                snapshot_store(), run_id, plans, contacts and ContactsExtract.from_xcom(contacts),
                upserted and ContactsUpsert.from_xcom(upserted), loads, dry_run=params["dry_run"],
                report_url=report_view_url(ti.dag_id, run_id)).to_xcom()

    def _mapped_results(pulled) -> list[dict]:
        """A mapped task's XComs: a list, or the bare value when only one instance ran; failed ones missing."""
        results = [pulled] if isinstance(pulled, dict) else list(pulled or [])
        return [result for result in results if result]

    groups = discover_target_groups()
    contacts = extract_contacts(fetch_contacts())
    plans = plan_target_group.partial(contacts=contacts).expand(fetched=fetch_target_group.expand(group=groups))
    upsert = upsert_contacts(contacts, plans)
    loads = load_target_group.partial(contacts=contacts).expand(plan=plans)
    upsert >> loads >> finish_run()


imis_to_thrive_target_groups()
