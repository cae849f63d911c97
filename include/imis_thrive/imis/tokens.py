"""Bearer tokens, and the stores that let every worker on a machine share one.

iMIS expires a user's previous token the moment the same user logs in again (reference/imis-api.md §1.3), so
two Airflow tasks that each logged in would keep killing each other's tokens. Clients therefore never keep a
token to themselves: they read it from a `TokenStore`, log in only under the store's lock, and after a 401
first check whether a peer has already renewed it before logging in again.

- `MemoryTokenStore`: shared by every client in one process (threads, mapped tasks in one worker).
- `FileTokenStore`: shared by every process on one machine (the Airflow workers of a LocalExecutor or one
  Celery host), through a 0600 JSON file and `flock`.
- `RedisTokenStore`: shared by every worker on every machine, on the Redis that Celery already needs: one login
  serves them all, renewed under a lock that expires on its own if its holder dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from include.imis_thrive.errors import TransientTrouble

if TYPE_CHECKING:
    import redis


@dataclass(frozen=True)
class Token:
    value: str
    token_type: str
    expires_at: float  # epoch seconds

    @property
    def authorization(self) -> str:
        return f"Bearer {self.value}" if self.token_type.lower() == "bearer" else f"{self.token_type} {self.value}"

    def usable(self, margin_s: float, now: float | None = None) -> bool:
        """True while the token has more than `margin_s` seconds to live."""
        return (now if now is not None else time.time()) < self.expires_at - margin_s


class TokenStore(Protocol):
    def get(self, key: str) -> Token | None: ...

    def put(self, key: str, token: Token) -> None: ...

    def lock(self, key: str) -> AbstractContextManager[None]: ...


class MemoryTokenStore:
    """Tokens shared by all clients of this process."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str) -> Token | None:
        return self._tokens.get(key)

    def put(self, key: str, token: Token) -> None:
        self._tokens[key] = token

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield


class FileTokenStore:
    """Tokens shared by all processes on this machine: one 0600 file per (site, user), guarded by `flock`."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._thread_locks = MemoryTokenStore()  # flock is per process; threads of one process queue here first

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.{suffix}"

    def get(self, key: str) -> Token | None:
        try:
            return Token(**json.loads(self._path(key, "json").read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def put(self, key: str, token: Token) -> None:
        path = self._path(key, "json")
        temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(asdict(token), handle)
        os.replace(temporary, path)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        with self._thread_locks.lock(key):
            descriptor = os.open(self._path(key, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
                os.close(descriptor)


class TokenLockTimeout(TransientTrouble, TimeoutError):
    """Another worker held the iMIS login lock for longer than a login takes."""


# Compare-and-delete: a holder whose lease ran out must never release the lock a newer holder took.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class RedisTokenStore:
    """Tokens shared by every worker of a deployment, on Redis: a key per (site, user) that expires with the
    token, and a lock (`SET NX` with a lease) so that only one worker logs in when the token needs renewing."""

    def __init__(self, url: str, prefix: str = "imis_thrive:imis_token:", lease_s: float = 30.0,
                 wait_s: float = 60.0) -> None:
        import redis

        self.url, self.prefix, self.lease_s, self.wait_s = url, prefix, lease_s, wait_s
        self._redis: redis.Redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._thread_locks = MemoryTokenStore()  # threads of one process queue here before asking Redis

    def _key(self, key: str, suffix: str) -> str:
        return f"{self.prefix}{hashlib.sha256(key.encode()).hexdigest()[:32]}:{suffix}"

    def get(self, key: str) -> Token | None:
        raw = self._redis.get(self._key(key, "token"))
        try:
            return Token(**json.loads(raw)) if raw else None
        except (ValueError, TypeError):
            return None

    def put(self, key: str, token: Token) -> None:
        ttl_ms = max(1, int((token.expires_at - time.time()) * 1000))
        self._redis.set(self._key(key, "token"), json.dumps(asdict(token)), px=ttl_ms)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        with self._thread_locks.lock(key):
            name, holder = self._key(key, "lock"), secrets.token_hex(16)
            deadline, pause = time.monotonic() + self.wait_s, 0.01
            while not self._redis.set(name, holder, nx=True, px=int(self.lease_s * 1000)):
                if time.monotonic() > deadline:
                    raise TokenLockTimeout(f"the iMIS login lock on {_without_password(self.url)} stayed taken for "
                                           f"{self.wait_s:.0f} s; a worker may be stuck logging in (it expires by "
                                           f"itself within {self.lease_s:.0f} s)")
                time.sleep(pause)
                pause = min(pause * 2, 0.2)
            try:
                yield
            finally:
                self._redis.eval(_RELEASE, 1, name, holder)


PROCESS_TOKEN_STORE = MemoryTokenStore()


def _without_password(url: str) -> str:
    """The Redis URL fit for a message: `redis://:secret@host/2` → `redis://:***@host/2`."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{parts.hostname}{f':{parts.port}' if parts.port else ''}"))
