"""The Thrive emulator: a SOAP 1.1 `PostInformzMessage` endpoint over an in-memory brand, plus an admin surface.

An independent witness: it imports nothing of the client (`include/imis_thrive/thrive/`); its reading of
the AAPI comes from Higher Logic's pages (`shared/reference/thrive-vendor-facts.md`), in `thrive_vocab.py`
and `thrive_xml.py`. It is at least as strict as those pages (`strict=True` unless switched off explicitly):

* GridRequest ("Grid Request Overview"): at least one `ReturnFields/DataElement`; a known grid type
  (`InvalidGridCategoryException`) and known data elements; `NumberOfRows` at most 1,000. A Count request
  answers one record `row="0"` with a lower-case `count`.
* BulkUpload ("BulkUpload", "API Quick Start Guide - Bulk Upload"): `UploadDetails` holds `InterestDetails`
  and the required `StatusEmailRecipients/Email`; `FieldDefinitions` and `Data` sit directly under
  `BulkUpload` (no `SubscriberData`); `ColumnIndex` from 1; the flags are `1`/`0`.
* Subscribe ("ActionRequests - Subscribe, Unsubscribe and Opt-Out"): Email first, upper-case `ID` second;
  the reply carries `Status`, `NewSubscriberCount`, `PreviousSubscriberCount`, no per-subscriber rows.
* Unsubscribe ("Unsubscribe") and Optout ("Optout") as their pages show them.
* Compression ("Making the Call"): a `<Grids>`/`<Actions>` sent compressed gets a compressed reply.

Where no page settles a detail, the emulator is started in one alternative (`ThriveSandboxConfig`):
`startrow_base`, `fault_shape`, `grids`, `upload_status`, `compression`. The env var
`THRIVE_SANDBOX_ALTERNATIVES` (e.g. `startrow_base=1,fault_shape=faultcode,grids=documented`) sets the
defaults of those fields, so the whole test suite can be run against each alternative.
"""

from __future__ import annotations

import os
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
from fastapi import APIRouter, Body, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, Field, field_validator, model_validator

from sandbox import thrive_xml as xml
from sandbox.airflow_settings import ConnectionSetting
from sandbox.faults import ADMIN_PREFIX, FaultConfig, FaultInjector, FaultMiddleware
from sandbox.thrive_engagement import generate_engagement
from sandbox.thrive_store import (
    ConditionSpec,
    SandboxFault,
    SandboxInterest,
    ThriveStore,
    UploadRow,
    malformed_email,
)
from sandbox.thrive_vocab import (
    BULK_DATA_TYPES,
    BULK_FIELD_TYPES,
    BULK_FIRST_COLUMN_INDEX,
    BULK_FLAGS,
    CONTENT_TYPE,
    COUNT,
    DOCUMENTED_GRIDS,
    EXTENDED_GRIDS,
    GRIDS,
    MAX_GRID_ROWS,
    MAX_SUBSCRIBE,
    NAMESPACE,
    NEVER_SERVED,
    SUBSCRIBE_ACTIONS,
    FaultCode,
    InterestAction,
    format_timestamp,
)

ALTERNATIVES_ENV = "THRIVE_SANDBOX_ALTERNATIVES"
# OPEN: the values of upload_history.status. Presets name (while pending, when done).
UPLOAD_STATUS_PRESETS = {"complete": ("Processing", "Complete"), "processed": ("Pending", "Processed")}
_ALTERNATIVE_FIELDS = ("strict", "startrow_base", "fault_shape", "grids", "upload_status", "compression",
                       "subscriber_results")
_FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gus", "Hana", "Ivan", "José")
_LAST_NAMES = ("Abbott", "Brown", "Chen", "Dubois", "Evans", "Fischer", "García", "Haddad", "Ito", "Jones")


def alternatives_from_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """`THRIVE_SANDBOX_ALTERNATIVES="startrow_base=1,fault_shape=service"` as field values (strings)."""
    text = (environ if environ is not None else os.environ).get(ALTERNATIVES_ENV, "")
    settings = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in _ALTERNATIVE_FIELDS or not value.strip():
            raise ValueError(f"{ALTERNATIVES_ENV}: {item!r} is not one of {', '.join(_ALTERNATIVE_FIELDS)}=<value>")
        settings[name] = value.strip()
    return settings


