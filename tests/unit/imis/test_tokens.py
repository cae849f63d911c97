import multiprocessing
import os
import stat
import time

from include.imis_thrive.imis.tokens import FileTokenStore, MemoryTokenStore, Token


def test_token_usable_until_the_margin():
    token = Token("abc", "bearer", expires_at=1000.0)
    assert token.usable(60, now=939.0)
    assert not token.usable(60, now=941.0)
    assert token.authorization == "Bearer abc"


def test_memory_store_round_trip():
    store = MemoryTokenStore()
    assert store.get("k") is None
    store.put("k", Token("a", "bearer", 1.0))
    assert store.get("k").value == "a"


def test_file_store_round_trip_is_private(tmp_path):
    store = FileTokenStore(tmp_path / "tokens")
    store.put("https://imis|hl", Token("secret-token", "bearer", time.time() + 100))
    assert FileTokenStore(tmp_path / "tokens").get("https://imis|hl").value == "secret-token"
    [token_file] = list((tmp_path / "tokens").glob("*.json"))
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert "imis" not in token_file.name  # the file name does not leak the site or user


def _increment_under_lock(directory, counter, times):
    store = FileTokenStore(directory)
    for _ in range(times):
        with store.lock("key"):
            value = int(counter.read_text())
            time.sleep(0.001)
            counter.write_text(str(value + 1))


def test_file_store_lock_excludes_other_processes(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_increment_under_lock, args=(tmp_path, counter, 25)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert int(counter.read_text()) == 100  # no lost update: the lock really is exclusive


def test_a_redis_url_in_a_message_never_shows_its_password():
    from include.imis_thrive.imis.tokens import _without_password

    assert _without_password("redis://:hunter2@redis:6380/2") == "redis://:***@redis:6380/2"
    assert _without_password("rediss://worker:hunter2@redis/0") == "rediss://worker:***@redis/0"
    assert _without_password("redis://redis:6379/2") == "redis://redis:6379/2"
