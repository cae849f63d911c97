"""What every sync task needs from Airflow: the snapshot store, the clients, and failure semantics.

Kept apart from the DAG files so they stay a table of contents, and cheap to import (the heavy modules
load inside the functions, at task run time, never when the DAG processor parses a file).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from include.imis_thrive.airflow.notifications.alerts import notify_run_failure, record_failure
from include.imis_thrive.errors import BadConfiguration, BadData

if TYPE_CHECKING:
    from include.imis_thrive.sync.lease import LeaseTerms
    from include.imis_thrive.sync.snapshots import SnapshotStore
    from include.imis_thrive.sync.target_groups import CampaignOnly

log = logging.getLogger(__name__)

# Every task of the three DAGs: transport trouble retries (2 more tries, 2 → 4 min apart, at most 15), and
# the final failure is recorded for the run's alert. Bad data and bad configuration fail at once instead
# (`retry_by_error_kind`). A task's return value is its XCom (a whole summary, often kilobytes): the task logs its
# own figures instead of a "Done. Returned value was: ..." dump of it.
DEFAULT_ARGS = {"owner": "data-team", "retries": 2, "retry_delay": timedelta(minutes=2),
                "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=15),
                "on_failure_callback": record_failure, "show_return_value_in_logs": False}

# Each DAG's own `on_failure_callback`: one alert per failed run, naming every failed task (alerts.py).
RUN_FAILURE_ALERT = notify_run_failure

# The sync DAGs' `allowed_run_types`: every kind of run but a backfill. A sync sends iMIS as it is now, whatever the
# run's logical date, so a backfill would resend the present once per past interval. Airflow refuses such a
# backfill when it is created (CLI, REST API; the UI offers none); `full_resync` is the way to send everything again.
RUN_TYPES_BUT_BACKFILL = ("scheduled", "manual", "operator_triggered", "asset_materialization")

STORE_URL_VARIABLE = "imis_thrive_store_url"
STORE_OPTIONS_VARIABLE = "imis_thrive_store_options"
LEASE_VARIABLE = "imis_thrive_writeback_lease"


def default_store_url() -> str:
    return str(Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "imis_thrive_store")


# Executors whose tasks all run on the machine of the scheduler: a folder in the Airflow home is shared by every task.
SINGLE_MACHINE_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})


class LocalStoreOnDistributedExecutor(BadConfiguration):
    """The store would be a folder on each worker, so a task on another worker than its stage's would fail."""


def executors_in_use() -> list[str]:
    """The class names of `[core] executor` (a list since Airflow 2.10: `LocalExecutor,my_alias:pkg.mod.Class`)."""
    from airflow.configuration import conf

    entries = conf.get("core", "executor", fallback="LocalExecutor").split(",")
    return [entry.split(":")[-1].strip().rsplit(".", 1)[-1] for entry in entries if entry.strip()]


def store_url(configured: str | None, executors: list[str]) -> str:
    """The configured store, else the Airflow home's folder, which only a single-machine executor may use: on
    Celery or Kubernetes each worker has its own home, and which worker takes a task would decide if it works."""
    if configured:
        return configured
    distributed = sorted(set(executors) - SINGLE_MACHINE_EXECUTORS)
    if distributed:
        raise LocalStoreOnDistributedExecutor(
            f"the {STORE_URL_VARIABLE!r} Variable is not set, so snapshots would go to a folder in each worker's "
            f"Airflow home, but {', '.join(distributed)} runs tasks on several machines: set {STORE_URL_VARIABLE!r} "
            "to a store every worker reaches (e.g. s3://bucket/imis-thrive, with imis_thrive_store_options for its "
            "endpoint), then re-run"
        )
    return default_store_url()


def snapshot_store(variable: Callable[[str], str | None] | None = None) -> SnapshotStore:
    """The store named by the `imis_thrive_store_url` Variable (any fsspec URL, e.g. `s3://bucket/imis-thrive`),
    else a folder in the Airflow home (single-machine executors only). `imis_thrive_store_options` (JSON) passes
    fsspec options such as an `endpoint_url`; credentials come from the worker's environment (an IAM role, say),
    never from here. `variable` reads a Variable: the Task SDK's in a task (the default); the api-server, which
    has no task context, passes one that reads the metadata DB (`plugins/sync_health.py`)."""
    from include.imis_thrive.sync.snapshots import SnapshotStore

    if variable is None:
        from airflow.sdk import Variable

        def variable(key: str) -> str | None:
            return Variable.get(key, default=None)

    base = store_url(variable(STORE_URL_VARIABLE), executors_in_use())
    options = json.loads(variable(STORE_OPTIONS_VARIABLE) or "{}")
    return SnapshotStore(base, storage_options=options)


