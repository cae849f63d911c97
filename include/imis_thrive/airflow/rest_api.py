"""Airflow's public REST API (`/api/v2`), just enough for a pre-publish refresh of one target group.

A marketer about to publish a message wants its target group fresh from iMIS *now*, not at the next hourly
run. `bin/refresh-target-group "<group>"` triggers `imis_to_thrive_target_groups` with that group through the
API server (what any scheduler, CI job or CMS hook can do as well), and optionally waits for the outcome:

    POST /auth/token                                   {"username", "password"} -> {"access_token"}  (201)
    POST /api/v2/dags/{dag_id}/dagRuns                 {"dag_run_id", "logical_date": null, "conf"}  -> run
    GET  /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}    -> run, with "state"

The `/api/v2` calls go through Airflow's own client library (`apache-airflow-client`, generated from the API
server's OpenAPI document and released with it), with urllib3's retries for 429, 5xx and connection errors.
The token route is the SimpleAuthManager's (Airflow's default) and in no API document, so it is called here
with the library's HTTP pool; another auth manager issues tokens its own way, so `AirflowApiClient` also
accepts a ready token. The run id is chosen here, which makes the trigger safe to retry: a repeat of a POST
that did reach Airflow answers 409, and the run it created is read back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import urllib3
from airflow_client.client import ApiClient, Configuration
from airflow_client.client.api.dag_run_api import DagRunApi
from airflow_client.client.exceptions import (
    ApiException,
    ConflictException,
    ForbiddenException,
    NotFoundException,
    ServiceException,
    UnauthorizedException,
)
from airflow_client.client.models.dag_run_response import DAGRunResponse
from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody

from include.imis_thrive.errors import BadConfiguration, ImisThriveError, TransientTrouble

TARGET_GROUP_DAG = "imis_to_thrive_target_groups"
FINISHED_STATES = frozenset({"success", "failed"})
# POST too: a trigger carries its own run id, so a repeat is recognised (409) rather than doubled.
RETRIES = urllib3.Retry(total=4, backoff_factor=0.5, backoff_max=10.0, status_forcelist=(429, 500, 502, 503, 504),
                        allowed_methods=None, respect_retry_after_header=True, raise_on_status=False)
T = TypeVar("T")


class AirflowApiError(ImisThriveError):
    """The Airflow API refused a call; the message names the DAG, run or login to fix. A family, never raised."""


class AirflowLoginRefused(AirflowApiError, BadConfiguration):
    """Wrong user name or password (or a user the auth manager does not know)."""


class AirflowAccessDenied(AirflowApiError, BadConfiguration):
    """The user is known but its role may not do this (e.g. a viewer triggering a DAG)."""


class DagNotFound(AirflowApiError, BadConfiguration):
    """The DAG id is unknown to the API server: not parsed yet, removed, or misspelt."""


class DagRunRejected(AirflowApiError, BadConfiguration):
    """Airflow would not create the run, typically a conf value that breaks the DAG's params."""


class DagRunTimeout(AirflowApiError, TransientTrouble):
    """The run did not finish within the wait; it keeps running in Airflow."""


class AirflowRequestRefused(AirflowApiError, BadConfiguration):
    """Any other 4xx: the call itself is wrong (a URL that is not the API server's, say)."""


class AirflowServerError(AirflowApiError, TransientTrouble):
    """A 5xx the HTTP retry policy does not retry itself: the API server's trouble."""


@dataclass(frozen=True)
class DagRun:
    dag_id: str
    run_id: str
    state: str
    conf: dict[str, Any]

    @classmethod
    def from_api(cls, run: DAGRunResponse) -> DagRun:
        return cls(dag_id=run.dag_id, run_id=run.dag_run_id, state=str(run.state.value), conf=dict(run.conf or {}))

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


