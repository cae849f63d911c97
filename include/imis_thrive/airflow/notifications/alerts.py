"""Failure alerts of the iMIS ⇄ Thrive DAGs: one digest per failed run, mailed through `smtp_default`, maybe Slack.

Two callbacks share the work. `record_failure`, every task's `on_failure_callback` (`runtime.DEFAULT_ARGS`), runs
only when a task has failed for good (a try with retries left calls `on_retry_callback` instead, so a task that
succeeds on a retry alerts no one) and leaves what the alert needs as an XCom of that task instance.
`notify_run_failure`, each DAG's own `on_failure_callback` (a `BaseNotifier`), runs once when the run has failed
and sends one alert naming every task instance that failed (a mapped one by its group), why, and that no retry
follows: a run with four broken lists sends one mail, not five. Both channels are read from Airflow Variables and
connections when a run fails, never at parse time:

- `imis_thrive_alert_emails`: comma- or semicolon-separated recipients (fallback: the failed task's own `email`);
- the connection `slack_default` (type `slackwebhook`, the Slack provider's): create it to also post the alert to
  a Slack incoming webhook; its password is the webhook's token (or its whole URL), a credential like any other.

An alert names the DAG, the run and its link, and per failed task its name, try, the error's first line and the
log URL, plus the detail lines a domain error offers as safe to send (`alert_lines`: e.g. the groups a run skipped
and why, or the event keys, contact IDs and iMIS's reasons of quarantined activities); nothing else of a task
reaches it, so no connection secret can. Both channels are the providers' own notifiers: `SmtpNotifier` for mail,
`SlackWebhookNotifier` for Slack. Every DAG file imports this module, so the providers load inside the callback.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from airflow.sdk.bases.notifier import BaseNotifier

from include.imis_thrive.errors import BadConfiguration, TransientTrouble

if TYPE_CHECKING:
    from airflow.sdk import DAG, Context

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
ALERT_EMAILS_VARIABLE = "imis_thrive_alert_emails"
SLACK_CONN_ID = "slack_default"
FAILURE_XCOM_KEY = "imis_thrive_failure"  # the XCom `record_failure` leaves on a task instance that failed
MAX_ERROR_CHARS = 300
SUBJECT_ERROR_CHARS = 100
MAX_DETAIL_LINES = 20
SLACK_TIMEOUT_S = 10
SLACK_RETRIES = 2  # per kind of trouble (connection, 429, 500/503): a callback must not hold a worker long

_WHITESPACE = re.compile(r"\s+")


class AlertConfigError(BadConfiguration, ValueError):
    """An alert channel is configured in a way no message can be sent through; names the Variable to fix."""


class AlertDeliveryFailed(TransientTrouble, RuntimeError):
    """A channel did not take the alert; the message names the channel, never a webhook URL or token."""


def _one_line(text: str, limit: int) -> str:
    """Collapse whitespace (no header injection through a newline) and cut to `limit` characters."""
    flat = _WHITESPACE.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_first_line(error: BaseException | str | None) -> str:
    """`Type: first line of the message`, with registered secrets masked, as the one line an alert shows.

    Only the first line: later lines of a domain error may list member rows. Airflow masks connection
    passwords and tokens in logs; this text is not a log line, so it goes through the same masker here.
    """
    from airflow.sdk.log import redact

    if error is None:
        return "no exception recorded (the task was killed or timed out; see the log)"
    lines = str(error).strip().splitlines()
    message = lines[0] if lines else ""
    if isinstance(error, BaseException):
        named = _domain_error(error)
        message = f"{type(named).__name__}: {message}" if message else type(named).__name__
    return _one_line(str(redact(message)), MAX_ERROR_CHARS)


def _domain_error(error: BaseException) -> BaseException:
    """The domain error an `AirflowFailException` was raised from (`retry_by_error_kind`), whose class names the
    trouble (`SyncIncomplete`, `IqaNotFound`); its message is the same."""
    cause = error.__cause__
    if type(error).__name__ == "AirflowFailException" and cause is not None and str(cause) == str(error):
        return cause
    return error


def error_details(error: BaseException | str | None) -> tuple[str, ...]:
    """The `alert_lines` of the error or of what caused it (a domain error re-raised as AirflowFailException),
    masked and one line each: only lines the domain error built to be sent, never the rest of its message."""
    from airflow.sdk.log import redact

    seen: set[int] = set()
    while isinstance(error, BaseException) and id(error) not in seen:
        seen.add(id(error))
        lines = getattr(error, "alert_lines", None)
        if lines:
            return tuple(_one_line(str(redact(str(line))), MAX_ERROR_CHARS) for line in list(lines)[:MAX_DETAIL_LINES])
        error = error.__cause__ or error.__context__
    return ()


@dataclass(frozen=True)
class TaskFailure:
    """One task instance that failed for good, as `record_failure` saw it: the name a person knows it by (a mapped
    task by its group), the try it ended on, the error's first line and the domain error's safe detail lines."""

    task: str
    try_number: int
    tries: int
    error: str
    log_url: str
    details: tuple[str, ...] = ()

    @classmethod
    def from_context(cls, context: Context) -> TaskFailure:
        ti = context["ti"]
        return cls(task=task_name(ti.task_id, ti.map_index, ti.rendered_map_index), try_number=ti.try_number,
                   tries=ti.max_tries + 1, error=error_first_line(context.get("exception")), log_url=ti.log_url,
                   details=error_details(context.get("exception")))

    @classmethod
    def unrecorded(cls, task_id: str, map_index: int, log_url: str) -> TaskFailure:
        """A failed task that left no record: killed (OOM, lost worker) or timed out before its callback ran."""
        return cls(task=task_name(task_id, map_index, None), try_number=0, tries=0, error=error_first_line(None),
                   log_url=log_url)

    def to_xcom(self) -> dict[str, Any]:
        return {**asdict(self), "details": list(self.details)}

    @classmethod
    def from_xcom(cls, value: dict[str, Any]) -> TaskFailure:
        return cls(**{**value, "details": tuple(value.get("details") or ())})

    def outcome(self) -> str:
        """Whether Airflow's retries were spent or the error is one a retry cannot fix (bad data, configuration)."""
        if not self.tries:
            return "state unknown to the alert (see the log)"
        if self.try_number < self.tries:
            return f"failed at once on try {self.try_number} of {self.tries}: a retry cannot fix this error"
        return f"failed on its last try ({self.try_number} of {self.tries})"


