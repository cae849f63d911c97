"""HTTP client for the iMIS REST API: token, IQA paging, documents, query definitions, activities.

Knows nothing of Airflow (include/imis_thrive/airflow/hooks/imis.py builds it from a connection). Every call goes through
`_request`, which adds the shared bearer token, retries what is worth retrying (`http_retry`), re-authenticates
once on 401, and turns every other failure into a typed error naming the query or entity.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal

import httpx
import msgspec
import pandas as pd
from pydantic import BaseModel, Field, SecretStr

from include.imis_thrive.http_retry import RetryPolicy, send_with_retry
from include.imis_thrive.imis.errors import (
    ImisAnswerNotJson,
    ImisAuthError,
    ImisNotFound,
    ImisPagingError,
    ImisRequestError,
    ImisServerError,
    ImisUnexpectedAnswer,
)
from include.imis_thrive.imis.iqa import rows_to_frame
from include.imis_thrive.imis.iqa_package import IqaDefinition
from include.imis_thrive.imis.tokens import PROCESS_TOKEN_STORE, Token, TokenStore

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500  # iMIS silently caps larger pages (reference §2.4)
_ENTITY = "Asi.Soa.Core.DataContracts.{}, Asi.Contracts"
_STRING_COLLECTION = "System.Collections.ObjectModel.Collection`1[[System.String, mscorlib]], mscorlib"


class ImisConfig(BaseModel):
    """Where and how to reach one iMIS instance (built from the `imis_default` connection)."""

    base_url: str = Field(description="Site URL, may carry a path prefix, e.g. https://host/Asi.Scheduler_X")
    username: str
    password: SecretStr
    timezone: str = Field("UTC", description="The instance's local zone: iMIS datetimes are naive local time")
    endpoint: Literal["query", "iqa"] = Field(
        "query", description="`query` = /api/query (20.3.77+), `iqa` = /api/IQA (deprecated, every version)"
    )
    page_size: int = Field(MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    max_concurrency: int = Field(4, ge=1, le=16)
    timeout_s: float = 60.0
    token_margin_s: float = Field(60.0, description="Renew a token this long before it expires")
    retry: RetryPolicy = RetryPolicy()

    @property
    def token_key(self) -> str:
        return f"{self.base_url.rstrip('/')}|{self.username.lower()}"


@dataclass(frozen=True)
class Page:
    """One page of a paged iMIS result, with the envelope's own account of where it sits."""

    rows: list[dict[str, Any]]
    offset: int
    limit: int
    count: int
    total_count: int | None
    has_next: bool
    next_offset: int

    @classmethod
    def from_envelope(cls, body: Mapping[str, Any], requested_offset: int) -> "Page":
        items = body.get("Items")
        rows = list(items.get("$values") or []) if isinstance(items, Mapping) else list(items or [])
        count = int(body.get("Count", len(rows)))
        next_offset = int(body.get("NextOffset") or 0)
        has_next = bool(body.get("HasNext", next_offset > 0))
        total = body.get("TotalCount")
        return cls(rows=rows, offset=int(body.get("Offset", requested_offset)), limit=int(body.get("Limit") or 0),
                   count=count, total_count=int(total) if total is not None else None,
                   has_next=has_next, next_offset=next_offset)


class PageSequence:
    """The pages of one IQA run, checked as they arrive: each starts where the last ended, holds the rows its
    `Count` says, agrees on `TotalCount`, and at the end the rows read add up to that total."""

    def __init__(self, query_name: str, first: Page) -> None:
        self.query_name = query_name
        self.total = first.total_count
        self.rows_read = 0
        self.next_offset = 0
        self.add(first)

    def add(self, page: Page) -> None:
        where = f"IQA {self.query_name}: the page at offset {page.offset}"
        if page.count != len(page.rows):
            raise ImisPagingError(f"{where} says Count {page.count} but holds {len(page.rows)} rows")
        if page.offset != self.next_offset:
            kind = "repeats" if page.offset < self.next_offset else "skips"
            raise ImisPagingError(
                f"{where} {kind} rows: after {self.rows_read:,} rows the next page should start at offset "
                f"{self.next_offset:,} (a page held fewer rows than the first one, or the result changed while "
                "it was read); no rows are returned rather than a result with rows missing or doubled")
        if page.total_count is not None and self.total is not None and page.total_count != self.total:
            raise ImisPagingError(f"{where} says TotalCount {page.total_count:,}, the first page said "
                                  f"{self.total:,}: the result changed while it was read; run it again")
        if page.has_next and page.next_offset not in (0, page.offset + page.count):
            raise ImisPagingError(f"{where} holds {page.count} rows but says NextOffset {page.next_offset}, "
                                  f"not {page.offset + page.count}")
        self.rows_read += len(page.rows)
        self.next_offset = page.offset + page.count

    def finish(self) -> None:
        if self.total is not None and self.rows_read != self.total:
            raise ImisPagingError(f"IQA {self.query_name}: read {self.rows_read:,} rows but TotalCount is "
                                  f"{self.total:,}; no rows are returned rather than a partial result")


