"""The failure alert: what it says, who gets it, what it never carries, and how each channel delivers it."""

import json
import socket
from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from include.imis_thrive.airflow.notifications.alerts import (
    ALERT_EMAILS_VARIABLE,
    SLACK_CONN_ID,
    AlertConfigError,
    AlertDeliveryFailed,
    FailureAlert,
    alert_recipients,
    error_first_line,
    notify_failure,
    parse_recipients,
    send_alert_slack,
    slack_configured,
)
from sandbox.server import SandboxServer
from sandbox.smtp import SmtpSink

LOG_URL = "http://airflow.example.org/dags/imis_to_thrive_target_groups/runs/manual__1/tasks/load_target_group"
SLACK_TOKEN = "T000/B000/s3cretWebhookToken"
SLACK_CONN_ENV = f"AIRFLOW_CONN_{SLACK_CONN_ID.upper()}"
SECRET = "s3cret-smtp-password-123"


def failure_context(error: BaseException | str | None = None, map_index: int = -1,
                    rendered_map_index: str | None = None, email: str | list[str] | None = None) -> dict:
    ti = SimpleNamespace(dag_id="imis_to_thrive_target_groups", task_id="load_target_group",
                         run_id="manual__2026-03-01T10:00:00+00:00", try_number=3, max_tries=2,
                         map_index=map_index, rendered_map_index=rendered_map_index, log_url=LOG_URL)
    return {"ti": ti, "task": SimpleNamespace(email=email),
            "exception": error if error is not None else RuntimeError("Thrive interest 'Newsletter' is missing"),
            "conn": SimpleNamespace(smtp_default=SimpleNamespace(password=SECRET)),
            "var": {"value": {"imis_thrive_store_options": SECRET}}}


@pytest.fixture
def smtp_default(monkeypatch):
    """A real SMTP sink on a free port, `smtp_default` pointing at it; no Variable set yet."""
    with SmtpSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
            "conn_type": "smtp", "host": sink.host, "port": sink.port,
            "extra": {"from_email": "airflow@sandbox.invalid", "disable_tls": True, "disable_ssl": True,
                      "retry_limit": 0, "timeout": 5}}))
        yield sink


