"""Shared fixtures for integration tests: real sandbox servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.imis_app import ImisSandbox, ImisSandboxConfig, default_flavor
from sandbox.server import SandboxServer
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

