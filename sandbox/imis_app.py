"""The iMIS sandbox: a real HTTP app speaking the iMIS REST wire format of `reference/imis-api.md`.

It serves the Higher Logic IQA package from deterministic seed data, issues and expires bearer tokens
the way iMIS does (a new token for a user kills that user's previous one), records activities without
ever deduplicating them, and can misbehave on request through `FaultMiddleware`.

Choices where the reference leaves a detail open, written down here once:
- an unknown IQA answers 404 with the HttpError body; `Limit` <= 0 means the default (100);
- a list not shared with Everyone answers `not_shared_status` (401 by default) when run, and its
  QueryDefinition `AccessId` is `PRIVATE_ACCESS_ID` instead of `EVERYONE_ACCESS_ID`;
- a prompt is matched by position against its filter's column, `eq` only, an empty value meaning no filter;
- usernames match case-insensitively, passwords exactly; nulls in IQA rows omit `Value`;
- activity filters on a property an activity lacks do not match it (except `ne`);
- QueryDefinition `DataTypeName` is the short name (`Int32`), value wrappers use `System.Int32`.

How it answers where real tenants were seen to differ from the tidy shapes a client is written for (issue 10):
- `/api/query` rows carry `ID` as a JSON integer and `System.Byte[]` columns as `{"$type","$value"}` wrappers
  inside otherwise flat rows; `/api/IQA` rows carry datetimes as plain strings, other types wrapped;
- `_execute` answers are EMS envelopes (`Result`, `StatusCode`, `IsCachedResult`, `ValidationResults`);
  a QueryDefinition's `Document` has `UpdateInfo`, criteria `Operation` is a number (`OPERATION_CODES`: only
  3 = Equal is seen in real answers, the others are this sandbox's guess), and a display property whose alias
  equals its source property has an empty `Alias` on every other column (the ID column among them);
- flavor `2017` (`IMIS_SANDBOX_FLAVOR=2017`, `--flavor 2017`) answers QueryDefinition with the bare definition
  at the top level (no `Result`, no `Document`, JSON `null` for an unknown path), property `Name` like
  `{GUID}.CL3` and the source in `Caption` (`CsContact.ID`) instead of `PropertyName`;
- activity rows carry their SEQN only in `Identity` and the party in `PrimaryParentIdentity`;
- request-body keys match case-insensitively (Json.NET's default), 400 bodies carry `$type` and `Warnings`;
- `page_cap` makes pages hold fewer rows than the `Limit` echoed back, as some instances do;
- `lying_page` makes the page at `lying_page_offset` (of every IQA, or only `lying_page_iqa`) lie about itself:
  `count` drops its last row but still says the full `Count`, `NextOffset` and `TotalCount`; `next_offset_zero`
  says `HasNext: true` with `NextOffset: 0` although pages follow; `next_offset_stuck` names its own offset as
  the next one; `not_json` is cut off halfway, as a proxy or a recycled app pool can leave an answer;
- `edge_dates` gives contacts .NET's date bounds (`9999-12-31T23:59:59` "never expires", `0001-01-01`), and
  the admin surface edits single values (`/contacts/edit`: null, repeated or non-numeric IDs, long text, emoji,
  control characters) and removes or renames a display column (`/columns/change`), as iMIS users do;
- an activity iMIS cannot take (`failing_activities`) answers 500 with the HttpError body and iMIS's generic
  "An error occurred. Please contact the administrator.", and stores nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate
from typing import Any, Literal
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.faults import ADMIN_PREFIX, FaultInjector, FaultMiddleware, Receive, Scope, Send
from sandbox.imis_package import (
    CONTACTS,
    CONTACTS_PATH,
    ID,
    MAILING_LISTS_FOLDER,
    PANEL_FIELDS_PATH,
    ROOT_FOLDER,
    ServedIqa,
    WireType,
)
from sandbox.imis_seed import ImisSeed, SeedError, SeedList, build_seed

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
FIRST_SEQN = 1_048_000
DENIED = "Authorization has been denied for this request."
CANNOT_TAKE = "An error occurred. Please contact the administrator."  # iMIS's 500 for a payload it cannot take
EVERYONE_ACCESS_ID = "b1fa5a3b-1d42-4a6b-8c1e-5f3b1e0e7e01"
PRIVATE_ACCESS_ID = "7c2d9e44-0a5e-4f0c-9b7a-2e6d3c1f8a90"

_CONTRACTS = "Asi.Contracts"
T_HTTP_ERROR = "System.Web.Http.HttpError, System.Web.Http"
T_IQA_PAGE = ("Asi.Soa.Core.DataContracts.PagedResult`1[[Asi.Soa.Core.DataContracts.GenericEntityData, "
              "Asi.Contracts]], Asi.Contracts")
T_IQA_ITEMS = ("System.Collections.Generic.List`1[[Asi.Soa.Core.DataContracts.GenericEntityData, "
               "Asi.Contracts]], mscorlib")
T_QUERY_PAGE = "Asi.Soa.Core.DataContracts.PagedResult, Asi.Contracts"
T_QUERY_ITEMS = "System.Collections.Generic.List`1[[System.Object, mscorlib]], mscorlib"
T_EXPANDO = "System.Dynamic.ExpandoObject, System.Core"
T_ENTITY = f"Asi.Soa.Core.DataContracts.GenericEntityData, {_CONTRACTS}"
T_PROPERTY = f"Asi.Soa.Core.DataContracts.GenericPropertyData, {_CONTRACTS}"
T_PROPERTIES = f"Asi.Soa.Core.DataContracts.GenericPropertyDataCollection, {_CONTRACTS}"
T_IDENTITY = f"Asi.Soa.Core.DataContracts.IdentityData, {_CONTRACTS}"
T_STRINGS = "System.Collections.ObjectModel.Collection`1[[System.String, mscorlib]], mscorlib"
T_SERVICE_RESPONSE = f"Asi.Soa.Core.DataContracts.ServiceResponse, {_CONTRACTS}"
T_VALIDATION_RESULTS = f"Asi.Soa.Core.DataContracts.ValidationResultsData, {_CONTRACTS}"

FLAVOR_ENV = "IMIS_SANDBOX_FLAVOR"
PageLie = Literal["count", "next_offset_zero", "next_offset_stuck", "not_json"]
Flavor = Literal["ems", "2017"]
# CriteriaData.Operation as a number; 3 = Equal is what real definitions showed, the rest is a guess.
OPERATION_CODES = {"Equal": 3, "NotEqual": 4, "LessThan": 5, "LessThanOrEqual": 6, "GreaterThan": 7,
                   "GreaterThanOrEqual": 8, "Contains": 9, "StartsWith": 10}


def default_flavor() -> Flavor:
    """The flavor a sandbox gets when none is given: `IMIS_SANDBOX_FLAVOR`, else `ems` (so one environment
    variable runs the whole test suite against iMIS 2017 answers)."""
    value = os.environ.get(FLAVOR_ENV, "ems").strip().lower() or "ems"
    if value not in ("ems", "2017"):
        raise ValueError(f"{FLAVOR_ENV}={value!r}: expected ems or 2017")
    return value  # type: ignore[return-value]


class ImisSandboxConfig(BaseModel):
    """How one sandbox instance behaves; the defaults mirror a stock iMIS 20.3 tenant."""

    users: dict[str, str] = Field(repr=False, description="username -> password of the application users")
    contacts: int = Field(500, ge=10, le=1_000_000)
    seed: int = 1
    broken_lists: bool = Field(False, description="Also serve lists that each break one list requirement")
    token_lifetime_s: int = Field(1199, ge=1)
    timezone: str = Field("America/New_York", description="The instance's local zone; wire datetimes are naive")
    path_prefix: str = Field("", description="Serve under this path, like on-prem `/Asi.Scheduler_X`")
    not_shared_status: int = Field(401, ge=400, le=499)
    flavor: Flavor = Field(default_factory=default_flavor,
                           description="ems = iMIS 20.3+/EMS answers, 2017 = iMIS 2017 QueryDefinition shapes")
    page_cap: int | None = Field(None, ge=1, description="At most this many rows a page, whatever Limit is echoed")
    failing_activities: list[str] = Field(default_factory=list, description=(
        "Answer HTTP 500 to every activity POST whose PartyId, or any property value (an event key), is one of "
        "these: real iMIS's answer to a payload it cannot take. Also set and cleared at /_sandbox/activities/failing"))
    lying_page: PageLie | None = Field(None, description=(
        "The page at lying_page_offset lies about itself (see the module docstring); also set at /_sandbox/pages/lie"))
    lying_page_offset: int = Field(0, ge=0, description="The offset of the page that lies")
    lying_page_iqa: str | None = Field(None, description="Only this IQA's page lies (a path); None: every IQA's")
    edge_dates: int = Field(0, ge=0, description=(
        "This many members never expire (MemberExpiresOn 9999-12-31T23:59:59) and as many contacts have the "
        "Birthday 0001-01-01: .NET's DateTime bounds, which iMIS users store for 'never' and 'no date'"))
    unreadable_lists: list[str] = Field(default_factory=list, description=(
        "Lists the folder still shows whose query definition is gone (deleted or moved after the folder was read): "
        "QueryDefinition answers not found for them, as iMIS does for any path it cannot resolve"))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("path_prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not value.startswith("/"):
            raise ValueError(f"path_prefix {value!r} must start with '/'")
        return value


class ImisWireError(Exception):
    """An answer other than 2xx, carried to the exception handler with its iMIS-shaped body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status, self.body = status, body


