"""The pre-publish refresh against a real `airflow api-server` in the test Airflow home.

No scheduler runs, so a triggered run stays queued: what is checked is what the API server stored. One server
(`airflow_api_server.py`) serves the session (it takes ~12 s to answer); a user with the `user` role triggers, a
`viewer` may not.
"""

from __future__ import annotations

import json

import httpx
import pytest

from include.imis_thrive.airflow.rest_api import (
    TARGET_GROUP_DAG,
    AirflowAccessDenied,
    AirflowLoginRefused,
    DagNotFound,
    DagRunRejected,
    main,
)
from tests.integration.airflow_api_server import ApiServer


def test_the_script_queues_a_run_whose_conf_names_the_group(api_server, capsys):
    assert main(["Annual Conference 2026", "--dry-run"], env=api_server.env()) == 0
    out = capsys.readouterr().out
    run_id = out.split(" run ", 1)[1].split(" for ", 1)[0]
    with api_server.client() as airflow:
        run = airflow.get_dag_run(TARGET_GROUP_DAG, run_id)
    assert run.state == "queued"
    assert run.conf == {"target_group": "Annual Conference 2026", "dry_run": True}
    assert f"{api_server.url}/dags/{TARGET_GROUP_DAG}/runs/" in out


def test_a_wrong_password_says_which_user_and_where_the_login_comes_from(api_server, capsys):
    assert main(["Newsletter"], env=api_server.env(password="not-the-password")) == 2
    err = capsys.readouterr().err
    assert "refused the login of user 'refresher'" in err and "Invalid credentials" in err
    assert "AIRFLOW_API_USER / AIRFLOW_API_PASSWORD" in err and "not-the-password" not in err
    with pytest.raises(AirflowLoginRefused):
        api_server.client(password="not-the-password").login()


def test_a_retried_trigger_with_the_same_run_id_creates_one_run(api_server):
    conf = {"target_group": "Newsletter", "dry_run": False}
    with api_server.client() as airflow:
        first = airflow.trigger_dag_run(TARGET_GROUP_DAG, conf, run_id="refresh__retried")
        again = airflow.trigger_dag_run(TARGET_GROUP_DAG, conf, run_id="refresh__retried")
        assert (first.run_id, again.run_id, again.conf) == ("refresh__retried", "refresh__retried", conf)
        with pytest.raises(DagRunRejected, match="already taken"):
            airflow.trigger_dag_run(TARGET_GROUP_DAG, {"target_group": "Members"}, run_id="refresh__retried")


def test_a_viewer_may_read_but_not_trigger(api_server):
    with (api_server.client("watcher") as viewer,
          pytest.raises(AirflowAccessDenied, match=r"user 'watcher' may not.*'user' role")):
        viewer.trigger_dag_run(TARGET_GROUP_DAG, {"target_group": "Newsletter"})


def test_a_conf_breaking_the_params_and_an_unknown_dag_are_refused_by_name(api_server):
    with api_server.client() as airflow:
        with pytest.raises(DagRunRejected, match="param target_group"):
            airflow.trigger_dag_run(TARGET_GROUP_DAG, {"target_group": 5})
        with pytest.raises(DagNotFound, match="no DAG 'imis_to_thrive_target_group'"):
            airflow.trigger_dag_run("imis_to_thrive_target_group", {"target_group": "Newsletter"})


def test_waiting_without_a_scheduler_times_out_and_names_the_run(api_server, capsys):
    assert main(["Newsletter", "--wait", "--timeout", "1", "--poll", "0.2"], env=api_server.env()) == 3
    assert "is still queued after 1s; it goes on in Airflow" in capsys.readouterr().err


def _token(api_server: ApiServer, user: str = "refresher") -> str:
    reply = httpx.post(f"{api_server.url}/auth/token", json={"username": user, "password": api_server.users[user]},
                       timeout=30)
    reply.raise_for_status()
    return reply.json()["access_token"]


def test_the_connection_test_endpoint_runs_each_hook_against_the_sandboxes(api_server):
    """What the form's Test button posts: the api-server builds the hook of the connection type and calls
    `test_connection()`; a wrong password comes back as a refusal whose message does not hold it."""
    from sandbox.__main__ import build_sandboxes
    from sandbox.airflow_settings import load_settings
    from sandbox.server import SandboxServer

    settings = load_settings()
    imis_sandbox, thrive_sandbox = build_sandboxes(settings, contacts=30, seed=3, broken_lists=False)
    imis, thrive = settings.connection("imis_default"), settings.connection("thrive_default")
    headers = {"Authorization": f"Bearer {_token(api_server, 'keeper')}"}  # connections take the admin role
    with SandboxServer(imis_sandbox.app) as imis_server, SandboxServer(thrive_sandbox.app) as thrive_server:
        forms = {
            "imis": {"connection_id": "imis_form", "conn_type": "imis", "host": imis_server.url + imis.url_path(),
                     "login": imis.conn_login, "password": imis.conn_password, "extra": json.dumps(imis.conn_extra)},
            "thrive": {"connection_id": "thrive_form", "conn_type": "thrive",
                       "host": f"{thrive_server.url}{thrive.url_path()}", "login": thrive.conn_login,
                       "password": thrive.conn_password, "extra": json.dumps(thrive.conn_extra)},
        }
        answers = {name: httpx.post(f"{api_server.url}/api/v2/connections/test", json=form, headers=headers,
                                    timeout=60).json() for name, form in forms.items()}
        refused = {name: httpx.post(f"{api_server.url}/api/v2/connections/test",
                                    json=form | {"password": "Wrong-pass-123"}, headers=headers,
                                    timeout=60).json() for name, form in forms.items()}

    assert answers["imis"] == {"status": True, "message": "logged in as 'hl_integration' and read 1 row of 30 of "
                                                          "the IQA $/HigherLogic/Contacts/Contacts"}
    assert answers["thrive"]["status"] is True and answers["thrive"]["message"].startswith(
        f"logged in as '{thrive.conn_login}' to brand "), answers
    assert refused["imis"]["status"] is False and "ImisAuthError: iMIS refused the login" in refused["imis"]["message"]
    assert refused["thrive"]["status"] is False and "ThriveCredentialsError" in refused["thrive"]["message"]
    assert all("Wrong-pass-123" not in answer["message"] for answer in refused.values())

