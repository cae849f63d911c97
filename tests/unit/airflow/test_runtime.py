"""The runtime's choice of snapshot store: a folder in the Airflow home only where every task runs on one machine."""

from __future__ import annotations

import pytest

from include.imis_thrive.airflow.runtime import (
    STORE_URL_VARIABLE,
    LocalStoreOnDistributedExecutor,
    default_store_url,
    executors_in_use,
    store_url,
)


@pytest.mark.parametrize("executors", [["LocalExecutor"], ["SequentialExecutor"], []])
def test_a_single_machine_executor_may_use_the_airflow_home(executors: list[str]) -> None:
    assert store_url(None, executors) == default_store_url()


@pytest.mark.parametrize("executors", [["CeleryExecutor"], ["LocalExecutor", "KubernetesExecutor"]])
def test_a_distributed_executor_without_a_store_fails_at_once_saying_what_to_set(executors: list[str]) -> None:
    with pytest.raises(LocalStoreOnDistributedExecutor) as refused:
        store_url(None, executors)
    assert STORE_URL_VARIABLE in str(refused.value)
    assert executors[-1] in str(refused.value)


def test_a_configured_store_is_used_on_any_executor() -> None:
    assert store_url("s3://bucket/imis-thrive", ["CeleryExecutor"]) == "s3://bucket/imis-thrive"


def test_the_executor_list_is_read_from_airflow_config_with_aliases_and_module_paths(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR",
                       "LocalExecutor, edge:airflow.providers.edge3.executors.EdgeExecutor,CeleryExecutor")
    assert executors_in_use() == ["LocalExecutor", "EdgeExecutor", "CeleryExecutor"]