def _http_error(status: int, message: str) -> ImisWireError:
    """ASP.NET Web API's error shape, used by iMIS for 401, 404 and request errors."""
    return ImisWireError(status, {"$type": T_HTTP_ERROR, "Message": message})


def _validation_error(message: str) -> ImisWireError:
    """A 400 for a write iMIS refuses; clients read `Errors.$values[0].Message`."""
    return ImisWireError(400, _validation_results([message]))


def _validation_results(errors: list[str]) -> dict[str, Any]:
    """ValidationResultsData: `$type`, `Errors`, `Warnings` (always present, usually empty), `Summary`."""
    entries = [{"$type": f"Asi.Soa.Core.DataContracts.ValidationResultData, {_CONTRACTS}", "Message": message}
               for message in errors]
    return {"$type": T_VALIDATION_RESULTS, "Errors": _contract_list("ValidationResultData", entries),
            "Warnings": _contract_list("ValidationResultData", []),
            "Summary": None if not errors else {"$type": f"Asi.Soa.Core.DataContracts.ValidationResultData, "
                                                         f"{_CONTRACTS}", "Message": errors[0]}}


@dataclass
class _Token:
    user: str
    expires_at: float


@dataclass
class _Activity:
    seqn: int
    party_id: str
    properties: list[dict[str, Any]]  # as posted (wire form), PartyId first; the SEQN lives in Identity
    lookup: dict[str, Any]  # casefolded name -> unwrapped value, for filters


