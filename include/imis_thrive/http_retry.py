"""One retry policy for every HTTP call to iMIS and Thrive.

DESIGN.md §6: 429, 5xx and connection errors retry with exponential backoff and full jitter, honouring
`Retry-After`; every other status fails at once. A request that is not idempotent (an iMIS activity POST)
is retried only when the server certainly did not act on it (429, 503, or a connection that never opened);
any other failure of such a request is *ambiguous* and raised as `AmbiguousWriteError`, so the caller can
check the remote side before sending it again instead of creating a duplicate. A refused TLS certificate is
never retried: it is raised at once as `tls.CertificateRefused`, naming the host.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import tenacity

from include.imis_thrive.errors import TransientTrouble
from include.imis_thrive.tls import certificate_failure, refused_certificate

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses that prove the server did not process the request, so even a non-idempotent one may be resent.
NOT_PROCESSED_STATUSES = frozenset({429, 503})
# Transport errors raised before a single byte of the request reached the server.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up; the defaults suit an hourly batch job."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0


class TransientHTTPError(TransientTrouble):
    """A retryable HTTP status; `what` names the call so the final error says what failed."""

    def __init__(self, what: str, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        super().__init__(f"{what}: HTTP {response.status_code} {_short_body(response)}")


class AmbiguousWriteError(TransientTrouble):
    """A non-idempotent request failed in a way that leaves open whether the server acted on it."""

    def __init__(self, what: str, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(f"{what}: outcome unknown after {type(cause).__name__}: {cause}")


def _short_body(response: httpx.Response, limit: int = 200) -> str:
    try:
        text = response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return ""
    return text[:limit]


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` as seconds, from either of its two forms (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random = random._inst) -> float:
    """Full-jitter exponential backoff for the `attempt`-th failure (1-based)."""
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    return rng.uniform(0, ceiling)


def is_retryable(error: BaseException, idempotent: bool = True) -> bool:
    if isinstance(error, TransientHTTPError):
        return error.status_code in (RETRYABLE_STATUSES if idempotent else NOT_PROCESSED_STATUSES)
    if isinstance(error, httpx.TransportError):
        if certificate_failure(error) is not None:
            return False  # the same certificate again: a setting to fix, not trouble that passes
        return idempotent or isinstance(error, NOT_SENT_ERRORS)
    return False


def _wait(policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], float]:
    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientHTTPError) and error.status_code in (429, 503):
            hinted = retry_after_seconds(error.response)
            if hinted is not None:
                return min(hinted, policy.max_retry_after)
        return backoff_delay(state.attempt_number, policy)

    return wait


def send_with_retry(
    send: Callable[[], httpx.Response],
    what: str,
    policy: RetryPolicy = RetryPolicy(),
    idempotent: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """Call `send` until it returns a non-retryable response; `what` names the call in logs and errors.

    Returns the first response whose status is not retryable (the caller decides what a 4xx means).
    Raises the last `TransientHTTPError` / transport error once attempts run out, or `AmbiguousWriteError`
    for a non-idempotent request whose outcome is unknown.
    """

    def attempt() -> httpx.Response:
        response = send()
        if response.status_code in RETRYABLE_STATUSES:
            response.read()
            raise TransientHTTPError(what, response)
        return response

    def before_sleep(state: tenacity.RetryCallState) -> None:
        log.warning(
            "%s: attempt %d/%d failed (%s); retrying in %.1fs",
            what, state.attempt_number, policy.max_attempts,
            state.outcome.exception() if state.outcome else "?", state.upcoming_sleep,
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.max_attempts),
        wait=_wait(policy),
        retry=tenacity.retry_if_exception(lambda e: is_retryable(e, idempotent)),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except httpx.TransportError as error:
        refused = refused_certificate(what, error)
        if refused is not None:
            raise refused from error
        if not idempotent and not isinstance(error, NOT_SENT_ERRORS):
            raise AmbiguousWriteError(what, error) from error
        raise
    except TransientHTTPError as error:
        if not idempotent and error.status_code not in NOT_PROCESSED_STATUSES:
            raise AmbiguousWriteError(what, error) from error
        raise
