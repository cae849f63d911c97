"""The iMIS sandbox over real HTTP: the wire format a client written against iMIS relies on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from include.imis_thrive.imis.iqa_package import (
    CONTACTS_IQA,
    MAILING_LISTS_FOLDER,
    PANEL_FIELDS_IQA_PATH,
    IqaDefinition,
    package_mismatches,
)
from sandbox.faults import FaultConfig
from sandbox.imis_app import DENIED, EVERYONE_ACCESS_ID, ImisSandbox, ImisSandboxConfig
from sandbox.server import SandboxServer

pytestmark = pytest.mark.integration

CONTACTS = CONTACTS_IQA.path
HTTP_ERROR = "System.Web.Http.HttpError, System.Web.Http"
IMIS_USER, IMIS_PASSWORD = "hl_integration", "sandbox-imis-password"  # what the `imis_sandbox` fixture configures


@pytest.fixture
def imis_sandbox() -> ImisSandbox:
    """This file pins the EMS answers (the 2017 ones have their own tests below), whatever IMIS_SANDBOX_FLAVOR."""
    return ImisSandbox(ImisSandboxConfig(users={IMIS_USER: IMIS_PASSWORD}, contacts=300, broken_lists=True,
                                         flavor="ems"))


@pytest.fixture
def http(imis_server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=imis_server.url, timeout=10) as client:
        yield client


@pytest.fixture
def authed(http: httpx.Client) -> httpx.Client:
    http.headers["Authorization"] = f"Bearer {_login(http)}"
    return http


def _login(http: httpx.Client, user: str = IMIS_USER, password: str = IMIS_PASSWORD) -> str:
    response = http.post("/token", data={"grant_type": "password", "username": user, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _iqa(http: httpx.Client, query_name: str, **params: Any) -> httpx.Response:
    return http.get("/api/IQA", params={"QueryName": query_name, **params})


def _properties(row: dict[str, Any]) -> list[dict[str, Any]]:
    return row["Properties"]["$values"]


def _execute(http: httpx.Client, entity: str, operation: str, *parameters: Any) -> dict[str, Any]:
    body = {"$type": "Asi.Soa.Core.DataContracts.GenericExecuteRequest, Asi.Contracts", "EntityTypeName": entity,
            "OperationName": operation,
            "Parameters": {"$type": "System.Collections.ObjectModel.Collection`1[[System.Object, mscorlib]], mscorlib",
                           "$values": list(parameters)}}
    response = http.post(f"/api/{entity}/_execute", json=body)
    assert response.status_code == 200, response.text
    return response.json()["Result"]


def _activity(party_id: str, activity_type: str | None = "HLOGIC", **properties: Any) -> dict[str, Any]:
    values = [{"$type": "Asi.Soa.Core.DataContracts.GenericPropertyData, Asi.Contracts", "Name": name, "Value": value}
              for name, value in ({"PartyId": party_id, "ACTIVITY_TYPE": activity_type} | properties).items()
              if value is not None]
    return {"$type": "Asi.Soa.Core.DataContracts.GenericEntityData, Asi.Contracts", "EntityTypeName": "Activity",
            "PrimaryParentEntityTypeName": "Party",
            "Properties": {"$type": "Asi.Soa.Core.DataContracts.GenericPropertyDataCollection, Asi.Contracts",
                           "$values": values}}


def _first_id(sandbox: ImisSandbox) -> str:
    return sandbox.seed.contacts["ID"][0]


# ---- tokens -------------------------------------------------------------------------------------------

def test_token_is_issued_with_the_owin_fields(http: httpx.Client) -> None:
    response = http.post("/token", data={"Grant_Type": "password", "UserName": IMIS_USER, "Password": IMIS_PASSWORD})

    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "bearer" and body["expires_in"] == 1199 and body["userName"] == IMIS_USER
    assert body[".issued"].endswith("GMT") and body[".expires"].endswith("GMT") and len(body["access_token"]) > 40


@pytest.mark.parametrize("form, error", [
    ({"grant_type": "password", "username": IMIS_USER, "password": "wrong"}, "invalid_grant"),
    ({"grant_type": "password", "username": "nobody", "password": IMIS_PASSWORD}, "invalid_grant"),
    ({"grant_type": "client_credentials", "username": IMIS_USER, "password": IMIS_PASSWORD}, "unsupported_grant_type"),
])
def test_bad_credentials_answer_400_with_an_oauth_error(http: httpx.Client, form: dict[str, str], error: str) -> None:
    response = http.post("/token", data=form)

    assert response.status_code == 400 and response.json()["error"] == error


def test_second_login_of_the_same_user_kills_the_first_token(http: httpx.Client) -> None:
    first, second = _login(http), _login(http)

    stale = http.get("/api/IQA", params={"QueryName": CONTACTS}, headers={"Authorization": f"Bearer {first}"})
    fresh = http.get("/api/IQA", params={"QueryName": CONTACTS}, headers={"Authorization": f"Bearer {second}"})

    assert stale.status_code == 401 and stale.json() == {"$type": HTTP_ERROR, "Message": DENIED}
    assert fresh.status_code == 200


def test_token_expires_after_its_lifetime() -> None:
    now = [1_000_000.0]
    sandbox = ImisSandbox(ImisSandboxConfig(users={"u": "p"}, contacts=10, token_lifetime_s=60), clock=lambda: now[0])
    with SandboxServer(sandbox.app) as server, httpx.Client(base_url=server.url) as http:
        token = http.post("/token", data={"grant_type": "password", "username": "u", "password": "p"}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        now[0] += 59
        assert http.get("/api/query", params={"QueryName": CONTACTS}, headers=headers).status_code == 200
        now[0] += 1
        expired = http.get("/api/query", params={"QueryName": CONTACTS}, headers=headers)

    assert token["expires_in"] == 60
    assert expired.status_code == 401 and expired.json()["Message"] == DENIED


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic aGw6cHc="])
def test_missing_or_unknown_token_answers_401_http_error(http: httpx.Client, header: str | None) -> None:
    response = http.get("/api/IQA", params={"QueryName": CONTACTS}, headers={"Authorization": header} if header else {})

    assert response.status_code == 401
    assert response.json() == {"$type": HTTP_ERROR, "Message": DENIED}


def test_purging_tokens_over_http_kills_every_session(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    purged = authed.post("/_sandbox/tokens/purge").json()

    assert purged == {"purged": 1}
    assert _iqa(authed, CONTACTS).status_code == 401


# ---- IQA paging and rows ----------------------------------------------------------------------------

def test_iqa_pages_with_the_exact_envelope(authed: httpx.Client) -> None:
    first = _iqa(authed, CONTACTS, Limit=200).json()
    last = _iqa(authed, CONTACTS, Limit=200, Offset=200).json()

    assert first["$type"].startswith("Asi.Soa.Core.DataContracts.PagedResult`1[[")
    assert first["Items"]["$type"].startswith("System.Collections.Generic.List`1[[")
    assert {k: first[k] for k in ("Offset", "Limit", "Count", "TotalCount", "NextPageLink", "HasNext", "NextOffset")} \
        == {"Offset": 0, "Limit": 200, "Count": 200, "TotalCount": 300, "NextPageLink": None, "HasNext": True,
            "NextOffset": 200}
    assert {k: last[k] for k in ("Offset", "Count", "HasNext", "NextOffset")} \
        == {"Offset": 200, "Count": 100, "HasNext": False, "NextOffset": 0}
    assert list(first) == ["$type", "Items", "Offset", "Limit", "Count", "TotalCount", "NextPageLink", "HasNext",
                           "NextOffset"]


@pytest.mark.parametrize("params, limit, count", [
    ({}, 100, 100), ({"Limit": 10_000}, 500, 300), ({"Limit": 0}, 100, 100), ({"Limit": 5}, 5, 5),
])
def test_limit_defaults_to_100_and_is_capped_at_500(authed: httpx.Client, params: dict[str, int], limit: int,
                                                    count: int) -> None:
    page = _iqa(authed, CONTACTS, **params).json()

    assert (page["Limit"], page["Count"]) == (limit, count)


def test_offset_past_the_end_is_an_empty_last_page(authed: httpx.Client) -> None:
    page = _iqa(authed, CONTACTS, Offset=999_999).json()

    assert page["Items"]["$values"] == [] and page["Count"] == 0 and page["TotalCount"] == 300
    assert page["HasNext"] is False and page["NextOffset"] == 0


def test_paging_visits_every_row_once(authed: httpx.Client) -> None:
    seen, offset = [], 0
    while True:
        page = _iqa(authed, CONTACTS, Limit=64, Offset=offset).json()
        seen += [_properties(row)[1]["Value"] for row in page["Items"]["$values"]]
        if not page["HasNext"]:
            break
        offset = page["NextOffset"]

    assert len(seen) == len(set(seen)) == 300 and seen == sorted(seen)


def test_iqa_rows_are_generic_entities_with_typed_wrappers(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    rows = _iqa(authed, CONTACTS, Limit=300).json()["Items"]["$values"]

    properties = _properties(rows[0])
    assert rows[0]["PrimaryParentEntityTypeName"] == "Party"
    assert rows[0]["PrimaryParentIdentity"]["IdentityElements"]["$values"] == [_first_id(imis_sandbox)]
    assert [p["Name"] for p in properties] == ["ResultRow", *CONTACTS_IQA.aliases]
    assert properties[0]["Value"] == "1" and _properties(rows[1])[0]["Value"] == "2"
    by_name = [{p["Name"]: p for p in _properties(row)} for row in rows]
    assert all(r["IsMember"]["Value"]["$type"] == "System.Boolean" for r in by_name)
    assert all(isinstance(r["FirstName"].get("Value", ""), str) for r in by_name)
    dated = [r["MemberSince"]["Value"] for r in by_name if "Value" in r["MemberSince"]]
    assert dated and all(isinstance(v, str) and len(v) == 19 for v in dated)  # real tenants: plain strings
    assert any("Value" not in r["Birthday"] for r in by_name)  # a null has no Value key at all


def test_panel_iqa_wraps_int_decimal_bool_and_datetime(authed: httpx.Client) -> None:
    rows = _iqa(authed, PANEL_FIELDS_IQA_PATH, Limit=50).json()["Items"]["$values"]

    types = {p["Name"]: p["Value"]["$type"] for row in rows for p in _properties(row)
             if isinstance(p.get("Value"), dict)}
    assert types == {"CommitteeCount": "System.Int32", "CEUCredits": "System.Decimal",
                     "VolunteerOptIn": "System.Boolean"}
    dates = [p["Value"] for row in rows for p in _properties(row) if p["Name"] == "LastEventDate" and "Value" in p]
    assert dates and all(isinstance(value, str) for value in dates)


def test_query_endpoint_returns_flat_rows_with_native_types(authed: httpx.Client) -> None:
    page = authed.get("/api/query", params={"QueryName": PANEL_FIELDS_IQA_PATH, "Limit": 100}).json()

    rows = page["Items"]["$values"]
    assert page["$type"] == "Asi.Soa.Core.DataContracts.PagedResult, Asi.Contracts"
    assert rows[0]["$type"] == "System.Dynamic.ExpandoObject, System.Core"
    assert list(rows[0]) == ["$type", "ID", "ChapterName", "CommitteeCount", "CEUCredits", "VolunteerOptIn",
                             "LastEventDate"]
    assert all(isinstance(r["CommitteeCount"], int) and isinstance(r["VolunteerOptIn"], bool) for r in rows)
    assert any(r["ChapterName"] is None for r in rows) and any(isinstance(r["CEUCredits"], float) for r in rows)


def test_paths_and_parameter_names_are_case_insensitive(authed: httpx.Client) -> None:
    page = authed.get("/API/iqa", params={"queryname": CONTACTS.lower(), "limit": 3, "OFFSET": 1}).json()

    assert (page["Offset"], page["Count"]) == (1, 3)


def test_unknown_query_is_404_with_the_http_error_body(authed: httpx.Client) -> None:
    response = _iqa(authed, "$/HigherLogic/MailingLists/Gala Dinner")

    assert response.status_code == 404
    assert response.json()["$type"] == HTTP_ERROR and "Gala Dinner" in response.json()["Message"]


def test_non_numeric_limit_names_the_parameter(authed: httpx.Client) -> None:
    response = _iqa(authed, CONTACTS, Limit="lots")

    assert response.status_code == 400 and "Limit" in response.json()["Message"]


# ---- lists, documents and definitions ------------------------------------------------------------------

def test_list_iqas_are_discovered_through_the_folder(authed: httpx.Client) -> None:
    path = {"$type": "System.String", "$value": MAILING_LISTS_FOLDER}
    folder = _execute(authed, "DocumentSummary", "FindByPath", path)
    documents = _execute(authed, "DocumentSummary", "FindDocumentsInFolder", folder["DocumentId"],
                         {"$type": "System.String[]", "$values": ["IQD"]}, {"$type": "System.Boolean", "$value": False})

    assert folder["DocumentTypeId"] == "FOL" and folder["Path"] == MAILING_LISTS_FOLDER
    names = {d["Name"] for d in documents["$values"]}
    assert {"All Members", "Newsletter", "Annual Conference 2026", "Lapsed Members", "Broken - Prompted",
            "Broken - No ID Alias", "Broken - Not Shared", "Broken - No Active Records"} == names
    assert all(d["DocumentTypeId"] == "IQD" and d["Path"] == f"{MAILING_LISTS_FOLDER}/{d['Name']}"
               for d in documents["$values"])


def test_find_by_path_of_a_missing_document_has_a_null_result(authed: httpx.Client) -> None:
    assert _execute(authed, "DocumentSummary", "FindByPath", "$/HigherLogic/Nowhere") is None
    assert _execute(authed, "QueryDefinition", "FindByPath", "$/HigherLogic/Nowhere") is None


def test_query_definitions_show_each_broken_requirement(authed: httpx.Client) -> None:
    def definition(name: str) -> dict[str, Any]:
        return _execute(authed, "QueryDefinition", "FindByPath", f"{MAILING_LISTS_FOLDER}/{name}")

    valid, prompted = definition("All Members"), definition("Broken - Prompted")
    no_id, not_shared = definition("Broken - No ID Alias"), definition("Broken - Not Shared")

    assert valid["Document"]["AccessId"] == EVERYONE_ACCESS_ID
    assert not IqaDefinition.from_query_definition({"Result": valid}).prompts
    assert [p["Prompt"] for p in prompted["Parameters"]["$values"]] == ["Required"]
    assert "ID" not in [p["Alias"] for p in no_id["Properties"]["$values"]]
    assert not_shared["Document"]["AccessId"] != EVERYONE_ACCESS_ID


def test_contacts_definition_matches_the_package(authed: httpx.Client) -> None:
    found = IqaDefinition.from_query_definition({"Result": _execute(authed, "QueryDefinition", "FindByPath", CONTACTS)})

    assert found.aliases == CONTACTS_IQA.aliases
    assert package_mismatches(CONTACTS_IQA, found) == []


def test_not_shared_list_is_denied_when_run(authed: httpx.Client) -> None:
    response = _iqa(authed, f"{MAILING_LISTS_FOLDER}/Broken - Not Shared")

    assert response.status_code == 401 and response.json() == {"$type": HTTP_ERROR, "Message": DENIED}


def test_prompted_list_filters_by_position(authed: httpx.Client) -> None:
    path = f"{MAILING_LISTS_FOLDER}/Broken - Prompted"
    unfiltered = _iqa(authed, path, Limit=500).json()
    active = authed.get("/api/query", params=[("QueryName", path), ("Parameter", "eq:A"), ("Limit", 500)]).json()

    assert 0 < active["TotalCount"] < unfiltered["TotalCount"]
    assert {row["Status"] for row in active["Items"]["$values"]} == {"A"}


def test_no_id_alias_list_returns_contact_key(authed: httpx.Client) -> None:
    rows = authed.get("/api/query", params={"QueryName": f"{MAILING_LISTS_FOLDER}/Broken - No ID Alias"}).json()

    assert list(rows["Items"]["$values"][0]) == ["$type", "ContactKey", "FullName", "Status"]


def test_no_active_record_list_has_only_inactive_rows(authed: httpx.Client) -> None:
    rows = authed.get("/api/query", params={"QueryName": f"{MAILING_LISTS_FOLDER}/Broken - No Active Records",
                                            "Limit": 500}).json()["Items"]["$values"]

    assert rows and {row["Status"] for row in rows} <= {"I", "S"}


# ---- activities and parties ----------------------------------------------------------------------------

def test_activity_post_assigns_increasing_seqn_and_never_dedupes(authed: httpx.Client,
                                                                 imis_sandbox: ImisSandbox) -> None:
    party = _first_id(imis_sandbox)
    body = _activity(party, UF_1="key-1", TRANSACTION_DATE="2026-03-04T09:30:00")

    first, second = authed.post("/api/Activity", json=body), authed.post("/api/Activity", json=body)

    assert first.status_code == second.status_code == 201
    seqns = [int(r.json()["Identity"]["IdentityElements"]["$values"][0]) for r in (first, second)]
    assert seqns[1] == seqns[0] + 1
    assert first.headers["Location"].endswith(f"/api/Activity/{seqns[0]}")
    echoed = {p["Name"]: p.get("Value") for p in _properties(first.json())}
    assert "SEQN" not in echoed and echoed["UF_1"] == "key-1"  # real rows carry the SEQN only in Identity
    assert [a["Properties"]["UF_1"] for a in imis_sandbox.activities()] == ["key-1", "key-1"]


def test_activity_party_can_come_from_the_parent_identity(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    body = _activity("", "HLOGIC") | {"PrimaryParentIdentity": {
        "$type": "Asi.Soa.Core.DataContracts.IdentityData, Asi.Contracts", "EntityTypeName": "Party",
        "IdentityElements": {"$values": [_first_id(imis_sandbox)]}}}

    response = authed.post("/api/Activity", json=body)

    assert response.status_code == 201
    assert imis_sandbox.activities()[0]["PartyId"] == _first_id(imis_sandbox)
    assert len(imis_sandbox.activities()[0]["Properties"]["TRANSACTION_DATE"]) == 19  # defaulted, naive local


@pytest.mark.parametrize("party, activity_type, message", [
    ("", "HLOGIC", "PartyId is required"),
    ("FIRST", None, "ACTIVITY_TYPE is required"),
    ("FIRST", "  ", "ACTIVITY_TYPE is required"),
    ("999", "HLOGIC", "Party '999' does not exist"),
])
def test_activity_post_400_names_the_problem(authed: httpx.Client, imis_sandbox: ImisSandbox, party: str,
                                             activity_type: str | None, message: str) -> None:
    party = _first_id(imis_sandbox) if party == "FIRST" else party

    response = authed.post("/api/Activity", json=_activity(party, activity_type))

    assert response.status_code == 400
    assert message in response.json()["Errors"]["$values"][0]["Message"]
    assert imis_sandbox.activities() == []


def test_activity_property_names_match_case_insensitively(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    body = _activity(_first_id(imis_sandbox), None, Activity_Type="HLOGIC")

    assert authed.post("/api/Activity", json=body).status_code == 201


def test_activity_get_filters_by_party_and_property(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    ids = imis_sandbox.seed.contacts["ID"]
    for party, key, units in ((ids[0], "k-1", 1), (ids[0], "k-2", 5), (ids[1], "k-3", 9)):
        body = _activity(party, UF_1=key, UNITS={"$type": "System.Decimal", "$value": units},
                         DESCRIPTION=f"Mail Open: Spring {key}")
        assert authed.post("/api/Activity", json=body).status_code == 201

    def keys(**params: Any) -> list[str]:
        page = authed.get("/api/Activity", params=params).json()
        return [{p["Name"]: p.get("Value") for p in _properties(row)}["UF_1"] for row in page["Items"]["$values"]]

    assert keys(PartyId=ids[0]) == ["k-1", "k-2"]
    assert keys(PartyID=f"eq:{ids[1]}") == ["k-3"]
    assert keys(PartyId=ids[0], uf_1="eq:K-2") == ["k-2"]
    assert keys(UNITS="gt:3") == ["k-2", "k-3"] and keys(UNITS="le:5") == ["k-1", "k-2"]
    assert keys(UF_1="ne:k-1") == ["k-2", "k-3"]
    assert keys(DESCRIPTION="contains:spring k-3") == ["k-3"]
    assert keys(DESCRIPTION="startsWith:mail") == ["k-1", "k-2", "k-3"]
    assert keys(NOTE="eq:x") == []
    paged = authed.get("/api/Activity", params={"Limit": 2, "Offset": 2}).json()
    assert (paged["Count"], paged["TotalCount"], paged["HasNext"], paged["NextOffset"]) == (1, 3, False, 0)


def test_activity_by_seqn_and_404(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    created = authed.post("/api/Activity", json=_activity(_first_id(imis_sandbox))).json()
    seqn = created["Identity"]["IdentityElements"]["$values"][0]

    assert authed.get(f"/api/Activity/{seqn}").json() == created
    missing = authed.get("/api/Activity/42")
    assert missing.status_code == 404 and missing.json()["$type"] == HTTP_ERROR


def test_party_by_id(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    frame = imis_sandbox.seed.contacts_frame()
    person = frame[~frame["IsOrganization"]].iloc[0]
    organisation = frame[frame["IsOrganization"]].iloc[0]

    party = authed.get(f"/api/Party/{person['ID']}").json()
    company = authed.get(f"/api/Party/{organisation['ID']}").json()

    assert party["$type"].startswith("Asi.Soa.Membership.DataContracts.PersonData")
    assert party["PartyId"] == party["Id"] == person["ID"]
    assert party["PersonName"]["FirstName"] == person["FirstName"]
    assert company["$type"].startswith("Asi.Soa.Membership.DataContracts.OrganizationData")
    assert company["Name"] == organisation["OrganizationName"]
    assert authed.get("/api/Party/1").status_code == 404


# ---- admin surface ---------------------------------------------------------------------------------

def test_admin_mutate_changes_what_the_iqa_returns(authed: httpx.Client) -> None:
    before = {str(r["ID"]): r for r in authed.get("/api/query", params={"QueryName": CONTACTS, "Limit": 500}).json()
              ["Items"]["$values"]}

    changed = authed.post("/_sandbox/contacts/mutate", json={"count": 7, "seed": 3}).json()["changed"]

    after = {str(r["ID"]): r for r in authed.get("/api/query", params={"QueryName": CONTACTS, "Limit": 500}).json()
             ["Items"]["$values"]}
    assert len(changed) == 7
    assert sorted(i for i in before if before[i] != after[i]) == sorted(changed)


def test_admin_move_changes_list_membership(authed: httpx.Client) -> None:
    path = f"{MAILING_LISTS_FOLDER}/Newsletter"

    def members() -> set[str]:
        page = authed.get("/api/query", params={"QueryName": path, "Limit": 500}).json()
        return {str(row["ID"]) for row in page["Items"]["$values"]}

    before = members()
    moved = authed.post("/_sandbox/lists/move", json={"list_name": "Newsletter", "count": 4, "seed": 1}).json()

    assert members() == (before - set(moved["removed"])) | set(moved["added"])
    unknown = authed.post("/_sandbox/lists/move", json={"list_name": "Gala", "count": 1})
    assert unknown.status_code == 404 and "Gala" in unknown.json()["Message"]


def test_admin_panel_column_shows_in_definition_and_rows(authed: httpx.Client) -> None:
    added = authed.post("/_sandbox/panel/columns", json={"name": "MentorLevel", "data_type": "System.Int32"})
    definition = _execute(authed, "QueryDefinition", "FindByPath", PANEL_FIELDS_IQA_PATH)
    page = authed.get("/api/query", params={"QueryName": PANEL_FIELDS_IQA_PATH, "Limit": 1}).json()

    assert added.json() == {"alias": "MentorLevel", "data_type": "System.Int32"}
    assert definition["Properties"]["$values"][-1]["PropertyName"] == "MentorLevel"
    assert definition["Properties"]["$values"][-1]["DataTypeName"] == "Int32"
    assert isinstance(page["Items"]["$values"][0]["MentorLevel"], int)


def test_admin_activities_and_reset(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    authed.post("/api/Activity", json=_activity(_first_id(imis_sandbox), UF_1="x"))

    written = authed.get("/_sandbox/activities").json()["activities"]
    summary = authed.post("/_sandbox/reset").json()

    assert [a["Properties"]["UF_1"] for a in written] == ["x"]
    assert summary["activities"] == 0 and summary["active_tokens"] == 0 and summary["contacts"] == 300


# ---- path prefix and faults ----------------------------------------------------------------------------

def test_everything_is_served_under_the_path_prefix() -> None:
    sandbox = ImisSandbox(ImisSandboxConfig(users={"u": "p"}, contacts=10, path_prefix="/Asi.Scheduler_X"))
    with SandboxServer(sandbox.app) as server, httpx.Client(base_url=f"{server.url}/Asi.Scheduler_X") as http:
        token = http.post("/token", data={"grant_type": "password", "username": "u", "password": "p"}).json()
        page = http.get("/api/query", params={"QueryName": CONTACTS},
                        headers={"Authorization": f"Bearer {token['access_token']}"})
        admin = http.get("/_sandbox")
        outside = httpx.post(f"{server.url}/token", data={"grant_type": "password", "username": "u", "password": "p"})

    assert page.status_code == 200 and page.json()["TotalCount"] == 10
    assert admin.json()["contacts"] == 10
    assert outside.status_code == 404


def test_fault_429_carries_retry_after_then_recovers(authed: httpx.Client) -> None:
    authed.put("/_sandbox/faults", json={"script": [429, 503], "retry_after_s": 7})

    throttled, unavailable, fine = _iqa(authed, CONTACTS), _iqa(authed, CONTACTS), _iqa(authed, CONTACTS)

    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "7"
    assert fine.status_code == 200
    assert authed.get("/_sandbox/faults").json()["injected"] == {"429": 1, "503": 1}


def test_fault_drop_closes_the_connection(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    imis_sandbox.faults.configure(FaultConfig(script=[0]))

    with pytest.raises(httpx.TransportError):
        _iqa(authed, CONTACTS)
    assert _iqa(authed, CONTACTS).status_code == 200


def test_fault_rates_are_reproducible_per_seed(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    def statuses() -> list[int]:
        imis_sandbox.faults.configure(FaultConfig(rate_500=0.5, seed=11))
        return [_iqa(authed, CONTACTS, Limit=1).status_code for _ in range(20)]

    first = statuses()

    assert set(first) == {200, 500} and statuses() == first


# ---- answers as real tenants give them (issue 10) ---------------------------------------------------------

def test_execute_answers_are_ems_envelopes_and_definitions_carry_update_info(authed: httpx.Client) -> None:
    body = {"$type": "Asi.Soa.Core.DataContracts.GenericExecuteRequest, Asi.Contracts",
            "EntityTypeName": "QueryDefinition", "OperationName": "FindByPath",
            "Parameters": {"$values": [{"$type": "System.String", "$value": f"{MAILING_LISTS_FOLDER}/All Members"}]}}
    answer = authed.post("/api/QueryDefinition/_execute", json=body).json()

    assert {"Result", "StatusCode", "IsCachedResult", "ValidationResults"} <= answer.keys()
    assert answer["IsCachedResult"] is False and answer["ValidationResults"]["Errors"]["$values"] == []
    definition = answer["Result"]
    assert definition["Document"]["UpdateInfo"]["UpdatedBy"] == "MANAGER"
    properties = definition["Properties"]["$values"]
    assert properties[0]["Alias"] == "" and properties[0]["PropertyName"] == "ID"  # an empty Alias
    assert properties[0]["Name"] == "CsContact.ID"
    assert [c["Operation"] for c in definition["Parameters"]["$values"]] == [3, 3]  # numeric: 3 = Equal


def test_the_2017_flavor_answers_a_bare_definition_with_guid_names_and_captions() -> None:
    sandbox = ImisSandbox(ImisSandboxConfig(users={IMIS_USER: IMIS_PASSWORD}, contacts=10, flavor="2017"))
    with SandboxServer(sandbox.app) as server, httpx.Client(base_url=server.url) as http:
        http.headers["Authorization"] = f"Bearer {_login(http)}"
        body = {"OperationName": "FindByPath", "Parameters": {"$values": [CONTACTS]}}
        definition = http.post("/api/QueryDefinition/_execute", json=body).json()
        missing = http.post("/api/QueryDefinition/_execute",
                            json={"OperationName": "FindByPath", "Parameters": {"$values": ["$/Nowhere"]}})

    assert "Result" not in definition and "Document" not in definition
    first, email = definition["Properties"]["$values"][0], definition["Properties"]["$values"][19]
    assert first["Name"].startswith("{") and first["Name"].endswith("}.CL1") and "PropertyName" not in first
    assert (first["Caption"], first["Alias"]) == ("CsContact.ID", "")
    assert (email["Caption"], email["Alias"]) == ("CsContact.Email", "PrimaryEmailAddress")
    assert missing.status_code == 200 and missing.json() is None


def test_request_body_keys_match_case_insensitively(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    body = {"$type": "Asi.Soa.Core.DataContracts.GenericEntityData, Asi.Contracts", "entityTypeName": "Activity",
            "primaryParentIdentity": {"identityElements": {"$values": [_first_id(imis_sandbox)]}},
            "properties": {"$values": [{"name": "ACTIVITY_TYPE", "value": "HLOGIC"}, {"NAME": "UF_1", "VALUE": "k"}]}}
    response = authed.post("/api/Activity", json=body)

    assert response.status_code == 201, response.text
    assert imis_sandbox.activities()[-1]["Properties"] == {"PartyId": _first_id(imis_sandbox),
                                                           "ACTIVITY_TYPE": "HLOGIC", "UF_1": "k",
                                                           "TRANSACTION_DATE": imis_sandbox.activities()[-1]
                                                           ["Properties"]["TRANSACTION_DATE"]}
    folder = authed.post("/api/DocumentSummary/_execute",
                         json={"operationname": "FindByPath", "parameters": {"$VALUES": [MAILING_LISTS_FOLDER]}})
    assert folder.json()["Result"]["Path"] == MAILING_LISTS_FOLDER


def test_a_refused_write_answers_400_with_type_errors_and_warnings(authed: httpx.Client) -> None:
    response = authed.post("/api/Activity", json=_activity("999"))

    body = response.json()
    assert response.status_code == 400
    assert body["$type"].startswith("Asi.Soa.Core.DataContracts.ValidationResultsData")
    assert body["Warnings"]["$values"] == []
    assert body["Errors"]["$values"][0]["Message"] == "Party '999' does not exist."


def test_activity_rows_carry_seqn_only_in_identity(authed: httpx.Client, imis_sandbox: ImisSandbox) -> None:
    party = _first_id(imis_sandbox)
    authed.post("/api/Activity", json=_activity(party, UF_1="only-identity"))
    [row] = authed.get("/api/Activity", params={"PartyId": party}).json()["Items"]["$values"]

    assert "SEQN" not in {p["Name"] for p in _properties(row)}
    assert row["Identity"]["IdentityElements"]["$values"] == [str(imis_sandbox.activities()[0]["SEQN"])]
    assert row["PrimaryParentIdentity"]["IdentityElements"]["$values"] == [party]


def test_query_rows_send_an_integer_id_and_byte_array_wrappers(authed: httpx.Client) -> None:
    rows = authed.get("/api/query", params={"QueryName": f"{MAILING_LISTS_FOLDER}/Annual Conference 2026",
                                            "Limit": 5}).json()["Items"]["$values"]

    assert all(isinstance(row["ID"], int) for row in rows)
    assert all(row["TimeStamp"]["$type"] == "System.Byte[], mscorlib" and len(row["TimeStamp"]["$value"]) == 12
               for row in rows)


def test_page_cap_serves_fewer_rows_than_the_echoed_limit() -> None:
    sandbox = ImisSandbox(ImisSandboxConfig(users={IMIS_USER: IMIS_PASSWORD}, contacts=250, page_cap=100))
    with SandboxServer(sandbox.app) as server, httpx.Client(base_url=server.url) as http:
        http.headers["Authorization"] = f"Bearer {_login(http)}"
        page = _iqa(http, CONTACTS, Limit=500).json()

    assert (page["Limit"], page["Count"], page["HasNext"], page["NextOffset"]) == (500, 100, True, 100)
