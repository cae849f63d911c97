"""The Sync health plugin: a page in the Airflow UI's navigation, and a *Report* tab on every DAG run.

Both are external views (Airflow shows them in a frame) served by this plugin's FastAPI app, which the api-server
mounts at `/sync-health`. Every route needs a signed-in Airflow user, checked by Airflow's own security
dependencies: the JWT in the `Authorization: Bearer` header (API clients) or in the `_token` cookie (what the UI's
frame sends), and the user's permission to read the DAGs' runs. No route is anonymous. The figures come from the
run reports the DAGs write to the snapshot store (`include/imis_thrive/health/`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from include.imis_thrive.health.addresses import REPORT_FOLDERS, URL_PREFIX

if TYPE_CHECKING:
    from include.imis_thrive.health.summary import SyncHealth
    from include.imis_thrive.sync.snapshots import SnapshotStore


def _variable(key: str) -> str | None:
    """A Variable from the metadata DB: the api-server runs no task, so the Task SDK's Variable sees none."""
    from airflow.models import Variable

    return Variable.get(key, default_var=None)


def _store() -> SnapshotStore:
    from include.imis_thrive.airflow.runtime import snapshot_store

    return snapshot_store(_variable)


def _health() -> SyncHealth:
    from include.imis_thrive.health import runs, summary

    store = _store()
    return summary.build(runs.target_group_reports(store, summary.RECENT_RUNS),
                         runs.panel_field_reports(store, summary.RECENT_RUNS),
                         runs.activity_reports(store, summary.RECENT_RUNS))


# The page shows the runs of the three DAGs, so reading it takes the right to read each one's runs.
READ_EVERY_DAGS_RUNS = [Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=dag_id))
                        for dag_id in REPORT_FOLDERS]

app = FastAPI(title="Sync health", description="Run reports of the iMIS ⇄ Thrive DAGs", docs_url=None,
              redoc_url=None, openapi_url=None)


def _base_path(request: Request) -> str:
    """Where the api-server is served: the app's mount path with what a proxy serving Airflow under a sub-path
    (`/airflow`) put before it; the pages' links go under it."""
    return str(request.scope.get("root_path", "")).removesuffix(URL_PREFIX)


@app.get("/", response_class=HTMLResponse, dependencies=READ_EVERY_DAGS_RUNS)
def sync_health_page(request: Request) -> str:
    from include.imis_thrive.health.page import render_page

    return render_page(_health(), _base_path(request))


@app.get("/api/health", dependencies=READ_EVERY_DAGS_RUNS)
def sync_health() -> dict[str, Any]:
    return _health().model_dump(mode="json")


# `dag_id` is a path parameter, so Airflow's dependency checks the user may read that DAG's runs.
@app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse,
         dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
def run_report(dag_id: str, run_id: str, request: Request) -> str:
    from include.imis_thrive.health.page import render_report
    from include.imis_thrive.health.runs import readable_report

    return render_report(dag_id, run_id, readable_report(_store(), dag_id, run_id), known=dag_id in REPORT_FOLDERS,
                         base_path=_base_path(request))


class SyncHealthPlugin(AirflowPlugin):
    name = "sync_health"
    # Instance attributes on AirflowPlugin, so not ClassVar here either.
    fastapi_apps: list[Any] = [{"name": "sync_health", "app": app, "url_prefix": URL_PREFIX}]  # noqa: RUF012
    external_views: list[Any] = [  # noqa: RUF012
        {"name": "Sync health", "href": f"{URL_PREFIX}/", "url_route": "sync-health", "destination": "nav",
         "nav_top_level": True},
        {"name": "Report", "href": f"{URL_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}", "url_route": "sync-health-report",
         "destination": "dag_run"},
    ]