class ThriveSandboxConfig(BaseModel):
    """One emulated brand: its credentials, its interests, and which reading of each open detail it takes."""

    brand_id: str = "7001"
    brand_name: str = "Sandbox Association"
    users: dict[str, str] = Field(default_factory=lambda: {"hl_api_user": "sandbox-thrive-password"})
    seed: int = 0
    endpoint_path: str = "/aapi/InformzService.svc"
    interests: list[str] = Field(default_factory=list, description="Interests (target groups) the brand starts with")
    campaign_interests: list[str] = Field(default_factory=list, description="Those an active campaign mails to")
    seed_subscribers: int = Field(0, ge=0, le=1_000_000, description="Subscribers the brand starts with")
    upload_polls: int = Field(1, ge=0, description="upload_history polls that still show an upload as pending")
    now: datetime | None = Field(None, description="Pin the emulator's clock (aware); None follows the wall clock")
    # --- strictness and the open details (defaults from THRIVE_SANDBOX_ALTERNATIVES) ---
    strict: bool = Field(True, description="Refuse what the vendor pages rule out; off only when asked")
    startrow_base: int = Field(0, ge=0, le=1, description="OPEN: StartRow of the first row, 0 or 1")
    fault_shape: xml.FaultShape = Field("aapi", description="OPEN: aapi | service | faultcode")
    grids: Literal["documented", "extended"] = Field(
        "extended", description="documented: only grids a vendor page names; extended: also third-party ones")
    upload_status: str = Field("complete", description="OPEN: upload_history.status values, a preset "
                                                      f"({' | '.join(UPLOAD_STATUS_PRESETS)}) or PENDING:DONE")
    compression: Literal["on-request", "never"] = Field(
        "on-request", description="on-request: compressed request, compressed reply; never: always plain")
    subscriber_results: bool = Field(False, description="Add per-subscriber rows to Subscribe replies "
                                                        "(no vendor sample shows them)")

    @model_validator(mode="before")
    @classmethod
    def _alternatives_from_env(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {**alternatives_from_env(), **data}
        return data

    @field_validator("upload_status")
    @classmethod
    def _upload_status(cls, value: str) -> str:
        cls.statuses_of(value)
        return value

    @staticmethod
    def statuses_of(value: str) -> tuple[str, str]:
        if value.lower() in UPLOAD_STATUS_PRESETS:
            return UPLOAD_STATUS_PRESETS[value.lower()]
        pending, _, done = value.partition(":")
        if not pending.strip() or not done.strip() or pending.strip() == done.strip():
            raise ValueError(f"upload_status must be {' or '.join(UPLOAD_STATUS_PRESETS)} or PENDING:DONE, "
                             f"got {value!r}")
        return pending.strip(), done.strip()

    def upload_statuses(self) -> tuple[str, str]:
        return self.statuses_of(self.upload_status)

    def served_grids(self) -> frozenset[str]:
        return (DOCUMENTED_GRIDS if self.grids == "documented" else EXTENDED_GRIDS) - NEVER_SERVED

    @classmethod
    def from_connection(cls, connection: ConnectionSetting, **overrides: Any) -> ThriveSandboxConfig:
        """The emulator that answers the `thrive_default` connection of airflow_settings.yaml."""
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
            self.store = ThriveStore(self._now, self.config.brand_id, self.config.upload_statuses())
            self._counters: dict[str, Counter[str]] = {
                name: Counter() for name in ("requests", "actions", "grids", "records_written", "faults", "compressed")
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

    def drop_members(self, name: str, contact_ids: list[str]) -> int:
        """Test knob: members removed from an interest in Thrive's UI, behind the pipeline's back."""
        with self._lock:
            return self.store.drop_members(name, contact_ids)

    def join_members(self, name: str, contact_ids: list[str]) -> int:
        """Test knob: existing subscribers added to an interest in Thrive's UI, behind the pipeline's back."""
        with self._lock:
            return self.store.join_members(name, contact_ids)

    def edit_field(self, contact_id: str, name: str, value: str | None) -> None:
        """Test knob: one personalization field edited in Thrive's UI, behind the pipeline's back."""
        with self._lock:
            self.store.edit_field(contact_id, name, value)

    def add_interest(self, name: str, in_active_campaign: bool = False) -> None:
        with self._lock:
            self.store.add_interest(name, in_active_campaign)

    def set_campaign_interests(self, names: list[str]) -> None:
        with self._lock:
            self.store.set_campaign_interests(names)

    def generate_engagement(self, start: datetime, end: datetime, volume: int = 1000, seed: int | None = None,
                            interests: list[str] | None = None, by_contact: bool = False) -> dict[str, int]:
        """Mail the subscribed members of `interests` (default: campaign interests, else everyone) and
        record what follows; returns how many events of each kind were made. `by_contact` orders the recipients
        by contact ID instead of subscriber id, so two sandboxes holding the same members (loaded in different
        orders) make the same events: what a soak compares against its reference."""
        with self._lock:
            chosen = ([self.store.interest(name) for name in interests] if interests else
                      [i for i in self.store.interests.values() if i.in_active_campaign and not i.is_deleted])
            recipients = self.store.subscribed_recipients(chosen)
            if by_contact:
                recipients = recipients.ordered_by_contact()
            generated = generate_engagement(
                recipients, start, end, volume,
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
                kind = xml.local_name(document.tag)
                reply = self._grid_request(document) if kind == "GridRequest" else self._action_request(document)
            except SandboxFault as fault:
                self._counters["faults"][fault.code.value] += 1
                return 500, xml.fault_envelope(fault.code.value, fault.reason, self.config.fault_shape)
            text = '<?xml version="1.0" encoding="utf-16"?>' + reply
            return 200, xml.response_envelope(text.replace("\r", "&#13;"))

    def _document(self, body: bytes) -> ET.Element:
        try:
            document = xml.request_document(body)
        except xml.XmlRefused as error:
            raise SandboxFault(FaultCode.INVALID_DOCUMENT, f"The message is not a valid document: {error}") from error
        if xml.namespace_of(document.tag) != NAMESPACE:
            raise SandboxFault(FaultCode.NO_NAMESPACE, f"The document must use the namespace {NAMESPACE}")
        if xml.local_name(document.tag) not in ("GridRequest", "ActionRequest"):
            raise SandboxFault(FaultCode.UNKNOWN_REQUEST, f"Unknown request <{xml.local_name(document.tag)}>")
        return document

    def _check_credentials(self, document: ET.Element) -> None:
        brand = xml.child(document, "Brand")
        user = xml.text_of(document, "User") or ""
        password = xml.text_of(document, "Password")
        if brand is None or brand.get("id") != self.config.brand_id or self.config.users.get(user) != password:
            raise SandboxFault(FaultCode.INVALID_CREDENTIALS, "The brand id, user or password is not valid")

    def _header(self, name: str) -> str:
        """The reply's opening, as the "Unsubscribe" response sample writes it."""
        return (f'<{name} xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
                f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="{NAMESPACE}">'
                f'<Brand id="{xml.attr(self.config.brand_id)}">{escape(self.config.brand_name)}</Brand><User/>')

    def _container(self, document: ET.Element, name: str) -> tuple[list[ET.Element], bool]:
        """The elements of `<Grids>`/`<Actions>` and whether they came compressed (and so go back compressed)."""
        container = xml.child(document, name)
        if container is None:
            return [], False
        if not xml.is_compressed(container):
            return list(container), False
        self._counters["compressed"][name] += 1
        try:
            return xml.expand(container), True
        except xml.XmlRefused as error:
            raise SandboxFault(FaultCode.INVALID_DOCUMENT, f"<{name}>: {error}") from error

    def _wrap(self, name: str, inner: str, compressed: bool) -> str:
        if compressed and self.config.compression == "on-request":
            return f"<{name}>{xml.compress_payload(inner)}</{name}>"
        return f"<{name}>{inner}</{name}>"

    # --- grids --------------------------------------------------------------------------------------------
    def _grid_request(self, document: ET.Element) -> str:
        """The GridResponse as text: building 1,000-row pages with ElementTree costs more than the query."""
        requests, compressed = self._container(document, "Grids")
        grids = [request for request in requests if xml.local_name(request.tag) == "Grid"]
        if not grids:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, "The GridRequest holds no <Grids><Grid>")
        # A compressed payload carries its own xmlns on each Grid node ("Making the Call").
        body = "".join(self._answer_grid(request, compressed) for request in grids)
        return self._header("GridResponse") + self._wrap("Grids", body, compressed) + "</GridResponse>"

    def _answer_grid(self, request: ET.Element, compressed: bool) -> str:
        token = request.get("type") or ""
        grid = token.lower()
        if grid not in self.config.served_grids():
            raise SandboxFault(FaultCode.INVALID_GRID, f"Grid type '{token}' is not a known grid")
        spec = GRIDS[grid]
        self._counters["grids"][grid] += 1
        return_fields = [(element.text or "").strip() for element in xml.nested(request, "ReturnFields", "DataElement")]
        if self.config.strict and not [name for name in return_fields if name]:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION,
                               f"grid '{token}': a GridRequest needs at least one <ReturnFields><DataElement>")
        known = spec.canonical()
        for name in return_fields:
            if name.lower() not in known and not (name.lower() == COUNT and len(return_fields) == 1):
                raise SandboxFault(FaultCode.UNEXPECTED_INPUT, f"grid '{token}' has no data element '{name}'")
        sort = xml.child(request, "SortField")
        sort_field = (sort.text or "").strip() if sort is not None else ""
        if sort_field and sort_field.lower() not in known:
            raise SandboxFault(FaultCode.UNEXPECTED_INPUT, f"grid '{token}' has no data element '{sort_field}'")
        start_row = _integer(xml.text_of(request, "StartRow"), "StartRow", self.config.startrow_base)
        rows = _integer(xml.text_of(request, "NumberOfRows"), "NumberOfRows", MAX_GRID_ROWS)
        if start_row < 0 or rows < 1:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT,
                               f"grid '{token}': StartRow must be >= 0 and NumberOfRows >= 1 (got {start_row}, {rows})")
        if rows > MAX_GRID_ROWS:
            if self.config.strict:
                raise SandboxFault(FaultCode.INVALID_DATA_FORMAT,
                                   f"grid '{token}': NumberOfRows {rows} is above the limit of {MAX_GRID_ROWS}")
            rows = MAX_GRID_ROWS
        if grid == "upload_history":
            self.store.advance_uploads()
        conditions = [_condition(item) for item in xml.nested(request, "Conditions", "Condition")]
        matched = self.store.query(grid, conditions, sort_field or None,
                                   sort is not None and (sort.get("order") or "asc").lower() == "desc")
        if [name.lower() for name in return_fields] == [COUNT]:
            records = _records_xml(0, [COUNT], [[str(len(matched))]])
        else:
            names = return_fields or list(spec.elements)
            offset = max(start_row - self.config.startrow_base, 0)  # base 1 reads StartRow 0 as the first row
            page = matched.iloc[offset:offset + rows]
            columns = [[_render(value) for value in page[name.lower()].tolist()] for name in names]
            records = _records_xml(offset + 1, [known[name.lower()] for name in names], columns)
        own_namespace = f' xmlns="{NAMESPACE}"' if compressed else ""
        head = f'<Grid type="{xml.attr(token)}"{own_namespace}'
        return f"{head}>{records}</Grid>" if records else f"{head}/>"

    # --- actions ------------------------------------------------------------------------------------------
    def _action_request(self, document: ET.Element) -> str:
        actions, compressed = self._container(document, "Actions")
        if not actions:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, "The ActionRequest holds no <Actions>")
        handlers = {"Subscribe": self._subscribe, "BulkUpload": self._bulk_upload, "Optout": self._optout,
                    "Unsubscribe": self._unsubscribe}
        responses = []
        for action in actions:
            name = xml.local_name(action.tag)
            handler = handlers.get(name)
            if handler is None:
                raise SandboxFault(FaultCode.UNKNOWN_ACTION, f"Unknown action '{name}'")
            self._counters["actions"][name] += 1
            response = handler(action)
            if compressed:
                response.set("xmlns", NAMESPACE)
            responses.append(ET.tostring(response, encoding="unicode"))
        return self._header("ActionResponse") + self._wrap("Responses", "".join(responses), compressed) + \
            "</ActionResponse>"

    def _interest_details(self, details: ET.Element | None, where: str,
                          allowed: frozenset[InterestAction] | None = None
                          ) -> tuple[InterestAction, list[SandboxInterest]]:
        if details is None:
            return InterestAction.ADD_OR_UPDATE, []
        names = [(item.text or "").strip() for item in xml.nested(details, "InterestNames", "InterestName")]
        text = (xml.text_of(details, "InterestAction") or "").strip()
        if not text:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, f"{where}: <InterestDetails> needs <InterestAction>")
        try:
            action = InterestAction(text)
        except ValueError:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"{where}: unknown InterestAction '{text}'") from None
        if allowed is not None and action not in allowed:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"InterestAction '{text}' is not allowed in <{where}>")
        return action, [self.store.interest(name) for name in names]

    def _subscribe(self, action: ET.Element) -> ET.Element:
        interest_action, interests = self._interest_details(xml.child(action, "InterestDetails"), "Subscribe",
                                                            SUBSCRIBE_ACTIONS)
        data = xml.child(action, "SubscriberData")
        records = xml.nested(data, "Subscribers", "Subscriber") if data is not None else []
        if data is None or not records:
            raise SandboxFault(FaultCode.INSUFFICIENT_DATA,
                               "Subscribe holds no <SubscriberData><Subscribers><Subscriber>")
        if len(records) > MAX_SUBSCRIBE:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT,
                               f"Subscribe takes at most {MAX_SUBSCRIBE} subscribers ({len(records)} sent); "
                               "use BulkUpload")
        defaults = {}
        for definition in xml.nested(data, "FieldDefinitions", "FieldDefinition"):
            name = (xml.text_of(definition, "Name") or "").strip()
            if not name:
                raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, "Subscribe: a <FieldDefinition> has no <Name>")
            defaults[name.lower()] = (name, xml.text_of(definition, "DefaultValue"))
        rows = [self._subscribe_row(record, defaults) for record in records]
        self._counters["records_written"]["Subscribe"] += len(rows)
        outcomes = [self.store.upsert(row, interests) for row in rows]
        if interest_action is InterestAction.REPLACE_ALL:
            self.store.replace_members(interests, rows)
        created = sum(outcome.status == "created" for outcome in outcomes)
        previous = sum(outcome.status in ("updated", "unsubscribed") for outcome in outcomes)
        response = ET.Element("Subscribe")
        ET.SubElement(response, "NewSubscriberCount").text = str(created)
        ET.SubElement(response, "PreviousSubscriberCount").text = str(previous)
        _action_status(response, f"{created + previous} subscribers processed.")
        if self.config.subscriber_results:
            results = ET.SubElement(response, "SubscriberResults")
            for outcome in outcomes:
                result = ET.SubElement(results, "SubscriberResult")
                ET.SubElement(result, "Email").text = outcome.email
                ET.SubElement(result, "ID").text = outcome.user_id
                ET.SubElement(result, "Status").text = outcome.status
                if outcome.reason:
                    ET.SubElement(result, "Reason").text = outcome.reason
        return response

    def _subscribe_row(self, record: ET.Element, defaults: dict[str, tuple[str, str | None]]) -> UploadRow:
        tags = [xml.local_name(item.tag) for item in record]
        if not tags or tags[0] != "Email":
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, "<Email> must be the first element of a <Subscriber>")
        user_id = _subscriber_id(record, tags, "Subscribe")
        fields: dict[str, str | None] = {}
        for item in xml.nested(record, "Fields", "Field"):
            name = item.get("element") or ""
            if name.lower() not in defaults:
                raise SandboxFault(FaultCode.INVALID_DATA_FORMAT,
                                   f"Field '{name}' is not declared in <FieldDefinitions>")
            fields[defaults[name.lower()][0]] = item.text or None
        return UploadRow((xml.text_of(record, "Email") or "").strip(), user_id, fields)

    def _bulk_upload(self, action: ET.Element) -> ET.Element:
        strict = self.config.strict
        if strict and xml.child(action, "SubscriberData") is not None:
            raise SandboxFault(FaultCode.UNEXPECTED_INPUT, "BulkUpload has no <SubscriberData>: <FieldDefinitions> "
                                                           "and <Data> sit directly under <BulkUpload>")
        if strict and xml.child(action, "InterestDetails") is not None:
            raise SandboxFault(FaultCode.UNEXPECTED_INPUT,
                               "BulkUpload: <InterestDetails> belongs inside <UploadDetails>")
        details = xml.child(action, "UploadDetails")
        if details is None:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, "BulkUpload needs <UploadDetails>")
        interest_details = xml.child(details, "InterestDetails")
        if interest_details is None and not strict:
            interest_details = xml.child(action, "InterestDetails")
        interest_action, interests = self._interest_details(interest_details, "BulkUpload")
        if interest_action is InterestAction.REMOVE and not interests:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, "RemoveSubscribers needs <InterestNames>")
        recipients = tuple((item.text or "").strip() for item in xml.nested(details, "StatusEmailRecipients", "Email"))
        if strict and not [email for email in recipients if email]:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION,
                               "BulkUpload needs <UploadDetails><StatusEmailRecipients><Email> (required)")
        for email in recipients:
            if malformed_email(email):
                raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"StatusEmailRecipients: '{email}' is not an email")
        delimiter = xml.text_of(details, "ColumnDelimiter") or ","
        quoted = _flag(details, "HasFieldsEnclosedInQuotes", strict, default=False)
        clear_blank = _flag(details, "RemovePersonalInfoIfBlank", strict, default=False)
        old_layout = None if strict else xml.child(action, "SubscriberData")
        container = action if old_layout is None else old_layout
        columns = self._bulk_columns(container)
        data = xml.child(container, "Data")
        if data is None:
            raise SandboxFault(FaultCode.INSUFFICIENT_DATA, "BulkUpload needs <Data> (directly under <BulkUpload>)")
        try:
            lines = xml.delimited_rows(data.text or "", delimiter, quoted)
        except ValueError as error:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"BulkUpload <Data>: {error}") from error
        rows = [self._bulk_row(values, number, columns, clear_blank) for number, values in enumerate(lines, 1)]
        self._counters["records_written"]["BulkUpload"] += len(rows)
        upload = self.store.queue_upload(interest_action, interests, rows, self.config.upload_polls, recipients)
        response = ET.Element("BulkUpload")
        ET.SubElement(response, "UploadID").text = str(upload.upload_id)
        _action_status(response, f"Upload {upload.upload_id} received with {len(rows)} rows.")
        return response

    def _bulk_columns(self, container: ET.Element) -> dict[str, tuple[int, str]]:
        """Field name -> (0-based position in a Data row, lower-case FieldType)."""
        columns: dict[str, tuple[int, str]] = {}
        definitions = xml.nested(container, "FieldDefinitions", "FieldDefinition")
        first = BULK_FIRST_COLUMN_INDEX if self.config.strict else min(
            (_integer(xml.text_of(item, "ColumnIndex"), "ColumnIndex", 1) for item in definitions), default=1)
        for item in definitions:
            name = (xml.text_of(item, "Name") or "").strip()
            if not name:
                raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, "BulkUpload: a <FieldDefinition> has no <Name>")
            index = _integer(xml.text_of(item, "ColumnIndex"), f"ColumnIndex of {name}", None)
            if index < first:
                raise SandboxFault(FaultCode.INVALID_DATA_FORMAT,
                                   f"BulkUpload: ColumnIndex of '{name}' is {index}; columns count from "
                                   f"{BULK_FIRST_COLUMN_INDEX}")
            field_type = (xml.text_of(item, "FieldType") or "PersonalInfo").strip()
            data_type = (xml.text_of(item, "DataType") or "string").strip()
            if self.config.strict and field_type.lower() not in BULK_FIELD_TYPES:
                raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"BulkUpload: unknown FieldType '{field_type}'")
            if self.config.strict and data_type.lower() not in BULK_DATA_TYPES:
                raise SandboxFault(FaultCode.INVALID_DATA_FORMAT,
                                   f"BulkUpload: unknown DataType '{data_type}' of '{name}' "
                                   f"(the samples spell {' and '.join(sorted(BULK_DATA_TYPES)[-2:])})")
            if any(position == index - first for position, _ in columns.values()):
                raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"BulkUpload: ColumnIndex {index} is used twice")
            columns[name] = (index - first, field_type.lower())
        if not any(field_type == "email" for _, field_type in columns.values()):
            raise SandboxFault(FaultCode.INSUFFICIENT_DATA, "BulkUpload needs a FieldDefinition with FieldType Email")
        return columns

    def _bulk_row(self, values: list[str], number: int, columns: dict[str, tuple[int, str]],
                  clear_blank: bool) -> UploadRow:
        if max(index for index, _ in columns.values()) >= len(values):
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"Data row {number} has {len(values)} columns, too few")
        row = UploadRow("", None, {})
        for name, (index, field_type) in columns.items():
            value = values[index]
            if field_type == "email":
                row.email = value
            elif field_type == "id":
                if value and not value.isdigit():
                    raise SandboxFault(FaultCode.INVALID_DATA_FORMAT,
                                       f"Data row {number}: the ID '{value}' is not an integer")
                row.user_id = value or None
            elif field_type == "interest":  # "BulkUpload with Interests": unknown interests are ignored
                known = (self.store.interests.get(part.strip().lower()) for part in value.split(","))
                row.interests = [interest for interest in known if interest is not None and not interest.is_deleted]
            elif field_type in ("personalinfo", "demographic") and (value or clear_blank):
                row.fields[name] = value or None
        return row

    def _subscriber_records(self, action: ET.Element, name: str) -> list[ET.Element]:
        records = xml.nested(action, "Subscribers", "Subscriber")
        if not any((xml.text_of(record, "Email") or "").strip() for record in records):
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, f"{name} needs at least one <Email>")
        return records

    def _optout(self, action: ET.Element) -> ET.Element:
        """"Optout": takes subscribers out of the named interests; unknown interests are an error, unknown or
        malformed emails are counted as processed."""
        names = [(item.text or "").strip() for item in xml.nested(action, "InterestNames", "InterestName")]
        if not [name for name in names if name]:
            raise SandboxFault(FaultCode.INSUFFICIENT_INFORMATION, "Optout needs <InterestNames><InterestName>")
        interests = [self.store.interest(name) for name in names]
        records = self._subscriber_records(action, "Optout")
        for record in records:
            tags = [xml.local_name(item.tag) for item in record]
            row = UploadRow((xml.text_of(record, "Email") or "").strip(), _subscriber_id(record, tags, "Optout"), {})
            if malformed_email(row.email):
                continue
            for interest in interests:
                self.store.remove_member(interest, row)
        self._counters["records_written"]["Optout"] += len(records)
        response = ET.Element("Optout")
        ET.SubElement(response, "Count").text = str(len(records))
        _action_status(response, f"{len(records)} email addresses processed.")
        return response

    def _unsubscribe(self, action: ET.Element) -> ET.Element:
        """"Unsubscribe": a global unsubscribe; without an ID, an email matching several subscribers is an error."""
        records = self._subscriber_records(action, "Unsubscribe")
        now = self._now()
        count = 0
        for record in records:
            tags = [xml.local_name(item.tag) for item in record]
            if tags[0] != "Email":
                raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, "<Email> must be the first element of a <Subscriber>")
            email = (xml.text_of(record, "Email") or "").strip()
            user_id = _subscriber_id(record, tags, "Unsubscribe")
            subscriber = self.store.find(user_id, email) if user_id else self.store.find(None, email)
            if subscriber is None:
                continue
            reason = (xml.text_of(record, "UnsubscribeReason") or "").strip() or None
            self.store.unsubscribe(subscriber, now, None, reason)
            count += 1
        self._counters["records_written"]["Unsubscribe"] += len(records)
        response = ET.Element("Unsubscribe")
        ET.SubElement(response, "Count").text = str(count)
        _action_status(response, f"{count} email addresses unsubscribed.")
        return response

    # --- HTTP ---------------------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Thrive Marketing Professional emulator (Informz AAPI)", docs_url=f"{ADMIN_PREFIX}/docs",
                      openapi_url=f"{ADMIN_PREFIX}/openapi.json", redoc_url=None)

        @app.post(self.config.endpoint_path)
        async def post_informz_message(request: Request) -> Response:
            status, content = self.handle(await request.body())
            return Response(content, status_code=status, media_type=CONTENT_TYPE)

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

        @router.post("/interests/{name}/members/drop")
        def post_drop_members(name: str, contact_ids: Annotated[list[str], Body()]) -> dict[str, int]:
            try:
                return {"dropped": self.drop_members(name, contact_ids)}
            except SandboxFault as fault:
                raise HTTPException(404, fault.reason) from fault

        @router.post("/interests/{name}/members/join")
        def post_join_members(name: str, contact_ids: Annotated[list[str], Body()]) -> dict[str, int]:
            try:
                return {"joined": self.join_members(name, contact_ids)}
            except SandboxFault as fault:
                raise HTTPException(404, fault.reason) from fault

        @router.put("/subscribers/{contact_id}/fields/{name}")
        def put_field(contact_id: str, name: str, value: Annotated[str | None, Body(embed=True)]) -> dict[str, str]:
            try:
                self.edit_field(contact_id, name, value)
            except KeyError as error:
                raise HTTPException(404, str(error)) from error
            return {"field": name}

        @router.put("/campaign-interests")
        def put_campaign_interests(names: Annotated[list[str], Body()]) -> dict[str, list[str]]:
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

        @router.get("/config")
        def get_config() -> dict[str, object]:
            return {name: getattr(self.config, name) for name in _ALTERNATIVE_FIELDS}

        @router.post("/reset")
        def post_reset() -> dict[str, str]:
            self.reset()
            return {"status": "reset"}

        return router