class ImisSandbox:
    """One emulated iMIS instance: `.app` to serve, `.faults` to misbehave, plain methods for the admin surface."""

    def __init__(self, config: ImisSandboxConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.faults = FaultInjector()
        self._clock = clock
        self._lock = threading.Lock()
        self._passwords = {user.casefold(): (user, password) for user, password in config.users.items()}
        self._failing_activities = set(config.failing_activities)
        self._page_lie = PageLieRequest(lie=config.lying_page, offset=config.lying_page_offset,
                                        iqa=config.lying_page_iqa)
        self.reset()
        self.app = _WireCompat(FaultMiddleware(self._build_api(), self.faults), config.path_prefix)

    # ---- admin surface (also served under /_sandbox) -------------------------------------------------

    def reset(self) -> None:
        """Back to the freshly seeded instance: data, tokens and activities."""
        seed = build_seed(self.config.contacts, self.config.seed, self.config.broken_lists, self.config.edge_dates)
        with self._lock:
            self.seed: ImisSeed = seed
            self._tokens: dict[str, _Token] = {}
            self._user_tokens: dict[str, str] = {}
            self.logins = 0  # tokens issued: how a test sees whether a client renewed before expiry
            self.issued_tokens: list[str] = []  # every bearer token handed out: what must never reach a log
            self.expired_refusals = 0  # requests refused because their token had expired
            self._activities: list[_Activity] = []
            self._next_seqn = FIRST_SEQN

    def mutate_contacts(self, count: int, seed: int) -> list[str]:
        """Edit a few mapped fields on `count` contacts, as staff would between two syncs."""
        with self._lock:
            return self.seed.mutate_contacts(count, seed)

    def move_list_members(self, list_name: str, count: int, seed: int) -> dict[str, list[str]]:
        """Add and remove up to `count` members of one list; the IDs `added` and `removed`."""
        with self._lock:
            return self.seed.move_list_members(list_name, count, seed)

    def mutate_panel(self, count: int, seed: int) -> dict[str, list[str]]:
        """Edit panel values on `count` contacts between two syncs; per changed ID, the columns changed."""
        with self._lock:
            return self.seed.mutate_panel(count, seed)

    def edit_contacts(self, edits: dict[str, dict[str, Any]]) -> list[str]:
        """Set single values on named contacts (`{ID: {alias: value}}`); see `ImisSeed.edit_contacts`."""
        with self._lock:
            return self.seed.edit_contacts(edits)

    def change_column(self, iqa: Literal["contacts", "panel"], alias: str, rename_to: str | None = None) -> list[str]:
        """Remove (or rename) a display column of the contacts or panel IQA; the IQA's aliases afterwards."""
        with self._lock:
            return list(self.seed.change_column(iqa, alias, rename_to).aliases)

    def lie_in_pages(self, lie: PageLie | None, offset: int = 0, iqa: str | None = None) -> dict[str, Any]:
        """From now on the page at `offset` (of `iqa`, or of every IQA) lies as `lie` says; None stops it."""
        with self._lock:
            self._page_lie = PageLieRequest(lie=lie, offset=offset, iqa=iqa)
            return self._page_lie.model_dump()

    def add_panel_column(self, name: str, data_type: WireType | str) -> dict[str, str]:
        """Simulate a customer extending the panel-field template by one display column."""
        with self._lock:
            column = self.seed.add_panel_column(name, data_type)
        return {"alias": column.alias, "data_type": column.data_type.value}

    def activities(self) -> list[dict[str, Any]]:
        """Every activity written so far, in SEQN order, with values unwrapped (what a test asserts on)."""
        with self._lock:
            return [{"SEQN": a.seqn, "PartyId": a.party_id,
                     "Properties": {p["Name"]: _unwrap(p.get("Value")) for p in a.properties}}
                    for a in self._activities]

    def fail_activities(self, matches: list[str]) -> list[str]:
        """From now on, answer 500 to activity POSTs for these contact IDs or carrying these values (event keys);
        an empty list clears the knob. Returns what is now matched."""
        with self._lock:
            self._failing_activities = {str(match) for match in matches}
            return sorted(self._failing_activities)

    def purge_tokens(self) -> int:
        """Kill every token, as an app-pool restart or "Purge System Cache" does; the number purged."""
        with self._lock:
            purged = len(self._tokens)
            self._tokens.clear()
            self._user_tokens.clear()
        return purged

    def summary(self) -> dict[str, Any]:
        """What a demo shows on `GET /_sandbox`: sizes and counts, never tokens or passwords."""
        with self._lock:
            seed = self.seed
            return {"contacts": seed.size, "seed": seed.seed, "active_tokens": len(self._tokens),
                    "activities": len(self._activities),
                    "lists": {name: len(item.members) for name, item in seed.lists.items()},
                    "panel_columns": list(seed.panel_definition.aliases)}

    # ---- tokens -----------------------------------------------------------------------------------

    def issue_token(self, form: dict[str, str]) -> dict[str, Any]:
        """Password grant; the user's previous token dies, as in iMIS, so workers must share one token."""
        if form.get("grant_type") != "password":
            raise ImisWireError(400, {"error": "unsupported_grant_type"})
        known = self._passwords.get(form.get("username", "").casefold())
        if known is None or not secrets.compare_digest(known[1], form.get("password", "")):
            raise ImisWireError(400, {"error": "invalid_grant",
                                      "error_description": "The user name or password is incorrect."})
        user, now = known[0], self._clock()
        token = secrets.token_urlsafe(96)
        with self._lock:
            previous = self._user_tokens.pop(user.casefold(), None)
            self._tokens.pop(previous or "", None)
            self._tokens[token] = _Token(user, now + self.config.token_lifetime_s)
            self._user_tokens[user.casefold()] = token
            self.logins += 1
            self.issued_tokens.append(token)
        return {"access_token": token, "token_type": "bearer", "expires_in": self.config.token_lifetime_s,
                "userName": user, ".issued": formatdate(now, usegmt=True),
                ".expires": formatdate(now + self.config.token_lifetime_s, usegmt=True)}

    def authorize(self, header: str | None) -> str:
        """The user a bearer header stands for; 401 with the HttpError body otherwise."""
        scheme, _, token = (header or "").partition(" ")
        with self._lock:
            held = self._tokens.get(token.strip()) if scheme.casefold() == "bearer" else None
            if held is not None and self._clock() >= held.expires_at:
                self._tokens.pop(token.strip(), None)
                self._user_tokens.pop(held.user.casefold(), None)
                self.expired_refusals += 1
                held = None
        if held is None:
            raise _http_error(401, DENIED)
        return held.user

    # ---- IQA ----------------------------------------------------------------------------------------

    def run_iqa(self, params: dict[str, list[str]], flat: bool) -> bytes:
        """One page of an IQA, as `/api/IQA` (GenericEntityData rows) or `/api/query` (flat rows)."""
        query_name = _single(params, "queryname")
        if not query_name:
            raise _http_error(400, "QueryName is required.")
        limit, offset = _paging(params)
        with self._lock:
            definition, rows, shared = self._resolve(query_name)
            if not shared:
                raise _http_error(self.config.not_shared_status, DENIED)
            rows = self._apply_prompts(definition, rows, params.get("parameter", []))
            page = rows[offset:offset + self._page_rows(limit)]
            columns = [(c.alias, c.data_type, _to_python(self.seed.column(c.alias, page), c.data_type))
                       for c in definition.columns]
            ids = self.seed.column(ID, page).tolist()
            lie = self._page_lie.lie if self._page_lie.applies(definition.path, offset) else None
        items = _flat_rows(columns) if flat else _entity_rows(definition, columns, ids, offset)
        return _paged(items, offset, limit, len(rows), flat, lie)

    def _page_rows(self, limit: int) -> int:
        """Rows a page holds: the effective `Limit`, or fewer with `page_cap` (the envelope still echoes `Limit`)."""
        return min(limit, self.config.page_cap or limit)

    def _resolve(self, query_name: str) -> tuple[ServedIqa, np.ndarray, bool]:
        key = query_name.casefold()
        if key == CONTACTS_PATH.casefold():
            return self.seed.contacts_definition, self.seed.all_rows, True
        if key == PANEL_FIELDS_PATH.casefold():
            return self.seed.panel_definition, self.seed.all_rows, True
        seed_list = self._list_at(key)
        if seed_list is None:
            raise _http_error(404, f"The query '{query_name}' was not found.")
        return seed_list.definition, seed_list.members, seed_list.shared_with_everyone

    def _list_at(self, casefolded_path: str) -> SeedList | None:
        for seed_list in self.seed.lists.values():
            if seed_list.definition.path.casefold() == casefolded_path:
                return seed_list
        return None

    def _apply_prompts(self, definition: ServedIqa, rows: np.ndarray, values: list[str]) -> np.ndarray:
        for prompt, value in zip(definition.prompts, values, strict=False):  # a prompt left out is not applied
            op, _, expected = value.partition(":") if ":" in value else ("eq", "", value)
            if op.casefold() not in ("eq", "=="):
                raise _http_error(400, f"In IQA query, parameters must be Parameter Equal (got {op!r} "
                                       f"for {prompt.property_name}).")
            if expected:
                rows = rows[self.seed.column(prompt.property_name, rows) == expected]
        return rows

    # ---- documents ----------------------------------------------------------------------------------

    def _documents(self) -> list[dict[str, Any]]:
        """Every folder and IQA document of the package, as DocumentSummaryData."""
        folders = [ROOT_FOLDER, CONTACTS_PATH.rsplit("/", 1)[0], MAILING_LISTS_FOLDER,
                   PANEL_FIELDS_PATH.rsplit("/", 1)[0]]
        lists = [seed_list.definition.path for seed_list in self.seed.lists.values()]
        queries = [CONTACTS_PATH, PANEL_FIELDS_PATH, *lists]
        return [_document_summary(path, "FOL") for path in folders] + [_document_summary(p, "IQD") for p in queries]

    def execute_document_summary(self, operation: str, parameters: list[Any]) -> dict[str, Any]:
        """`FindByPath` (one summary or null) and `FindDocumentsInFolder` (folder id, type ids, recursive)."""
        with self._lock:
            documents = self._documents()
        if operation == "findbypath" and parameters:
            path = str(parameters[0]).casefold()
            return _service_response(next((d for d in documents if d["Path"].casefold() == path), None))
        if operation == "finddocumentsinfolder" and parameters:
            folder_id = str(parameters[0]).casefold()
            folder = next((d["Path"].casefold() for d in documents if d["DocumentId"] == folder_id), None)
            types = {str(t).upper() for t in (parameters[1] if len(parameters) > 1 and parameters[1] else [])}
            found = [d for d in documents if d["FolderPath"].casefold() == folder
                     and (not types or d["DocumentTypeId"] in types)]
            return _service_response(_contract_list("DocumentSummaryData", found))
        raise _http_error(400, f"DocumentSummary does not support operation {operation!r} with "
                               f"{len(parameters)} parameter(s); use FindByPath or FindDocumentsInFolder.")

    def execute_query_definition(self, operation: str, parameters: list[Any]) -> dict[str, Any] | None:
        """`FindByPath`: the IqaQueryDefinitionData a list check reads (aliases, prompts, AccessId), or null."""
        if operation != "findbypath" or not parameters:
            raise _http_error(400, f"QueryDefinition does not support operation {operation!r}; use FindByPath.")
        with self._lock:
            try:
                definition, _, shared = self._resolve(str(parameters[0]))
            except ImisWireError:
                definition = None
            if definition is None or definition.name in self.config.unreadable_lists:
                return None if self.config.flavor == "2017" else _service_response(None)
        found = _query_definition(definition, shared, self.config.flavor)
        return found if self.config.flavor == "2017" else _service_response(found)

    # ---- activities and parties ---------------------------------------------------------------------

    def create_activity(self, body: Any) -> dict[str, Any]:
        """Insert one activity, as posted, under a new SEQN; iMIS has no idempotency, so neither has this."""
        if not isinstance(body, dict):
            raise _validation_error("The request body must be a GenericEntityData JSON object.")
        properties = [p for p in (body.get("Properties") or {}).get("$values", []) if isinstance(p, dict)]
        lookup = {str(p.get("Name", "")).casefold(): _unwrap(p.get("Value")) for p in properties}
        parent = ((body.get("PrimaryParentIdentity") or {}).get("IdentityElements") or {}).get("$values") or []
        party_id = str(lookup.get("partyid") or (parent[0] if parent else "") or "").strip()
        if not party_id:
            raise _validation_error("PartyId is required: set PrimaryParentIdentity or a PartyId property.")
        if not str(lookup.get("activity_type") or "").strip():
            raise _validation_error("ACTIVITY_TYPE is required.")
        if "transaction_date" not in lookup:
            local_now = datetime.fromtimestamp(self._clock(), self.zone).replace(tzinfo=None, microsecond=0)
            properties.append(_property("TRANSACTION_DATE", local_now.isoformat()))
            lookup["transaction_date"] = local_now.isoformat()
        with self._lock:
            if self.seed.row_of(party_id) is None:
                raise _validation_error(f"Party '{party_id}' does not exist.")
            if self._failing_activities and (party_id in self._failing_activities or any(
                    str(value) in self._failing_activities for value in lookup.values() if value is not None)):
                raise _http_error(500, CANNOT_TAKE)
            seqn = self._next_seqn
            self._next_seqn += 1
            kept = [p for p in properties if str(p.get("Name", "")).casefold() not in ("seqn", "partyid")]
            stored = [_property("PartyId", party_id), *kept]  # the SEQN is in `Identity` only, as in real rows
            activity = _Activity(seqn, party_id, stored, lookup | {"seqn": seqn, "partyid": party_id})
            self._activities.append(activity)
        return _activity_entity(activity)

    def find_activities(self, params: dict[str, list[str]]) -> bytes:
        """A page of activities matching every `Name=op:value` filter (PartyId included), in SEQN order."""
        limit, offset = _paging(params)
        filters = [(name, value) for name, values in params.items() if name not in ("limit", "offset")
                   for value in values]
        with self._lock:
            matching = [a for a in self._activities
                        if all(_matches(a.lookup.get(name), value) for name, value in filters)]
        page = [_encode_text(_activity_entity(a)) for a in matching[offset:offset + self._page_rows(limit)]]
        return _paged(page, offset, limit, len(matching), flat=False)

    def get_activity(self, seqn: str) -> dict[str, Any]:
        """One activity by SEQN; SEQNs are dense from FIRST_SEQN, so the position is the lookup."""
        position = int(seqn) - FIRST_SEQN if seqn.strip().isdigit() else -1
        with self._lock:
            found = self._activities[position] if 0 <= position < len(self._activities) else None
        if found is None:
            raise _http_error(404, f"Activity with SEQN '{seqn}' was not found.")
        return _activity_entity(found)

    def get_party(self, party_id: str) -> dict[str, Any]:
        """PersonData or OrganizationData for one contact, built from the same columns the IQAs serve."""
        with self._lock:
            row = self.seed.row_of(party_id.strip())
            if row is None:
                raise _http_error(404, f"Party '{party_id}' was not found.")
            contact = {alias: self.seed.contacts[alias][row] for alias in CONTACTS.aliases}
        return _party(contact)

    # ---- HTTP ---------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        app = FastAPI(title="iMIS sandbox", docs_url=f"{ADMIN_PREFIX}/docs", openapi_url=f"{ADMIN_PREFIX}/openapi.json",
                      redoc_url=None)

        @app.exception_handler(ImisWireError)
        async def wire_error(_: Request, error: ImisWireError) -> Response:
            return _json_response(error.body, error.status)

        @app.exception_handler(StarletteHTTPException)
        async def no_such_resource(request: Request, error: StarletteHTTPException) -> Response:
            message = f"No HTTP resource was found that matches the request URI '{request.url.path}'." \
                if error.status_code == 404 else str(error.detail)
            return _json_response({"$type": T_HTTP_ERROR, "Message": message}, error.status_code)

        @app.post("/token")
        async def token(request: Request) -> Response:
            form = {k.casefold(): v for k, v in parse_qsl((await request.body()).decode(), keep_blank_values=True)}
            return _json_response(self.issue_token(form), headers={"Cache-Control": "no-store"})

        @app.get("/api/iqa")
        async def iqa(request: Request) -> Response:
            self.authorize(request.headers.get("authorization"))
            return Response(self.run_iqa(_params(request), flat=False), media_type="application/json")

        @app.get("/api/query")
        async def query(request: Request) -> Response:
            self.authorize(request.headers.get("authorization"))
            return Response(self.run_iqa(_params(request), flat=True), media_type="application/json")

        @app.post("/api/documentsummary/_execute")
        async def document_summary(request: Request) -> Response:
            self.authorize(request.headers.get("authorization"))
            return _json_response(self.execute_document_summary(*await _execute_request(request)))

        @app.post("/api/querydefinition/_execute")
        async def query_definition(request: Request) -> Response:
            self.authorize(request.headers.get("authorization"))
            return _json_response(self.execute_query_definition(*await _execute_request(request)))

        @app.post("/api/activity")
        async def post_activity(request: Request) -> Response:
            self.authorize(request.headers.get("authorization"))
            entity = self.create_activity(await _json_body(request))
            seqn = entity["Identity"]["IdentityElements"]["$values"][0]
            return _json_response(entity, 201, {"Location": f"{self.config.path_prefix}/api/Activity/{seqn}"})

        @app.get("/api/activity")
        async def list_activities(request: Request) -> Response:
            self.authorize(request.headers.get("authorization"))
            return Response(self.find_activities(_params(request)), media_type="application/json")

        @app.get("/api/activity/{seqn}")
        async def get_activity(seqn: str, request: Request) -> Response:
            self.authorize(request.headers.get("authorization"))
            return _json_response(self.get_activity(seqn))

        @app.get("/api/party/{party_id}")
        async def get_party(party_id: str, request: Request) -> Response:
            self.authorize(request.headers.get("authorization"))
            return _json_response(self.get_party(party_id))

        app.include_router(self._admin_router())
        app.include_router(self.faults.router())
        return app

    def _admin_router(self) -> APIRouter:
        router = APIRouter(prefix=ADMIN_PREFIX, tags=["sandbox admin"])

        @router.get("")
        def show() -> dict[str, Any]:
            return self.summary()

        @router.post("/contacts/mutate")
        def mutate(request: MutateRequest) -> dict[str, Any]:
            return {"changed": self.mutate_contacts(request.count, request.seed)}

        @router.post("/lists/move")
        def move(request: MoveRequest) -> dict[str, Any]:
            try:
                return self.move_list_members(request.list_name, request.count, request.seed)
            except SeedError as error:
                raise _http_error(404, str(error)) from None

        @router.post("/panel/mutate")
        def mutate_panel(request: MutateRequest) -> dict[str, Any]:
            return {"changed": self.mutate_panel(request.count, request.seed)}

        @router.post("/panel/columns")
        def add_column(request: PanelColumnRequest) -> dict[str, str]:
            try:
                return self.add_panel_column(request.name, request.data_type)
            except SeedError as error:
                raise _http_error(400, str(error)) from None

        @router.get("/activities")
        def list_written() -> dict[str, Any]:
            return {"activities": self.activities()}

        @router.put("/activities/failing")
        def fail_activities(request: FailingActivitiesRequest) -> dict[str, list[str]]:
            return {"failing": self.fail_activities(request.matches)}

        @router.delete("/activities/failing")
        def clear_failing_activities() -> dict[str, list[str]]:
            return {"failing": self.fail_activities([])}

        @router.post("/contacts/edit")
        def edit(request: EditContactsRequest) -> dict[str, Any]:
            try:
                return {"edited": self.edit_contacts(request.edits)}
            except (SeedError, ValueError) as error:
                raise _http_error(400, str(error)) from None

        @router.post("/columns/change")
        def change_column(request: ChangeColumnRequest) -> dict[str, Any]:
            try:
                return {"aliases": self.change_column(request.iqa, request.alias, request.rename_to)}
            except SeedError as error:
                raise _http_error(400, str(error)) from None

        @router.put("/pages/lie")
        def lie(request: PageLieRequest) -> dict[str, Any]:
            return self.lie_in_pages(request.lie, request.offset, request.iqa)

        @router.delete("/pages/lie")
        def stop_lying() -> dict[str, Any]:
            return self.lie_in_pages(None)

        @router.post("/tokens/purge")
        def purge() -> dict[str, int]:
            return {"purged": self.purge_tokens()}

        @router.post("/reset")
        def reset() -> dict[str, Any]:
            self.reset()
            return self.summary()

        return router


