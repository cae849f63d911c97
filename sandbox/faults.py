"""Fault injection shared by both sandboxes: an ASGI wrapper plus the admin routes that switch it.

Faults apply to every request except the sandbox's own admin surface (`/_sandbox/...`). Two ways to ask:
rates (`rate_429`, `rate_500`, `rate_503`, `drop_rate`, drawn from a seeded generator, so a test is
repeatable) and a script (`script`: the statuses the next requests get, in order; 0 means "drop the
connection"), for tests that need an exact sequence.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

ADMIN_PREFIX = "/_sandbox"
DROP = 0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class FaultConfig(BaseModel):
    """What the sandbox does wrong, and how often."""

    latency_ms: int = Field(0, ge=0, description="Added to every request")
    rate_429: float = Field(0.0, ge=0, le=1)
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with a 429 or 503")
    rate_500: float = Field(0.0, ge=0, le=1)
    rate_503: float = Field(0.0, ge=0, le=1)
    drop_rate: float = Field(0.0, ge=0, le=1, description="Close the connection without answering")
    script: list[int] = Field(default_factory=list, description="Statuses for the next requests; 0 = drop")
    path_prefix: str = Field("", description="Only requests whose path starts with this (empty: all)")
    seed: int = 0


class FaultInjector:
    """Decides, per request, whether and how to misbehave; thread-safe because tests poke it from outside."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.injected: dict[str, int] = {}
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._script = list(config.script)
            self._rng = random.Random(config.seed)

    def decide(self, path: str) -> int | None:
        """The status to answer instead of the real one, `DROP`, or None to behave."""
        with self._lock:
            config = self.config
            if path.startswith(ADMIN_PREFIX) or not path.startswith(config.path_prefix):
                return None
            if self._script:
                return self._record(self._script.pop(0))
            draw = self._rng.random()
            for status, rate in ((DROP, config.drop_rate), (429, config.rate_429),
                                 (500, config.rate_500), (503, config.rate_503)):
                if draw < rate:
                    return self._record(status)
                draw -= rate
            return None

    def _record(self, status: int) -> int:
        key = "drop" if status == DROP else str(status)
        self.injected[key] = self.injected.get(key, 0) + 1
        return status

    def router(self) -> APIRouter:
        router = APIRouter(prefix=f"{ADMIN_PREFIX}/faults", tags=["sandbox admin"])

        @router.get("")
        def show() -> dict[str, Any]:
            return {"config": self.config.model_dump(), "injected": dict(self.injected)}

        @router.put("")
        def replace(config: FaultConfig) -> dict[str, Any]:
            self.configure(config)
            return {"config": self.config.model_dump()}

        @router.delete("")
        def clear() -> dict[str, Any]:
            self.configure(FaultConfig())
            return {"config": self.config.model_dump()}

        return router


class FaultMiddleware:
    """Outermost ASGI layer, so that a dropped connection really is the socket closing mid-request."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if not path.startswith(ADMIN_PREFIX) and self.injector.config.latency_ms:
            await asyncio.sleep(self.injector.config.latency_ms / 1000)
        fault = self.injector.decide(path)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault == DROP:
            _drop_connection(send)
        else:
            await _answer(send, fault, self.injector.config.retry_after_s)


def _drop_connection(send: Send) -> None:
    """Abort the TCP connection under uvicorn (its `send` is bound to the protocol cycle holding the transport)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionAbortedError("sandbox fault: dropped connection")
    transport.abort()


async def _answer(send: Send, status: int, retry_after_s: int) -> None:
    body = json.dumps({"Message": f"Sandbox fault injection: HTTP {status}"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status in (429, 503):
        headers.append((b"retry-after", str(retry_after_s).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
