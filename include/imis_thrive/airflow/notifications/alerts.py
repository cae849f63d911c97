"""Failure alerts for every task of the iMIS ⇄ Thrive DAGs: a mail through `smtp_default`, optionally Slack.

DAG files put `notify_failure` in `default_args["on_failure_callback"]`. Airflow calls it only when a task has
finally failed: a try that fails with retries left calls `on_retry_callback` instead, so a task that succeeds
after a retry alerts no one. Both channels are read from Airflow Variables when a task fails, never at parse time:

- `imis_thrive_alert_emails`: comma- or semicolon-separated recipients (fallback: the task's own `email`);
- the connection `slack_default` (type `slackwebhook`, the Slack provider's): create it to also post the alert to
  a Slack incoming webhook; its password is the webhook's token (or its whole URL), a credential like any other.

An alert names the DAG, the task (and its map index name), the run, the try, the error's first line and the log
URL, plus the detail lines a domain error offers as safe to send (`alert_lines`: e.g. the event keys, contact IDs
and iMIS's reasons of quarantined activities); nothing else of the task reaches it, so no connection secret can.
Both channels are the providers' own notifiers: `SmtpNotifier` for mail, `SlackWebhookNotifier` for Slack.
Every DAG file imports this module, so the providers load inside the callback.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from include.imis_thrive.errors import BadConfiguration, TransientTrouble

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
ALERT_EMAILS_VARIABLE = "imis_thrive_alert_emails"
SLACK_CONN_ID = "slack_default"
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
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return _one_line(str(redact(message)), MAX_ERROR_CHARS)


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
class FailureAlert:
    """What a person needs to find and fix a failed task, built from the callback context alone."""

    dag_id: str
    task: str
    run_id: str
    try_number: int
    tries: int
    error: str
    log_url: str
    details: tuple[str, ...] = ()

    @classmethod
    def from_context(cls, context: Context) -> FailureAlert:
        ti = context["ti"]
        task = ti.task_id
        if ti.map_index is not None and ti.map_index >= 0:
            task = f"{task}[{_one_line(ti.rendered_map_index or str(ti.map_index), 80)}]"
        return cls(dag_id=ti.dag_id, task=task, run_id=ti.run_id, try_number=ti.try_number,
                   tries=ti.max_tries + 1, error=error_first_line(context.get("exception")), log_url=ti.log_url,
                   details=error_details(context.get("exception")))

    def subject(self) -> str:
        return (f"Airflow alert: {self.dag_id} / {self.task} failed (try {self.try_number} of {self.tries}, "
                f"run {self.run_id}): {_one_line(self.error, SUBJECT_ERROR_CHARS)}")

    def html_body(self) -> str:
        rows = (("DAG", self.dag_id), ("Task", self.task), ("Run", self.run_id),
                ("Try", f"{self.try_number} of {self.tries}"), ("Error", self.error))
        table = "".join(f'<tr><th align="left">{name}</th><td>{html.escape(value)}</td></tr>' for name, value in rows)
        url = html.escape(self.log_url, quote=True)
        return (f"<p>An Airflow task of the iMIS ⇄ Thrive integration failed for good: its retries are spent "
                f"or its error is one a retry cannot fix.</p>"
                f"<table>{table}</table>"
                f"{self._details_html()}"
                f'<p>Log: <a href="{url}">{url}</a></p>'
                f"<p>The DAG's documentation (<i>When it fails</i>) says what each failure means and what to "
                f"fix; after fixing, clear the task to run it again.</p>")

    def _details_html(self) -> str:
        if not self.details:
            return ""
        return "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in self.details) + "</ul>"

    def text(self) -> str:
        details = "".join(f"\n- {line}" for line in self.details)
        return (f"Airflow task failed: {self.dag_id} / {self.task}, run {self.run_id}, "
                f"try {self.try_number} of {self.tries}\nError: {self.error}{details}\nLog: {self.log_url}")

    def slack_text(self) -> str:
        """The text as Slack's mrkdwn wants it: &, < and > escaped, so an error can neither link nor mention."""
        return self.text().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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


def send_alert_mail(alert: FailureAlert, recipients: list[str], context: Context) -> None:
    """Mail through the SMTP provider's notifier; the sender is the connection's `from_email` extra."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = SmtpNotifier(to=recipients, subject=alert.subject(), html_content=alert.html_body(),
                            smtp_conn_id=SMTP_CONN_ID)
    # `notify`, not `notifier(context)`: the call would render subject and body as Jinja templates, and the
    # error line is data from the failed task; braces in it must reach the reader as text, not be evaluated.
    notifier.notify(context)


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


def send_alert_slack(alert: FailureAlert, context: Context) -> None:
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


def _mail_channel(alert: FailureAlert, context: Context) -> bool:
    recipients = alert_recipients(context)
    if not recipients:
        return False
    send_alert_mail(alert, recipients, context)
    log.info("Failure alert for %s / %s mailed to %d recipient(s)", alert.dag_id, alert.task, len(recipients))
    return True


def _slack_channel(alert: FailureAlert, context: Context) -> bool:
    if not slack_configured():
        return False
    send_alert_slack(alert, context)
    log.info("Failure alert for %s / %s posted to Slack", alert.dag_id, alert.task)
    return True


def notify_failure(context: Context) -> None:
    """`on_failure_callback` for every task: mail the alert and, if configured, post it to Slack.

    Each channel is tried even if the other fails; then any failure is raised, and Airflow logs it in the
    task log (a callback error never changes the task's state).
    """
    alert = FailureAlert.from_context(context)
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
        raise AlertDeliveryFailed(f"failure alert for {alert.dag_id} / {alert.task} not delivered: "
                                  + "; ".join(problems))
