import random

import httpx
import pytest

from include.imis_thrive.http_retry import (
    AmbiguousWriteError,
    RetryPolicy,
    TransientHTTPError,
    backoff_delay,
    is_retryable,
    retry_after_seconds,
    send_with_retry,
)

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


def scripted(*outcomes):
    """A `send` that returns/raises the given outcomes in order and counts its calls."""
    calls = []
    request = httpx.Request("GET", "http://imis.test/api/query")

    def send():
        outcome = outcomes[len(calls)]
        calls.append(outcome)
        if isinstance(outcome, Exception):
            raise outcome
        status, headers = outcome if isinstance(outcome, tuple) else (outcome, {})
        return httpx.Response(status, headers=headers, request=request, text="body")

    return send, calls


def test_retries_5xx_and_429_then_returns_the_success():
    sleeps = []
    send, calls = scripted(503, 500, (429, {"Retry-After": "2"}), 200)
    response = send_with_retry(send, "IQA $/X", FAST, sleep=sleeps.append)
    assert response.status_code == 200
    assert len(calls) == 4
    assert sleeps[2] == 2.0  # the 429's Retry-After wins over the backoff


def test_gives_up_after_max_attempts_with_the_call_named():
    send, calls = scripted(*[502] * 4)
    with pytest.raises(TransientHTTPError, match=r"IQA \$/X: HTTP 502"):
        send_with_retry(send, "IQA $/X", FAST, sleep=lambda s: None)
    assert len(calls) == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_other_statuses_are_returned_at_once(status):
    send, calls = scripted(status)
    assert send_with_retry(send, "x", FAST, sleep=lambda s: None).status_code == status
    assert len(calls) == 1


def test_connection_errors_retry_for_idempotent_calls():
    send, calls = scripted(httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped"), 200)
    assert send_with_retry(send, "x", FAST, sleep=lambda s: None).status_code == 200
    assert len(calls) == 3


def test_a_write_is_resent_only_when_the_server_certainly_did_not_act():
    send, calls = scripted(httpx.ConnectError("refused"), (503, {"Retry-After": "0"}), 429, 201)
    assert send_with_retry(send, "activity", FAST, idempotent=False, sleep=lambda s: None).status_code == 201
    assert len(calls) == 4


@pytest.mark.parametrize("outcome", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped"), 500])
def test_an_ambiguous_write_failure_is_not_retried(outcome):
    send, calls = scripted(outcome, 201)
    with pytest.raises(AmbiguousWriteError, match="activity for party 7: outcome unknown"):
        send_with_retry(send, "activity for party 7", FAST, idempotent=False, sleep=lambda s: None)
    assert len(calls) == 1


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Response(429)) is None


def test_backoff_is_exponential_jittered_and_capped():
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    rng = random.Random(3)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [backoff_delay(attempt, policy, rng) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > ceiling / 2  # jitter spreads over the whole window


def test_retryable_classification():
    request = httpx.Request("POST", "http://x")
    transient = TransientHTTPError("x", httpx.Response(500, request=request))
    assert is_retryable(transient) and not is_retryable(transient, idempotent=False)
    assert not is_retryable(ValueError("bug"))


def _certificate_refused() -> httpx.ConnectError:
    """A ConnectError as httpx raises it for a refused certificate: the ssl error is its cause."""
    import ssl

    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    cause.verify_message = "self-signed certificate"
    error = httpx.ConnectError(str(cause), request=httpx.Request("GET", "https://members.example.org:8443/token"))
    error.__cause__ = cause
    return error


def test_a_refused_certificate_is_sent_once_and_raised_naming_the_host():
    from include.imis_thrive.errors import BadConfiguration
    from include.imis_thrive.tls import CertificateRefused

    send, calls = scripted(_certificate_refused(), 200)
    with pytest.raises(CertificateRefused, match=r"iMIS login: the TLS certificate of members\.example\.org:8443 "
                                                 r"was refused \(self-signed certificate\)") as refused:
        send_with_retry(send, "iMIS login", FAST, sleep=lambda _: None)
    assert len(calls) == 1
    assert isinstance(refused.value, BadConfiguration)
    assert not is_retryable(_certificate_refused())
    assert is_retryable(httpx.ConnectError("connection refused"))  # other connect errors still retry