class AirflowApiClient:
    """A logged-in session with one Airflow API server; one per thread, like the other clients."""

    def __init__(self, base_url: str, username: str | None = None, password: str | None = None, *,
                 token: str | None = None, timeout_s: float = 30.0, retries: urllib3.Retry = RETRIES) -> None:
        if token is None and not (username and password):
            raise AirflowLoginRefused(f"Airflow API at {base_url}: give a user name and password, or a token")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._timeout_s = timeout_s
        self._api = ApiClient(Configuration(host=self.base_url, access_token=token, retries=retries))
        self._runs = DagRunApi(self._api)

    def __repr__(self) -> str:  # never the password or the token
        return f"AirflowApiClient({self.base_url!r}, username={self.username!r})"

    def __enter__(self) -> AirflowApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._api.rest_client.pool_manager.clear()

    def login(self) -> None:
        """A fresh JWT from the SimpleAuthManager's token route; kept in memory only, never logged."""
        if not (self.username and self._password):
            raise AirflowLoginRefused(f"Airflow API at {self.base_url}: the token was refused and no user name "
                                      "and password were given to log in again")
        response = self._api.rest_client.request(
            "POST", f"{self.base_url}/auth/token", headers={"Content-Type": "application/json"},
            body={"username": self.username, "password": self._password}, _request_timeout=self._timeout_s)
        response.read()
        text = response.data.decode(errors="replace")
        if response.status in (400, 401, 403):
            raise AirflowLoginRefused(f"Airflow API at {self.base_url} refused the login of user {self.username!r}"
                                      f" ({_detail(response.status, text)}): check the user name and password")
        if response.status >= 500:
            raise ServiceException(status=response.status, reason=response.reason, body=text)
        if response.status >= 400:
            raise AirflowRequestRefused(f"Airflow login as {self.username!r}: {_detail(response.status, text)}")
        self._api.configuration.access_token = json.loads(response.data)["access_token"]

    def trigger_dag_run(self, dag_id: str, conf: Mapping[str, Any], run_id: str | None = None,
                        note: str | None = None, logical_date: datetime | None = None) -> DagRun:
        """A manual run of `dag_id` with `conf`, queued for the scheduler; returns it as Airflow stored it.
        `logical_date` picks the data interval of an interval DAG (the writeback's hour); None is "now"."""
        run_id = run_id or manual_run_id()
        body = TriggerDAGRunPostBody(dag_run_id=run_id, logical_date=logical_date, conf=dict(conf), note=note)
        what = f"trigger DAG {dag_id!r}"
        try:
            run = self._call(lambda: self._runs.trigger_dag_run(dag_id, body, _request_timeout=self._timeout_s))
        except ConflictException:
            return self._run_created_by_earlier_attempt(dag_id, run_id, dict(conf))
        except ApiException as error:
            raise self._dag_error(error, dag_id, what) from None
        return DagRun.from_api(run)

    def get_dag_run(self, dag_id: str, run_id: str) -> DagRun:
        what = f"read run {run_id!r} of DAG {dag_id!r}"
        try:
            run = self._call(lambda: self._runs.get_dag_run(dag_id, run_id, _request_timeout=self._timeout_s))
        except NotFoundException as error:
            raise DagNotFound(f"{what}: Airflow at {self.base_url} knows no such DAG or run "
                              f"({_detail(error.status, error.body)})") from None
        except ApiException as error:
            raise self._dag_error(error, dag_id, what) from None
        return DagRun.from_api(run)

    def wait_for_dag_run(self, dag_id: str, run_id: str, timeout_s: float, poll_s: float = 5.0, *,
                         on_state: Callable[[DagRun], None] | None = None,
                         sleep: Callable[[float], None] = time.sleep,
                         clock: Callable[[], float] = time.monotonic) -> DagRun:
        """Poll until the run succeeds or fails; `on_state` hears each change of state."""
        deadline = clock() + timeout_s
        last_state = None
        while True:
            run = self.get_dag_run(dag_id, run_id)
            if run.state != last_state and on_state:
                on_state(run)
            last_state = run.state
            if run.finished:
                return run
            remaining = deadline - clock()
            if remaining <= 0:
                raise DagRunTimeout(f"run {run_id!r} of DAG {dag_id!r} is still {run.state} after {timeout_s:g}s; "
                                    f"it goes on in Airflow: follow it at {self.run_url(dag_id, run_id)}")
            sleep(min(poll_s, remaining))

    def run_url(self, dag_id: str, run_id: str) -> str:
        """Where the run is in the Airflow UI."""
        return f"{self.base_url}/dags/{_segment(dag_id)}/runs/{_segment(run_id)}"

    def _call(self, call: Callable[[], T]) -> T:
        """One API call; logs in first, and once more if the token expired."""
        if self._api.configuration.access_token is None:
            self.login()
        try:
            return call()
        except UnauthorizedException:
            self.login()
            return call()

    def _run_created_by_earlier_attempt(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> DagRun:
        """A 409 for our own run id: an earlier attempt went through if the stored run carries our conf."""
        run = self.get_dag_run(dag_id, run_id)
        if run.conf != conf:
            raise DagRunRejected(f"trigger DAG {dag_id!r}: run id {run_id!r} is already taken by a run with "
                                 "another conf; trigger again with a new run id")
        return run

    def _dag_error(self, error: ApiException, dag_id: str, what: str) -> Exception:
        """The domain error for an API refusal; 5xx (retries spent) stays the library's ServiceException."""
        if isinstance(error, ForbiddenException):
            return AirflowAccessDenied(f"{what}: user {self.username!r} may not do this at {self.base_url} "
                                       f"({_detail(error.status, error.body)}); it needs the 'user' role or higher")
        if isinstance(error, NotFoundException):
            return DagNotFound(f"{what}: Airflow at {self.base_url} knows no DAG {dag_id!r} "
                               f"({_detail(error.status, error.body)}); is the DAG file deployed and parsed?")
        if error.status in (400, 422):
            return DagRunRejected(f"{what}: {_detail(error.status, error.body)}")
        if isinstance(error, ServiceException):
            return error
        return AirflowRequestRefused(f"{what}: {_detail(error.status, error.body)}")


def manual_run_id(now: datetime | None = None) -> str:
    """Airflow's own shape for manual run ids, made here so a retried trigger cannot create a second run."""
    return f"manual__{(now or datetime.now(UTC)).isoformat(timespec='microseconds')}"


def target_group_conf(target_group: str, dry_run: bool) -> dict[str, Any]:
    """The conf of a one-group refresh; every other param keeps the DAG's default."""
    if not target_group.strip():
        raise ValueError("the target group name is empty: give the list IQA's name, e.g. \"Newsletter\"")
    return {"target_group": target_group, "dry_run": dry_run}


def _segment(value: str) -> str:
    return quote(value, safe="")


def _detail(status: int | None, body: str | None) -> str:
    """Airflow's error detail (a string or a structure), short enough for one line."""
    try:
        detail = json.loads(body or "").get("detail", body)
    except (ValueError, AttributeError):
        detail = body or ""
    text = detail if isinstance(detail, str) else str(detail)
    return f"HTTP {status}: {' '.join(text.split())[:300]}"


# --- bin/refresh-target-group ------------------------------------------------------------------------------

URL_ENV, USER_ENV, PASSWORD_ENV = "AIRFLOW_API_URL", "AIRFLOW_API_USER", "AIRFLOW_API_PASSWORD"
DEFAULT_URL = "http://localhost:8080"
EXIT_OK, EXIT_RUN_FAILED, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refresh-target-group",
        description="Pre-publish refresh: trigger imis_to_thrive_target_groups for one target group through "
                    f"Airflow's REST API. Server from ${URL_ENV} (default {DEFAULT_URL}); login from "
                    f"${USER_ENV} and ${PASSWORD_ENV} (never on the command line, where `ps` would show it).",
        epilog="Exit status: 0 triggered (or succeeded with --wait), 1 the run failed, 2 refused or "
               "misconfigured, 3 still running when --timeout ran out.")
    parser.add_argument("target_group", help="the target group (the list IQA's name), e.g. \"Newsletter\"")
    parser.add_argument("--wait", action="store_true", help="wait for the run to finish and exit with its outcome")
    parser.add_argument("--dry-run", action="store_true", help="compute and report the diff; load nothing")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds --wait waits (default 1800)")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between state checks (default 5)")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    """The script: progress on stdout, one `error:` line on stderr naming what to fix, and an exit status."""
    args = _parser().parse_args(argv)
    url, username, password = env.get(URL_ENV) or DEFAULT_URL, env.get(USER_ENV), env.get(PASSWORD_ENV)
    if not (username and password):
        return _fail(f"set {USER_ENV} and {PASSWORD_ENV} to an Airflow user allowed to trigger DAGs", EXIT_ERROR)
    try:
        conf = target_group_conf(args.target_group, args.dry_run)
        with AirflowApiClient(url, username, password) as airflow:
            run = airflow.trigger_dag_run(TARGET_GROUP_DAG, conf, note=f"pre-publish refresh of {args.target_group}")
            print(f"triggered {run.dag_id} run {run.run_id} for target group {args.target_group!r}"
                  f"{' (dry run)' if args.dry_run else ''}: {run.state}\n  {airflow.run_url(run.dag_id, run.run_id)}",
                  flush=True)
            if not args.wait:
                return EXIT_OK
            run = airflow.wait_for_dag_run(run.dag_id, run.run_id, args.timeout, args.poll,
                                           on_state=lambda changed: print(f"  {changed.state}", flush=True))
            return EXIT_OK if run.state == "success" else _fail(
                f"run {run.run_id} {run.state}: see its task logs at {airflow.run_url(run.dag_id, run.run_id)}",
                EXIT_RUN_FAILED)
    except DagRunTimeout as timeout:
        return _fail(str(timeout), EXIT_TIMEOUT)
    except AirflowLoginRefused as refused:
        return _fail(f"{refused} (from {USER_ENV} / {PASSWORD_ENV})", EXIT_ERROR)
    except (urllib3.exceptions.HTTPError, ServiceException) as unreachable:
        reason = (_detail(unreachable.status, unreachable.body) if isinstance(unreachable, ServiceException)
                  else f"{type(unreachable).__name__}: {unreachable}")
        return _fail(f"cannot reach the Airflow API at {url} ({reason}); is the API server up and "
                     f"{URL_ENV} right?", EXIT_ERROR)
    except (AirflowApiError, ValueError) as error:
        return _fail(str(error), EXIT_ERROR)


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
