"""The failure alert: what one task's record and a run's digest say, who gets them, what they never carry, and how
each channel delivers the digest."""

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
    RunFailure,
    TaskFailure,
    alert_recipients,
    deliver,
    error_first_line,
    parse_recipients,
    record_failure,
    send_alert_slack,
    slack_configured,
)
from sandbox.server import SandboxServer
from sandbox.smtp import SmtpSink

LOG_URL = "http://airflow.example.org/dags/imis_to_thrive_target_groups/runs/manual__1/tasks/load_target_group"
RUN_ID = "manual__2026-03-01T10:00:00+00:00"
RUN_URL = "http://airflow.example.org/dags/imis_to_thrive_target_groups/runs/manual__1"
SLACK_TOKEN = "T000/B000/s3cretWebhookToken"
SLACK_CONN_ENV = f"AIRFLOW_CONN_{SLACK_CONN_ID.upper()}"
SECRET = "s3cret-smtp-password-123"


def failure_context(error: BaseException | str | None = None, map_index: int = -1,
                    rendered_map_index: str | None = None, email: str | list[str] | None = None) -> dict:
    pushed: dict = {}
    ti = SimpleNamespace(dag_id="imis_to_thrive_target_groups", task_id="load_target_group",
                         run_id=RUN_ID, try_number=3, max_tries=2,
                         map_index=map_index, rendered_map_index=rendered_map_index, log_url=LOG_URL, pushed=pushed,
                         xcom_push=lambda key, value: pushed.__setitem__(key, value))
    return {"ti": ti, "task": SimpleNamespace(email=email),
            "exception": error if error is not None else RuntimeError("Thrive interest 'Newsletter' is missing"),
            "conn": SimpleNamespace(smtp_default=SimpleNamespace(password=SECRET)),
            "var": {"value": {"imis_thrive_store_options": SECRET}}}


def digest(*failures: TaskFailure, not_run: int = 0) -> RunFailure:
    return RunFailure(dag_id="imis_to_thrive_target_groups", run_id=RUN_ID, run_url=RUN_URL,
                      failures=failures or (TaskFailure.from_context(failure_context()),), not_run=not_run)


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

def test_a_failed_task_records_its_name_try_error_and_log_and_mails_nothing():
    context = failure_context()

    record_failure(context)

    [(key, value)] = context["ti"].pushed.items()
    assert key == "imis_thrive_failure"
    assert TaskFailure.from_xcom(value) == TaskFailure(
        task="load_target_group", try_number=3, tries=3, error="RuntimeError: Thrive interest 'Newsletter' is missing",
        log_url=LOG_URL)


def test_a_record_that_cannot_be_written_is_logged_not_raised(caplog):
    context = failure_context()

    def refuse(key, value):
        raise RuntimeError("the DAG processor cannot write XComs")

    context["ti"].xcom_push = refuse
    record_failure(context)

    assert "Failure of load_target_group not recorded for the run's alert (RuntimeError)" in caplog.text


def test_the_digest_names_dag_run_each_task_its_tries_error_and_log():
    newsletter = TaskFailure.from_context(failure_context(map_index=1, rendered_map_index="Newsletter"))
    board = TaskFailure(task="plan_target_group[Board]", try_number=1, tries=3, error="SyncIncomplete: x",
                        log_url=LOG_URL + "/mapped/0")
    alert = digest(newsletter, board, not_run=2)

    assert alert.subject() == (f"Airflow alert: imis_to_thrive_target_groups / run {RUN_ID}: 2 tasks failed, no retry "
                               "follows: RuntimeError: Thrive interest 'Newsletter' is missing")
    body = alert.html_body()
    for text in ("<b>no retry follows</b>", "imis_to_thrive_target_groups", RUN_ID,
                 "2 task(s) failed, 2 did not run because of them", "load_target_group[Newsletter]",
                 "failed on its last try (3 of 3)", "plan_target_group[Board]",
                 "failed at once on try 1 of 3: a retry cannot fix this error",
                 "RuntimeError: Thrive interest &#x27;Newsletter&#x27; is missing", f'<a href="{LOG_URL}">log</a>',
                 f'<a href="{LOG_URL}/mapped/0">log</a>', f'<a href="{RUN_URL}">{RUN_URL}</a>'):
        assert text in body, text
    assert digest(board).subject().endswith(": plan_target_group[Board] failed, no retry follows: SyncIncomplete: x")


def test_a_failed_task_without_a_record_says_to_see_its_log():
    unknown = TaskFailure.unrecorded("write_activities", -1, RUN_URL + "/tasks/write_activities")
    alert = digest(unknown)

    assert "no exception recorded (the task was killed or timed out; see the log)" in alert.html_body()
    assert "state unknown to the alert (see the log)" in alert.text()


def test_a_mapped_task_is_named_by_its_map_index_name_or_number():
    assert TaskFailure.from_context(failure_context(map_index=2, rendered_map_index="Newsletter")).task == \
        "load_target_group[Newsletter]"
    assert TaskFailure.from_context(failure_context(map_index=2)).task == "load_target_group[2]"


def test_error_text_is_escaped_and_never_evaluated_as_a_template():
    error = RuntimeError("<script>x</script> {{ conn.smtp_default }}")
    alert = digest(TaskFailure.from_context(failure_context(error)))

    body = alert.html_body()
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert "{{ conn.smtp_default }}" in body


