"""httpx clients lent one request at a time, so that threads never queue on a shared connection pool.

An `httpx.Client` is thread-safe, but its connection pool (httpcore) takes one lock at the start and the end of
every request, and holds it while it checks each pooled socket for readiness: eight threads posting activities
spent a fifth of their samples waiting on it (py-spy, issue 14). `ClientPool` lends each request a client no
other thread is using, with a pool of one connection, and takes it back once the answer is read. It holds as
many clients (and keep-alive connections) as requests were ever in flight at once, and no more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)


class ClientPool:
    """Clients made by `make` on demand (each sized by `ONE_CONNECTION`), lent by `lent()`, closed by `close()`."""

    def __init__(self, make: Callable[[], httpx.Client]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._idle: list[httpx.Client] = []
        self._every: list[httpx.Client] = []
        self._closed = False

    @contextmanager
    def lent(self) -> Iterator[httpx.Client]:
        """A client for one request, whose answer must be read (not streamed) before the block ends."""
        with self._lock:
            if self._closed:
                raise RuntimeError("Cannot send a request, as the client has been closed.")
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = self._make()
            with self._lock:
                self._every.append(client)
        try:
            yield client
        finally:
            with self._lock:
                self._idle.append(client)  # the most recently used first: its connection is the one kept alive

    @property
    def size(self) -> int:
        """Clients made so far: the most requests that were in flight at once."""
        return len(self._every)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._every, self._idle = self._every, [], []
        for client in clients:
            client.close()
