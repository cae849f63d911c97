"""The Sync health plugin in a real `airflow api-server` (the session's, `airflow_api_server.py`): mounted at
/sync-health, registered as a navigation view and a DAG-run tab, refusing every request without a valid Airflow
token, and answering with the figures of the run reports in the server's snapshot store."""

from __future__ import annotations

import httpx
import pytest

from include.imis_thrive.health.addresses import ACTIVITIES_DAG, TARGET_GROUPS_DAG, report_view_path
from include.imis_thrive.sync.snapshots import SnapshotStore
from tests.unit.health.report_builders import activities_report, group, store_report, target_groups_report

pytestmark = pytest.mark.integration

# The first page a server builds imports pandas and the report models; a loaded CI machine takes seconds.
TIMEOUT_S = 60.0
RUN_1, RUN_2 = "scheduled__2026-03-02T08:00:00+00:00", "manual__2026-03-02T09:30:00+00:00"


@pytest.fixture(scope="module")
def reports(api_server) -> None:
    """Two target-group runs and one writeback run in the server's store, as the DAGs write them."""
    store = SnapshotStore(api_server.store_url)
    store_report(store, target_groups_report(RUN_1, "2026-03-02T08:05:00+00:00", [
        group("Newsletter", added=12, removed=3, members=1058), group("All Members", added=929, members=929)]))
    store_report(store, target_groups_report(RUN_2, "2026-03-02T09:35:00+00:00", [
        group("Newsletter", added=4, removed=2, members=1060)]))
    store_report(store, activities_report("scheduled__2026-03-02T09:00:00+00:00", "2026-03-02T09:00:00+00:00",
                                          "2026-03-02T10:00:00+00:00", {"Mail Open": 25}))


def token(api_server, user: str = "watcher") -> str:
    reply = httpx.post(f"{api_server.url}/auth/token", json={"username": user, "password": api_server.users[user]})
    reply.raise_for_status()
    return reply.json()["access_token"]


@pytest.mark.parametrize("path", ["/sync-health/", "/sync-health/api/health",
                                  report_view_path(TARGET_GROUPS_DAG, RUN_2)])
def test_without_a_valid_token_every_route_is_refused(api_server, reports, path):
    url = f"{api_server.url}{path}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer not-a-jwt"}).status_code in (401, 403)
    assert httpx.get(url, cookies={"_token": "not-a-jwt"}).status_code in (401, 403)


def test_with_a_token_the_json_has_each_groups_last_run(api_server, reports):
    reply = httpx.get(f"{api_server.url}/sync-health/api/health",
                      headers={"Authorization": f"Bearer {token(api_server)}"}, timeout=TIMEOUT_S)
    assert reply.status_code == 200
    health = reply.json()
    groups = {g["group"]: g for g in health["target_groups"]}
    assert set(groups) == {"All Members", "Newsletter"}
    assert (groups["Newsletter"]["members"], groups["Newsletter"]["added"], groups["Newsletter"]["removed"]) == (
        1060, 4, 2)
    assert groups["Newsletter"]["last_run"]["run_id"] == RUN_2
    assert [p["added"] for p in groups["Newsletter"]["history"]] == [12, 4]
    assert (groups["All Members"]["members"], groups["All Members"]["last_run"]["run_id"]) == (929, RUN_1)
    kinds = {k["kind"]: k for k in health["activities"]["kinds"]}
    assert kinds["Mail Open"]["written"] == 25
    assert health["runs_read"] == {TARGET_GROUPS_DAG: 2, "imis_to_thrive_panel_fields": 0, ACTIVITIES_DAG: 1}


def test_the_ui_cookie_opens_the_page_and_a_runs_report(api_server, reports):
    cookies = {"_token": token(api_server)}
    page = httpx.get(f"{api_server.url}/sync-health/", cookies=cookies, timeout=TIMEOUT_S)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<tr data-group="Newsletter">' in page.text and '<tr data-group="All Members">' in page.text
    report = httpx.get(f"{api_server.url}{report_view_path(TARGET_GROUPS_DAG, RUN_2)}", cookies=cookies,
                       timeout=TIMEOUT_S)
    assert report.status_code == 200
    assert f"<h1>Target-group sync {RUN_2}</h1>" in report.text
    assert "<td>Newsletter</td>" in report.text


def test_the_plugin_is_registered_with_a_nav_view_and_a_dag_run_tab(api_server):
    reply = httpx.get(f"{api_server.url}/api/v2/plugins", headers={"Authorization": f"Bearer {token(api_server)}"})
    [plugin] = [p for p in reply.json()["plugins"] if p["name"] == "sync_health"]
    views = {view["destination"]: view for view in plugin["external_views"]}
    assert views["nav"]["href"] == "/sync-health/" and views["nav"]["url_route"] == "sync-health"
    assert views["dag_run"]["href"] == "/sync-health/runs/{DAG_ID}/{RUN_ID}"
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == ["/sync-health"]
