"""The iMIS entity codec: activity bodies, identities, flattened rows and `_execute` answers."""

import pytest

from include.imis_thrive.imis.entities import (
    DocumentSummary,
    activity_entity,
    activity_row,
    entity_identity,
    execute_request,
    execute_result,
    flatten_entity,
)
from include.imis_thrive.imis.errors import ImisRequestError, ImisUnexpectedAnswer


def _entity(properties: dict, seqn: str | None = None, party: str | None = None) -> dict:
    entity = {"$type": "GenericEntityData", "Properties": {"$values": [
        {"Name": name, "Value": value} for name, value in properties.items()]}}
    if seqn is not None:
        entity["Identity"] = {"IdentityElements": {"$values": [seqn]}}
    if party is not None:
        entity["PrimaryParentIdentity"] = {"IdentityElements": {"$values": [party]}}
    return entity


def test_activity_body_carries_the_party_in_both_places():
    body = activity_entity("23456", {"ACTIVITY_TYPE": "HLOGIC", "UF_1": "key"})
    assert body["PrimaryParentIdentity"]["IdentityElements"]["$values"] == ["23456"]
    names = [p["Name"] for p in body["Properties"]["$values"]]
    assert names == ["PartyId", "ACTIVITY_TYPE", "UF_1"]


def test_flattening_unwraps_typed_values():
    entity = _entity({"UNITS": {"$type": "System.Decimal", "$value": 2.5}, "NOTE": "x", "EMPTY": None})
    assert flatten_entity(entity) == {"UNITS": 2.5, "NOTE": "x", "EMPTY": None}


def test_an_activity_row_takes_seqn_and_party_from_the_identities_not_the_properties():
    row = activity_row(_entity({"SEQN": "stale", "PartyId": "stale", "UF_1": "k"}, seqn="77", party="101"))
    assert (row["SEQN"], row["PartyId"], row["UF_1"]) == ("77", "101", "k")


def test_an_activity_row_without_any_seqn_is_an_unexpected_answer_naming_the_call():
    with pytest.raises(ImisUnexpectedAnswer, match="activities by key: an Activity row without Identity"):
        activity_row(_entity({"UF_1": "k"}), "activities by key")


def test_a_posted_activitys_seqn_comes_from_its_identity_or_else_its_property():
    assert entity_identity(_entity({}, seqn="12")) == "12"
    assert entity_identity(_entity({"SEQN": 13})) == "13"
    with pytest.raises(ImisUnexpectedAnswer, match="carries no Identity"):
        entity_identity(_entity({}))


def test_execute_answers_bare_or_wrapped_and_a_reported_failure_names_the_call():
    assert execute_result({"DocumentId": "d"}, "t") == {"DocumentId": "d"}  # iMIS 2017: the bare result
    assert execute_result({"Result": None, "IsSuccessStatusCode": True}, "t") is None
    failed = {"Result": None, "ValidationResults": {"Errors": {"$values": [{"Message": "path is invalid"}]}}}
    with pytest.raises(ImisRequestError, match="document \\$/X: iMIS reported failure: path is invalid"):
        execute_result(failed, "document $/X")


def test_an_execute_request_names_entity_operation_and_parameters():
    body = execute_request("DocumentSummary", "FindByPath", ["$/X"])
    assert (body["EntityTypeName"], body["OperationName"], body["Parameters"]["$values"]) == \
        ("DocumentSummary", "FindByPath", ["$/X"])


def test_a_document_summary_reads_its_entity():
    summary = DocumentSummary.from_entity({"DocumentId": 7, "DocumentTypeId": "IQD", "Path": "$/L/A", "Name": "A"})
    assert summary == DocumentSummary("7", "IQD", "$/L/A", "A", None)
