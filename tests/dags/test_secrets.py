"""Secrets and member data stay where they belong: the three DAGs run against both sandboxes with passwords made
for this run alone; two runs fail (iMIS refuses some activities; a contact comes without an ID), so alerts are
mailed; then no password, no bearer token iMIS issued and no seeded member email may appear in the task logs, the
XComs, the run reports, the ledgers or the alert mails.

Member emails do live in the snapshots (the Parquet files a diff compares against), in the token store's folder
lives the token, and both live in the sandboxes: those are where they belong. Everything else is scanned.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.imis_thrive.thrive.kinds import EngagementKind
from sandbox.airflow_settings import load_settings
from tests.dags.conftest import Sandboxes, dag_test_run, serve_sandboxes

pytestmark = [pytest.mark.dags, pytest.mark.integration]
ENGAGEMENT_END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)


class Secrets:
    """This run's credentials, set both on the sandboxes and on the connections."""

    def __init__(self) -> None:
        self.imis_password = f"imis-{secrets.token_urlsafe(18)}"
        self.thrive_password = f"thrive-{secrets.token_urlsafe(18)}"


@pytest.fixture
def run_secrets() -> Secrets:
    return Secrets()


@pytest.fixture
def secret_sandboxes(monkeypatch, tmp_path, run_secrets) -> Iterator[Sandboxes]:
    settings = load_settings()
    settings.connection("imis_default").conn_password = run_secrets.imis_password
    settings.connection("thrive_default").conn_password = run_secrets.thrive_password
    yield from serve_sandboxes(monkeypatch, tmp_path, settings=settings)


def _found(needles: dict[str, set[str]], haystacks: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    """{where: {what: [the first few needles found there]}}, case-insensitively, for a readable failure."""
    found: dict[str, dict[str, list[str]]] = {}
    for where, text in haystacks.items():
        lowered = text.lower()
        for what, values in needles.items():
            hits = sorted(value for value in values if value.lower() in lowered)
            if hits:
                found.setdefault(where, {})[what] = hits[:5]
    return found


def _xcom_text(run_ids: list[str]) -> str:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        values = session.query(XComModel.value).filter(XComModel.run_id.in_(run_ids)).all()
    return "\n".join(str(value) for (value,) in values)


def _store_text(store: Path, prefix: str) -> str:
    """Every file under `store/prefix`, as text (reports are JSON and Markdown; ledgers are JSON)."""
    return "\n".join(path.read_text(errors="replace") for path in sorted((store / prefix).rglob("*"))
                     if path.is_file())


def _task_log_files() -> str:
    import os

    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    return "\n".join(path.read_text(errors="replace") for path in sorted(logs.rglob("*")) if path.is_file()) \
        if logs.exists() else ""


def test_no_password_token_or_member_email_reaches_logs_xcom_reports_ledgers_or_alert_mail(
        dagbag, secret_sandboxes, run_secrets, smtp_sink, capfd, caplog):
    sandboxes = secret_sandboxes
    runs = [dag_test_run(dagbag, "imis_to_thrive_target_groups"),
            dag_test_run(dagbag, "imis_to_thrive_panel_fields")]
    assert [str(run.state) for run in runs] == ["success", "success"]
    sandboxes.thrive.generate_engagement(ENGAGEMENT_END - timedelta(hours=1), ENGAGEMENT_END, volume=200, seed=5,
                                         interests=["Newsletter"], by_contact=True)
    # iMIS refuses the activities of three contacts: the writeback quarantines them and its alert lists them.
    sandboxes.imis.fail_activities(sorted(sandboxes.thrive.interest_members("Newsletter"))[:3])
    runs.append(dagbag.get_dag("thrive_to_imis_activities").test(
        logical_date=ENGAGEMENT_END, run_conf={"kinds": [kind.value for kind in EngagementKind]}))
    assert str(runs[-1].state) == "failed"
    assert sandboxes.imis.activities()  # the others were written, so its ledger and report hold entries

    # Bad input: a contact without an ID stops the extraction, and the alert is mailed.
    sandboxes.imis.seed.contacts["ID"][3] = None
    runs.append(dag_test_run(dagbag, "imis_to_thrive_target_groups"))
    assert str(runs[-1].state) == "failed"
    assert {mail.subject.split(" / ")[0] for mail in smtp_sink.messages} == {
        "Airflow alert: thrive_to_imis_activities", "Airflow alert: imis_to_thrive_target_groups"}

    emails = {str(email) for email in sandboxes.imis.seed.contacts["PrimaryEmailAddress"] if email and "@" in email}
    needles = {"password": {run_secrets.imis_password, run_secrets.thrive_password},
               "bearer token": set(sandboxes.imis.issued_tokens), "member email": emails}
    assert needles["bearer token"] and len(emails) > 100
    captured = capfd.readouterr()
    store = Path(sandboxes.store_url)
    haystacks = {
        "task logs": "\n".join([captured.out, captured.err, caplog.text, _task_log_files()]),
        "XCom": _xcom_text([run.run_id for run in runs]),
        "run reports": _store_text(store, "reports"),
        "ledgers": _store_text(store, "quarantine") + _store_text(store, "writeback"),
        "alert mails": "\n".join(f"{mail.subject}\n{mail.body()}" for mail in smtp_sink.messages),
    }
    assert all(haystacks[where] for where in ("task logs", "XCom", "run reports", "ledgers", "alert mails")), {
        where: len(text) for where, text in haystacks.items()}
    assert _found(needles, haystacks) == {}
