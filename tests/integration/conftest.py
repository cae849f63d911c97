"""Shared fixtures for integration tests: real sandbox servers on free loopback ports."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import s3fs
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer

from sandbox.imis_app import ImisSandbox, ImisSandboxConfig, default_flavor
from sandbox.server import SandboxServer
from tests.integration.airflow_api_server import api_server  # noqa: F401 (a fixture)
from tests.integration.thrive_fixtures import *  # noqa: F403


@pytest.fixture
def imis_flavor() -> str:
    """The iMIS answers the sandboxes give: `--imis-flavor`, else $IMIS_SANDBOX_FLAVOR, else ems."""
    return default_flavor()


@pytest.fixture
def imis_sandbox(imis_flavor: str) -> ImisSandbox:
    """A small iMIS instance with the broken lists switched on, fresh for each test."""
    return ImisSandbox(ImisSandboxConfig(users={"hl_integration": "sandbox-imis-password"}, contacts=300,
                                         broken_lists=True, flavor=imis_flavor))


@pytest.fixture
def imis_server(imis_sandbox: ImisSandbox) -> Iterator[SandboxServer]:
    """`imis_sandbox` served over real HTTP on 127.0.0.1 (port 0: a free one); `.url` is its base URL."""
    with SandboxServer(imis_sandbox.app, port=0) as server:
        yield server


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the loopback S3 server: the base URL of a store in it, and the fsspec options."""

    url: str
    options: dict


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto) on a free loopback port, for the whole session, as strict as S3 about
    conditional writes (see `_atomic_conditional_puts`)."""
    restore = _atomic_conditional_puts()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    restore()


def _atomic_conditional_puts():
    """S3 applies a PUT's If-Match / If-None-Match atomically; moto checks the ETag and then writes, unlocked, so
    two racing PUTs on its threaded server can both pass the check (seen: a ledger entry lost under load). One
    lock around moto's PutObject makes the witness as strict as S3. Returns the undo."""
    original = S3Response.put_object
    lock = threading.Lock()

    def put_object(self):
        with lock:
            return original(self)

    S3Response.put_object = put_object
    return lambda: setattr(S3Response, "put_object", original)


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch) -> S3Bucket:
    """A bucket per test; dummy credentials exist only inside the test's environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sandbox-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sandbox-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    options = {"endpoint_url": s3_endpoint, "skip_instance_cache": True}
    bucket = f"store-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return S3Bucket(f"s3://{bucket}/imis-thrive", options)
