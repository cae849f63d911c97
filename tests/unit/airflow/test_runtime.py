"""The runtime: the one mapping from the three error kinds to Airflow's retry decision, and the choice of snapshot
store (a folder in the Airflow home only where every task runs on one machine)."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.imis_thrive.airflow.runtime import (
    STORE_URL_VARIABLE,
    LocalStoreOnDistributedExecutor,
    default_store_url,
    executors_in_use,
    report_view_url,
    retry_by_error_kind,
    snapshot_store,
    stop_sentence,
    store_url,
    writeback_lease_terms,
)
from include.imis_thrive.errors import BadConfiguration, BadConnectionSetting, BadData, TransientTrouble
from include.imis_thrive.http_retry import AmbiguousWriteError
from include.imis_thrive.sync.validation import ValidationFailed
from include.imis_thrive.thrive.errors import ThriveUnavailable

VALIDATION_SUMMARY = {"failed": [], "evaluated": 4, "rows": 10}


@pytest.mark.parametrize("error", [
    BadData("IQA $/HigherLogic/Contacts/Contacts repeats ID 1000123"),
    ValidationFailed("$/HigherLogic/Contacts/Contacts", VALIDATION_SUMMARY),
    BadConfiguration("interest 'Newsletter' does not exist in Thrive"),
    BadConnectionSetting("imis_default", "extra page_size", "is invalid: at most 500"),
], ids=type)
def test_bad_data_and_bad_configuration_fail_at_once_with_the_domain_message(error):
    with pytest.raises(AirflowFailException) as failed, retry_by_error_kind():
        raise error

    assert str(failed.value) == str(error)
    assert failed.value.__cause__ is error  # the alert reads the domain error's detail lines through it


@pytest.mark.parametrize("error", [
    TransientTrouble("iMIS login lock stayed taken"),
    ThriveUnavailable("grid mailings: gave up after 6 attempts"),
    AmbiguousWriteError("activity for party 1000123", TimeoutError("read timeout")),
    ConnectionResetError("dropped"),
    KeyError("an error nobody classified"),
], ids=type)
def test_transient_trouble_and_anything_unforeseen_propagate_unchanged_so_airflow_retries(error):
    with pytest.raises(type(error)) as raised, retry_by_error_kind():
        raise error

    assert raised.value is error


def test_an_expected_stop_is_logged_as_one_error_line_before_the_failure(caplog):
    error = BadData("the run did not sync everything (report: file:///store/r.json):\n"
                    "Broken - Prompted: list IQA $/HigherLogic/MailingLists/Broken - Prompted is skipped\n"
                    "Newsletter: mass-change guard stopped target group 'Newsletter'")
    with caplog.at_level("INFO"), pytest.raises(AirflowFailException), retry_by_error_kind():
        raise error

    [record] = [record for record in caplog.records if record.levelname == "ERROR"]
    assert record.getMessage() == (
        "Stopped by bad data, not retried: the run did not sync everything (report: file:///store/r.json): "
        "Broken - Prompted: list IQA $/HigherLogic/MailingLists/Broken - Prompted is skipped; "
        "Newsletter: mass-change guard stopped target group 'Newsletter'")
    assert "\n" not in record.getMessage() and record.exc_info is None  # the traceback is Airflow's, after it


def test_a_stop_sentence_names_the_kind_of_trouble():
    assert stop_sentence(BadConfiguration("connection imis_default: host is missing")) == (
        "Stopped by bad configuration, not retried: connection imis_default: host is missing")


def test_transient_trouble_logs_no_stop_line(caplog):
    with caplog.at_level("INFO"), pytest.raises(TransientTrouble), retry_by_error_kind():
        raise TransientTrouble("iMIS login lock stayed taken")
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []


def test_a_task_body_that_succeeds_returns_through_it():
    with retry_by_error_kind():
        result = 42
    assert result == 42


@pytest.mark.parametrize("executors", [["LocalExecutor"], ["SequentialExecutor"], []])
def test_a_single_machine_executor_may_use_the_airflow_home(executors: list[str]) -> None:
    assert store_url(None, executors) == default_store_url()


@pytest.mark.parametrize("executors", [["CeleryExecutor"], ["LocalExecutor", "KubernetesExecutor"]])
def test_a_distributed_executor_without_a_store_fails_at_once_saying_what_to_set(executors: list[str]) -> None:
    with pytest.raises(LocalStoreOnDistributedExecutor) as refused:
        store_url(None, executors)
    assert STORE_URL_VARIABLE in str(refused.value)
    assert executors[-1] in str(refused.value)
    assert isinstance(refused.value, BadConfiguration)  # fails at once: a retry would land on any worker


def test_a_configured_store_is_used_on_any_executor() -> None:
    assert store_url("s3://bucket/imis-thrive", ["CeleryExecutor"]) == "s3://bucket/imis-thrive"


def test_the_api_server_reads_the_store_variable_through_the_getter_it_passes(tmp_path) -> None:
    """The Sync health plugin runs no task, so it reads Variables from the metadata DB, not the Task SDK."""
    variables = {STORE_URL_VARIABLE: str(tmp_path / "store"), "imis_thrive_store_options": '{"auto_mkdir": true}'}
    store = snapshot_store(variables.get)
    store.write_json("probe", {"ok": True})
    assert (tmp_path / "store" / "probe.json").exists()


def test_the_report_address_is_under_the_api_base_url(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.org/")
    assert report_view_url("imis_to_thrive_target_groups", "manual__1") == (
        "https://airflow.example.org/sync-health/runs/imis_to_thrive_target_groups/manual__1")


def test_the_executor_list_is_read_from_airflow_config_with_aliases_and_module_paths(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR",
                       "LocalExecutor, edge:airflow.providers.edge3.executors.EdgeExecutor,CeleryExecutor")
    assert executors_in_use() == ["LocalExecutor", "EdgeExecutor", "CeleryExecutor"]


def test_the_writeback_lease_takes_its_seconds_from_the_variable_over_the_defaults(monkeypatch):
    from datetime import timedelta

    from include.imis_thrive.sync.lease import DEFAULT_TERMS

    monkeypatch.setenv("AIRFLOW_VAR_IMIS_THRIVE_WRITEBACK_LEASE", '{"ttl": 3, "renew_every": 0.5}')
    terms = writeback_lease_terms()
    assert (terms.ttl, terms.renew_every, terms.grace) == (timedelta(seconds=3), timedelta(seconds=0.5),
                                                          DEFAULT_TERMS.grace)
    monkeypatch.setenv("AIRFLOW_VAR_IMIS_THRIVE_WRITEBACK_LEASE", '{"ttl": 3, "heartbeat": 1}')
    with pytest.raises(BadConfiguration, match=r"imis_thrive_writeback_lease.*heartbeat"):
        writeback_lease_terms()
    monkeypatch.setenv("AIRFLOW_VAR_IMIS_THRIVE_WRITEBACK_LEASE", '{"ttl": 3, "renew_every": 5}')
    with pytest.raises(BadConfiguration, match="renewed more often than it expires"):
        writeback_lease_terms()
