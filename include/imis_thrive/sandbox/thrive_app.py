"""The Thrive sandbox: a SOAP 1.1 `PostInformzMessage` endpoint over an in-memory brand, plus an admin surface.

It speaks the wire format `include/imis_thrive/thrive/wire.py` documents: credentials checked inside every
document, `InformzAAPIFault` SOAP faults with the vendor's codes, grids with conditions, sorting and
1,000-row pages, `Subscribe`, asynchronous `BulkUpload` (its status in `upload_history`) and `Optout`.
Tests and `make sandbox` drive it over HTTP; the admin routes under `/_sandbox/...` (and the same methods
on `ThriveSandbox`) inspect and reset it, generate engagement and switch faults on.
"""

from __future__ import annotations

import csv
import io
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
from fastapi import APIRouter, Body, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, Field

from include.imis_thrive.airflow_settings import ConnectionSetting
from include.imis_thrive.sandbox.faults import ADMIN_PREFIX, FaultConfig, FaultInjector, FaultMiddleware
from include.imis_thrive.sandbox.thrive_engagement import generate_engagement
from include.imis_thrive.sandbox.thrive_store import (
    ConditionSpec,
    SandboxFault,
    SandboxInterest,
    ThriveStore,
    UploadRow,
)
from include.imis_thrive.thrive import wire
from include.imis_thrive.thrive.errors import ThriveProtocolError
from include.imis_thrive.thrive.wire import (
    FaultCode,
    Grid,
    InterestAction,
    child,
    child_text,
    children,
    local_name,
    nested,
)

_SUBSCRIBE_ACTIONS = frozenset({InterestAction.ADD_OR_UPDATE, InterestAction.REPLACE_ALL})
_FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gus", "Hana", "Ivan", "José")
_LAST_NAMES = ("Abbott", "Brown", "Chen", "Dubois", "Evans", "Fischer", "García", "Haddad", "Ito", "Jones")


class ThriveSandboxConfig(BaseModel):
    """One sandbox brand: its credentials, its interests and how it behaves."""

    brand_id: str = "7001"
    brand_name: str = "Sandbox Association"
    users: dict[str, str] = Field(default_factory=lambda: {"hl_api_user": "sandbox-thrive-password"})
    seed: int = 0
    endpoint_path: str = "/aapi/InformzService.svc"
    interests: list[str] = Field(default_factory=list, description="Interests (target groups) the brand starts with")
    campaign_interests: list[str] = Field(default_factory=list, description="Those used by an active campaign")
    seed_subscribers: int = Field(0, ge=0, le=1_000_000, description="Subscribers the brand starts with")
    upload_polls: int = Field(1, ge=0, description="upload_history polls that still show an upload as Processing")
    now: datetime | None = Field(None, description="Pin the sandbox clock (aware); None follows the wall clock")

    @classmethod
    def from_connection(cls, connection: ConnectionSetting, **overrides: Any) -> ThriveSandboxConfig:
        """The sandbox that answers the `thrive_default` connection of airflow_settings.yaml."""
        extra = connection.conn_extra
        settings: dict[str, Any] = {
            "brand_id": str(extra["brand_id"]),
            "brand_name": str(extra.get("brand_name") or cls.model_fields["brand_name"].default),
            "users": {connection.conn_login or "": connection.conn_password or ""},
            "endpoint_path": connection.url_path() or cls.model_fields["endpoint_path"].default,
        }
        return cls(**{**settings, **overrides})


class EngagementRequest(BaseModel):
    start: datetime
    end: datetime
    volume: int = Field(1000, ge=1, le=1_000_000)
    seed: int | None = None
    interests: list[str] = Field(default_factory=list)


