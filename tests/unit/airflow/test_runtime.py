"""`retry_by_error_kind`: the one mapping from the three error kinds to Airflow's retry decision."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.imis_thrive.airflow.runtime import retry_by_error_kind
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


def test_a_task_body_that_succeeds_returns_through_it():
    with retry_by_error_kind():
        result = 42
    assert result == 42