class SlackWebhookServer:
    """A Slack incoming webhook on loopback: takes JSON at `/services/<token>`, answers `ok` or what it is told."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.answers: list[tuple[int, str]] = []  # used in turn; then 200 "ok"
        app = FastAPI()

        @app.post("/services/{token:path}")
        async def webhook(token: str, request: Request) -> PlainTextResponse:
            if token != SLACK_TOKEN:
                return PlainTextResponse("no_service", status_code=404)
            self.received.append(await request.json())
            status, body = self.answers.pop(0) if self.answers else (200, "ok")
            return PlainTextResponse(body, status_code=status)

        self.server = SandboxServer(app)


@pytest.fixture
def slack_webhook(monkeypatch):
    """The Slack test server, and the `slack_default` connection pointing at it as a real one points at Slack."""
    slack = SlackWebhookServer()
    with slack.server as server:
        monkeypatch.setenv(SLACK_CONN_ENV, json.dumps({"conn_type": "slackwebhook", "host": f"{server.url}/services",
                                                       "password": SLACK_TOKEN}))
        yield slack


# --- the error line -------------------------------------------------------------------------------------------

def test_error_line_is_the_type_and_the_first_line_only():
    error = ValueError("list IQA $/HigherLogic/MailingLists/Newsletter has no alias ID\nrow 1000004: Ana Abbott")
    assert error_first_line(error) == "ValueError: list IQA $/HigherLogic/MailingLists/Newsletter has no alias ID"


def test_error_line_without_a_message_or_an_exception():
    assert error_first_line(KeyError()) == "KeyError"
    assert error_first_line("Task was killed externally") == "Task was killed externally"
    assert "no exception recorded" in error_first_line(None)


def test_error_line_is_cut_to_a_readable_length():
    line = error_first_line(RuntimeError("x" * 1000))
    assert len(line) == 300 and line.endswith("…")


def test_error_line_masks_a_registered_secret():
    from airflow.sdk.log import mask_secret

    mask_secret(SECRET)
    assert error_first_line(RuntimeError(f"login refused for password {SECRET}")) == \
        "RuntimeError: login refused for password ***"


# --- the alert ------------------------------------------------------------------------------------------------

def test_alert_names_dag_task_run_try_error_and_log():
    alert = FailureAlert.from_context(failure_context())

    assert alert.subject() == ("Airflow alert: imis_to_thrive_target_groups / load_target_group failed (try 3 of 3, "
                               "run manual__2026-03-01T10:00:00+00:00): RuntimeError: Thrive interest 'Newsletter' "
                               "is missing")
    body = alert.html_body()
    for text in ("imis_to_thrive_target_groups", "load_target_group", "manual__2026-03-01T10:00:00+00:00",
                 "3 of 3", "RuntimeError: Thrive interest &#x27;Newsletter&#x27; is missing",
                 f'<a href="{LOG_URL}">'):
        assert text in body


def test_a_mapped_task_is_named_by_its_map_index_name_or_number():
    assert FailureAlert.from_context(failure_context(map_index=2, rendered_map_index="Newsletter")).task == \
        "load_target_group[Newsletter]"
    assert FailureAlert.from_context(failure_context(map_index=2)).task == "load_target_group[2]"


def test_error_text_is_escaped_and_never_evaluated_as_a_template():
    alert = FailureAlert.from_context(failure_context(RuntimeError("<script>x</script> {{ conn.smtp_default }}")))

    body = alert.html_body()
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert "{{ conn.smtp_default }}" in body


def test_subject_stays_one_short_line():
    alert = FailureAlert.from_context(failure_context(map_index=0, rendered_map_index="Board\r\nBcc: x@evil.test",
                                                      error=RuntimeError("y" * 250)))
    subject = alert.subject()
    assert "\n" not in subject and "\r" not in subject
    error_part = subject.split("): ", 1)[1]
    assert len(error_part) == 100 and error_part.startswith("RuntimeError: yyy") and error_part.endswith("y…")


def test_nothing_but_ids_and_the_error_line_reaches_the_alert():
    alert = FailureAlert.from_context(failure_context())

    for text in (alert.subject(), alert.html_body(), alert.slack_text()):
        assert SECRET not in text


def test_quarantined_activities_are_listed_by_key_contact_and_reason_and_nothing_else_of_the_error():
    from airflow.sdk.exceptions import AirflowFailException

    from include.imis_thrive.airflow.runtime import retry_by_error_kind
    from include.imis_thrive.writeback.activities import quarantined_error
    from include.imis_thrive.writeback.results import WritebackQuarantine

    entry = {"key": "HL1-0123456789abcdef0123456789abcdef", "contact_id": "1000123", "kind": "Mail Open",
             "reason": "HTTP 500: An error occurred. Please contact the administrator.", "runs": 1, "attempts": 5,
             "first_seen": "2026-03-08T07:00:01+00:00", "last_seen": "2026-03-08T07:00:01+00:00", "stuck": False}
    quarantine = WritebackQuarantine.model_validate(
        {"events": 2, "entries": [entry, entry | {"key": "HL1-ffff", "contact_id": "1000456"}]})
    domain = quarantined_error(quarantine, "file:///store/reports/activities/run-1.json")
    try:
        with retry_by_error_kind():  # as in every task of the DAGs
            raise domain
    except AirflowFailException as failed:
        alert = FailureAlert.from_context(failure_context(failed))

    assert alert.error.startswith("AirflowFailException: 2 event(s) quarantined, every other event was written: "
                                  "iMIS failed every post of HL1-0123456789abcdef0123456789abcdef for contact 1000123")
    assert alert.details[:2] == (
        "HL1-0123456789abcdef0123456789abcdef for contact 1000123 (Mail Open): HTTP 500: An error occurred. Please "
        "contact the administrator. [failed runs 1 of 3, 5 posts; tried again by the next run of its interval]",
        "HL1-ffff for contact 1000456 (Mail Open): HTTP 500: An error occurred. Please contact the administrator. "
        "[failed runs 1 of 3, 5 posts; tried again by the next run of its interval]")
    assert alert.details[-1] == "report: file:///store/reports/activities/run-1.json"
    assert "<li>HL1-ffff for contact 1000456 (Mail Open)" in alert.html_body()
    assert "\n- HL1-ffff for contact 1000456" in alert.text()
    assert FailureAlert.from_context(failure_context()).details == ()


# --- recipients -----------------------------------------------------------------------------------------------

def test_recipients_split_on_commas_and_semicolons():
    assert parse_recipients(" a@x.org, b@x.org;c@x.org ,, ") == ["a@x.org", "b@x.org", "c@x.org"]
    assert parse_recipients(["a@x.org", " "]) == ["a@x.org"]
    assert parse_recipients(None) == []


def test_a_malformed_recipient_names_the_variable():
    with pytest.raises(AlertConfigError, match=f"{ALERT_EMAILS_VARIABLE}: not an email address: data team"):
        parse_recipients("a@x.org, data team")


def test_recipients_come_from_the_variable_first(monkeypatch):
    monkeypatch.setenv(f"AIRFLOW_VAR_{ALERT_EMAILS_VARIABLE.upper()}", "ops@x.org")
    assert alert_recipients(failure_context(email="owner@x.org")) == ["ops@x.org"]


def test_recipients_fall_back_to_the_task_email(monkeypatch):
    monkeypatch.delenv(f"AIRFLOW_VAR_{ALERT_EMAILS_VARIABLE.upper()}", raising=False)
    assert alert_recipients(failure_context(email=["owner@x.org"])) == ["owner@x.org"]
    assert alert_recipients(failure_context()) == []


# --- Slack ----------------------------------------------------------------------------------------------------

def test_slack_gets_the_alert_as_escaped_text(slack_webhook):
    alert = FailureAlert.from_context(failure_context(RuntimeError("a < b & c <!channel>")))

    send_alert_slack(alert, failure_context())

    [payload] = slack_webhook.received
    assert list(payload) == ["text"]
    assert "a &lt; b &amp; c &lt;!channel&gt;" in payload["text"] and LOG_URL in payload["text"]


def test_slack_is_off_unless_its_connection_exists(monkeypatch):
    monkeypatch.delenv(SLACK_CONN_ENV, raising=False)
    assert not slack_configured()


def test_slack_retries_a_5xx_then_delivers(slack_webhook):
    slack_webhook.answers = [(503, "service_unavailable")]

    send_alert_slack(FailureAlert.from_context(failure_context()), failure_context())

    assert len(slack_webhook.received) == 2 and "load_target_group" in slack_webhook.received[1]["text"]


@pytest.mark.parametrize("trouble", ["rejected", "server-error", "unreachable"])
def test_slack_failure_names_the_connection_never_the_token(slack_webhook, monkeypatch, trouble):
    if trouble == "rejected":
        monkeypatch.setenv(SLACK_CONN_ENV, json.dumps({"conn_type": "slackwebhook", "password": "T000/B000/wrong",
                                                       "host": f"{slack_webhook.server.url}/services"}))
    elif trouble == "server-error":
        slack_webhook.answers = [(500, "internal_error")] * 3
    else:
        with socket.socket() as bound_not_listening:
            bound_not_listening.bind(("127.0.0.1", 0))
            port = bound_not_listening.getsockname()[1]
        monkeypatch.setenv(SLACK_CONN_ENV, json.dumps({"conn_type": "slackwebhook", "password": SLACK_TOKEN,
                                                       "host": f"http://127.0.0.1:{port}/services"}))
    with pytest.raises(AlertDeliveryFailed) as raised:
        send_alert_slack(FailureAlert.from_context(failure_context()), failure_context())
    assert f"connection {SLACK_CONN_ID}" in str(raised.value)
    assert "s3cretWebhookToken" not in str(raised.value) and raised.value.__cause__ is None


# --- notify_failure over real loopback servers ----------------------------------------------------------------

def test_notify_failure_mails_the_alert(monkeypatch, smtp_default):
    monkeypatch.setenv(f"AIRFLOW_VAR_{ALERT_EMAILS_VARIABLE.upper()}", "ops@x.org; dev@x.org")

    notify_failure(failure_context(map_index=1, rendered_map_index="Newsletter"))

    [mail] = smtp_default.messages
    assert mail.recipients == ("ops@x.org", "dev@x.org")
    assert mail.message["From"] == "airflow@sandbox.invalid"
    assert "load_target_group[Newsletter] failed (try 3 of 3" in mail.subject
    assert LOG_URL in mail.body()


def test_notify_failure_posts_to_slack_even_when_mail_fails(monkeypatch, slack_webhook):
    monkeypatch.setenv(f"AIRFLOW_VAR_{ALERT_EMAILS_VARIABLE.upper()}", "ops@x.org")
    with socket.socket() as bound_not_listening:  # a free port that refuses connections
        bound_not_listening.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": bound_not_listening.getsockname()[1],
            "extra": {"from_email": "airflow@sandbox.invalid", "disable_tls": True, "disable_ssl": True,
                      "retry_limit": 0, "timeout": 2}}))

        with pytest.raises(AlertDeliveryFailed, match="not delivered: mail through connection smtp_default: "
                                                      "ConnectionRefusedError"):
            notify_failure(failure_context())

    [payload] = slack_webhook.received
    assert "imis_to_thrive_target_groups / load_target_group" in payload["text"]


def test_notify_failure_without_any_channel_says_what_to_set(monkeypatch):
    monkeypatch.delenv(f"AIRFLOW_VAR_{ALERT_EMAILS_VARIABLE.upper()}", raising=False)
    monkeypatch.delenv(SLACK_CONN_ENV, raising=False)

    with pytest.raises(AlertDeliveryFailed, match=f"no alert channel: set the Variable {ALERT_EMAILS_VARIABLE}"):
        notify_failure(failure_context())
