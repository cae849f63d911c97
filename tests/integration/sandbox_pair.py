"""Both sandboxes of airflow_settings.yaml on free loopback ports, with a client for each: the setup of every
test that drives a whole sync step by step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from include.imis_thrive.http_retry import RetryPolicy
from include.imis_thrive.imis.client import ImisClient, ImisConfig
from include.imis_thrive.imis.tokens import MemoryTokenStore
from include.imis_thrive.thrive.client import ThriveClient, ThriveConfig
from sandbox.__main__ import build_sandboxes
from sandbox.airflow_settings import load_settings
from sandbox.imis_app import ImisSandbox
from sandbox.server import SandboxServer
from sandbox.thrive_app import ThriveSandbox


@dataclass
class SandboxPair:
    """The iMIS and Thrive sandboxes of airflow_settings.yaml, served on free ports, with a client for each."""

    imis_sandbox: ImisSandbox
    thrive_sandbox: ThriveSandbox
    imis: ImisClient
    thrive: ThriveClient


@contextmanager
def serve_pair(contacts: int = 300, seed: int = 3, broken_lists: bool = False, flavor: str | None = None,
               page_cap: int | None = None) -> Iterator[SandboxPair]:
    """`flavor` None: the suite's (`--imis-flavor` / $IMIS_SANDBOX_FLAVOR, else ems)."""
    imis_sandbox, thrive_sandbox = build_sandboxes(load_settings(), contacts=contacts, seed=seed,
                                                   broken_lists=broken_lists, flavor=flavor,  # type: ignore[arg-type]
                                                   page_cap=page_cap)
    retry = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=0.05)
    with SandboxServer(imis_sandbox.app) as imis_server, SandboxServer(thrive_sandbox.app) as thrive_server, \
            ImisClient(ImisConfig(base_url=imis_server.url, username="hl_integration",
                                  password="sandbox-imis-password", timezone="America/New_York", retry=retry),
                       token_store=MemoryTokenStore()) as imis, \
            ThriveClient(ThriveConfig(endpoint=f"{thrive_server.url}{thrive_sandbox.config.endpoint_path}",
                                      brand_id="7001", brand_name="Sandbox Association", user="hl_api_user",
                                      password="sandbox-thrive-password", poll_interval_s=0.01,
                                      status_email_recipients=["data-team@sandbox.invalid"], retry=retry)) as thrive:
        yield SandboxPair(imis_sandbox, thrive_sandbox, imis, thrive)