class ThriveSandbox:
    """The emulator: `.app` is the ASGI app (faults outermost), `.faults` switches them, the rest inspects."""

    def __init__(self, config: ThriveSandboxConfig | None = None) -> None:
        self.config = config or ThriveSandboxConfig()
        self.faults = FaultInjector(FaultConfig(seed=self.config.seed))
        self._lock = threading.RLock()
        self.reset()
        self.app = FaultMiddleware(self._build_app(), self.faults)

    def _now(self) -> datetime:
        return self.config.now or datetime.now(UTC)

    # --- the admin surface, as Python ---------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the configured starting brand: interests, seeded subscribers, no events, zero counters."""
        with self._lock:
            self.store = ThriveStore(self._now)
            self._counters: dict[str, Counter[str]] = {
                name: Counter() for name in ("requests", "actions", "grids", "records_written", "faults")
            }
            for name in self.config.interests:
                self.store.add_interest(name)
            if self.config.campaign_interests:
                self.store.set_campaign_interests(self.config.campaign_interests)
            self._seed_subscribers(self.config.seed_subscribers)

    def _seed_subscribers(self, count: int) -> None:
        rng = np.random.default_rng(self.config.seed)
        first = rng.integers(0, len(_FIRST_NAMES), count)
        last = rng.integers(0, len(_LAST_NAMES), count)
        for index in range(count):
            contact_id = str(100_001 + index)
            self.store.upsert(UploadRow(f"member{contact_id}@example.org", contact_id, {
                "FirstName": _FIRST_NAMES[first[index]], "LastName": _LAST_NAMES[last[index]],
            }), ())

    def counters(self) -> dict[str, dict[str, int]]:
        """Calls and records seen: `actions` / `grids` per name, `records_written` per action, `faults` per code."""
        with self._lock:
            return {name: dict(counter) for name, counter in self._counters.items()}

    def subscribers(self) -> list[dict[str, object]]:
        with self._lock:
            return [subscriber.as_dict() for subscriber in self.store.subscribers.values()]

    def subscriber(self, contact_id: str) -> dict[str, object] | None:
        with self._lock:
            found = self.store.find(contact_id, None)
            return found.as_dict() | {"interests": self._interests_of(found.subscriber_id)} if found else None

    def _interests_of(self, subscriber_id: int) -> list[str]:
        return sorted(interest.name for interest in self.store.interests.values()
                      if subscriber_id in self.store.members[interest.interest_id])

    def interests(self) -> list[dict[str, object]]:
        with self._lock:
            return [{"interest_id": i.interest_id, "name": i.name, "in_active_campaign": i.in_active_campaign,
                     "members": len(self.store.members[i.interest_id])} for i in self.store.interests.values()]

    def interest_members(self, name: str) -> list[str | None]:
        """Contact IDs (remote IDs) of the interest's members, by subscriber id."""
        with self._lock:
            return [subscriber.user_id for subscriber in self.store.interest_members(name)]

    def add_interest(self, name: str, in_active_campaign: bool = False) -> None:
        with self._lock:
            self.store.add_interest(name, in_active_campaign)

    def set_campaign_interests(self, names: list[str]) -> None:
        with self._lock:
            self.store.set_campaign_interests(names)

    def generate_engagement(self, start: datetime, end: datetime, volume: int = 1000, seed: int | None = None,
                            interests: list[str] | None = None) -> dict[str, int]:
        """Mail the subscribed members of `interests` (default: campaign interests, else everyone) and
        record what follows; returns how many events of each kind were made."""
        with self._lock:
            chosen = ([self.store.interest(name) for name in interests] if interests else
                      [i for i in self.store.interests.values() if i.in_active_campaign and not i.is_deleted])
            generated = generate_engagement(
                self.store.subscribed_recipients(chosen), start, end, volume,
                self.config.seed if seed is None else seed, first_mailing_id=self.store.next_mailing_id(),
                target_group_id=chosen[0].interest_id if chosen else None,
            )
            self.store.apply_engagement(generated)
            return {kind.value: count for kind, count in generated.counts().items()}

    # --- SOAP ---------------------------------------------------------------------------------------------
    def handle(self, body: bytes) -> tuple[int, bytes]:
        """One `PostInformzMessage` call: (HTTP status, SOAP envelope)."""
        with self._lock:
            self._counters["requests"]["PostInformzMessage"] += 1
            try:
                document = self._document(body)
                self._check_credentials(document)
                kind = local_name(document.tag)
                reply = (self._grid_request(document) if kind == "GridRequest"
                         else ET.tostring(self._action_request(document), encoding="unicode"))
            except SandboxFault as fault:
                self._counters["faults"][fault.code.value] += 1
                return 500, wire.fault_envelope(fault.code.value, fault.reason)
            text = '<?xml version="1.0" encoding="utf-16"?>' + reply
            return 200, wire.response_envelope(text.replace("\r", "&#13;"))

    def _document(self, body: bytes) -> ET.Element:
        try:
            soap_body = wire.parse_envelope(body, "request")
            document = wire.parse_document(
                wire.soap_argument(soap_body, wire.OPERATION, wire.ARGUMENT, "request"), "request")
        except ThriveProtocolError as error:
            raise SandboxFault(FaultCode.INVALID_DOCUMENT, f"The message is not a valid document: {error}") from error
        if not document.tag.startswith(f"{{{wire.NAMESPACE}}}"):
            raise SandboxFault(FaultCode.NO_NAMESPACE, f"The document must use the namespace {wire.NAMESPACE}")
        if local_name(document.tag) not in ("GridRequest", "ActionRequest"):
            raise SandboxFault(FaultCode.UNKNOWN_REQUEST, f"Unknown request <{local_name(document.tag)}>")
        return document

    def _check_credentials(self, document: ET.Element) -> None:
        brand = child(document, "Brand")
        user = child_text(document, "User") or ""
        password = child_text(document, "Password")
        if brand is None or brand.get("id") != self.config.brand_id or self.config.users.get(user) != password:
            raise SandboxFault(FaultCode.INVALID_CREDENTIALS, "The brand id, user or password is not valid")

    def _reply(self, name: str) -> ET.Element:
        root = ET.Element(name, xmlns=wire.NAMESPACE)
        ET.SubElement(root, "Brand", id=self.config.brand_id).text = self.config.brand_name
        ET.SubElement(root, "User")
        return root

    # --- grids --------------------------------------------------------------------------------------------
    def _grid_request(self, document: ET.Element) -> str:
        """The GridResponse as text: building 1,000-row pages with ElementTree costs more than the query."""
        grids = "".join(self._answer_grid(request) for request in nested(document, "Grids", "Grid"))
        return (f'<GridResponse xmlns="{wire.NAMESPACE}"><Brand id="{_attr(self.config.brand_id)}">'
                f"{escape(self.config.brand_name)}</Brand><User/><Grids>{grids}</Grids></GridResponse>")

    def _answer_grid(self, request: ET.Element) -> str:
        token = request.get("type") or ""
        try:
            grid = Grid(token.lower())
        except ValueError:
            raise SandboxFault(FaultCode.INVALID_GRID, f"Grid type '{token}' is not a known grid") from None
        self._counters["grids"][grid.value] += 1
        return_fields = [element.text or "" for element in nested(request, "ReturnFields", "DataElement")]
        sort = child(request, "SortField")
        start_row = _integer(child_text(request, "StartRow") or "0", "StartRow")
        rows = _integer(child_text(request, "NumberOfRows") or str(wire.MAX_GRID_ROWS), "NumberOfRows")
        if start_row < 0 or not 0 < rows <= wire.MAX_GRID_ROWS:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"StartRow must be >= 0 and NumberOfRows "
                                                              f"1..{wire.MAX_GRID_ROWS} (got {start_row}, {rows})")
        if grid is Grid.UPLOAD_HISTORY:
            self.store.advance_uploads()
        conditions = [_condition(item) for item in nested(request, "Conditions", "Condition")]
        matched = self.store.query(grid, conditions, (sort.text or "").strip() if sort is not None else None,
                                   sort is not None and (sort.get("order") or "asc").lower() == "desc")
        if [name.lower() for name in return_fields] == ["count"]:
            records = _records_xml(0, ["count"], [[str(len(matched))]])
        else:
            names = return_fields or list(wire.GRID_ELEMENTS[grid])
            canonical = {element.lower(): element for element in wire.GRID_ELEMENTS[grid]}
            for name in names:
                if name.lower() not in matched.columns:
                    raise SandboxFault(FaultCode.UNEXPECTED_INPUT, f"grid '{token}' has no data element '{name}'")
            page = matched.iloc[start_row:start_row + rows]
            columns = [[_render(value) for value in page[name.lower()].tolist()] for name in names]
            records = _records_xml(start_row + 1, [canonical.get(name.lower(), name) for name in names], columns)
        return f'<Grid type="{_attr(token)}">{records}</Grid>' if records else f'<Grid type="{_attr(token)}"/>'

    # --- actions ------------------------------------------------------------------------------------------
    def _action_request(self, document: ET.Element) -> ET.Element:
        reply = self._reply("ActionResponse")
        responses = ET.SubElement(reply, "Responses")
        actions = child(document, "Actions")
        if actions is None or len(actions) == 0:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, "The ActionRequest holds no <Actions>")
        handlers = {"subscribe": self._subscribe, "bulkupload": self._bulk_upload, "optout": self._optout}
        for action in actions:
            name = local_name(action.tag)
            handler = handlers.get(name.lower())
            if handler is None:
                raise SandboxFault(FaultCode.UNKNOWN_ACTION, f"Unknown action '{name}'")
            self._counters["actions"][name] += 1
            responses.append(handler(action))
        return reply

    def _interest_details(self, action: ET.Element, allowed: frozenset[InterestAction] | None = None
                          ) -> tuple[InterestAction, list[SandboxInterest]]:
        details = child(action, "InterestDetails")
        if details is None:
            return InterestAction.ADD_OR_UPDATE, []
        names = [item.text or "" for item in nested(details, "InterestNames", "InterestName")]
        text = (child_text(details, "InterestAction") or InterestAction.ADD_OR_UPDATE.value).strip()
        try:
            interest_action = InterestAction(text)
        except ValueError:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"Unknown InterestAction '{text}'") from None
        if allowed is not None and interest_action not in allowed:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT,
                               f"InterestAction '{text}' is not allowed in <{local_name(action.tag)}>")
        return interest_action, [self.store.interest(name) for name in names]

    def _subscribe(self, action: ET.Element) -> ET.Element:
        interest_action, interests = self._interest_details(action, _SUBSCRIBE_ACTIONS)
        data = child(action, "SubscriberData")
        records = nested(data, "Subscribers", "Subscriber") if data is not None else []
        if not records:
            raise SandboxFault(FaultCode.INSUFFICIENT_DATA, "Subscribe holds no <Subscriber>")
        if len(records) > wire.MAX_SUBSCRIBE:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT,
                               f"Subscribe takes at most {wire.MAX_SUBSCRIBE} subscribers ({len(records)} sent); "
                               "use BulkUpload")
        defined = {name.lower(): name for name in _defined_fields(data)}
        rows = [_subscribe_row(record, defined) for record in records]
        self._counters["records_written"]["Subscribe"] += len(rows)
        outcomes = [self.store.upsert(row, interests) for row in rows]
        if interest_action is InterestAction.REPLACE_ALL:
            self.store.replace_members(interests, rows)
        response = ET.Element("Subscribe")
        ET.SubElement(response, "NewSubscriberCount").text = str(sum(o.status == "created" for o in outcomes))
        ET.SubElement(response, "PreviousSubscriberCount").text = str(sum(o.status != "created" for o in outcomes))
        _action_status(response, f"{len(outcomes)} subscribers processed.")
        results = ET.SubElement(response, wire.SUBSCRIBER_RESULTS)
        for outcome in outcomes:
            result = ET.SubElement(results, wire.SUBSCRIBER_RESULT)
            ET.SubElement(result, "Email").text = outcome.email
            ET.SubElement(result, "ID").text = outcome.user_id
            ET.SubElement(result, "Status").text = outcome.status
            if outcome.reason:
                ET.SubElement(result, "Reason").text = outcome.reason
        return response

    def _bulk_upload(self, action: ET.Element) -> ET.Element:
        # The vendor samples' layout: InterestDetails and StatusEmailRecipients inside UploadDetails,
        # FieldDefinitions and Data directly under BulkUpload, ColumnIndex from 1, flags 1/0.
        details = child(action, "UploadDetails")
        if details is None or child(action, "SubscriberData") is not None or child(action, "InterestDetails") is not None:
            raise SandboxFault(FaultCode.INVALID_DOCUMENT, "BulkUpload wants UploadDetails (with InterestDetails and "
                               "StatusEmailRecipients), FieldDefinitions and Data; there is no SubscriberData")
        if not [item for item in nested(details, "StatusEmailRecipients", "Email") if (item.text or "").strip()]:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, "BulkUpload needs StatusEmailRecipients/Email")
        interest_action, interests = self._interest_details(details)
        if interest_action is InterestAction.REMOVE and not interests:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, "RemoveSubscribers needs <InterestNames>")
        delimiter = child_text(details, "ColumnDelimiter") or ","
        clear_blank = (child_text(details, "RemovePersonalInfoIfBlank") or "").strip() == "1"
        columns = _bulk_columns(action)
        rows = [_bulk_row(values, number, columns, clear_blank)
                for number, values in enumerate(_bulk_rows(child_text(action, "Data") or "", delimiter), 1)]
        self._counters["records_written"]["BulkUpload"] += len(rows)
        upload = self.store.queue_upload(interest_action, interests, rows, self.config.upload_polls)
        response = ET.Element("BulkUpload")
        ET.SubElement(response, "UploadID").text = str(upload.upload_id)
        _action_status(response, f"Upload {upload.upload_id} queued with {len(rows)} rows.")
        return response

    def _optout(self, action: ET.Element) -> ET.Element:
        names = [item.text or "" for item in nested(action, "InterestNames", "InterestName")]
        if not names:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, "Optout needs <InterestNames>")
        interests = [self.store.interest(name) for name in names]
        records = nested(action, "Subscribers", "Subscriber")
        if not any(child_text(record, "Email") for record in records):
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, "Optout needs at least one <Email>")
        for record in records:
            row = UploadRow(child_text(record, "Email") or "", _id_of(record), {})
            for interest in interests:
                self.store.remove_member(interest, row)
        self._counters["records_written"]["Optout"] += len(records)
        response = ET.Element("Optout")
        ET.SubElement(response, "Count").text = str(len(records))
        _action_status(response, f"{len(records)} subscribers processed.")
        return response

    # --- HTTP ---------------------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Thrive Marketing Professional sandbox (Informz AAPI)", docs_url=f"{ADMIN_PREFIX}/docs",
                      openapi_url=f"{ADMIN_PREFIX}/openapi.json", redoc_url=None)

        @app.post(self.config.endpoint_path)
        async def post_informz_message(request: Request) -> Response:
            status, content = self.handle(await request.body())
            return Response(content, status_code=status, media_type=wire.CONTENT_TYPE)

        app.include_router(self.faults.router())
        app.include_router(self._admin_router())
        return app

    def _admin_router(self) -> APIRouter:
        router = APIRouter(prefix=ADMIN_PREFIX, tags=["sandbox admin"])

        @router.get("/subscribers")
        def list_subscribers() -> list[dict[str, object]]:
            return self.subscribers()

        @router.get("/subscribers/{contact_id}")
        def get_subscriber(contact_id: str) -> dict[str, object]:
            found = self.subscriber(contact_id)
            if found is None:
                raise HTTPException(404, f"no subscriber with contact ID {contact_id}")
            return found

        @router.get("/interests")
        def list_interests() -> list[dict[str, object]]:
            return self.interests()

        @router.put("/interests/{name}")
        def put_interest(name: str, in_active_campaign: bool = False) -> dict[str, str]:
            self.add_interest(name, in_active_campaign)
            return {"interest": name}

        @router.get("/interests/{name}/members")
        def get_members(name: str) -> list[str | None]:
            try:
                return self.interest_members(name)
            except SandboxFault as fault:
                raise HTTPException(404, fault.reason) from fault

        @router.put("/campaign-interests")
        def put_campaign_interests(names: list[str] = Body(...)) -> dict[str, list[str]]:
            try:
                self.set_campaign_interests(names)
            except KeyError as error:
                raise HTTPException(404, str(error)) from error
            return {"campaign_interests": names}

        @router.post("/engagement")
        def post_engagement(request: EngagementRequest) -> dict[str, int]:
            try:
                return self.generate_engagement(request.start, request.end, request.volume, request.seed,
                                                request.interests or None)
            except (ValueError, SandboxFault) as error:
                raise HTTPException(400, str(error)) from error

        @router.get("/counters")
        def get_counters() -> dict[str, dict[str, int]]:
            return self.counters()

        @router.post("/reset")
        def post_reset() -> dict[str, str]:
            self.reset()
            return {"status": "reset"}

        return router


