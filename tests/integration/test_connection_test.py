"""The connection form's *Test* button, through each hook's `test_connection()` against the sandboxes on loopback:
good credentials log in and read one row; wrong ones, or no server, say so in one line without the password."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from include.imis_thrive.airflow.hooks.imis import ImisHook
from include.imis_thrive.airflow.hooks.thrive import ThriveHook
from tests.dags.conftest import serve_sandboxes

WRONG_PASSWORD = "wrong-Passw0rd-for-the-test"


@pytest.fixture
def sandboxes(monkeypatch, tmp_path):
    """Both sandboxes, and `imis_default` / `thrive_default` pointing at them as `make airflow` sets them."""
    yield from serve_sandboxes(monkeypatch, tmp_path, contacts=40)


def _with(monkeypatch, variable: str, **fields) -> None:
    """Change fields of the connection an env variable holds (as a person edits the form)."""
    connection = json.loads(os.environ[variable]) | fields
    monkeypatch.setenv(variable, json.dumps(connection))


def _refused_port() -> int:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        return bound_not_listening.getsockname()[1]


def test_imis_test_logs_in_and_reads_one_contact_row(sandboxes):
    ok, message = ImisHook().test_connection()

    assert ok, message
    assert message == ("logged in as 'hl_integration' and read 1 row of 40 of the IQA "
                       "$/HigherLogic/Contacts/Contacts")
    assert sandboxes.imis.issued_tokens


def test_imis_test_with_a_wrong_password_says_the_login_was_refused(sandboxes, monkeypatch):
    assert ImisHook().test_connection()[0]  # a good token is now in the store: the test must log in regardless
    _with(monkeypatch, "AIRFLOW_CONN_IMIS_DEFAULT", password=WRONG_PASSWORD)

    ok, message = ImisHook().test_connection()

    assert not ok
    assert message.startswith("connection imis_default: ImisAuthError: iMIS refused the login of user "
                              "'hl_integration'"), message
    assert WRONG_PASSWORD not in message and "\n" not in message


def test_imis_test_without_a_server_answers_at_once(sandboxes, monkeypatch):
    _with(monkeypatch, "AIRFLOW_CONN_IMIS_DEFAULT", host=f"http://127.0.0.1:{_refused_port()}")

    started = time.monotonic()
    ok, message = ImisHook().test_connection()

    assert not ok and message.startswith("connection imis_default: "), message
    assert time.monotonic() - started < 5  # one try, no back-off: a person is waiting at the button


def test_thrive_test_logs_in_and_reads_the_target_group_count(sandboxes):
    ok, message = ThriveHook().test_connection()

    assert ok, message
    assert message == ("logged in as 'hl_api_user' to brand 'Sandbox Association' (7001) and read the "
                       f"target-group grid: {len(sandboxes.thrive.config.interests)} target groups")


def test_thrive_test_with_a_wrong_password_says_the_credentials_were_refused(sandboxes, monkeypatch):
    _with(monkeypatch, "AIRFLOW_CONN_THRIVE_DEFAULT", password=WRONG_PASSWORD)

    ok, message = ThriveHook().test_connection()

    assert not ok
    assert message.startswith("connection thrive_default: ThriveCredentialsError: "), message
    assert WRONG_PASSWORD not in message and "\n" not in message


def test_thrive_test_with_a_setting_missing_names_it(sandboxes, monkeypatch):
    connection = json.loads(os.environ["AIRFLOW_CONN_THRIVE_DEFAULT"])
    connection["extra"].pop("brand_id")
    monkeypatch.setenv("AIRFLOW_CONN_THRIVE_DEFAULT", json.dumps(connection))

    assert ThriveHook().test_connection() == (
        False, "connection thrive_default: BadConnectionSetting: connection thrive_default: extra brand_id must be set")
