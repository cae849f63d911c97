"""DAG tests: a migrated metadata DB in the test Airflow home, and both sandboxes wired in as connections."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.__main__ import build_sandboxes
from sandbox.airflow_settings import AirflowSettings, load_settings
from sandbox.imis_app import ImisSandbox
from sandbox.server import SandboxServer
from sandbox.smtp import SmtpSink
from sandbox.thrive_app import ThriveSandbox

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """`airflow db migrate` once per test session, in the throwaway Airflow home of tests/conftest.py."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, env=os.environ.copy(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    """The project's DAGs, with retries kept but their delays zeroed: a test waits for no backoff."""
    from datetime import timedelta

    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    for dag in bag.dags.values():
        for task in dag.tasks:
            task.retry_delay = timedelta(0)
            task.max_retry_delay = timedelta(0)
    return bag


ALERT_RECIPIENT = "data-team@sandbox.invalid"


@pytest.fixture
def dag_callbacks_as_in_the_dag_processor(monkeypatch) -> None:
    """Run callbacks of a failed `dag.test()` run with a Task SDK channel, as the DAG processor runs them.

    `dag.test()` calls a DAG's `on_failure_callback` in the test process, where no supervisor answers the Task SDK
    (task states, XComs); in a deployment the DAG processor does, and the run's alert reads the failures through
    it. Here an in-process supervisor answers over the execution API against the test DB, as dag.test's own
    tasks are answered."""
    import psutil
    import structlog
    from airflow.models.dagrun import DagRun
    from airflow.sdk.execution_time.supervisor import (
        InProcessSupervisorComms,
        InProcessTestSupervisor,
        set_supervisor_comms,
    )

    original = DagRun.execute_dag_callbacks

    def with_task_sdk(self, dag, *args, **kwargs):
        supervisor = InProcessTestSupervisor(id=uuid.uuid4(), pid=os.getpid(), process=psutil.Process(),
                                             process_log=structlog.get_logger(), client=InProcessTestSupervisor
                                             ._api_client(dag))
        supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
        with set_supervisor_comms(supervisor.comms):
            return original(self, dag, *args, **kwargs)

    monkeypatch.setattr(DagRun, "execute_dag_callbacks", with_task_sdk)


@pytest.fixture
def smtp_sink(monkeypatch, dag_callbacks_as_in_the_dag_processor) -> Iterator[SmtpSink]:
    """The alert-mail sink on a free port, `smtp_default` pointing at it, and the recipients Variable set."""
    with SmtpSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
            "conn_type": "smtp", "host": sink.host, "port": sink.port,
            "extra": {"from_email": "airflow@sandbox.invalid", "disable_tls": True, "disable_ssl": True,
                      "retry_limit": 0, "timeout": 5}}))
        monkeypatch.setenv("AIRFLOW_VAR_IMIS_THRIVE_ALERT_EMAILS", ALERT_RECIPIENT)
        yield sink


@dataclass
class Sandboxes:
    imis: ImisSandbox
    thrive: ThriveSandbox
    store_url: str