# --- document helpers -------------------------------------------------------------------------------------
def _integer(text: str, element: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"<{element}> must be a whole number, got '{text}'") from None


def _condition(item: ET.Element) -> ConditionSpec:
    for form, operator_tag in (("Single", "Comparator"), ("Collection", "SetOperator"), ("Between", None)):
        body = child(item, form)
        if body is None:
            continue
        element = (child_text(body, "DataElement") or "").strip()
        values = tuple((value.text or "") for value in children(body, "DataValue"))
        operator = "BETWEEN" if operator_tag is None else (child_text(body, operator_tag) or "").strip().upper()
        if not element or not values:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"<{form}> needs a DataElement and a DataValue")
        if operator not in {"EQ", "NE", "NEQ", "GT", "GTE", "LT", "LTE", "IN", "NOTIN", "BETWEEN"}:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"Unknown comparator '{operator}' on '{element}'")
        return ConditionSpec(element, operator, values)
    raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, "A <Condition> needs a <Single>, <Collection> or <Between>")


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def _records_xml(first_row: int, labels: list[str], columns: list[list[str | None]]) -> str:
    """`<Record>`s for one page; an empty field is written self-closing, which readers take as NULL."""
    heads = [f'<Field element="{_attr(label)}"' for label in labels]
    return "".join(
        f'<Record row="{first_row + offset}"><Fields>'
        + "".join(f"{head}/>" if value is None else f"{head}>{escape(value)}</Field>"
                  for head, value in zip(heads, values))
        + "</Fields></Record>"
        for offset, values in enumerate(zip(*columns))
    )