class MutateRequest(BaseModel):
    count: int = Field(10, ge=0)
    seed: int = 0


class MoveRequest(BaseModel):
    list_name: str
    count: int = Field(5, ge=0)
    seed: int = 0


class FailingActivitiesRequest(BaseModel):
    matches: list[str] = Field(description="Contact IDs, or values an activity carries (event keys)")


class EditContactsRequest(BaseModel):
    edits: dict[str, dict[str, Any]] = Field(description="ID -> {alias: value}; datetimes as ISO text, null empties")


class ChangeColumnRequest(BaseModel):
    iqa: Literal["contacts", "panel"]
    alias: str
    rename_to: str | None = Field(None, description="The new alias; none removes the column")


class PageLieRequest(BaseModel):
    lie: PageLie | None = None
    offset: int = Field(0, ge=0)
    iqa: str | None = Field(None, description="An IQA path; none: every IQA")

    def applies(self, path: str, offset: int) -> bool:
        return self.lie is not None and offset == self.offset and (
            self.iqa is None or self.iqa.casefold() == path.casefold())


class PanelColumnRequest(BaseModel):
    name: str = Field(min_length=1)
    data_type: str = Field("System.String", description="System.String, System.Int32, System.Decimal, ...")


class _WireCompat:
    """Serve under the configured path prefix and match paths case-insensitively, as IIS does."""

    def __init__(self, app: FaultMiddleware, prefix: str) -> None:
        self.app, self.prefix = app, prefix.lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].lower()
        if self.prefix:
            if path != self.prefix and not path.startswith(self.prefix + "/"):
                body = _encode({"$type": T_HTTP_ERROR, "Message": f"No resource at {scope['path']}; "
                                                                  f"this instance lives under {self.prefix}."})
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
            path = path[len(self.prefix):] or "/"
        await self.app(dict(scope, path=path, raw_path=path.encode()), receive, send)


