"""`thrive_reconciliation` with dag.test(): it triggers `imis_to_thrive_target_groups` with `reconcile`, and that
run repairs what a count cannot see (a member swapped by hand, a field edited in Thrive).

The trigger is asserted where it lands (the queued run and its conf in the metadata DB); that run is then executed
with dag.test() as the scheduler would, and the end state asserted at the Thrive sandbox.
"""

from __future__ import annotations

import pytest

from tests.dags.conftest import dag_test_run, run_dag
from tests.dags.test_target_groups_dag import latest_report, memberships

pytestmark = [pytest.mark.dags, pytest.mark.integration]
DAG_ID = "thrive_reconciliation"
TARGET_GROUPS = "imis_to_thrive_target_groups"


def triggered_conf(run) -> dict:
    from airflow.models import DagRun

    run_id = run.get_task_instance("reconcile_target_groups").xcom_pull(
        task_ids="reconcile_target_groups", key="trigger_run_id")
    triggered = DagRun.find(dag_id=TARGET_GROUPS, run_id=run_id)
    assert len(triggered) == 1 and run_id.startswith("reconciliation__")
    return dict(triggered[0].conf)


def test_the_weekly_reconciliation_repairs_a_swapped_member_and_an_edited_field(dagbag, sandboxes):
    state, _ = run_dag(dagbag, TARGET_GROUPS)
    assert state == "success"
    synced = memberships(sandboxes)
    newsletter = sorted(synced["Newsletter"])
    stranger = next(s["contact_id"] for s in sandboxes.thrive.subscribers()
                    if s["contact_id"] not in synced["Newsletter"])
    edited = newsletter[1]
    original = sandboxes.thrive.subscriber(edited)["fields"]["LastName"]
    sandboxes.thrive.drop_members("Newsletter", [newsletter[0]])  # the count stays the same: the hourly check
    sandboxes.thrive.join_members("Newsletter", [stranger])  # cannot see a swap
    sandboxes.thrive.edit_field(edited, "LastName", "Edited in Thrive")

    report_only = dag_test_run(dagbag, DAG_ID, report_only=True)
    assert str(report_only.state) == "success"
    conf = triggered_conf(report_only)
    assert conf == {"reconcile": True, "dry_run": True, "allow_mass_change": False}
    state, _ = run_dag(dagbag, TARGET_GROUPS, **conf)
    assert state == "success"
    assert memberships(sandboxes)["Newsletter"] == synced["Newsletter"] - {newsletter[0]} | {stranger}  # unrepaired
    drift = next(g for g in latest_report(sandboxes.store_url)["target_groups"] if g["group"] == "Newsletter")["drift"]
    assert (drift["missing"], drift["extra"], drift["fields_differ"]) == (1, 1, 1)

    run = dag_test_run(dagbag, DAG_ID)
    assert str(run.state) == "success"
    state, _ = run_dag(dagbag, TARGET_GROUPS, **triggered_conf(run))

    assert state == "success"
    assert memberships(sandboxes) == synced
    assert sandboxes.thrive.subscriber(edited)["fields"]["LastName"] == original
    load = next(g for g in latest_report(sandboxes.store_url)["target_groups"] if g["group"] == "Newsletter")["load"]
    assert (load["drift_readded"], load["drift_removed"], load["drift_fields_resent"]) == (1, 1, 1)