# --- document helpers -------------------------------------------------------------------------------------
def _integer(text: str | None, element: str, default: int | None) -> int:
    if text is None or not text.strip():
        if default is None:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"<{element}> is required")
        return default
    try:
        return int(text.strip())
    except ValueError:
        raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"<{element}> must be a whole number, got '{text}'") from None


def _flag(details: ET.Element, name: str, strict: bool, default: bool) -> bool:
    text = xml.text_of(details, name)
    if text is None or not text.strip():
        return default
    value = text.strip().lower()
    if value in BULK_FLAGS:
        return value == "1"
    if strict:
        raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"<{name}> is 1 or 0, got '{text.strip()}'")
    return value in ("true", "yes", "y")


def _subscriber_id(record: ET.Element, tags: list[str], where: str) -> str | None:
    """The `<ID>` of a subscriber: upper case, second after `<Email>`, an integer (the remote ID)."""
    for tag in tags:
        if tag.lower() == "id" and tag != "ID":
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"{where}: the <ID> tag must be upper case, got <{tag}>")
    if "ID" not in tags:
        return None
    if tags.index("ID") != 1:
        raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"{where}: <ID> must be the second element of a <Subscriber>")
    text = (xml.text_of(record, "ID") or "").strip()
    if text and not text.isdigit():
        raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"{where}: <ID> is an integer, got '{text}'")
    return text or None