# ---- wire helpers (pure functions) -------------------------------------------------------------------

_text = json.encoder.encode_basestring  # a str as a JSON string literal, non-ASCII kept (C-accelerated)


def _encode_text(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _encode(body: Any) -> bytes:
    return _encode_text(body).encode()


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(body), status_code=status, headers=headers, media_type="application/json")


def _params(request: Request) -> dict[str, list[str]]:
    """Query parameters keyed by lower-cased name (iMIS matches names case-insensitively), repeats kept."""
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name.casefold(), []).append(value)
    return params


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _paging(params: dict[str, list[str]]) -> tuple[int, int]:
    """Effective `Limit` (default 100, capped at 500 silently) and `Offset` (default 0)."""
    numbers = {}
    for name in ("limit", "offset"):
        raw = (_single(params, name) or "").strip()
        try:
            numbers[name] = int(raw) if raw else 0
        except ValueError:
            raise _http_error(400, f"The value '{raw}' is not valid for {name.capitalize()}.") from None
    limit = numbers["limit"] if numbers["limit"] > 0 else DEFAULT_LIMIT
    return min(limit, MAX_LIMIT), max(numbers["offset"], 0)


def _paged(items: list[str], offset: int, limit: int, total: int, flat: bool, lie: PageLie | None = None) -> bytes:
    """A PagedResult envelope around already-encoded rows, keys in the order iMIS sends them; `lie` makes it
    contradict itself (the `lying_page` knob)."""
    count = len(items)
    has_next = offset + count < total
    next_offset = offset + count if has_next else 0
    if lie == "count":
        items = items[:-1]  # a row lost, the envelope unchanged
    elif lie == "next_offset_zero":
        has_next, next_offset = True, 0
    elif lie == "next_offset_stuck":
        has_next, next_offset = True, offset
    page_type, items_type = (T_QUERY_PAGE, T_QUERY_ITEMS) if flat else (T_IQA_PAGE, T_IQA_ITEMS)
    body = "".join((
        '{"$type":', _text(page_type), ',"Items":{"$type":', _text(items_type), ',"$values":[', ",".join(items),
        f']}},"Offset":{offset},"Limit":{limit},"Count":{count},"TotalCount":{total},"NextPageLink":null,'
        f'"HasNext":{"true" if has_next else "false"},"NextOffset":{next_offset}}}',
    )).encode()
    return body[:len(body) // 2] if lie == "not_json" else body


def _to_python(values: np.ndarray, data_type: WireType) -> list[Any]:
    """A column slice as Python values, None for iMIS nulls."""
    if data_type is WireType.DATETIME:
        return [None if text == "NaT" else text for text in np.datetime_as_string(values, unit="s").tolist()]
    if data_type is WireType.DECIMAL:
        return [None if number != number else number for number in values.tolist()]
    return values.tolist()


def _value_json(values: list[Any], data_type: WireType) -> list[str | None]:
    """Each value as a JSON literal (None stays None); strings escaped by the json module's C encoder."""
    if data_type is WireType.BOOLEAN:
        return [None if v is None else ("true" if v else "false") for v in values]
    if data_type is WireType.INT32:
        return [None if v is None else str(int(v)) for v in values]
    if data_type is WireType.DECIMAL:
        return [None if v is None else repr(float(v)) for v in values]
    return [None if v is None else _text(v) for v in values]


def _entity_rows(definition: ServedIqa, columns: list[tuple[str, WireType, list[Any]]],
                 ids: list[str], offset: int) -> list[str]:
    """IQA rows as GenericEntityData JSON: `ResultRow` first, typed wrappers (but datetimes as plain strings,
    as real tenants send them), no `Value` key for nulls.

    Rendered as text from per-column fragments: a 500-row page has ~13,000 property objects, and building
    them as dicts for `json.dumps` costs several times more (allocation and GC) than joining strings.
    """
    entity_type = _text(str(10 + zlib.crc32(definition.path.encode()) % 90))
    fragments = []
    for alias, data_type, values in columns:
        head = '{"$type":' + _text(T_PROPERTY) + ',"Name":' + _text(alias)
        null = head + "}"
        if data_type in (WireType.STRING, WireType.DATETIME):
            opening, closing = head + ',"Value":', "}"
        else:
            opening, closing = head + ',"Value":{"$type":' + _text(data_type.wrapper_type) + ',"$value":', "}}"
        fragments.append([null if v is None else opening + v + closing for v in _value_json(values, data_type)])
    row_head = '{"$type":' + _text(T_ENTITY) + ',"EntityTypeName":' + entity_type + \
        ',"PrimaryParentEntityTypeName":"Party","PrimaryParentIdentity":'
    properties_head = ',"Properties":{"$type":' + _text(T_PROPERTIES) + ',"$values":[{"$type":' + \
        _text(T_PROPERTY) + ',"Name":"ResultRow","Value":"'
    return [
        "".join((row_head, _encode_text(_identity("Party", contact_id)), properties_head, str(offset + i + 1), '"},',
                 ",".join(parts), "]}}"))
        for i, (contact_id, *parts) in enumerate(zip(ids, *fragments, strict=True))
    ]


def _flat_rows(columns: list[tuple[str, WireType, list[Any]]]) -> list[str]:
    """`/api/query` rows: one flat ExpandoObject per row, native JSON types, null for nulls; the iMIS ID as a
    JSON integer and `Byte[]` values wrapped, as real tenants send them."""
    fragments = []
    for alias, data_type, values in columns:
        key = _text(alias) + ":"
        if alias == ID:
            literals = [None if v is None else (v if v.isdigit() else _text(v)) for v in values]
        else:
            literals = _value_json(values, data_type)
        if data_type is WireType.BYTES:
            opening = '{"$type":' + _text(data_type.wrapper_type) + ',"$value":'
            literals = [None if v is None else opening + v + "}" for v in literals]
        fragments.append([key + ("null" if v is None else v) for v in literals])
    head = '{"$type":' + _text(T_EXPANDO) + ","
    return [head + ",".join(parts) + "}" for parts in zip(*fragments, strict=True)]


def _identity(entity: str, key: Any) -> dict[str, Any]:
    return {"$type": T_IDENTITY, "EntityTypeName": entity,
            "IdentityElements": {"$type": T_STRINGS, "$values": [str(key)]}}


def _property(name: str, value: Any) -> dict[str, Any]:
    return {"$type": T_PROPERTY, "Name": name, "Value": value}


def _unwrap(value: Any) -> Any:
    return value["$value"] if isinstance(value, dict) and "$value" in value else value


def _activity_entity(activity: _Activity) -> dict[str, Any]:
    return {"$type": T_ENTITY, "EntityTypeName": "Activity", "PrimaryParentEntityTypeName": "Party",
            "Identity": _identity("Activity", activity.seqn),
            "PrimaryParentIdentity": _identity("Party", activity.party_id),
            "Properties": {"$type": T_PROPERTIES, "$values": activity.properties}}


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "==": lambda a, b: a == b, "ne": lambda a, b: a != b, "!=": lambda a, b: a != b,
    "gt": lambda a, b: a > b, ">": lambda a, b: a > b, "ge": lambda a, b: a >= b, ">=": lambda a, b: a >= b,
    "lt": lambda a, b: a < b, "<": lambda a, b: a < b, "le": lambda a, b: a <= b, "<=": lambda a, b: a <= b,
    "contains": lambda a, b: str(b) in str(a), "startswith": lambda a, b: str(a).startswith(str(b)),
}