def test_subject_stays_one_short_line():
    alert = digest(TaskFailure.from_context(failure_context(map_index=0, rendered_map_index="Board\r\nBcc: x@evil.test",
                                                            error=RuntimeError("y" * 250))))
    subject = alert.subject()
    assert "\n" not in subject and "\r" not in subject
    error_part = subject.split("follows: ", 1)[1]
    assert len(error_part) == 100 and error_part.startswith("RuntimeError: yyy") and error_part.endswith("y…")


def test_nothing_but_ids_and_the_error_line_reaches_the_alert():
    alert = digest(TaskFailure.from_context(failure_context()))

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
        alert = TaskFailure.from_context(failure_context(failed))

    assert alert.error.startswith("WritebackIncomplete: 2 event(s) quarantined, every other event was written: "
                                  "iMIS failed every post of HL1-0123456789abcdef0123456789abcdef for contact 1000123")
    assert alert.details[:2] == (
        "HL1-0123456789abcdef0123456789abcdef for contact 1000123 (Mail Open): HTTP 500: An error occurred. Please "
        "contact the administrator. [failed runs 1 of 3, 5 posts; tried again by the next run of its interval]",
        "HL1-ffff for contact 1000456 (Mail Open): HTTP 500: An error occurred. Please contact the administrator. "
        "[failed runs 1 of 3, 5 posts; tried again by the next run of its interval]")
    assert alert.details[-1] == "report: file:///store/reports/activities/run-1.json"
    assert "<li>HL1-ffff for contact 1000456 (Mail Open)" in digest(alert).html_body()
    assert "\n  - HL1-ffff for contact 1000456" in digest(alert).text()
    assert TaskFailure.from_context(failure_context()).details == ()


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
    alert = digest(TaskFailure.from_context(failure_context(RuntimeError("a < b & c <!channel>"))))

    send_alert_slack(alert, failure_context())

    [payload] = slack_webhook.received
    assert list(payload) == ["text"]
    assert "a &lt; b &amp; c &lt;!channel&gt;" in payload["text"] and LOG_URL in payload["text"]


def test_slack_is_off_unless_its_connection_exists(monkeypatch):
    monkeypatch.delenv(SLACK_CONN_ENV, raising=False)
    assert not slack_configured()


def test_slack_retries_a_5xx_then_delivers(slack_webhook):
    slack_webhook.answers = [(503, "service_unavailable")]

    send_alert_slack(digest(), failure_context())

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
        send_alert_slack(digest(), failure_context())
    assert f"connection {SLACK_CONN_ID}" in str(raised.value)
    assert "s3cretWebhookToken" not in str(raised.value) and raised.value.__cause__ is None


# --- the digest's delivery over real loopback servers ---------------------------------------------------------

def test_the_digest_is_mailed(monkeypatch, smtp_default):
    monkeypatch.setenv(f"AIRFLOW_VAR_{ALERT_EMAILS_VARIABLE.upper()}", "ops@x.org; dev@x.org")

    deliver(digest(TaskFailure.from_context(failure_context(map_index=1, rendered_map_index="Newsletter"))),
            failure_context())

    [mail] = smtp_default.messages
    assert mail.recipients == ("ops@x.org", "dev@x.org")
    assert mail.message["From"] == "airflow@sandbox.invalid"
    assert "load_target_group[Newsletter] failed, no retry follows" in mail.subject
    assert LOG_URL in mail.body() and RUN_URL in mail.body()


def test_the_digest_is_posted_to_slack_even_when_mail_fails(monkeypatch, slack_webhook):
    monkeypatch.setenv(f"AIRFLOW_VAR_{ALERT_EMAILS_VARIABLE.upper()}", "ops@x.org")
    with socket.socket() as bound_not_listening:  # a free port that refuses connections
        bound_not_listening.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": bound_not_listening.getsockname()[1],
            "extra": {"from_email": "airflow@sandbox.invalid", "disable_tls": True, "disable_ssl": True,
                      "retry_limit": 0, "timeout": 2}}))

        with pytest.raises(AlertDeliveryFailed, match="not delivered: mail through connection smtp_default: "
                                                      "ConnectionRefusedError"):
            deliver(digest(), failure_context())

    [payload] = slack_webhook.received
    assert f"imis_to_thrive_target_groups, run {RUN_ID}" in payload["text"]
    assert "* load_target_group: RuntimeError" in payload["text"]


def test_the_digest_without_any_channel_says_what_to_set(monkeypatch):
    monkeypatch.delenv(f"AIRFLOW_VAR_{ALERT_EMAILS_VARIABLE.upper()}", raising=False)
    monkeypatch.delenv(SLACK_CONN_ENV, raising=False)

    with pytest.raises(AlertDeliveryFailed, match=f"no alert channel: set the Variable {ALERT_EMAILS_VARIABLE}"):
        deliver(digest(), failure_context())


def test_task_state_keys_of_the_execution_api_are_split_into_task_and_map_index():
    from include.imis_thrive.airflow.notifications.alerts import _task_key

    tasks = {"plan_target_group": 0, "finish_run_2": 1}
    assert _task_key("plan_target_group_12", tasks) == ("plan_target_group", 12)
    assert _task_key("plan_target_group", tasks) == ("plan_target_group", -1)
    assert _task_key("finish_run_2", tasks) == ("finish_run_2", -1)
