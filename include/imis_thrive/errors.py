"""The three kinds of trouble, and so the retry decision, carried by each error's class.

Like the Singer SDK's `FatalAPIError` / `RetriableAPIError` and Airbyte's `FailureType`: every domain error
subclasses exactly one kind, and the Airflow runtime (`airflow/runtime.py: retry_by_error_kind`) maps the kinds
to "fail now" or "retry" in one place. A family base (`ImisError`, `ThriveError`, `AirflowApiError`) groups the
errors of one system for `except` and is never raised itself, so it has no kind of its own.
"""

from __future__ import annotations


class ImisThriveError(Exception):
    """Base class of every error this project raises on purpose."""


class BadData(ImisThriveError):
    """What iMIS returned (or what a run would change) breaks a rule: fail at once, the message says what to fix.

    A retry reads the same data and fails the same way, only later and with a second alert."""


class BadConfiguration(ImisThriveError):
    """A connection, Variable, param or remote setup (IQA, interest, activity type) is wrong: fail at once.

    Nothing changes until a person fixes the setting the message names."""


class TransientTrouble(ImisThriveError):
    """Trouble that passes by itself (5xx, timeouts, a busy lock, data changing while read): retry later."""


class BadConnectionSetting(BadConfiguration, ValueError):
    """A field or extra of an Airflow connection is missing or invalid; names the connection and the field.

    Also a `ValueError`, which is what the hooks raised before and what the check commands catch."""

    def __init__(self, conn_id: str, field: str, problem: str) -> None:
        self.conn_id = conn_id
        self.field = field
        super().__init__(f"connection {conn_id}: {field} {problem}")


FAILS_AT_ONCE = (BadData, BadConfiguration)
KINDS = (BadData, BadConfiguration, TransientTrouble)