def _matches(actual: Any, expression: str) -> bool:
    """One `Name=op:value` filter (plain value means eq); numbers compare as numbers, text case-insensitively."""
    op, _, expected = expression.partition(":")
    if op.casefold() not in _OPERATORS:
        op, expected = "eq", expression
    compare = _OPERATORS[op.casefold()]
    if actual is None:
        return op.casefold() in ("ne", "!=")
    left, right = _comparable(actual), _comparable(expected)
    if type(left) is not type(right):
        left, right = str(actual).casefold(), expected.casefold()
    return compare(left, right)


def _comparable(value: Any) -> float | str:
    if isinstance(value, bool):
        return str(value).casefold()
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value).casefold()


# Data-contract member names a request body may spell in any case: Json.NET binds them case-insensitively and
# writes them back in this spelling.
_CONTRACT_KEYS = {name.casefold(): name for name in (
    "$type", "$values", "$value", "EntityTypeName", "PrimaryParentEntityTypeName", "PrimaryParentIdentity",
    "Identity", "IdentityElements", "Properties", "Name", "Value", "OperationName", "Parameters")}


def _canonical_keys(value: Any) -> Any:
    """A decoded request body with every known contract key in its canonical spelling, at any depth."""
    if isinstance(value, dict):
        return {_CONTRACT_KEYS.get(str(key).casefold(), key): _canonical_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical_keys(item) for item in value]
    return value


