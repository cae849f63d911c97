"""The Airflow API client's decisions (re-login, a retried trigger, waiting), against a scripted API server on
loopback: the client library sends real HTTP, so the fake answers over a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import urllib3
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from include.imis_thrive.airflow.rest_api import (
    AirflowApiClient,
    AirflowLoginRefused,
    DagRunRejected,
    DagRunTimeout,
    main,
    manual_run_id,
    target_group_conf,
)
from sandbox.server import SandboxServer

DAG = "imis_to_thrive_target_groups"
FAST = urllib3.Retry(total=1, backoff_factor=0, status_forcelist=(503,), allowed_methods=None, raise_on_status=False)


def run_body(run_id: str, state: str = "queued", conf: dict | None = None) -> dict:
    """A run as the API server returns it (the fields the client's model requires)."""
    return {"dag_id": DAG, "dag_display_name": DAG, "dag_run_id": run_id, "state": state, "conf": conf or {},
            "dag_versions": [], "run_after": "2026-03-01T10:00:00Z", "run_type": "manual"}


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    json: object


class FakeAirflow:
    """Answers like the API server; `answers` maps (method, path) to a list of (status, body) used in turn."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: dict[tuple[str, str], list[tuple[int, dict]]] = {}
        self.requests: list[Received] = []

    async def answer(self, request: Request) -> JSONResponse:
        body = await request.body()
        self.requests.append(Received(request.method, request.url.path, dict(request.headers),
                                      await request.json() if body else None))
        queue = self.answers[(request.method, request.url.path)]
        status, answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return JSONResponse(answer, status_code=status)

    def client(self, **kwargs) -> AirflowApiClient:
        return AirflowApiClient(self.url, "refresher", "s3cret", retries=FAST, **kwargs)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAirflow]:
    app = FastAPI()
    with SandboxServer(app) as running:
        fake = FakeAirflow(running.url)
        app.add_api_route("/{path:path}", fake.answer, methods=["GET", "POST"])
        yield fake


@pytest.fixture
def fake_airflow(server):
    """Scripted anew for each test: `fake_airflow(answers)` is the server answering those."""
    def script(answers: dict[tuple[str, str], list[tuple[int, dict]]]) -> FakeAirflow:
        server.answers, server.requests = answers, []
        return server

    return script


def test_logs_in_once_and_sends_the_token_with_the_trigger(fake_airflow):
    airflow = fake_airflow({
        ("POST", "/auth/token"): [(201, {"access_token": "jwt-1"})],
        ("POST", f"/api/v2/dags/{DAG}/dagRuns"): [(200, run_body("r1", conf={"target_group": "Newsletter"}))],
    })
    with airflow.client() as client:
        run = client.trigger_dag_run(DAG, {"target_group": "Newsletter"}, run_id="r1")
    assert (run.run_id, run.state, run.conf) == ("r1", "queued", {"target_group": "Newsletter"})
    login, trigger = airflow.requests
    assert login.json == {"username": "refresher", "password": "s3cret"}
    assert trigger.headers["authorization"] == "Bearer jwt-1"
    assert trigger.json == {"dag_run_id": "r1", "logical_date": None, "conf": {"target_group": "Newsletter"}}


def test_a_logical_date_picks_the_interval_of_the_triggered_run(fake_airflow):
    from datetime import UTC, datetime

    airflow = fake_airflow({
        ("POST", "/auth/token"): [(201, {"access_token": "jwt-1"})],
        ("POST", "/api/v2/dags/thrive_to_imis_activities/dagRuns"): [(200, run_body("r1"))],
    })
    with airflow.client() as client:
        client.trigger_dag_run("thrive_to_imis_activities", {}, run_id="r1",
                               logical_date=datetime(2026, 3, 2, 5, tzinfo=UTC))
    assert airflow.requests[1].json["logical_date"] in ("2026-03-02T05:00:00+00:00", "2026-03-02T05:00:00Z")


def test_an_expired_token_is_renewed_once(fake_airflow):
    airflow = fake_airflow({
        ("POST", "/auth/token"): [(201, {"access_token": "jwt-2"})],
        ("GET", f"/api/v2/dags/{DAG}/dagRuns/r1"): [(401, {"detail": "Token Expired"}), (200, run_body("r1"))],
    })
    client = airflow.client(token="jwt-old")
    assert client.get_dag_run(DAG, "r1").state == "queued"
    assert [r.headers.get("authorization") for r in airflow.requests] == ["Bearer jwt-old", None, "Bearer jwt-2"]


def test_a_refused_login_names_the_user_not_the_password(fake_airflow):
    airflow = fake_airflow({("POST", "/auth/token"): [(401, {"detail": "Invalid credentials"})]})
    with pytest.raises(AirflowLoginRefused, match=r"user 'refresher'.*Invalid credentials") as refused:
        airflow.client().trigger_dag_run(DAG, {})
    assert "s3cret" not in str(refused.value) and "s3cret" not in repr(airflow.client())


def test_a_repeated_trigger_reads_back_the_run_its_first_attempt_created(fake_airflow):
    conf = {"target_group": "Newsletter", "dry_run": False}
    airflow = fake_airflow({
        ("POST", "/auth/token"): [(201, {"access_token": "jwt"})],
        ("POST", f"/api/v2/dags/{DAG}/dagRuns"): [(409, {"detail": "Unique constraint violation"})],
        ("GET", f"/api/v2/dags/{DAG}/dagRuns/r1"): [(200, run_body("r1", conf=conf))],
    })
    assert airflow.client().trigger_dag_run(DAG, conf, run_id="r1").run_id == "r1"


def test_a_busy_server_is_asked_again(fake_airflow):
    airflow = fake_airflow({
        ("POST", "/auth/token"): [(201, {"access_token": "jwt"})],
        ("POST", f"/api/v2/dags/{DAG}/dagRuns"): [(503, {"detail": "busy"}), (200, run_body("r1"))],
    })
    assert airflow.client().trigger_dag_run(DAG, {}, run_id="r1").run_id == "r1"
    assert [r.path for r in airflow.requests].count(f"/api/v2/dags/{DAG}/dagRuns") == 2


def test_a_run_id_taken_by_another_conf_is_refused(fake_airflow):
    airflow = fake_airflow({
        ("POST", "/auth/token"): [(201, {"access_token": "jwt"})],
        ("POST", f"/api/v2/dags/{DAG}/dagRuns"): [(409, {"detail": "Unique constraint violation"})],
        ("GET", f"/api/v2/dags/{DAG}/dagRuns/r1"): [(200, run_body("r1", conf={"target_group": "Other"}))],
    })
    with pytest.raises(DagRunRejected, match="'r1' is already taken"):
        airflow.client().trigger_dag_run(DAG, {"target_group": "Newsletter"}, run_id="r1")


def test_wait_reports_each_state_change_until_the_run_finishes(fake_airflow):
    airflow = fake_airflow({
        ("POST", "/auth/token"): [(201, {"access_token": "jwt"})],
        ("GET", f"/api/v2/dags/{DAG}/dagRuns/r1"): [
            (200, run_body("r1", "queued")), (200, run_body("r1", "running")), (200, run_body("r1", "running")),
            (200, run_body("r1", "success"))],
    })
    heard, sleeps = [], []
    run = airflow.client().wait_for_dag_run(DAG, "r1", timeout_s=60, poll_s=2, on_state=lambda r: heard.append(r.state),
                                            sleep=sleeps.append, clock=lambda: 0.0)
    assert run.state == "success"
    assert heard == ["queued", "running", "success"] and sleeps == [2, 2, 2]


def test_wait_gives_up_at_the_deadline_and_says_where_the_run_is(fake_airflow):
    airflow = fake_airflow({
        ("POST", "/auth/token"): [(201, {"access_token": "jwt"})],
        ("GET", f"/api/v2/dags/{DAG}/dagRuns/r1"): [(200, run_body("r1", "running"))],
    })
    now = iter([0.0, 5.0, 10.0, 15.0])
    with pytest.raises(DagRunTimeout, match=r"still running after 10s.*/dags/imis_to_thrive_target_groups/runs/r1"):
        airflow.client().wait_for_dag_run(DAG, "r1", timeout_s=10, poll_s=5, sleep=lambda _: None,
                                          clock=lambda: next(now))


def test_manual_run_ids_have_airflows_shape():
    assert manual_run_id().startswith("manual__") and manual_run_id().endswith("+00:00")


def test_an_empty_target_group_is_refused_before_any_call():
    with pytest.raises(ValueError, match="target group name is empty"):
        target_group_conf("  ", dry_run=False)


def test_the_script_wants_the_login_from_the_environment(capsys):
    assert main(["Newsletter"], env={"AIRFLOW_API_URL": "http://airflow.test"}) == 2
    assert "set AIRFLOW_API_USER and AIRFLOW_API_PASSWORD" in capsys.readouterr().err
