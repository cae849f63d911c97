"""Typed iMIS errors; each message names what a person must look at (the query, entity or user).

Each is one kind of `include/imis_thrive/errors.py`, which decides whether Airflow retries it."""

from __future__ import annotations

from include.imis_thrive.errors import BadConfiguration, BadData, ImisThriveError, TransientTrouble


class ImisError(ImisThriveError):
    """Base class for every failure talking to iMIS; a family for `except`, never raised itself."""


class ImisAuthError(ImisError, BadConfiguration):
    """Login refused, or a request still unauthorised after fresh logins.

    iMIS answers 401 both for a dead token and for a call the user may not make (an IQA not shared with
    Everyone), so after one re-authentication the second 401 is reported as a permission problem.
    """


class ImisNotFound(ImisError, BadConfiguration):
    """404: the IQA path, document or entity does not exist (or is not visible to the integration user)."""


class ImisRequestError(ImisError, BadConfiguration):
    """Any other 4xx: the request itself is wrong; retrying will not help.

    Bad configuration: what escapes to a task is a read built from the IQA paths and connection settings
    (the activity writer handles a refused post per event)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ImisServerError(ImisError, TransientTrouble):
    """A 5xx the HTTP retry policy does not retry itself (501, 505...) or an unknown status: the server's trouble."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ImisPagingError(ImisError, BadData):
    """The paging envelope contradicts itself (`Count` is not the rows the page holds, `NextOffset` does not
    advance, a page ends the read before `TotalCount`): stop instead of looping or returning a short result.

    Bad data, failing at once: an envelope that lies repeats the lie on every Airflow retry, minutes apart, and
    the alert would wait for the last one (issue 13). A result that changed while it was read is the one case a
    new run can cure; its message says "run it again"."""


class ImisValueError(ImisError, BadData):
    """A value an IQA column cannot hold (text in a `System.DateTime` column, say): names the IQA, the column and
    the row's ID, never the value. A retry reads the same value, so it fails at once."""


class ImisUnexpectedAnswer(ImisError, BadConfiguration, ValueError):
    """A 2xx answer whose shape the client does not know: raised naming the call, never read as an empty result.

    Bad configuration: the same call gets the same shape again, so it is an instance (version, `endpoint`
    extra, customised IQA) the client does not speak, not bad luck. Also a `ValueError`, so a check that
    reports unreadable definitions per IQA keeps doing so."""


class ImisAnswerNotJson(ImisError, BadConfiguration):
    """A 2xx answer that is not JSON at all: the host is most often the site's web pages (a login page,
    a redirect) rather than the iMIS REST API; check the connection's host and path prefix."""