def _condition(item: ET.Element) -> ConditionSpec:
    for form, operator_tag in (("Single", "Comparator"), ("Collection", "SetOperator"), ("Between", None)):
        body = xml.child(item, form)
        if body is None:
            continue
        element = (xml.text_of(body, "DataElement") or "").strip()
        values = tuple((value.text or "") for value in xml.children(body, "DataValue"))
        operator = "BETWEEN" if operator_tag is None else (xml.text_of(body, operator_tag) or "").strip().upper()
        if not element or not values:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"<{form}> needs a DataElement and a DataValue")
        if operator not in {"EQ", "NE", "NEQ", "GT", "GTE", "LT", "LTE", "IN", "NOTIN", "BETWEEN"}:
            raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, f"Unknown comparator '{operator}' on '{element}'")
        return ConditionSpec(element, operator, values)
    raise SandboxFault(FaultCode.INVALID_DATA_FORMAT, "A <Condition> needs a <Single>, <Collection> or <Between>")


def _records_xml(first_row: int, labels: list[str], columns: list[list[str | None]]) -> str:
    """`<Record>`s for one page; an empty field is written self-closing, which readers take as NULL."""
    heads = [f'<Field element="{xml.attr(label)}"' for label in labels]
    return "".join(
        f'<Record row="{first_row + offset}"><Fields>'
        + "".join(f"{head}/>" if value is None else f"{head}>{escape(value)}</Field>"
                  for head, value in zip(heads, values, strict=True))
        + "</Fields></Record>"
        for offset, values in enumerate(zip(*columns, strict=True))
    )


def _render(value: object) -> str | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return format_timestamp(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _action_status(response: ET.Element, message: str) -> None:
    status = ET.SubElement(response, "ActionStatus")
    ET.SubElement(status, "Status").text = "success"
    ET.SubElement(status, "Message").text = message