async def _json_body(request: Request) -> Any:
    try:
        return _canonical_keys(json.loads(await request.body() or b"null"))
    except ValueError:
        raise _validation_error("The request body is not valid JSON.") from None


async def _execute_request(request: Request) -> tuple[str, list[Any]]:
    """`OperationName` (lower-cased) and unwrapped `Parameters` of a GenericExecuteRequest."""
    body = await _json_body(request)
    if not isinstance(body, dict) or not body.get("OperationName"):
        raise _http_error(400, "The body must be a GenericExecuteRequest with an OperationName.")
    values = (body.get("Parameters") or {}).get("$values", [])
    parameters = [_unwrap(v) for v in values]
    parameters = [p["$values"] if isinstance(p, dict) and "$values" in p else p for p in parameters]
    return str(body["OperationName"]).casefold(), parameters


def _service_response(result: Any) -> dict[str, Any]:
    """The EMS `_execute` envelope. `StatusCode`'s real spelling is not known; clients should not read it."""
    return {"$type": T_SERVICE_RESPONSE, "Result": result, "StatusCode": "OK", "IsCachedResult": False,
            "ValidationResults": _validation_results([]), "IsSuccessStatusCode": True, "Message": None}


def _contract_list(contract: str, values: list[Any]) -> dict[str, Any]:
    return {"$type": f"System.Collections.Generic.List`1[[Asi.Soa.Core.DataContracts.{contract}, {_CONTRACTS}]], "
                     "mscorlib", "$values": values}


