"""Alerting end to end: a task that fails mails the alert to a real SMTP server on loopback; one that fails once
and then succeeds on its retry mails nothing; and every project DAG wires `notify_failure` into its tasks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pendulum
import pytest

from include.imis_thrive.airflow.notifications.alerts import notify_failure
from tests.dags.conftest import ALERT_RECIPIENT

# One DAG per file, named after its DAG id: the policy covers whichever of the project's DAGs exist so far.
PROJECT_DAG_IDS = sorted(path.stem for path in (Path(__file__).resolve().parents[2] / "dags").glob("*.py"))


def _serialize(dag) -> None:
    """Write a DAG built in a test to the metadata DB, as the DAG processor would: `dag.test()` runs only
    serialized DAGs, and this one lives in no bundle."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        update_dag_parsing_results_in_db("dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None,
                                         set(), session=session)


def _alerting_dag(dag_id: str, fail_on_tries: set[int], retries: int):
    """A one-task DAG whose task fails on the given tries, with the project's failure callback."""
    from airflow.sdk import dag, task

    @dag(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         default_args={"owner": "data-team", "retries": retries, "retry_delay": timedelta(0),
                       "on_failure_callback": notify_failure})
    def alerting():
        @task
        def load_target_group(ti=None) -> None:
            if ti.try_number in fail_on_tries:
                raise RuntimeError(f"list IQA $/HigherLogic/MailingLists/Newsletter failed on try {ti.try_number}\n"
                                   "second line with member rows that must not be mailed")

        load_target_group()

    built = alerting()
    _serialize(built)
    return built


def test_a_failed_task_mails_the_alert(airflow_db, smtp_sink):
    dag = _alerting_dag("alerting_fails", fail_on_tries={1}, retries=0)

    run = dag.test()

    assert str(run.state) == "failed"
    [mail] = smtp_sink.messages
    assert mail.recipients == (ALERT_RECIPIENT,)
    assert mail.message["From"] == "airflow@sandbox.invalid"
    assert mail.subject.startswith("Airflow alert: alerting_fails / load_target_group failed (try 1 of 1, run ")
    assert run.run_id in mail.subject
    body = mail.body()
    for text in ("alerting_fails", "load_target_group", run.run_id,
                 "RuntimeError: list IQA $/HigherLogic/MailingLists/Newsletter failed on try 1",
                 f"/dags/alerting_fails/runs/{quote(run.run_id)}/tasks/load_target_group?try_number=1"):
        assert text in body
    assert "second line" not in body


def test_a_task_that_succeeds_on_retry_mails_nothing(airflow_db, smtp_sink):
    dag = _alerting_dag("alerting_recovers", fail_on_tries={1}, retries=1)

    run = dag.test()

    assert str(run.state) == "success"
    [ti] = run.get_task_instances()
    assert ti.try_number == 2
    assert smtp_sink.messages == []


def test_a_task_that_fails_every_try_mails_once_for_the_last(airflow_db, smtp_sink):
    dag = _alerting_dag("alerting_exhausts_retries", fail_on_tries={1, 2}, retries=1)

    run = dag.test()

    assert str(run.state) == "failed"
    [mail] = smtp_sink.messages
    assert "load_target_group failed (try 2 of 2" in mail.subject
    assert "failed on try 2" in mail.body()


@pytest.mark.parametrize("dag_id", PROJECT_DAG_IDS)
def test_every_task_of_a_project_dag_alerts_on_failure(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert dag is not None, dagbag.import_errors
    assert _is_notify_failure(dag.default_args.get("on_failure_callback")), (
        f"{dag_id}: set default_args['on_failure_callback'] = notify_failure "
        "(from include.imis_thrive.airflow.notifications.alerts)")
    for task in dag.tasks:
        # A mapped task keeps the value as given; it becomes a list when the task is unmapped to run.
        callbacks = task.on_failure_callback
        assert any(map(_is_notify_failure, callbacks if isinstance(callbacks, list) else [callbacks])), task.task_id


def _is_notify_failure(callback) -> bool:
    """By name, not identity: a callback deserialised by Airflow may be a second import of the module."""
    return (getattr(callback, "__module__", None), getattr(callback, "__qualname__", None)) == (
        notify_failure.__module__, notify_failure.__qualname__)
