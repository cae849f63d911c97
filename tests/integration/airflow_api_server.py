"""A real `airflow api-server` in the test Airflow home, started once per session: the REST API tests
(`test_airflow_api.py`) and the Sync health plugin's (`test_sync_health_api.py`) share it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from include.imis_thrive.airflow.rest_api import AirflowApiClient

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = [sys.executable, "-m", "airflow"]
START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class ApiServer:
    url: str
    users: dict[str, str]
    store_url: str  # the server's `imis_thrive_store_url` (the Sync health plugin reads run reports there)

    def client(self, user: str = "refresher", password: str | None = None) -> AirflowApiClient:
        return AirflowApiClient(self.url, user, password or self.users[user])

    def env(self, user: str = "refresher", password: str | None = None) -> dict[str, str]:
        return {"AIRFLOW_API_URL": self.url, "AIRFLOW_API_USER": user,
                "AIRFLOW_API_PASSWORD": password or self.users[user]}


def _free_loopback_port() -> int:
    """A port the kernel just handed out for 127.0.0.1 (the CLI takes a number, not a socket)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"airflow api-server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/api/v2/version", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"airflow api-server did not answer within {START_TIMEOUT_S:g}s:\n{log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it forks a worker), SIGKILL if it lingers."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


@pytest.fixture(scope="session")
def api_server(tmp_path_factory) -> Iterator[ApiServer]:
    """Migrated DB, the project's DAGs serialized into it, and the API server with three known users (user, viewer,
    admin); its plugins are the project's, its snapshot store a fresh folder (a Variable from the environment)."""
    workdir = tmp_path_factory.mktemp("airflow-api")
    store_url = str(workdir / "store")
    users = {"refresher": secrets.token_urlsafe(12), "watcher": secrets.token_urlsafe(12),
             "keeper": secrets.token_urlsafe(12)}
    passwords = workdir / "passwords.json"
    passwords.write_text(json.dumps(users))
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(PROJECT_ROOT),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "refresher:user,watcher:viewer,keeper:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # as bin/airflow-local sets it: the form's Test button
        "AIRFLOW_VAR_IMIS_THRIVE_STORE_URL": store_url,
    }
    subprocess.run([*AIRFLOW, "db", "migrate"], env=env, check=True, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port = _free_loopback_port()
    log = workdir / "api-server.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen([*AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", "1"], env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        # Serializing the DAGs (what the DAG processor would do) overlaps the server's start-up.
        subprocess.run([*AIRFLOW, "dags", "reserialize"], env=env, check=True, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url, server, log)
        yield ApiServer(url, users, store_url)
    finally:
        _stop(server)
