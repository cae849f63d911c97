"""Thrive sandbox fixtures: a fresh brand per test, served over real HTTP on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from include.imis_thrive.http_retry import RetryPolicy
from include.imis_thrive.thrive.client import ThriveClient, ThriveConfig
from sandbox.server import SandboxServer
from sandbox.thrive_app import ThriveSandbox, ThriveSandboxConfig

THRIVE_USER = "hl_api_user"
THRIVE_PASSWORD = "sandbox-thrive-password"
THRIVE_INTERESTS = ["Newsletter", "Annual Conference", "Board & Committees"]


@pytest.fixture
def thrive_sandbox() -> ThriveSandbox:
    """A brand with three interests, the newsletter used by an active campaign, no subscribers yet."""
    return ThriveSandbox(ThriveSandboxConfig(
        users={THRIVE_USER: THRIVE_PASSWORD}, interests=THRIVE_INTERESTS, campaign_interests=["Newsletter"],
    ))


@pytest.fixture
def thrive_server(thrive_sandbox: ThriveSandbox) -> Iterator[SandboxServer]:
    with SandboxServer(thrive_sandbox.app, port=0) as server:
        yield server


@pytest.fixture
def thrive_config(thrive_server: SandboxServer, thrive_sandbox: ThriveSandbox) -> ThriveConfig:
    """Client settings for the served sandbox: fast polling and millisecond backoff keep faulty runs quick."""
    return ThriveConfig(
        endpoint=f"{thrive_server.url}{thrive_sandbox.config.endpoint_path}",
        brand_id=thrive_sandbox.config.brand_id, brand_name=thrive_sandbox.config.brand_name,
        user=THRIVE_USER, password=THRIVE_PASSWORD, poll_interval_s=0.01, poll_timeout_s=10, timeout_s=5,
        status_email_recipients=["data-team@sandbox.invalid"],
        retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=1),
    )


@pytest.fixture
def thrive_client(thrive_config: ThriveConfig) -> Iterator[ThriveClient]:
    with ThriveClient(thrive_config) as client:
        yield client
