"""The deployment of README "Running on several machines", started for real on one machine.

A throwaway PostgreSQL database (the metadata DB and Celery's result backend), one Redis db number (the Celery broker
and the shared iMIS token), an S3 server (the snapshot store), the sandboxes on free ports, and Airflow as separate
services: api-server, scheduler and dag-processor in one Airflow home, each Celery worker in a home of its own.
Every secret the README says must be shared (fernet key, JWT secret, API secret key) is generated once and given
to every process, and every process reaches the others only through `execution_api_server_url`, the broker and the DB.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import psutil

from sandbox.__main__ import build_sandboxes
from sandbox.airflow_settings import load_settings
from sandbox.server import SandboxServer
from tests.dags.conftest import PROJECT_ROOT, Sandboxes

if TYPE_CHECKING:
    from include.imis_thrive.airflow.rest_api import AirflowApiClient
    from include.imis_thrive.sync.snapshots import SnapshotStore

# The PostgreSQL server (a role that may create databases) and the Redis server the test uses; CI's and a
# developer's machine run both locally.
PG_URL = os.environ.get("IMIS_THRIVE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("IMIS_THRIVE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
ADMIN = ("admin", secrets.token_urlsafe(12))
DAG_IDS = ("imis_to_thrive_target_groups", "imis_to_thrive_panel_fields", "thrive_to_imis_activities")
# How long a lost worker's task stays "running" before the scheduler fails it (the default is 300 s); with the
# DAGs' retry_delay (2 min) it sets the recovery time a kill costs (README "Running on several machines").
HEARTBEAT_TIMEOUT_S = 30


def unavailable_services() -> str | None:
    """Why the deployment cannot be started here (PostgreSQL or Redis not answering), or None."""
    import psycopg2
    import redis

    try:
        psycopg2.connect(PG_URL, connect_timeout=3).close()
    except psycopg2.Error as error:
        return f"PostgreSQL does not answer at {_without_password(PG_URL)} ({str(error).strip()})"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        return f"Redis does not answer at {REDIS_URL} ({error})"
    return None


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc}" if user else netloc))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A fresh PostgreSQL database; yields its SQLAlchemy URL (psycopg2 driver), dropped afterwards."""
    import psycopg2

    name = f"imis_thrive_distributed_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(PG_URL)
        yield urlunsplit(parts._replace(scheme="postgresql+psycopg2", path=f"/{name}"))
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def throwaway_redis_db() -> Iterator[str]:
    """An empty Redis db number (of 1-15; 0 is left to whatever else uses this Redis); flushed afterwards."""
    import redis

    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS_URL}/{number}")
        if client.dbsize() == 0 and client.set("imis-thrive-distributed-test", "taken", nx=True, ex=3600):
            try:
                yield f"{REDIS_URL}/{number}"
            finally:
                client.flushdb()
            return
    raise RuntimeError(f"no empty db number on the Redis at {REDIS_URL}")


@contextmanager
def s3_server() -> Iterator[tuple[str, str]]:
    """An S3-compatible server (moto, as tests/integration's `s3_endpoint`, as strict as S3 about conditional
    writes) on a free port; yields (endpoint, bucket)."""
    import s3fs
    from moto.server import ThreadedMotoServer

    from tests.integration.conftest import _atomic_conditional_puts

    restore = _atomic_conditional_puts()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint, bucket = f"http://{host}:{port}", "imis-thrive-distributed"
    try:
        s3fs.S3FileSystem(endpoint_url=endpoint, key="sandbox-access-key", secret="sandbox-secret-key").mkdir(bucket)
        yield endpoint, bucket
    finally:
        server.stop()
        restore()


