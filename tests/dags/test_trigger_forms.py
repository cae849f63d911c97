"""What a person meets before a run: the trigger form's sections, its multi-select of kinds, each DAG's one-line
description, and a backfill refused for the sync DAGs by `airflow backfill create` itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.dags.conftest import PROJECT_ROOT

# The DAGs that send iMIS as it is now (the reconciliation only triggers the target-group sync): no backfill.
SYNC_DAG_IDS = ("imis_to_thrive_target_groups", "imis_to_thrive_panel_fields", "thrive_reconciliation")
ALL_DAG_IDS = (*SYNC_DAG_IDS, "thrive_to_imis_activities")


@pytest.mark.parametrize("dag_id", ALL_DAG_IDS)
def test_every_dag_has_a_one_line_description_and_every_param_a_section(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert dag.description and "\n" not in dag.description and len(dag.description) <= 120
    for name, param in dag.params.items():
        assert param.schema.get("section"), f"{dag_id}: param {name} has no section"


def test_kinds_render_as_a_multi_select_of_the_eight_kinds(dagbag):
    from include.imis_thrive.thrive.kinds import EngagementKind

    schema = dagbag.get_dag("thrive_to_imis_activities").params.get_param("kinds").schema
    # The trigger form shows an array with `examples` as a pick list of several values (Airflow's params docs).
    assert schema["type"] == "array"
    assert schema["examples"] == [kind.value for kind in EngagementKind]
    assert schema["items"]["enum"] == schema["examples"]


def _backfill_create(dag_id: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", dag_id,
         "--from-date", "2026-03-02T00:00:00", "--to-date", "2026-03-02T02:00:00", *extra],
        capture_output=True, text=True, env=os.environ.copy(), cwd=PROJECT_ROOT, timeout=300)


@pytest.fixture(scope="module")
def dags_in_db(dagbag):
    """The project's DAGs serialized into the test DB, as the DAG processor would write them."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dagbag, "dags-folder", None)


@pytest.mark.parametrize("dag_id", SYNC_DAG_IDS)
def test_a_backfill_of_a_sync_dag_is_refused_when_created(dags_in_db, dag_id):
    created = _backfill_create(dag_id)

    assert created.returncode != 0
    assert f"Dag with dag_id: '{dag_id}' does not allow backfill runs" in created.stdout + created.stderr


def test_the_activities_dag_takes_a_backfill(dags_in_db):
    planned = _backfill_create("thrive_to_imis_activities", "--dry-run")

    assert planned.returncode == 0, planned.stderr[-2000:]
    for hour in ("2026-03-02 00:00:00", "2026-03-02 01:00:00", "2026-03-02 02:00:00"):
        assert hour in planned.stdout, planned.stdout[-2000:]
