"""The iMIS sandbox's knob for an activity iMIS can never take: HTTP 500 with iMIS's generic message, every time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.imis_app import CANNOT_TAKE, ImisSandbox, ImisSandboxConfig
from sandbox.server import SandboxServer

pytestmark = pytest.mark.integration

USERS = {"hl_integration": "sandbox-imis-password"}


def _activity(party_id: str, key: str) -> dict[str, Any]:
    values = [{"$type": "Asi.Soa.Core.DataContracts.GenericPropertyData, Asi.Contracts", "Name": name, "Value": value}
              for name, value in {"PartyId": party_id, "ACTIVITY_TYPE": "HLOGIC", "UF_1": key}.items()]
    return {"$type": "Asi.Soa.Core.DataContracts.GenericEntityData, Asi.Contracts", "EntityTypeName": "Activity",
            "Properties": {"$type": "Asi.Soa.Core.DataContracts.GenericPropertyDataCollection, Asi.Contracts",
                           "$values": values}}


def _serve(sandbox: ImisSandbox) -> Iterator[httpx.Client]:
    with SandboxServer(sandbox.app, port=0) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        token = http.post("/token", data={"grant_type": "password", "username": "hl_integration",
                                          "password": USERS["hl_integration"]}).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


@pytest.fixture
def sandbox() -> ImisSandbox:
    return ImisSandbox(ImisSandboxConfig(users=USERS, contacts=50))


@pytest.fixture
def http(sandbox: ImisSandbox) -> Iterator[httpx.Client]:
    yield from _serve(sandbox)


def test_an_event_key_set_over_http_fails_only_that_activity_until_cleared(http, sandbox) -> None:
    party = sandbox.seed.contacts["ID"][0]
    assert http.put("/_sandbox/activities/failing", json={"matches": ["HL1-poison"]}).json() == {
        "failing": ["HL1-poison"]}

    refused = [http.post("/api/Activity", json=_activity(party, "HL1-poison")) for _ in range(3)]
    fine = http.post("/api/Activity", json=_activity(party, "HL1-fine"))

    assert [r.status_code for r in refused] == [500, 500, 500]
    assert refused[0].json() == {"$type": "System.Web.Http.HttpError, System.Web.Http", "Message": CANNOT_TAKE}
    assert CANNOT_TAKE == "An error occurred. Please contact the administrator."
    assert fine.status_code == 201
    assert [a["Properties"]["UF_1"] for a in sandbox.activities()] == ["HL1-fine"]  # a 500 stores nothing

    assert http.delete("/_sandbox/activities/failing").json() == {"failing": []}
    assert http.post("/api/Activity", json=_activity(party, "HL1-poison")).status_code == 201


def test_a_contact_named_in_the_config_fails_all_its_activities() -> None:
    probe = ImisSandbox(ImisSandboxConfig(users=USERS, contacts=50))
    bad, good = probe.seed.contacts["ID"][:2]
    sandbox = ImisSandbox(ImisSandboxConfig(users=USERS, contacts=50, failing_activities=[bad]))
    for http in _serve(sandbox):
        assert http.post("/api/Activity", json=_activity(bad, "HL1-a")).status_code == 500
        assert http.post("/api/Activity", json=_activity(bad, "HL1-b")).status_code == 500
        assert http.post("/api/Activity", json=_activity(good, "HL1-c")).status_code == 201
    assert [a["PartyId"] for a in sandbox.activities()] == [good]
