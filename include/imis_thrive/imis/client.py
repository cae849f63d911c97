"""HTTP client for the iMIS REST API: token, IQA paging, documents, query definitions, activities.

Knows nothing of Airflow (include/imis_thrive/airflow/hooks/imis.py builds it from a connection). Every call goes
through `_request`, which adds the shared bearer token, retries what is worth retrying (`http_retry`), re-authenticates
once on 401, and turns every other failure into a typed error naming the query or entity.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Literal

import httpx
import msgspec
import pandas as pd
from pydantic import BaseModel, Field, SecretStr

from include.imis_thrive.http_clients import ONE_CONNECTION, ClientPool
from include.imis_thrive.http_retry import RetryPolicy, send_with_retry
from include.imis_thrive.imis.entities import (
    DocumentSummary,
    activity_entity,
    activity_row,
    entity_identity,
    execute_request,
    execute_result,
    typed_string,
    validation_messages,
)
from include.imis_thrive.imis.errors import (
    ImisAnswerNotJson,
    ImisAuthError,
    ImisNotFound,
    ImisRequestError,
    ImisServerError,
    ImisUnexpectedAnswer,
)
from include.imis_thrive.imis.iqa import frame_from_pages
from include.imis_thrive.imis.iqa_package import IqaDefinition
from include.imis_thrive.imis.iqa_wire import decode_iqa_page
from include.imis_thrive.imis.pages import Page, paged
from include.imis_thrive.imis.tokens import PROCESS_TOKEN_STORE, Token, TokenStore
from include.imis_thrive.tls import verification

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500  # iMIS silently caps larger pages (reference §2.4)
# A 401 renews the token and replays the request; a third refusal of a fresh token is an answer, not a race.
TOKEN_ATTEMPTS = 3


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
    verify: bool = Field(True, description="Verify the site's TLS certificate; off only for a test host")
    ca_bundle: str | None = Field(None, description="PEM file of the CA that signed the site's certificate")
    token_margin_s: float = Field(60.0, description="Renew a token this long before it expires")
    retry: RetryPolicy = RetryPolicy()

    @property
    def token_key(self) -> str:
        return f"{self.base_url.rstrip('/')}|{self.username.lower()}"


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
        # checked now (an unreadable CA bundle fails here, not at the first call), shared by every lent client
        verify = verification(config.verify, config.ca_bundle)
        self._http = ClientPool(partial(_http_client, config, transport, verify))
        self.calls = 0
        self._calls_lock = threading.Lock()

    def __enter__(self) -> ImisClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- authentication -------------------------------------------------------------------------------

    def login(self) -> Token:
        """`POST /token` (password grant). Callers hold the store's lock: see `tokens.py` for why."""
        response = send_with_retry(
            lambda: self._send("POST", "token", data={
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
        body = _decode(response, f"iMIS login as {self.config.username!r}")
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

    def login_and_share(self) -> Token:
        """Log in now, whatever token the store holds, and put the new one there: how the connection test checks
        the password. Workers sharing the store find the new token on their next 401 (`_renew_after_401`)."""
        key = self.config.token_key
        with self._store.lock(key):
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

    def _send(self, method: str, path: str, **request: Any) -> httpx.Response:
        """One HTTP exchange on a client no other thread is using (`http_clients.ClientPool`: why)."""
        with self._http.lent() as http:
            return http.request(method, path, **request)

    def _request(self, method: str, path: str, what: str, *, params: Any = None, json: Any = None,
                 idempotent: bool = True) -> httpx.Response:
        token = self._token()
        # msgspec encodes the same compact JSON as httpx's `json=`, several times faster (an activity per call)
        body = None if json is None else msgspec.json.encode(json)
        for attempt in range(1, TOKEN_ATTEMPTS + 1):
            headers = {"Authorization": token.authorization}
            if body is not None:
                headers["Content-Type"] = "application/json"
            response = send_with_retry(
                partial(self._send, method, path, params=params, content=body, headers=headers),
                what=what, policy=self.config.retry, idempotent=idempotent, sleep=self._sleep,
            )
            self._count_call()
            if response.status_code != 401 or attempt == TOKEN_ATTEMPTS:
                break
            if attempt == 1:
                log.info("%s: 401, renewing the token and sending it again", what)
            else:
                log.warning("%s: 401 again with a fresh token; another login as %s may have replaced it, renewing "
                            "once more", what, self.config.username)
            token = self._renew_after_401(token)
        if response.status_code == 401:
            raise ImisAuthError(
                f"{what}: refused {TOKEN_ATTEMPTS} fresh tokens in a row ({_error_detail(response)}). Either it is "
                "not shared with Everyone (for an IQA) or the integration user lacks the RemoteService role, or "
                f"something else keeps logging in as {self.config.username!r} and so replacing this token (iMIS "
                "keeps one per user): another machine or deployment with its own token store (set the imis "
                "connection's token_store to redis so that every worker shares one), or a person signed in as "
                "the integration user"
            )
        return _checked(response, what)

    # -- IQA ----------------------------------------------------------------------------------------------

    def fetch_page(self, query_name: str, offset: int = 0, parameters: Sequence[str] = (),
                   limit: int | None = None) -> Page:
        """One page of an IQA, its rows as plain JSON objects; `Parameter` values positional as iMIS requires
        (reference §2.2)."""
        what = f"IQA {query_name} (offset {offset})"
        response = self._iqa_request(query_name, offset, parameters, limit, what)
        return _page(_decode(response, what), offset, what)

    def _fetch_typed_page(self, query_name: str, offset: int, parameters: Sequence[str]) -> Page:
        """One page of an IQA, its rows decoded straight into the structs of `iqa_wire` (what `run_iqa` reads)."""
        what = f"IQA {query_name} (offset {offset})"
        response = self._iqa_request(query_name, offset, parameters, None, what)
        try:
            envelope = decode_iqa_page(response.content, self.config.endpoint)
        except msgspec.ValidationError as unknown:
            _page(_decode(response, what), offset, what)  # JSON that is no paging envelope is reported as such
            raise ImisUnexpectedAnswer(
                f"{what}: the rows of the answer to {response.request.method} {response.request.url.path} have a "
                f"shape the client does not know ({_validation_failure(unknown)}); nothing is read from it rather "
                "than a result with rows or values missing. Check the imis_default connection's endpoint extra "
                "(query or iqa) against the instance's version") from unknown
        except msgspec.DecodeError as bad:
            raise _not_json(response, what, bad) from bad
        return _page(envelope.as_body(), offset, what)

    def _iqa_request(self, query_name: str, offset: int, parameters: Sequence[str], limit: int | None,
                     what: str) -> httpx.Response:
        endpoint = "api/query" if self.config.endpoint == "query" else "api/IQA"
        params: list[tuple[str, Any]] = [("QueryName", query_name), ("Limit", limit or self.config.page_size),
                                         ("Offset", offset)]
        params += [("Parameter", value) for value in parameters]
        return self._request("GET", endpoint, what, params=params)

    def iter_pages(self, query_name: str, parameters: Sequence[str] = (),
                   concurrency: int | None = None) -> Iterator[Page]:
        """Every page of an IQA (rows typed as `iqa_wire` decodes them), in order, fetched `concurrency` at a time
        once the total is known and checked by `pages.paged`: all the rows once, or `ImisPagingError` naming the
        IQA."""
        return paged(lambda offset: self._fetch_typed_page(query_name, offset, parameters), f"IQA {query_name}",
                     concurrency or self.config.max_concurrency)

    def run_iqa(self, query_name: str, parameters: Sequence[str] = (),
                declared_types: Mapping[str, str] | None = None,
                progress: Callable[[int, int | None, int], None] | None = None) -> pd.DataFrame:
        """The whole IQA result as a typed DataFrame (built by `iqa.frame_from_pages`, which has the dtypes)."""
        return frame_from_pages(self.iter_pages(query_name, parameters), query_name, self.config.timezone,
                                declared_types, progress)

    # -- documents and query definitions (reference §9) -----------------------------------------------

    def _execute(self, entity: str, operation: str, parameters: list[Any], what: str) -> Any:
        response = self._request("POST", f"api/{entity}/_execute", what,
                                 json=execute_request(entity, operation, parameters))
        return execute_result(_decode(response, what), what)

    def find_document(self, path: str) -> DocumentSummary:
        result = self._execute("DocumentSummary", "FindByPath", [typed_string(path)], f"document {path}")
        if not result:
            raise ImisNotFound(f"iMIS document {path} does not exist (or is not visible to the integration user)")
        return DocumentSummary.from_entity(result)

    def list_folder(self, folder_path: str, document_types: Sequence[str] = ("IQD",)) -> list[DocumentSummary]:
        """The documents of a folder, e.g. the list IQAs (`IQD`) of `$/HigherLogic/MailingLists`."""
        folder = self.find_document(folder_path)
        result = self._execute(
            "DocumentSummary", "FindDocumentsInFolder",
            [typed_string(folder.document_id),
             {"$type": "System.String[], mscorlib", "$values": list(document_types)},
             {"$type": "System.Boolean", "$value": False}],
            f"folder {folder_path}",
        )
        values = result.get("$values", []) if isinstance(result, Mapping) else list(result or [])
        return [DocumentSummary.from_entity(item) for item in values]

    def query_definition(self, path: str) -> IqaDefinition:
        """The IQA's display columns and filters, to check it against the package before running it."""
        what = f"IQA definition {path}"
        result = self._execute("QueryDefinition", "FindByPath", [typed_string(path)], what)
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
        what = f"activities {dict(filters)}"

        def fetch(offset: int) -> Page:
            params = {**filters, "Limit": page_size, "Offset": offset}
            where = f"{what} (offset {offset})"
            return _page(_decode(self._request("GET", "api/Activity", where, params=params), where), offset, where)

        for page in paged(fetch, what):
            for row in page.rows:
                yield activity_row(row, what)


# -- wire helpers -----------------------------------------------------------------------------------------

def _http_client(config: ImisConfig, transport: httpx.BaseTransport | None,
                 verify: bool | ssl.SSLContext) -> httpx.Client:
    """One of the clients `ImisClient` lends per request: a single connection, used by one thread at a time."""
    return httpx.Client(base_url=config.base_url.rstrip("/") + "/", timeout=config.timeout_s,
                        headers={"Accept": "application/json"}, limits=ONE_CONNECTION, transport=transport,
                        verify=verify)


def _decode(response: httpx.Response, what: str) -> Any:
    """An answer's JSON, decoded generically (an IQA page's rows have their typed decoder in `iqa_wire`)."""
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError as bad:
        raise _not_json(response, what, bad) from bad


def _not_json(response: httpx.Response, what: str, bad: msgspec.DecodeError) -> ImisAnswerNotJson:
    """An answer that is not JSON is described, never quoted: an IQA page is member data, so the error (which goes
    to task logs and alert mails) gives the call, its length, its content type and where parsing stopped."""
    content_type = response.headers.get("content-type") or "no content type"
    return ImisAnswerNotJson(
        f"{what}: the answer to {response.request.method} {response.request.url.path} is not JSON "
        f"({len(response.content):,} bytes, {content_type}; {_parse_failure(bad)}). An HTML answer is most "
        "often the site's web pages rather than its REST API (check the imis_default connection's host and path "
        "prefix); a JSON answer cut short is the instance's or a proxy's trouble: run it again, and if it "
        "persists ask the iMIS administrator to check the server log for this call")


def _parse_failure(error: msgspec.DecodeError) -> str:
    """msgspec's reason without anything quoted from the body ("JSON is malformed: ... (byte 71)")."""
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "…", str(error).split("\n", 1)[0])
    return reason if len(reason) <= 80 else "malformed JSON"


def _validation_failure(error: msgspec.ValidationError) -> str:
    """What the typed decoder expected and where (msgspec names types and a JSON path, e.g. "Expected `str |
    int | float | bool | TypedValue | null`, got `array` - at `$.Items.$values[3].Properties.$values[2].Value`"),
    with anything quoted removed: a path may hold a column alias in quotes, never a value, but be sure."""
    return re.sub(r"'[^']*'|\"[^\"]*\"", "…", str(error).split("\n", 1)[0])[:300]


def _page(body: Any, offset: int, what: str) -> Page:
    """The paging envelope, or `ImisUnexpectedAnswer` for JSON of another shape (never an empty page)."""
    if not isinstance(body, Mapping) or not ("Items" in body or "Count" in body):
        raise ImisUnexpectedAnswer(f"{what}: expected a paged result (Items, Count, TotalCount, ...), got "
                                   f"{_shape(body)}")
    try:
        return Page.from_envelope(body, offset)
    except (TypeError, ValueError) as bad:
        raise ImisUnexpectedAnswer(f"{what}: the paging envelope has a field that is not a number ({bad})") from bad


def _shape(body: Any) -> str:
    if isinstance(body, Mapping):
        return "an object with keys " + ", ".join(sorted(map(str, body))[:10])
    return f"a JSON {type(body).__name__}"


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_detail(response: httpx.Response) -> str:
    body = _json_or_empty(response)
    messages = validation_messages(body)
    if messages:
        return "; ".join(messages)
    return str(body.get("Message") or body.get("error_description") or response.text[:300])


def _checked(response: httpx.Response, what: str) -> httpx.Response:
    status = response.status_code
    if status < 400:
        return response
    detail = _error_detail(response)
    if status == 403:
        raise ImisAuthError(f"{what}: forbidden for the integration user ({detail})")
    if status == 404:
        raise ImisNotFound(f"{what}: not found ({detail})")
    if 400 <= status < 500:
        raise ImisRequestError(f"{what}: rejected with HTTP {status}: {detail}", status)
    raise ImisServerError(f"{what}: HTTP {status}: {detail}", status)