@contextmanager
def served_sandboxes(store_url: str, contacts: int) -> Iterator[tuple[Sandboxes, dict[str, str]]]:
    """The iMIS and Thrive sandboxes on free ports; yields them and their connections as AIRFLOW_CONN_* variables."""
    settings = load_settings()
    imis_sandbox, thrive_sandbox = build_sandboxes(settings, contacts=contacts, seed=3, broken_lists=False)
    with SandboxServer(imis_sandbox.app) as imis_server, SandboxServer(thrive_sandbox.app) as thrive_server:
        imis, thrive = settings.connection("imis_default"), settings.connection("thrive_default")
        connections = {
            "AIRFLOW_CONN_IMIS_DEFAULT": json.dumps({
                "conn_type": "imis", "host": imis_server.url, "login": imis.conn_login,
                "password": imis.conn_password, "extra": imis.conn_extra}),
            "AIRFLOW_CONN_THRIVE_DEFAULT": json.dumps({
                "conn_type": "thrive", "host": f"{thrive_server.url}{thrive.url_path()}",
                "login": thrive.conn_login, "password": thrive.conn_password,
                "extra": {**thrive.conn_extra, "poll_interval_s": 0.05}}),
        }
        yield Sandboxes(imis_sandbox, thrive_sandbox, store_url), connections