def _document_id(path: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"imis-sandbox:{path.casefold()}"))


def _document_summary(path: str, type_id: str) -> dict[str, Any]:
    folder, _, name = path.rpartition("/")
    return {"$type": f"Asi.Soa.Core.DataContracts.DocumentSummaryData, {_CONTRACTS}", "Description": "",
            "DocumentId": _document_id(path), "DocumentVersionId": _document_id(path + "#1"),
            "DocumentTypeId": type_id, "Name": name, "Path": path, "FolderPath": folder, "Status": "Published",
            "IsSystem": False, "IsFolder": type_id == "FOL"}


def _query_definition(definition: ServedIqa, shared: bool, flavor: Flavor) -> dict[str, Any]:
    """IqaQueryDefinitionData for one IQA: EMS (with `Document`, sent inside the `Result` envelope) or 2017
    (the bare definition, `Name` a GUID-based column id, the source property only in `Caption`)."""
    query_id = _document_id(definition.path)
    properties = []
    for order, c in enumerate(definition.columns, start=1):
        # "Some properties" have an empty Alias: here, every other one whose alias is its source property.
        alias = "" if c.alias == c.property_name and order % 2 == 1 else c.alias
        item = {"$type": f"Asi.Soa.Core.DataContracts.QueryPropertyData, {_CONTRACTS}", "QuerySourceId": c.source,
                "Alias": alias, "DisplayFormat": "", "DisplayOrder": order, "Link": "",
                "DataTypeName": c.data_type.short_name}
        if flavor == "2017":
            item |= {"Name": f"{{{query_id.upper()}}}.CL{order}", "Caption": f"{c.source}.{c.property_name}"}
        else:
            item |= {"Name": f"{c.source}.{c.property_name}", "PropertyName": c.property_name,
                     "Caption": c.alias}
        properties.append(item)
    parameters = [{"$type": f"Asi.Soa.Core.DataContracts.CriteriaData, {_CONTRACTS}", "PropertyName": f.property_name,
                   "Operation": OPERATION_CODES[f.operation],
                   "Values": {"$type": T_STRINGS, "$values": list(f.values)}}
                  | ({"Prompt": f.prompt} if f.prompt is not None else {})
                  for f in definition.filters]
    body: dict[str, Any] = {
        "$type": f"Asi.Soa.Core.DataContracts.IqaQueryDefinitionData, {_CONTRACTS}",
        "QueryDefinitionId": query_id,
        "Parameters": _contract_list("CriteriaData", parameters),
        "Properties": _contract_list("QueryPropertyData", properties),
        "Sources": _contract_list("QuerySourceData", [{
            "$type": f"Asi.Soa.Core.DataContracts.QuerySourceData, {_CONTRACTS}", "QuerySourceId": "CsContact",
            "QuerySourceType": 1, "Name": "CsContact", "BusinessControllerName": "CsContact"}]),
        "Relations": _contract_list("QueryRelationData", []), "LimitResultsCount": 0}
    if flavor == "2017":
        return body
    document = _document_summary(definition.path, "IQD") | {
        "$type": f"Asi.Soa.Core.DataContracts.DocumentData, {_CONTRACTS}",
        "AccessId": EVERYONE_ACCESS_ID if shared else PRIVATE_ACCESS_ID,
        "StatusUpdatedByUserId": "MANAGER", "StatusUpdatedOn": "2025-11-03T09:15:00",
        "UpdateInfo": {"$type": f"Asi.Soa.Core.DataContracts.EntityUpdateInformationData, {_CONTRACTS}",
                       "CreatedBy": "MANAGER", "CreatedOn": "2024-02-12T10:04:51.18",
                       "UpdatedBy": "MANAGER", "UpdatedOn": "2025-11-03T09:15:00.5"}}
    return {**body, "Document": document, "Path": definition.path}


def _party(contact: dict[str, Any]) -> dict[str, Any]:
    """GET /api/Party/{id}: PersonData or OrganizationData with the fields clients read."""
    is_org = bool(contact["IsOrganization"])
    party_id = contact[ID]
    name = contact["OrganizationName"] if is_org else f"{contact['FirstName']} {contact['LastName']}"
    email = contact["PrimaryEmailAddress"]
    party: dict[str, Any] = {
        "$type": f"Asi.Soa.Membership.DataContracts.{'OrganizationData' if is_org else 'PersonData'}, {_CONTRACTS}",
        "PartyId": party_id, "Id": party_id, "UniformId": str(uuid.uuid5(uuid.NAMESPACE_OID, party_id)),
        "Name": name, "Status": {"$type": f"Asi.Soa.Membership.DataContracts.PartyStatusData, {_CONTRACTS}",
                                 "PartyStatusId": contact["Status"]},
        "Emails": {"$type": f"Asi.Soa.Membership.DataContracts.EmailDataCollection, {_CONTRACTS}",
                   "$values": [] if email is None else [{"$type": f"Asi.Soa.Membership.DataContracts.EmailData, "
                                                                  f"{_CONTRACTS}", "Address": email,
                                                         "EmailType": "_Primary", "IsPrimary": True}]},
    }
    if is_org:
        party["OrganizationName"] = name
    else:
        party["PersonName"] = {"$type": f"Asi.Soa.Membership.DataContracts.PersonNameData, {_CONTRACTS}",
                               **{key: contact[key] for key in ("FirstName", "LastName", "MiddleName", "InformalName")
                                  if contact[key] is not None},
                               **({"NamePrefix": contact["Prefix"]} if contact["Prefix"] else {}),
                               **({"NameSuffix": contact["Suffix"]} if contact["Suffix"] else {})}
    return party