@dataclass(frozen=True)
class DocumentSummary:
    document_id: str
    document_type: str
    path: str
    name: str
    status: str | None = None


class ImisClient:
    """One iMIS site, one integration user; safe to share between threads."""

    def __init__(
        self,
        config: ImisConfig,
        token_store: TokenStore = PROCESS_TOKEN_STORE,
        transport: httpx.BaseTransport | None = None,
        on_token: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._store = token_store
        self._on_token = on_token
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=config.base_url.rstrip("/") + "/",
            timeout=config.timeout_s,
            headers={"Accept": "application/json"},
            limits=httpx.Limits(max_connections=config.max_concurrency + 2,
                                max_keepalive_connections=config.max_concurrency + 2),
            transport=transport,
        )
        self.calls = 0
        self._calls_lock = threading.Lock()

    def __enter__(self) -> "ImisClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- authentication -------------------------------------------------------------------------------

    def login(self) -> Token:
        """`POST /token` (password grant). Callers hold the store's lock: see `tokens.py` for why."""
        response = send_with_retry(
            lambda: self._http.post("token", data={
                "grant_type": "password", "username": self.config.username,
                "password": self.config.password.get_secret_value(),
            }),
            what=f"iMIS login as {self.config.username!r}", policy=self.config.retry, sleep=self._sleep,
        )
        self._count_call()
        if response.status_code != 200:
            detail = _json_or_empty(response)
            reason = detail.get("error_description") or detail.get("error") or response.text[:200]
            raise ImisAuthError(
                f"iMIS refused the login of user {self.config.username!r} at {self.config.base_url}/token "
                f"(HTTP {response.status_code}: {reason}); check the imis_default connection's login and password"
            )
        body = _decode(response)
        token = Token(value=body["access_token"], token_type=body.get("token_type") or "bearer",
                      expires_at=time.time() + float(body.get("expires_in") or 1199))
        if self._on_token:
            self._on_token(token.value)
        log.info("iMIS: logged in as %s (token valid %ss)", self.config.username, body.get("expires_in"))
        return token

    def _token(self) -> Token:
        key, margin = self.config.token_key, self.config.token_margin_s
        token = self._store.get(key)
        if token and token.usable(margin):
            return token
        with self._store.lock(key):
            token = self._store.get(key)  # a peer may have logged in while we waited for the lock
            if token and token.usable(margin):
                return token
            token = self.login()
            self._store.put(key, token)
            return token

    def _renew_after_401(self, rejected: Token) -> Token:
        key = self.config.token_key
        with self._store.lock(key):
            current = self._store.get(key)
            if current and current.value != rejected.value and current.usable(0):
                return current  # a peer already renewed it; logging in again would kill the peer's token
            token = self.login()
            self._store.put(key, token)
            return token

    # -- requests ---------------------------------------------------------------------------------------

    def _count_call(self) -> None:
        with self._calls_lock:
            self.calls += 1

    def _request(self, method: str, path: str, what: str, *, params: Any = None, json: Any = None,
                 idempotent: bool = True) -> httpx.Response:
        token = self._token()
        for attempt in (1, 2):
            headers = {"Authorization": token.authorization}
            response = send_with_retry(
                lambda: self._http.request(method, path, params=params, json=json, headers=headers),
                what=what, policy=self.config.retry, idempotent=idempotent, sleep=self._sleep,
            )
            self._count_call()
            if response.status_code != 401:
                break
            if attempt == 1:
                log.info("%s: 401, re-authenticating once", what)
                token = self._renew_after_401(token)
        return _checked(response, what)

    # -- IQA ----------------------------------------------------------------------------------------------

    def fetch_page(self, query_name: str, offset: int = 0, parameters: Sequence[str] = (),
                   limit: int | None = None) -> Page:
        """One page of an IQA, `Parameter` values positional as iMIS requires (reference §2.2)."""
        endpoint = "api/query" if self.config.endpoint == "query" else "api/IQA"
        params: list[tuple[str, Any]] = [("QueryName", query_name), ("Limit", limit or self.config.page_size),
                                         ("Offset", offset)]
        params += [("Parameter", value) for value in parameters]
        response = self._request("GET", endpoint, f"IQA {query_name} (offset {offset})", params=params)
        return Page.from_envelope(_decode(response), offset)

    def iter_pages(self, query_name: str, parameters: Sequence[str] = (),
                   concurrency: int | None = None) -> Iterator[Page]:
        """Every page of an IQA, in order, each checked against the ones before (`PageSequence`).

        After the first page gives `TotalCount`, the remaining offsets are fetched `concurrency` at a time,
        stepping by the rows the first page *held* (its `Count`), never by the `Limit` echoed back: an instance
        that echoes 500 but serves 100 would otherwise skip four rows in five. Without a total (or with
        concurrency 1) it follows `NextOffset`. Rows read must add up to `TotalCount`, page after page without
        a gap or an overlap; anything else raises `ImisPagingError` naming the IQA, never a short result."""
        first = self.fetch_page(query_name, 0, parameters)
        sequence = PageSequence(query_name, first)
        yield first
        if first.has_next and first.count > 0 and first.next_offset != 0:
            workers = concurrency or self.config.max_concurrency
            if first.total_count is None or workers <= 1:
                pages = self._follow_next_offsets(query_name, first, parameters)
            else:
                pages = self._fetch_concurrently(query_name, first, parameters, workers)
            for page in pages:
                sequence.add(page)
                yield page
        sequence.finish()

    def _fetch_concurrently(self, query_name: str, first: Page, parameters: Sequence[str],
                            workers: int) -> Iterator[Page]:
        offsets = iter(range(first.count, first.total_count or 0, first.count))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imis-page") as pool:
            # A window of 2 x workers pages in flight: pages keep coming while the caller digests one, and a
            # slow caller never has the whole IQA parsed and waiting in memory.
            window = deque(pool.submit(self.fetch_page, query_name, offset, parameters)
                           for offset in islice(offsets, 2 * workers))
            try:
                while window:
                    page = window.popleft().result()
                    for offset in islice(offsets, 1):
                        window.append(pool.submit(self.fetch_page, query_name, offset, parameters))
                    yield page
            finally:
                for pending in window:
                    pending.cancel()

    def _follow_next_offsets(self, query_name: str, page: Page, parameters: Sequence[str]) -> Iterator[Page]:
        while page.has_next and page.count > 0 and page.next_offset != 0:
            if page.next_offset <= page.offset:
                raise ImisPagingError(
                    f"IQA {query_name}: NextOffset {page.next_offset} does not advance past offset {page.offset}; "
                    "stopping instead of looping"
                )
            page = self.fetch_page(query_name, page.next_offset, parameters)
            yield page

    def run_iqa(self, query_name: str, parameters: Sequence[str] = (),
                declared_types: Mapping[str, str] | None = None,
                progress: Callable[[int, int | None, int], None] | None = None) -> pd.DataFrame:
        """The whole IQA result as a typed DataFrame (see `iqa.py` for the dtypes).

        `progress(pages_done, pages_total, rows_so_far)` is called after each page so a long run can be
        followed in the task log."""
        started = time.monotonic()

        def rows() -> Iterator[dict[str, Any]]:
            """Row by row, page by page: each page's raw JSON is dropped once its values are in the columns."""
            pages_total, seen = None, 0
            for number, page in enumerate(self.iter_pages(query_name, parameters), start=1):
                if number == 1 and page.total_count is not None and page.count:
                    pages_total = max(1, -(-page.total_count // page.count))
                yield from page.rows
                seen += len(page.rows)
                if progress:
                    progress(number, pages_total, seen)

        frame = rows_to_frame(rows(), query_name, self.config.timezone, declared_types)
        frame.attrs["extraction_seconds"] = round(time.monotonic() - started, 3)
        return frame

    # -- documents and query definitions (reference §9) -----------------------------------------------

    def _execute(self, entity: str, operation: str, parameters: list[Any], what: str) -> Any:
        body = {
            "$type": _ENTITY.format("GenericExecuteRequest"),
            "EntityTypeName": entity,
            "OperationName": operation,
            "Parameters": {"$type": "System.Collections.ObjectModel.Collection`1[[System.Object, mscorlib]], mscorlib",
                           "$values": parameters},
        }
        response = self._request("POST", f"api/{entity}/_execute", what, json=body)
        return execute_result(_decode(response), what)

    def find_document(self, path: str) -> DocumentSummary:
        result = self._execute("DocumentSummary", "FindByPath", [_string(path)], f"document {path}")
        if not result:
            raise ImisNotFound(f"iMIS document {path} does not exist (or is not visible to the integration user)")
        return _document(result)

    def list_folder(self, folder_path: str, document_types: Sequence[str] = ("IQD",)) -> list[DocumentSummary]:
        """The documents of a folder, e.g. the list IQAs (`IQD`) of `$/HigherLogic/MailingLists`."""
        folder = self.find_document(folder_path)
        result = self._execute(
            "DocumentSummary", "FindDocumentsInFolder",
            [_string(folder.document_id),
             {"$type": "System.String[], mscorlib", "$values": list(document_types)},
             {"$type": "System.Boolean", "$value": False}],
            f"folder {folder_path}",
        )
        values = result.get("$values", []) if isinstance(result, Mapping) else list(result or [])
        return [_document(item) for item in values]

    def query_definition(self, path: str) -> IqaDefinition:
        """The IQA's display columns and filters, to check it against the package before running it."""
        what = f"IQA definition {path}"
        result = self._execute("QueryDefinition", "FindByPath", [_string(path)], what)
        if not result:
            raise ImisNotFound(f"IQA {path} does not exist (or is not visible to the integration user)")
        if not isinstance(result, Mapping):
            raise ImisUnexpectedAnswer(f"{what}: expected a QueryDefinition object, got {type(result).__name__}")
        return IqaDefinition.from_query_definition({**result, "Path": path})

    # -- activities (reference §3) --------------------------------------------------------------------

    def post_activity(self, party_id: str, properties: Mapping[str, Any]) -> str:
        """Create one activity and return its SEQN. Not idempotent: an ambiguous failure raises
        `AmbiguousWriteError` so the caller can look for the activity before posting again."""
        body = activity_entity(party_id, properties)
        response = self._request("POST", "api/Activity", f"activity for party {party_id}", json=body,
                                 idempotent=False)
        return entity_identity(response.json())

    def find_activities(self, filters: Mapping[str, str], page_size: int = MAX_PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Activities matching `filters` (`PartyId`, or `PROPERTY=op:value`), flattened to property dicts with
        `SEQN` and `PartyId` taken from the row's identities (see `activity_row`)."""
        offset = 0
        while True:
            params = {**filters, "Limit": page_size, "Offset": offset}
            response = self._request("GET", "api/Activity", f"activities {dict(filters)}", params=params)
            page = Page.from_envelope(_decode(response), offset)
            for row in page.rows:
                yield activity_row(row, f"activities {dict(filters)}")
            if not page.has_next or page.count == 0 or page.next_offset <= offset:
                return
            offset = page.next_offset


# -- wire helpers -----------------------------------------------------------------------------------------

def _decode(response: httpx.Response) -> Any:
    """An IQA page's JSON. msgspec parses the nested `/api/IQA` rows several times faster than `json`, and
    parsing, not the network, is what bounds an extraction."""
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError as bad:
        raise ImisAnswerNotJson(f"{response.request.method} {response.request.url.path}: the answer is not JSON "
                                f"({bad}): {response.text[:200]}") from bad


def execute_result(payload: Any, what: str) -> Any:
    """The `Result` of an `_execute` answer: EMS wraps it in a ServiceResponse (`Result`, `StatusCode`,
    `IsCachedResult`, `ValidationResults`); iMIS 2017 returns the result itself (an object, or null when
    nothing matched). An envelope reporting failure is an error naming the call."""
    if payload is None or not isinstance(payload, Mapping):
        return payload
    if "Result" not in payload:
        return payload  # 2017: the bare result
    errors = _validation_messages(payload.get("ValidationResults"))
    if payload.get("IsSuccessStatusCode") is False or errors:
        detail = "; ".join(errors) or str(payload.get("Message") or payload.get("StatusCode") or "no detail")
        raise ImisRequestError(f"{what}: iMIS reported failure: {detail}", 200)
    return payload["Result"]


def _validation_messages(results: Any) -> list[str]:
    errors = results.get("Errors") if isinstance(results, Mapping) else None
    values = errors.get("$values") if isinstance(errors, Mapping) else None
    return [str(e.get("Message") or e) for e in values or () if isinstance(e, Mapping)]


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_detail(response: httpx.Response) -> str:
    body = _json_or_empty(response)
    messages = _validation_messages(body)
    if messages:
        return "; ".join(messages)
    return str(body.get("Message") or body.get("error_description") or response.text[:300])


def _checked(response: httpx.Response, what: str) -> httpx.Response:
    status = response.status_code
    if status < 400:
        return response
    detail = _error_detail(response)
    if status == 401:
        raise ImisAuthError(
            f"{what}: still unauthorised after a fresh login ({detail}). For an IQA this usually means it is not "
            "shared with Everyone, or the integration user lacks the RemoteService role"
        )
    if status == 403:
        raise ImisAuthError(f"{what}: forbidden for the integration user ({detail})")
    if status == 404:
        raise ImisNotFound(f"{what}: not found ({detail})")
    if 400 <= status < 500:
        raise ImisRequestError(f"{what}: rejected with HTTP {status}: {detail}", status)
    raise ImisServerError(f"{what}: HTTP {status}: {detail}", status)


def _string(value: str) -> dict[str, str]:
    return {"$type": "System.String", "$value": value}


def _document(data: Mapping[str, Any]) -> DocumentSummary:
    return DocumentSummary(document_id=str(data.get("DocumentId", "")), document_type=str(data.get("DocumentTypeId", "")),
                           path=str(data.get("Path", "")), name=str(data.get("Name", "")), status=data.get("Status"))


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