def report_view_url(dag_id: str, run_id: str) -> str:
    """Where a run's readable report is in the Airflow UI (the Sync health plugin's run view), under
    `[api] base_url`: the address `finish_run` logs."""
    from airflow.configuration import conf

    from include.imis_thrive.health.addresses import report_view_url as under

    return under(conf.get("api", "base_url", fallback="") or "http://localhost:8080", dag_id, run_id)


def writeback_lease_terms() -> LeaseTerms:
    """The activity writeback's lease per data interval: `imis_thrive_writeback_lease` (JSON seconds, e.g.
    `{"ttl": 120, "renew_every": 30, "wait": 300, "grace": 90}`, any of them) over the defaults of `sync/lease.py`.
    A SIGKILLed writer's retry waits up to ttl + grace; keep grace above the iMIS request timeout."""
    from dataclasses import replace

    from airflow.sdk import Variable

    from include.imis_thrive.sync.lease import DEFAULT_TERMS

    raw = json.loads(Variable.get(LEASE_VARIABLE, default=None) or "{}")
    try:
        return replace(DEFAULT_TERMS, **{name: timedelta(seconds=float(seconds)) for name, seconds in raw.items()})
    except (TypeError, ValueError) as wrong:
        raise BadConfiguration(f"Variable {LEASE_VARIABLE}: {wrong}; expected a JSON object of seconds with the "
                               "keys ttl, renew_every, wait, grace") from wrong


def campaign_only_choice() -> CampaignOnly:
    """The hourly run's campaign groups: the `imis_thrive_campaign_groups` Variable (a JSON list, or names separated
    by commas) when set, else Thrive's own signals."""
    from airflow.sdk import Variable

    from include.imis_thrive.sync.target_groups import CAMPAIGN_GROUPS_VARIABLE, CampaignOnly

    raw = (Variable.get(CAMPAIGN_GROUPS_VARIABLE, default=None) or "").strip()
    names = json.loads(raw) if raw.startswith("[") else raw.split(",")
    return CampaignOnly(tuple(str(name).strip() for name in names if str(name).strip()))


def quiet_request_logs() -> None:
    """httpx logs every request at INFO: a 100k-activity run would bury the task log in request lines.
    The clients log pages, batches and retries themselves, which is what an operator follows."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def retry_by_error_kind() -> Iterator[None]:
    """The one place the three kinds of `include/imis_thrive/errors.py` meet Airflow: bad data and bad
    configuration do not fix themselves on retry, so the task fails at once with the domain error's message (the
    alert says what to fix), logged first as one ERROR line a person reads without the traceback that follows;
    transient trouble, and anything unforeseen, propagates and Airflow retries it."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.imis_thrive.errors import FAILS_AT_ONCE

    try:
        yield
    except FAILS_AT_ONCE as bad:
        log.error("%s", stop_sentence(bad))
        raise AirflowFailException(str(bad)) from bad


def stop_sentence(bad: Exception) -> str:
    """An expected stop in one line: what kind, that no retry follows, and the domain error's message with its
    lines (one per list or reason) joined by semicolons."""
    kind = "bad data" if isinstance(bad, BadData) else "bad configuration"
    message = ""
    for line in filter(None, (line.strip() for line in str(bad).splitlines())):
        message += line if not message else (" " if message.endswith(":") else "; ") + line
    return f"Stopped by {kind}, not retried: {message or type(bad).__name__}"


def skip_task(reason: str, xcom: Any = None) -> NoReturn:
    """End the running task as skipped (grey in the grid, not green) with its reason as one WARNING line. `xcom`,
    when given, is still pushed as the task's return value, so the tasks mapped over it and the run's last task
    read why (a skipped task pushes nothing by itself)."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowSkipException

    if xcom is not None:
        get_current_context()["ti"].xcom_push(key="return_value", value=xcom)
    log.warning("%s", reason)
    raise AirflowSkipException
