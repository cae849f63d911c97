"""The iMIS entity codec: `GenericEntityData` (`{"$type", "Properties": {"$values": [...]}}`), identities,
`_execute` requests and their `ServiceResponse` answers, encoded and decoded in one place (reference §3, §9)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from include.imis_thrive.imis.errors import ImisRequestError, ImisUnexpectedAnswer

_ENTITY = "Asi.Soa.Core.DataContracts.{}, Asi.Contracts"
_STRING_COLLECTION = "System.Collections.ObjectModel.Collection`1[[System.String, mscorlib]], mscorlib"
_OBJECT_COLLECTION = "System.Collections.ObjectModel.Collection`1[[System.Object, mscorlib]], mscorlib"


@dataclass(frozen=True)
class DocumentSummary:
    document_id: str
    document_type: str
    path: str
    name: str
    status: str | None = None

    @classmethod
    def from_entity(cls, data: Mapping[str, Any]) -> DocumentSummary:
        return cls(document_id=str(data.get("DocumentId", "")), document_type=str(data.get("DocumentTypeId", "")),
                   path=str(data.get("Path", "")), name=str(data.get("Name", "")), status=data.get("Status"))


def typed_string(value: str) -> dict[str, str]:
    return {"$type": "System.String", "$value": value}


def execute_request(entity: str, operation: str, parameters: list[Any]) -> dict[str, Any]:
    """The `GenericExecuteRequest` body of `POST /api/{entity}/_execute`."""
    return {
        "$type": _ENTITY.format("GenericExecuteRequest"),
        "EntityTypeName": entity,
        "OperationName": operation,
        "Parameters": {"$type": _OBJECT_COLLECTION, "$values": parameters},
    }


def execute_result(payload: Any, what: str) -> Any:
    """The `Result` of an `_execute` answer: EMS wraps it in a ServiceResponse (`Result`, `StatusCode`,
    `IsCachedResult`, `ValidationResults`); iMIS 2017 returns the result itself (an object, or null when
    nothing matched). An envelope reporting failure is an error naming the call."""
    if payload is None or not isinstance(payload, Mapping):
        return payload
    if "Result" not in payload:
        return payload  # 2017: the bare result
    errors = validation_messages(payload.get("ValidationResults"))
    if payload.get("IsSuccessStatusCode") is False or errors:
        detail = "; ".join(errors) or str(payload.get("Message") or payload.get("StatusCode") or "no detail")
        raise ImisRequestError(f"{what}: iMIS reported failure: {detail}", 200)
    return payload["Result"]


def validation_messages(results: Any) -> list[str]:
    """The messages of a `ValidationResults.Errors` collection (in a ServiceResponse or an error body)."""
    errors = results.get("Errors") if isinstance(results, Mapping) else None
    values = errors.get("$values") if isinstance(errors, Mapping) else None
    return [str(e.get("Message") or e) for e in values or () if isinstance(e, Mapping)]


def activity_entity(party_id: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """The `GenericEntityData` body of reference §3.1, party in both places iMIS versions look for it."""
    identity = {"$type": _ENTITY.format("IdentityData"), "EntityTypeName": "Party",
                "IdentityElements": {"$type": _STRING_COLLECTION, "$values": [str(party_id)]}}
    props = [{"$type": _ENTITY.format("GenericPropertyData"), "Name": "PartyId", "Value": str(party_id)}]
    props += [{"$type": _ENTITY.format("GenericPropertyData"), "Name": name, "Value": value}
              for name, value in properties.items() if name.lower() != "partyid"]
    return {"$type": _ENTITY.format("GenericEntityData"), "EntityTypeName": "Activity",
            "PrimaryParentEntityTypeName": "Party", "PrimaryParentIdentity": identity,
            "Properties": {"$type": _ENTITY.format("GenericPropertyDataCollection"), "$values": props}}


def entity_identity(entity: Mapping[str, Any]) -> str:
    """The SEQN of a posted activity: `Identity.IdentityElements.$values[0]` (reference §3.1)."""
    seqn = identity_element(entity, "Identity")
    if seqn is None:
        seqn = flatten_entity(entity).get("SEQN")
    if seqn is None or str(seqn).strip() == "":
        raise ImisUnexpectedAnswer("iMIS accepted the activity but its answer carries no Identity (SEQN); "
                                   f"keys of the answer: {', '.join(sorted(map(str, entity)))}")
    return str(seqn)


def identity_element(entity: Mapping[str, Any], field: str) -> str | None:
    """`entity[field].IdentityElements.$values[0]` as text, or None when the entity has no such identity."""
    identity = entity.get(field)
    elements = identity.get("IdentityElements") if isinstance(identity, Mapping) else None
    values = elements.get("$values") if isinstance(elements, Mapping) else None
    return str(values[0]) if isinstance(values, list) and values and values[0] is not None else None


def activity_row(entity: Mapping[str, Any], what: str = "activity") -> dict[str, Any]:
    """An Activity `GenericEntityData` as `{property: value}` plus `SEQN` and `PartyId`.

    Real rows carry the SEQN only in `Identity.IdentityElements` and the party in `PrimaryParentIdentity`, not
    as properties (reference §3.4); a property of the same name is used only when the identity is absent. A row
    with no SEQN anywhere is an answer the client does not know, not an activity without a key."""
    row = flatten_entity(entity)
    seqn = identity_element(entity, "Identity")
    if seqn is None and row.get("SEQN") is not None:
        seqn = str(row["SEQN"])
    if seqn is None:
        raise ImisUnexpectedAnswer(f"{what}: an Activity row without Identity (SEQN); keys: "
                                   f"{', '.join(sorted(map(str, entity)))}")
    party = identity_element(entity, "PrimaryParentIdentity")
    row["SEQN"] = seqn
    if party is not None:
        row["PartyId"] = party
    return row


def flatten_entity(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A `GenericEntityData` as `{property: value}`, wrappers unwrapped."""
    flat: dict[str, Any] = {}
    for prop in (entity.get("Properties") or {}).get("$values", []):
        value = prop.get("Value")
        flat[prop.get("Name")] = value.get("$value") if isinstance(value, Mapping) and "$value" in value else value
    return flat
