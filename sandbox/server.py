"""Run a sandbox ASGI app on a loopback port, in a background thread or in the foreground.

Tests use `SandboxServer` as a context manager with port 0 (a free port); `make sandbox` runs both
sandboxes in the foreground on the ports `airflow_settings.yaml` names.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

SHUTDOWN_GRACE_S = 1  # whole seconds, as uvicorn declares it


class SandboxServer:
    """A real HTTP server on 127.0.0.1 serving one app; `url` is where it listens."""

    def __init__(self, app: Any, port: int = 0, host: str = "127.0.0.1", certfile: str | None = None,
                 keyfile: str | None = None) -> None:
        """`certfile` and `keyfile` (PEM): serve HTTPS with that certificate, as a real iMIS or Thrive does."""
        # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and without it
        # every response (headers and body are two writes) waits ~40 ms on the client's delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30,
            http="httptools", loop="asyncio", backlog=2048,
            # a stop (SIGTERM, SIGINT, a test teardown) waits this long for requests in flight, then cancels them
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S, ssl_certfile=certfile, ssl_keyfile=keyfile,
        )
        self._scheme = "https" if certfile else "http"
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self._scheme}://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=f"sandbox:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def serve_forever(self) -> None:
        """Foreground mode (`make sandbox`): returns on Ctrl-C."""
        self._server.run(sockets=[self._socket])

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