def _render(value: object) -> str | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return wire.format_timestamp(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _action_status(response: ET.Element, message: str) -> None:
    status = ET.SubElement(response, "ActionStatus")
    ET.SubElement(status, "Status").text = "success"
    ET.SubElement(status, "Message").text = message


def _defined_fields(data: ET.Element) -> list[str]:
    return [child_text(item, "Name") or "" for item in nested(data, "FieldDefinitions", "FieldDefinition")]


def _id_of(record: ET.Element) -> str | None:
    """The `<ID>` of a subscriber element; the vendor requires the tag in upper case."""
    for item in record:
        if local_name(item.tag).lower() == "id" and local_name(item.tag) != "ID":
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT,
                               f"The <ID> tag must be upper case, got <{local_name(item.tag)}>")
    text = (child_text(record, "ID") or "").strip()
    return text or None


def _subscribe_row(record: ET.Element, defined: dict[str, str]) -> UploadRow:
    if len(record) == 0 or local_name(record[0].tag) != "Email":
        raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, "<Email> must be the first element of a <Subscriber>")
    fields: dict[str, str | None] = {}
    for item in nested(record, "Fields", "Field"):
        name = item.get("element") or ""
        if name.lower() not in defined:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"Field '{name}' is not declared in <FieldDefinitions>")
        fields[defined[name.lower()]] = item.text or None
    return UploadRow(child_text(record, "Email") or "", _id_of(record), fields)


