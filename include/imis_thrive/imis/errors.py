"""Typed iMIS errors; each message names what a person must look at (the query, entity or user)."""

from __future__ import annotations


class ImisError(Exception):
    """Base class for every failure talking to iMIS."""


class ImisAuthError(ImisError):
    """Login refused, or a request still unauthorised after fresh logins.

    iMIS answers 401 both for a dead token and for a call the user may not make (an IQA not shared with
    Everyone), so after one re-authentication the second 401 is reported as a permission problem.
    """


class ImisNotFound(ImisError):
    """404: the IQA path, document or entity does not exist (or is not visible to the integration user)."""


class ImisRequestError(ImisError):
    """Any other 4xx: the request itself is wrong; retrying will not help."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ImisPagingError(ImisError):
    """The paging envelope contradicts itself (e.g. `NextOffset` does not advance): stop instead of looping."""


class ImisUnexpectedAnswer(ImisError, ValueError):
    """A 2xx answer whose shape the client does not know: raised naming the call, never read as an empty result.

    Also a `ValueError`, so a check that reports unreadable definitions per IQA keeps doing so."""