def serve_sandboxes(monkeypatch, tmp_path: Path, contacts: int = 300, broken_lists: bool = False,
                    seed: int = 3, wrap_thrive: Callable[[Any], Any] | None = None,
                    settings: AirflowSettings | None = None) -> Iterator[Sandboxes]:
    """Both sandboxes on free ports, the three connections and the store Variable pointing at them.

    `wrap_thrive` wraps the Thrive app in a test's own ASGI layer (e.g. one that kills a run mid-request);
    `settings` (default: airflow_settings.yaml) gives the credentials both the sandboxes and the connections get."""
    settings = settings or load_settings()
    imis_sandbox, thrive_sandbox = build_sandboxes(settings, contacts=contacts, seed=seed, broken_lists=broken_lists)
    thrive_app = wrap_thrive(thrive_sandbox.app) if wrap_thrive else thrive_sandbox.app
    with SandboxServer(imis_sandbox.app) as imis_server, SandboxServer(thrive_app) as thrive_server:
        imis = settings.connection("imis_default")
        thrive = settings.connection("thrive_default")
        monkeypatch.setenv("AIRFLOW_CONN_IMIS_DEFAULT", json.dumps({
            "conn_type": "imis", "host": imis_server.url, "login": imis.conn_login, "password": imis.conn_password,
            "extra": {**imis.conn_extra, "token_store_dir": str(tmp_path / "tokens")}}))
        monkeypatch.setenv("AIRFLOW_CONN_THRIVE_DEFAULT", json.dumps({
            "conn_type": "thrive", "host": f"{thrive_server.url}{thrive.url_path()}", "login": thrive.conn_login,
            "password": thrive.conn_password, "extra": {**thrive.conn_extra, "poll_interval_s": 0.01}}))
        store_url = str(tmp_path / "store")
        monkeypatch.setenv("AIRFLOW_VAR_IMIS_THRIVE_STORE_URL", store_url)
        # A writeback run killed here is taken over by the next run of its interval a few seconds later, not minutes.
        monkeypatch.setenv("AIRFLOW_VAR_IMIS_THRIVE_WRITEBACK_LEASE",
                           json.dumps({"ttl": 2, "renew_every": 0.5, "wait": 60, "grace": 1}))
        yield Sandboxes(imis_sandbox, thrive_sandbox, store_url)


@pytest.fixture
def sandboxes(monkeypatch, tmp_path) -> Iterator[Sandboxes]:
    yield from serve_sandboxes(monkeypatch, tmp_path)


@pytest.fixture
def broken_sandboxes(monkeypatch, tmp_path) -> Iterator[Sandboxes]:
    yield from serve_sandboxes(monkeypatch, tmp_path, broken_lists=True)


_DEFAULT_PARAMS: dict = {}


def run_dag(dagbag, dag_id: str, **conf):
    """One `dag.test()` run; returns (run state, {task_id or task_id[map name]: state})."""
    run = dag_test_run(dagbag, dag_id, **conf)
    return str(run.state), {task_key(ti): str(ti.state) for ti in run.get_task_instances()}


def dag_test_run(dagbag, dag_id: str, **conf):
    """One `dag.test()` run from the DAG's default params; returns the finished DagRun."""
    dag = dagbag.get_dag(dag_id)
    # dag.test() writes run_conf into the DAG's and its tasks' params: every run starts from the defaults.
    defaults = _DEFAULT_PARAMS.setdefault(
        dag_id, {None: copy.deepcopy(dag.params)} | {t.task_id: copy.deepcopy(t.params) for t in dag.tasks})
    dag.params = copy.deepcopy(defaults[None])
    for task in dag.tasks:
        task.params = copy.deepcopy(defaults[task.task_id])
    return dag.test(run_conf=conf or None)


def task_key(ti) -> str:
    """`task_id`, or `task_id[map name]` for a mapped task instance."""
    return ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.rendered_map_index or ti.map_index}]"


def asset_events(run_id: str) -> dict[str, dict]:
    """The asset events one DAG run emitted, read back from the metadata DB: {asset URI: the event's extra}."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run_id).all()
        return {event.uri: event.extra for event in events}


_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")


def task_logs(records: list[logging.LogRecord], run) -> dict[str, list[logging.LogRecord]]:
    """Each task's records among those the standard loggers emitted during a `dag.test()` run (`caplog.records`),
    keyed as `task_key` does. dag.test() runs one task instance at a time and logs where each starts, so the
    records up to the next start are that task's. (Airflow's own structlog lines, such as "Task failed with
    exception" and its traceback, go to stdout instead: capfd has them.)"""
    names = {(ti.task_id, ti.map_index): task_key(ti) for ti in run.get_task_instances()}
    logs: dict[str, list[logging.LogRecord]] = {}
    current: list[logging.LogRecord] | None = None
    for record in records:
        started = _TASK_START.search(record.getMessage())
        if started:
            key = (started[1], int(started[2]))
            current = logs.setdefault(names.get(key, f"{key[0]}[{key[1]}]"), [])
        elif current is not None:
            current.append(record)
    return logs


def messages(records: list[logging.LogRecord], level: str) -> list[str]:
    return [record.getMessage() for record in records if record.levelname == level]
