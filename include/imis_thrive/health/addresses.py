"""Where the Sync health plugin serves things, and where each DAG's run reports are: cheap to import (the plugin
module and the DAGs' finish tasks do), so nothing here loads pandas or a client."""

from __future__ import annotations

from urllib.parse import quote

TARGET_GROUPS_DAG = "imis_to_thrive_target_groups"
PANEL_FIELDS_DAG = "imis_to_thrive_panel_fields"
ACTIVITIES_DAG = "thrive_to_imis_activities"

# The folders the three `finish_run`s write to (target_groups.py, panel_fields.REPORT_FOLDER, activities.REPORT_PREFIX).
REPORT_FOLDERS = {TARGET_GROUPS_DAG: "reports/target_groups", PANEL_FIELDS_DAG: "reports/panel_fields",
                  ACTIVITIES_DAG: "reports/activities"}

# The plugin's FastAPI app is mounted here in the api-server (plugins/sync_health.py).
URL_PREFIX = "/sync-health"


def report_view_path(dag_id: str, run_id: str) -> str:
    """The path of a run's readable report in the api-server (the plugin's run view)."""
    return f"{URL_PREFIX}/runs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"


def run_path(dag_id: str, run_id: str) -> str:
    """The path of the run's page in the Airflow UI."""
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def report_view_url(base_url: str, dag_id: str, run_id: str) -> str:
    """The readable report's address under Airflow's `[api] base_url` (what `finish_run` logs)."""
    return base_url.rstrip("/") + report_view_path(dag_id, run_id)