@dataclass
class Service:
    """One Airflow process (and its process group), its Airflow home and the file its output goes to."""

    name: str
    home: Path
    log: Path
    process: subprocess.Popen[bytes]

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Deployment:
    """The running deployment: its services, the environment every one shares, and ways to look at it."""

    workdir: Path
    db_url: str
    env: dict[str, str]
    api_url: str
    sandboxes: Sandboxes
    store_options: dict[str, str]
    services: dict[str, Service] = field(default_factory=dict)

    def store(self) -> SnapshotStore:
        """The snapshot store the workers share, as this test process reaches it."""
        from include.imis_thrive.sync.snapshots import SnapshotStore

        return SnapshotStore(self.sandboxes.store_url, storage_options=self.store_options)

    def home(self, name: str) -> Path:
        path = self.workdir / "homes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env_for(self, home: str, **extra: str) -> dict[str, str]:
        return self.env | {"AIRFLOW_HOME": str(self.home(home))} | extra

    def airflow(self, *args: str, home: str = "control") -> str:
        """One Airflow CLI command in the control home; its output, or an error with it."""
        result = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env_for(home), cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=300)
        if result.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
        return result.stdout

    def start(self, name: str, args: list[str], home: str = "control", **extra: str) -> Service:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as output:
            process = subprocess.Popen([sys.executable, "-m", "airflow", *args], env=self.env_for(home, **extra),
                                       cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.services[name] = Service(name, self.home(home), log, process)
        return self.services[name]

    def start_worker(self, name: str) -> Service:
        """A Celery worker in its own Airflow home, recording `name` as the hostname of the tasks it runs."""
        return self.start(name, ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "3",
                                 "--without-mingle", "--without-gossip"], home=name,
                          IMIS_THRIVE_WORKER_NAME=name,
                          AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()))

    def kill_tree(self, name: str) -> int:
        """SIGKILL a service and every process under it at once, task processes in their own process groups too,
        as systemd's KillMode=control-group does (or a lost machine); returns how many processes died."""
        root = psutil.Process(self.services[name].process.pid)
        victims = [root, *root.children(recursive=True)]
        for victim in victims:
            with suppress(psutil.NoSuchProcess):
                victim.send_signal(signal.SIGKILL)
        self.services[name].process.wait(timeout=30)
        psutil.wait_procs(victims, timeout=30)
        return len(victims)

    def stop_all(self) -> None:
        """SIGTERM each service's process group, then SIGKILL whatever is left of its tree."""
        for service in self.services.values():
            if service.process.poll() is None:
                try:
                    os.killpg(service.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 20
        for service in self.services.values():
            with suppress(subprocess.TimeoutExpired):
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for name, service in self.services.items():
            if service.process.poll() is None:
                self.kill_tree(name)
            with suppress(ProcessLookupError):
                os.killpg(service.process.pid, signal.SIGKILL)  # stragglers of the group

    def tails(self) -> str:
        return "\n".join(service.tail() for service in self.services.values())

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows from the metadata DB (task instance hostnames, pids, run timings)."""
        import psycopg2

        connection = psycopg2.connect(self.db_url.replace("postgresql+psycopg2://", "postgresql://"))
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def wait_until(self, what: str, check: Any, timeout_s: float, poll_s: float = 1.0) -> Any:
        """Poll `check()` until it returns something truthy; on timeout, an error with every service's log tail."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = check()
            if result:
                return result
            dead = [name for name, service in self.services.items() if service.process.poll() is not None
                    and not name.endswith("-killed")]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} stopped while waiting for {what}\n{self.tails()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not after {timeout_s:g} s\n{self.tails()}")
            time.sleep(poll_s)

    def api_client(self) -> AirflowApiClient:
        """The REST client of include/, logged in as the admin."""
        from include.imis_thrive.airflow.rest_api import AirflowApiClient

        return AirflowApiClient(self.api_url, *ADMIN)


def _api_answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/api/v2/version", timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def running_deployment(workdir: Path, contacts: int = 300,
                       executor: str = "CeleryExecutor") -> Iterator[Deployment]:
    """Everything of the README section started, the settings applied, the three DAGs parsed and unpaused."""
    from cryptography.fernet import Fernet

    with throwaway_database() as db_url, throwaway_redis_db() as redis_url, s3_server() as (endpoint, bucket), \
            served_sandboxes(f"s3://{bucket}/imis-thrive", contacts) as (sandboxes, connections):
        api_port = free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        passwords = workdir / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({ADMIN[0]: ADMIN[1]}))
        imis = json.loads(connections["AIRFLOW_CONN_IMIS_DEFAULT"])
        imis["extra"] |= {"token_store": "redis", "token_store_url": redis_url}
        base = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        env = base | connections | {
            "AIRFLOW_CONN_IMIS_DEFAULT": json.dumps(imis),
            "PYTHONPATH": str(PROJECT_ROOT),
            "PATH": f"{PROJECT_ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": "6",  # two workers of 3 (the LocalExecutor run: 6 too)
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url.replace("postgresql+psycopg2://", "postgresql://"),
            # the three secrets every service and worker must share
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            # where a worker's task processes report (the api-server's Task Execution API)
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(api_port), "AIRFLOW__API__BASE_URL": api_url,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN[0]}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.distributed.worker_hostname.worker_hostname",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # the test triggers every run itself, through the REST API; no scheduled run comes in between, so the
            # DAGs may start unpaused
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AWS_ACCESS_KEY_ID": "sandbox-access-key", "AWS_SECRET_ACCESS_KEY": "sandbox-secret-key",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        deployment = Deployment(workdir, db_url, env, api_url, sandboxes, {
            "endpoint_url": endpoint, "key": env["AWS_ACCESS_KEY_ID"], "secret": env["AWS_SECRET_ACCESS_KEY"]})
        try:
            prepared = subprocess.run([str(PROJECT_ROOT / "bin" / "prepare-airflow-home")],
                                      env=deployment.env_for("control"), cwd=PROJECT_ROOT, capture_output=True,
                                      text=True, timeout=600)
            assert prepared.returncode == 0, prepared.stdout + prepared.stderr
            # the store Variable before the first run (README): every worker reads and writes the same snapshots
            variables = workdir / "variables.json"
            # and a writeback lease that a killed writer's retry may take over within 30 s, not 3.5 min: the kill
            # tests wait for retry_delay, not for the lease as well (README "Recovery time")
            variables.write_text(json.dumps({
                "imis_thrive_store_url": sandboxes.store_url,
                "imis_thrive_store_options": json.dumps({"endpoint_url": endpoint}),
                "imis_thrive_writeback_lease": json.dumps({"ttl": 20, "renew_every": 5, "grace": 10})}))
            deployment.airflow("variables", "import", str(variables))
            deployment.start("api-server", ["api-server", "--port", str(api_port), "--workers", "1"])
            deployment.start("scheduler", ["scheduler"])
            deployment.start("dag-processor", ["dag-processor"])
            if executor == "CeleryExecutor":
                deployment.start_worker("worker-a")
                deployment.start_worker("worker-b")
            deployment.wait_until("the api-server", lambda: _api_answers(api_url), timeout_s=180)
            deployment.wait_until("the three DAGs parsed", lambda: len(deployment.query(
                "SELECT dag_id FROM dag WHERE dag_id = ANY(%s) AND NOT is_paused", list(DAG_IDS))) == len(DAG_IDS),
                timeout_s=240)
            yield deployment
        finally:
            deployment.stop_all()
