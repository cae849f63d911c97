"""The client against the emulator's open alternatives that the default fixtures do not pick."""

from __future__ import annotations

import pytest

from include.imis_thrive.thrive.client import ThriveClient
from include.imis_thrive.thrive.grids import Grid
from include.imis_thrive.thrive.models import Subscriber
from sandbox.server import SandboxServer
from sandbox.thrive_app import ThriveSandbox, ThriveSandboxConfig
from tests.integration.thrive_fixtures import THRIVE_INTERESTS, THRIVE_PASSWORD, THRIVE_USER


@pytest.mark.parametrize("base", [0, 1])
def test_compressed_grid_requests_are_answered_compressed_and_page_exactly_once(thrive_config, base):
    sandbox = ThriveSandbox(ThriveSandboxConfig(users={THRIVE_USER: THRIVE_PASSWORD}, interests=THRIVE_INTERESTS,
                                                startrow_base=base, compression="on-request"))
    with SandboxServer(sandbox.app) as server, ThriveClient(thrive_config.model_copy(update={
            "endpoint": f"{server.url}{sandbox.config.endpoint_path}", "compress_grids": True})) as client:
        client.upsert_subscribers([Subscriber(str(n), f"m{n}@example.org") for n in range(1, 2501)])

        rows = list(client.iter_grid(Grid.SUBSCRIBER, "subscriber_id", return_fields=("subscriber_id", "user_id")))

        assert sorted(int(row["user_id"]) for row in rows) == list(range(1, 2501))
        assert client.count(Grid.SUBSCRIBER) == 2500
    assert sandbox.counters()["compressed"]["Grids"] >= 4