def task_name(task_id: str, map_index: int | None, rendered_map_index: str | None) -> str:
    """`task_id`, or `task_id[group]` for a mapped task (its map index name, else its number)."""
    if map_index is None or map_index < 0:
        return task_id
    return f"{task_id}[{_one_line(rendered_map_index or str(map_index), 80)}]"


@dataclass(frozen=True)
class RunFailure:
    """The digest of one failed DAG run: every task instance that failed, and how many did not run because of them.

    A DAG run's failure is final: Airflow retries tasks, never runs; so the alert says no retry follows."""

    dag_id: str
    run_id: str
    run_url: str
    failures: tuple[TaskFailure, ...]
    not_run: int = 0

    def subject(self) -> str:
        first = self.failures[0] if self.failures else None
        what = (f"{len(self.failures)} tasks failed" if len(self.failures) > 1
                else f"{first.task} failed" if first else "failed")
        error = f": {_one_line(first.error, SUBJECT_ERROR_CHARS)}" if first else ""
        return _one_line(f"Airflow alert: {self.dag_id} / run {self.run_id}: {what}, no retry follows{error}", 400)

    def html_body(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(failure.task)}</td><td>{html.escape(failure.error)}"
            f"{_details_html(failure.details)}</td><td>{html.escape(failure.outcome())}</td>"
            f'<td><a href="{html.escape(failure.log_url, quote=True)}">log</a></td></tr>'
            for failure in self.failures)
        run_url = html.escape(self.run_url, quote=True)
        return (f"<p>A run of the iMIS ⇄ Thrive integration failed for good: <b>no retry follows</b> (Airflow "
                f"retries a task while it has tries left; a failed run is final).</p>"
                f"<p>DAG <b>{html.escape(self.dag_id)}</b>, run {html.escape(self.run_id)}: "
                f"{len(self.failures)} task(s) failed{self._not_run_text()}.</p>"
                f'<table border="1" cellpadding="4"><tr><th align="left">task (group)</th>'
                f'<th align="left">error</th><th align="left">tries</th><th></th></tr>{rows}</table>'
                f'<p>Run: <a href="{run_url}">{run_url}</a></p>'
                f"<p>The DAG's documentation (<i>When it fails</i>) says what each failure means and what to fix; "
                f"after fixing, clear the failed tasks to run them again, or wait for the next scheduled run.</p>")

    def _not_run_text(self) -> str:
        return f", {self.not_run} did not run because of them" if self.not_run else ""

    def text(self) -> str:
        lines = [f"Airflow run failed, no retry follows: {self.dag_id}, run {self.run_id}: "
                 f"{len(self.failures)} task(s) failed{self._not_run_text()}"]
        for failure in self.failures:
            lines.append(f"* {failure.task}: {failure.error} ({failure.outcome()})")
            lines += [f"  - {line}" for line in failure.details]
            lines.append(f"  log: {failure.log_url}")
        lines.append(f"Run: {self.run_url}")
        return "\n".join(lines)

    def slack_text(self) -> str:
        """The text as Slack's mrkdwn wants it: &, < and > escaped, so an error can neither link nor mention."""
        return self.text().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _details_html(details: tuple[str, ...]) -> str:
    if not details:
        return ""
    return "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in details) + "</ul>"


