"""Alerting end to end: a failed run mails one digest to a real SMTP server on loopback, naming every task (every
group) that failed; a task that fails once and then succeeds on its retry mails nothing; and every project DAG
records each task's failure and sends the run's digest."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pendulum
import pytest

from include.imis_thrive.airflow.notifications.alerts import (
    FAILURE_XCOM_KEY,
    RunFailureDigest,
    notify_run_failure,
    record_failure,
)
from tests.dags.conftest import ALERT_RECIPIENT, dag_test_run

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


def _alerting_dag(dag_id: str, fail_on_tries: set[int], retries: int, lists: tuple[str, ...] = ()):
    """A DAG with the project's callbacks: `load_target_group` fails on the given tries, and `finish_run` after it
    does not run; with `lists`, it is mapped over them (named by group) and fails for each but the first."""
    from airflow.sdk import dag, get_current_context, task

    @dag(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         on_failure_callback=notify_run_failure,
         default_args={"owner": "data-team", "retries": retries, "retry_delay": timedelta(0),
                       "on_failure_callback": record_failure})
    def alerting():
        def fail(group: str, try_number: int) -> None:
            if try_number in fail_on_tries:
                raise RuntimeError(f"list IQA $/HigherLogic/MailingLists/{group} failed on try {try_number}\n"
                                   "second line with member rows that must not be mailed")

        if lists:
            @task(map_index_template="{{ target_group }}")
            def load_target_group(group: str, ti=None) -> None:
                get_current_context()["target_group"] = group
                if group != lists[0]:
                    fail(group, ti.try_number)

            load_target_group.expand(group=list(lists))  # a leaf: its failed groups fail the run
        else:
            @task
            def load_target_group(ti=None) -> None:
                fail("Newsletter", ti.try_number)

            @task
            def finish_run() -> None:
                pass

            load_target_group() >> finish_run()

    built = alerting()
    _serialize(built)
    return built


def test_a_failed_run_mails_one_alert_naming_the_task_and_saying_no_retry_follows(airflow_db, smtp_sink):
    dag = _alerting_dag("alerting_fails", fail_on_tries={1}, retries=0)

    run = dag.test()

    assert str(run.state) == "failed"
    [mail] = smtp_sink.messages
    assert mail.recipients == (ALERT_RECIPIENT,)
    assert mail.message["From"] == "airflow@sandbox.invalid"
    assert mail.subject == (f"Airflow alert: alerting_fails / run {run.run_id}: load_target_group failed, no retry "
                            "follows: RuntimeError: list IQA $/HigherLogic/MailingLists/Newsletter failed on try 1")
    body = mail.body()
    for text in ("no retry follows", "alerting_fails", run.run_id, "1 task(s) failed, 1 did not run because of them",
                 "RuntimeError: list IQA $/HigherLogic/MailingLists/Newsletter failed on try 1",
                 "failed on its last try (1 of 1)",
                 f"/dags/alerting_fails/runs/{quote(run.run_id)}/tasks/load_target_group?try_number=1",
                 f'href="http://localhost:8080/dags/alerting_fails/runs/{quote(run.run_id)}"'):
        assert text in body, text
    assert "second line" not in body


def test_a_task_that_succeeds_on_retry_mails_nothing(airflow_db, smtp_sink):
    dag = _alerting_dag("alerting_recovers", fail_on_tries={1}, retries=1)

    run = dag.test()

    assert str(run.state) == "success"
    load = next(ti for ti in run.get_task_instances() if ti.task_id == "load_target_group")
    assert load.try_number == 2
    assert smtp_sink.messages == []


def test_a_task_that_fails_every_try_is_named_once_for_its_last_try(airflow_db, smtp_sink):
    dag = _alerting_dag("alerting_exhausts_retries", fail_on_tries={1, 2}, retries=1)

    run = dag.test()

    assert str(run.state) == "failed"
    [mail] = smtp_sink.messages
    assert "failed on try 2" in mail.body() and "failed on its last try (2 of 2)" in mail.body()
    assert "failed on try 1" not in mail.body()


def test_a_run_with_three_failed_groups_mails_one_alert_naming_each_group(airflow_db, smtp_sink):
    lists = ("All Members", "Board", "Newsletter", "Volunteers")
    dag = _alerting_dag("alerting_mapped", fail_on_tries={1, 2}, retries=1, lists=lists)

    run = dag.test()

    assert str(run.state) == "failed"
    [mail] = smtp_sink.messages
    assert mail.subject.startswith(f"Airflow alert: alerting_mapped / run {run.run_id}: 3 tasks failed, no retry "
                                   "follows: RuntimeError: list IQA $/HigherLogic/MailingLists/Board failed on try 2")
    body = mail.body()
    for group in lists[1:]:
        assert f"load_target_group[{group}]" in body
        assert f"MailingLists/{group} failed on try 2" in body
    assert "load_target_group[All Members]" not in body
    assert "3 task(s) failed" in body


def test_the_failure_record_is_an_xcom_of_the_failed_task_instance_only(airflow_db, smtp_sink):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    run = _alerting_dag("alerting_record", fail_on_tries={1}, retries=0).test()

    with create_session() as session:
        records = session.query(XComModel).filter_by(dag_id="alerting_record", run_id=run.run_id,
                                                     key=FAILURE_XCOM_KEY).all()
        [(task_id, value)] = [(record.task_id, record.value) for record in records]
    assert task_id == "load_target_group"
    assert "second line" not in str(value) and "failed on try 1" in str(value)


def test_a_target_group_run_with_broken_lists_mails_one_alert_naming_each_list(dagbag, broken_sandboxes,
                                                                                 smtp_sink):
    """The issue's case: four broken lists sent five mails, each saying "try 1 of 3"; now one, naming each list."""
    broken = ("Broken - No Active Records", "Broken - No ID Alias", "Broken - Not Shared", "Broken - Prompted")

    run = dag_test_run(dagbag, "imis_to_thrive_target_groups")

    assert str(run.state) == "failed"
    [mail] = smtp_sink.messages
    body = mail.body()
    assert "no retry follows" in mail.subject and "try 1 of 3" not in mail.subject
    finish_run = body.split("<td>finish_run</td>", 1)[1].split("</tr>", 1)[0]
    assert "SyncIncomplete: the run did not sync everything" in finish_run
    assert "failed at once on try 1 of 3: a retry cannot fix this error" in finish_run
    for name in broken:
        assert f"<li>{name}: list IQA $/HigherLogic/MailingLists/{name} is skipped" in finish_run, name
    assert "<li>report: http://localhost:8080/sync-health/runs/imis_to_thrive_target_groups/" in finish_run
    assert "Good" not in finish_run and "Newsletter:" not in finish_run


@pytest.mark.parametrize("dag_id", PROJECT_DAG_IDS)
def test_every_project_dag_records_each_task_failure_and_alerts_once_per_run(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert dag is not None, dagbag.import_errors
    assert isinstance(dag.on_failure_callback, RunFailureDigest), (
        f"{dag_id}: set on_failure_callback=RUN_FAILURE_ALERT (include.imis_thrive.airflow.runtime) on the @dag")
    assert _is_record_failure(dag.default_args.get("on_failure_callback")), (
        f"{dag_id}: default_args['on_failure_callback'] must be record_failure (runtime.DEFAULT_ARGS)")
    for task in dag.tasks:
        # A mapped task keeps the value as given; it becomes a list when the task is unmapped to run.
        callbacks = task.on_failure_callback
        assert any(map(_is_record_failure, callbacks if isinstance(callbacks, list) else [callbacks])), task.task_id


def _is_record_failure(callback) -> bool:
    """By name, not identity: a callback deserialised by Airflow may be a second import of the module."""
    return (getattr(callback, "__module__", None), getattr(callback, "__qualname__", None)) == (
        record_failure.__module__, record_failure.__qualname__)