def _bulk_rows(data: str, delimiter: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(data), delimiter=delimiter) if row]


def _bulk_columns(data: ET.Element) -> dict[str, tuple[int, str]]:
    """Field name -> (column index, FieldType) from a BulkUpload's FieldDefinitions."""
    columns = {}
    for item in nested(data, "FieldDefinitions", "FieldDefinition"):
        name = child_text(item, "Name") or ""
        index = _integer(child_text(item, "ColumnIndex") or "", f"ColumnIndex of {name}") - 1
        if index < 0:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"ColumnIndex of {name} must start at 1")
        columns[name] = (index, (child_text(item, "FieldType") or "PersonalInfo").strip().lower())
    if not any(field_type == "email" for _, field_type in columns.values()):
        raise SandboxFault(FaultCode.INSUFFICIENT_DATA, "BulkUpload needs a FieldDefinition with FieldType Email")
    return columns


def _bulk_row(values: list[str], number: int, columns: dict[str, tuple[int, str]], clear_blank: bool) -> UploadRow:
    if max(index for index, _ in columns.values()) >= len(values):
        raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"Data row {number} has {len(values)} columns, too few")
    email, user_id, fields = "", None, {}
    for name, (index, field_type) in columns.items():
        value = values[index]
        if field_type == "email":
            email = value
        elif field_type == "id":
            user_id = value.strip() or None
        elif value or clear_blank:
            fields[name] = value or None
    return UploadRow(email, user_id, fields)
