"""One iMIS token for every worker of a deployment, on the Redis that Celery already needs (issue 12)."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import time
from collections.abc import Iterator

import pytest

from include.imis_thrive.http_retry import RetryPolicy
from include.imis_thrive.imis.client import ImisClient, ImisConfig
from include.imis_thrive.imis.iqa_package import CONTACTS_IQA_PATH
from include.imis_thrive.imis.tokens import RedisTokenStore, Token, TokenLockTimeout
from sandbox.faults import FaultConfig
from sandbox.imis_app import ImisSandbox, ImisSandboxConfig
from sandbox.server import SandboxServer

pytestmark = pytest.mark.integration
REDIS_URL = os.environ.get("IMIS_THRIVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
USER, PASSWORD = "hl_integration", "sandbox-imis-password"
FAST = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05, max_retry_after=0.05)


def _redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


requires_redis = pytest.mark.skipif(not _redis_answers(), reason=f"no Redis answers at {REDIS_URL}")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards: the machine's Redis is shared."""
    import redis

    prefix = f"imis_thrive_test:{secrets.token_hex(6)}:"
    yield prefix
    connection = redis.Redis.from_url(REDIS_URL)
    for key in connection.scan_iter(f"{prefix}*"):
        connection.delete(key)


@requires_redis
def test_a_token_expires_in_redis_with_itself_and_its_key_names_no_site_or_user(prefix):
    import redis

    store = RedisTokenStore(REDIS_URL, prefix=prefix)
    store.put("https://imis.example.org|hl_integration", Token("secret", "bearer", time.time() + 30))
    assert RedisTokenStore(REDIS_URL, prefix=prefix).get("https://imis.example.org|hl_integration").value == "secret"
    [key] = list(redis.Redis.from_url(REDIS_URL).scan_iter(f"{prefix}*"))
    assert b"imis" not in key.removeprefix(prefix.encode()) and b"hl_integration" not in key
    assert 0 < redis.Redis.from_url(REDIS_URL).pttl(key) <= 30_000


def _increment_under_lock(prefix: str, counter_key: str, times: int) -> None:
    import redis

    store, connection = RedisTokenStore(REDIS_URL, prefix=prefix), redis.Redis.from_url(REDIS_URL)
    for _ in range(times):
        with store.lock("key"):
            value = int(connection.get(counter_key) or 0)
            time.sleep(0.001)
            connection.set(counter_key, value + 1)


@requires_redis
def test_the_lock_excludes_other_processes(prefix):
    import redis

    counter_key = f"{prefix}counter"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_increment_under_lock, args=(prefix, counter_key, 20)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert int(redis.Redis.from_url(REDIS_URL).get(counter_key)) == 80  # no lost update


@requires_redis
def test_a_lock_whose_holder_died_expires_and_a_stale_holder_never_frees_a_newer_lock(prefix):
    dead = RedisTokenStore(REDIS_URL, prefix=prefix, lease_s=0.3)
    held = dead.lock("key")
    held.__enter__()  # a worker killed while logging in: it never releases
    waiting = RedisTokenStore(REDIS_URL, prefix=prefix, lease_s=5, wait_s=3)
    started = time.monotonic()
    with waiting.lock("key"):
        assert 0.2 < time.monotonic() - started < 2  # taken over once the dead holder's lease ran out
        held.__exit__(None, None, None)  # the stale holder wakes up: its release must not free our lock
        with (pytest.raises(TokenLockTimeout, match="stayed taken"),
              RedisTokenStore(REDIS_URL, prefix=prefix, wait_s=0.3).lock("key")):
            pass


def _extract_as_another_machine(url: str, prefix: str, results: multiprocessing.Queue) -> None:
    client = ImisClient(ImisConfig(base_url=url, username=USER, password=PASSWORD, timezone="America/New_York",
                                   retry=FAST, page_size=10, max_concurrency=2),
                        token_store=RedisTokenStore(REDIS_URL, prefix=prefix))
    try:
        with client:
            results.put(len(client.run_iqa(CONTACTS_IQA_PATH)))
    except Exception as error:  # reported to the parent, which asserts on it
        results.put(repr(error))


@requires_redis
def test_one_login_serves_four_workers_that_share_no_file(prefix):
    """Four processes, each as if on its own machine (nothing shared but Redis), extract at once: one login."""
    sandbox = ImisSandbox(ImisSandboxConfig(users={USER: PASSWORD}, contacts=300))
    sandbox.faults.configure(FaultConfig(latency_ms=5))
    with SandboxServer(sandbox.app) as server:
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        workers = [context.Process(target=_extract_as_another_machine, args=(server.url, prefix, results))
                   for _ in range(4)]
        for worker in workers:
            worker.start()
        outcomes = [results.get(timeout=180) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
    assert outcomes == [300] * 4
    assert (sandbox.logins, sandbox.expired_refusals) == (1, 0)