def record_failure(context: Context) -> None:
    """`on_failure_callback` of every task: keep what the run's digest needs, as an XCom of the failed try.

    Airflow calls it only when a task has failed for good (a try with retries left calls `on_retry_callback`), in
    the task's own process, before the failure reaches the metadata DB: so the record is there when the run's
    digest reads it. It mails nothing: one alert per run, from `RunFailureDigest`."""
    failure = TaskFailure.from_context(context)
    try:
        context["ti"].xcom_push(FAILURE_XCOM_KEY, failure.to_xcom())
    except Exception as error:  # a killed task's callback runs in the DAG processor, which cannot write XComs
        log.warning("Failure of %s not recorded for the run's alert (%s); the alert will say to see the log",
                    failure.task, type(error).__name__)


def run_failure(dag: DAG, run_id: str) -> RunFailure:
    """The run's failed task instances, each with its record (or marked unrecorded), in the DAG's task order.

    Through the Task SDK (task states and XComs): the DAG processor, where run callbacks execute, has no ORM."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from airflow.sdk.execution_time.xcom import XCom

    states = RuntimeTaskInstance.get_task_states(dag_id=dag.dag_id, run_ids=[run_id]).get(run_id, {})
    order = {task_id: position for position, task_id in enumerate(dag.task_ids)}
    failed: list[tuple[int, int, str]] = []
    not_run = 0
    for key, state in states.items():
        task_id, map_index = _task_key(key, order)
        if state == "failed":
            failed.append((order.get(task_id, len(order)), map_index, task_id))
        elif state == "upstream_failed":
            not_run += 1
    run_url = f"{_base_url()}/dags/{dag.dag_id}/runs/{quote(run_id)}"
    failures = []
    for _, map_index, task_id in sorted(failed):
        recorded = XCom.get_one(key=FAILURE_XCOM_KEY, dag_id=dag.dag_id, task_id=task_id, run_id=run_id,
                                map_index=map_index)
        mapped = f"/mapped/{map_index}" if map_index >= 0 else ""
        failures.append(TaskFailure.from_xcom(recorded) if isinstance(recorded, dict)
                        else TaskFailure.unrecorded(task_id, map_index, f"{run_url}/tasks/{task_id}{mapped}"))
    return RunFailure(dag_id=dag.dag_id, run_id=run_id, run_url=run_url, failures=tuple(failures), not_run=not_run)


def _task_key(key: str, task_ids: Mapping[str, int]) -> tuple[str, int]:
    """The Execution API names a mapped task instance `<task_id>_<map_index>`, an unmapped one `<task_id>`."""
    if key in task_ids:
        return key, -1
    task_id, _, index = key.rpartition("_")
    return (task_id, int(index)) if index.isdigit() else (key, -1)


def _base_url() -> str:
    from airflow.sdk.configuration import conf

    return str(conf.get("api", "base_url", fallback="http://localhost:8080/")).rstrip("/")


def parse_recipients(value: str | list[str] | None) -> list[str]:
    """Addresses from a comma/semicolon-separated string (or a list, like a task's `email`), blanks dropped."""
    items = value if isinstance(value, list) else re.split(r"[,;]", value or "")
    recipients = [item.strip() for item in items if item and item.strip()]
    malformed = [item for item in recipients if "@" not in item or any(c.isspace() for c in item)]
    if malformed:
        raise AlertConfigError(f"Variable {ALERT_EMAILS_VARIABLE}: not an email address: {', '.join(malformed)}")
    return recipients


def alert_recipients(context: Context) -> list[str]:
    """The Variable's addresses, else the task's own `email` (Airflow's per-task setting), else none."""
    from airflow.sdk import Variable

    configured = parse_recipients(Variable.get(ALERT_EMAILS_VARIABLE, default=None))
    if configured:
        return configured
    task_email = getattr(context.get("task"), "email", None)
    return parse_recipients(task_email)


def send_alert_mail(alert: RunFailure, recipients: list[str]) -> None:
    """Mail through the SMTP provider's notifier; the sender is the connection's `from_email` extra."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = SmtpNotifier(to=recipients, subject=alert.subject(), html_content=alert.html_body(),
                            smtp_conn_id=SMTP_CONN_ID)
    # `notify`, not `notifier(context)`: the call would render subject and body as Jinja templates, and the
    # error line is data from the failed task; braces in it must reach the reader as text, not be evaluated.
    # Only the sender (the connection's `from_email`) is still rendered, and it needs nothing of the run: an empty
    # context keeps the run's DAG out of it (under `dag.test()` that is a SerializedDAG, which has no Jinja env).
    notifier.notify(cast("Context", {}))


def slack_configured() -> bool:
    """Whether the Slack webhook connection exists; its password (the token) is masked at once if so."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException
    from airflow.sdk.log import mask_secret

    try:
        connection = BaseHook.get_connection(SLACK_CONN_ID)
    except AirflowNotFoundException:
        return False
    if connection.password:
        mask_secret(connection.password)
    return True


def send_alert_slack(alert: RunFailure, context: Context) -> None:
    """Post through the Slack provider's notifier, retrying connection errors, 429 and 500/503 a little.

    Retried as if idempotent: a duplicate alert is harmless, a lost one is not. Errors never carry the token.
    """
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
    from airflow.sdk.log import redact
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    handlers = [ConnectionErrorRetryHandler(max_retry_count=SLACK_RETRIES),
                RateLimitErrorRetryHandler(max_retry_count=SLACK_RETRIES),
                ServerErrorRetryHandler(max_retry_count=SLACK_RETRIES)]
    notifier = SlackWebhookNotifier(slack_webhook_conn_id=SLACK_CONN_ID, text=alert.slack_text(),
                                    timeout=SLACK_TIMEOUT_S, retry_handlers=handlers)
    try:
        notifier.notify(context)  # not `notifier(context)`: that renders the text as a Jinja template
    except Exception as error:
        reason = _one_line(str(redact(str(error))), 200)
        raise AlertDeliveryFailed(f"Slack alert (connection {SLACK_CONN_ID}): {type(error).__name__}: {reason}") \
            from None


def _mail_channel(alert: RunFailure, context: Context) -> bool:
    recipients = alert_recipients(context)
    if not recipients:
        return False
    send_alert_mail(alert, recipients)
    log.info("Failure alert for %s / %s mailed to %d recipient(s)", alert.dag_id, alert.run_id, len(recipients))
    return True


def _slack_channel(alert: RunFailure, context: Context) -> bool:
    if not slack_configured():
        return False
    send_alert_slack(alert, context)
    log.info("Failure alert for %s / %s posted to Slack", alert.dag_id, alert.run_id)
    return True


def deliver(alert: RunFailure, context: Context) -> None:
    """Mail the alert and, if configured, post it to Slack.

    Each channel is tried even if the other fails; then any failure is raised, and Airflow logs it in the
    DAG processor's log (a callback error never changes the run's state).
    """
    delivered: list[str] = []
    problems: list[str] = []
    channels = ((f"mail through connection {SMTP_CONN_ID}", _mail_channel),
                (f"Slack through connection {SLACK_CONN_ID}", _slack_channel))
    for channel, send in channels:
        try:
            if send(alert, context):
                delivered.append(channel)
        except Exception as error:  # one channel's failure must not keep the alert from the other
            problems.append(f"{channel}: {type(error).__name__}: {error}")
    if not delivered and not problems:
        problems.append(f"no alert channel: set the Variable {ALERT_EMAILS_VARIABLE} (comma-separated addresses)"
                        f" or create the Slack webhook connection {SLACK_CONN_ID}")
    if problems:
        raise AlertDeliveryFailed(f"failure alert for {alert.dag_id} / {alert.run_id} not delivered: "
                                  + "; ".join(problems))


class RunFailureDigest(BaseNotifier):
    """The DAG-level `on_failure_callback`: one alert per failed run, naming every task instance that failed.

    Airflow runs it in the DAG processor once the run has failed, so it reads the failures through the Task SDK
    (`run_failure`) and sends nothing it did not find recorded there."""

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Nothing is templated: the alert is data from failed tasks, and braces in an error line stay text."""

    def notify(self, context: Context) -> None:
        deliver(run_failure(context["dag"], context["run_id"]), context)


notify_run_failure = RunFailureDigest()
