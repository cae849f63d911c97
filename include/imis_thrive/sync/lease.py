"""An expiring lease in the snapshot store: one writer at a time for a piece of work, across machines.

Why: a killed Celery worker leaves its task process running (an *orphan*), and Airflow retries the task elsewhere
while the orphan still writes. A lease lets only one of them write:

    leases/<name>.json    {"holder": token, "host", "pid", "acquired_at", "renewed_at", "expires_at"}

- `acquire` writes the document conditionally (`SnapshotStore.update_json`: S3 `If-Match` / `If-None-Match`, a
  folder lock locally), so of two writers racing for a free lease exactly one wins. A lease another writer holds
  is waited on, polling, for at most `LeaseTerms.wait`; it is taken over only once `expires_at + grace` has passed
  by this machine's clock (its holder is dead, or stalled past its own expiry), else `LeaseHeld` (a task retry).
- While held, a heartbeat thread renews it every `renew_every`; a renewal that finds another holder marks the
  lease lost.
- The holder trusts the lease only until its last confirmed renewal plus `ttl`, by its own monotonic clock: a
  writer whose renewals stall stops by itself (`check` raises `LeaseLost`), before a taker may start. `grace`
  is the slack for what the old holder had in flight at that moment (one HTTP request) and for clock skew
  between machines; keep it above both.
- `release` frees it (conditionally: a lease taken over is not touched) so the next writer need not wait.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from include.imis_thrive.errors import TransientTrouble
from include.imis_thrive.sync.snapshots import SnapshotStore

log = logging.getLogger(__name__)

LEASE_PREFIX = "leases"


class LeaseHeld(TransientTrouble):
    """Another writer holds the lease and kept renewing it for the whole wait: it is alive and working; a task
    retry later finds it released (and then usually nothing left to do)."""


class LeaseLost(TransientTrouble):
    """This writer's lease expired unrenewed or was taken over: another writer may be at the same work, so this
    one stops before its next step; a task retry waits for the lease again."""


@dataclass(frozen=True)
class LeaseTerms:
    """How long a lease lasts unrenewed, how often it is renewed, how long a second writer waits, and the slack a
    taker leaves after expiry (in-flight requests of the old holder, clock skew)."""

    ttl: timedelta = timedelta(minutes=2)
    renew_every: timedelta = timedelta(seconds=30)
    wait: timedelta = timedelta(minutes=5)
    grace: timedelta = timedelta(seconds=90)  # above the iMIS client's 60 s request timeout

    def __post_init__(self) -> None:
        if not timedelta(0) < self.renew_every < self.ttl:
            raise ValueError(f"a lease must be renewed more often than it expires (renew_every {self.renew_every} "
                             f"is not between 0 and ttl {self.ttl})")


DEFAULT_TERMS = LeaseTerms()


class Lease:
    """One writer's hold on `leases/<name>.json`; use `hold()` (acquire, heartbeat, release) as a context manager."""

    def __init__(self, store: SnapshotStore, name: str, terms: LeaseTerms = DEFAULT_TERMS) -> None:
        self.store = store
        self.name = name
        self.terms = terms
        self.token = uuid.uuid4().hex
        self.holder = f"{socket.gethostname()} pid {os.getpid()}"
        self.took_over: dict[str, Any] | None = None  # the expired holder's document, when this one took over
        self._valid_until = 0.0  # monotonic: the last confirmed write + ttl
        self._lost: str | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def key(self) -> str:
        return f"{LEASE_PREFIX}/{self.name}"

    @contextmanager
    def hold(self) -> Iterator[Lease]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    def acquire(self) -> None:
        """Take the lease, waiting while a live writer holds it; starts the heartbeat. Raises `LeaseHeld`."""
        deadline = time.monotonic() + self.terms.wait.total_seconds()
        announced = False
        blocker: dict[str, Any] = {}  # the holder's document, as the last attempt found it
        claim = partial(self._claim, blocker=blocker)
        while True:
            blocker.clear()
            written_at = time.monotonic()
            try:
                self.store.update_json(self.key(), claim)
            except _Held:
                if not announced:
                    log.info("lease %s is held by %s until %s; waiting up to %s for it", self.name,
                             blocker.get("host_pid"), blocker.get("expires_at"), self.terms.wait)
                    announced = True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LeaseHeld(
                        f"lease {self.key()} in {self.store.base} is held by {blocker.get('host_pid')}, which kept "
                        f"renewing it for the whole {self.terms.wait} this writer waited (last renewed "
                        f"{blocker.get('renewed_at')}): an earlier attempt of this task is still running (an "
                        "orphan of a killed worker?); the retry finds it done") from None
                time.sleep(min(self.terms.renew_every.total_seconds(), remaining))
                continue
            break
        self._valid_until = written_at + self.terms.ttl.total_seconds()
        if self.took_over:
            log.warning("lease %s: took over from %s, whose lease expired at %s unrenewed (its writer is gone or "
                        "stalled)", self.name, self.took_over.get("host_pid"), self.took_over.get("expires_at"))
        self._heartbeat = threading.Thread(target=self._renew_until_stopped, name=f"lease-{self.name}",
                                           daemon=True)
        self._heartbeat.start()

    def check(self) -> None:
        """Raise `LeaseLost` unless this writer still holds the lease; call before each step that writes."""
        if self._lost:
            raise LeaseLost(f"lease {self.key()}: {self._lost}; this writer stopped before its next step")
        if time.monotonic() >= self._valid_until:
            raise LeaseLost(f"lease {self.key()} was not renewed within its {self.terms.ttl} (the store did not "
                            "answer in time?), so another writer may have taken it over; this writer stopped "
                            "before its next step")

    @property
    def held(self) -> bool:
        return not self._lost and time.monotonic() < self._valid_until

    def renew(self) -> None:
        """One renewal now (the heartbeat's step); marks the lease lost if another writer holds it."""
        written_at = time.monotonic()
        try:
            self.store.update_json(self.key(), self._renewed)
        except _Taken as taken:
            self._lost = f"taken over by {taken.by}"
            log.error("lease %s was taken over by %s: this writer stops before its next step", self.name, taken.by)
            return
        self._valid_until = written_at + self.terms.ttl.total_seconds()

    def release(self) -> None:
        """Stop renewing and free the lease if this writer still holds it (a taken-over lease is left alone)."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self._lost:
            return
        try:
            self.store.update_json(self.key(), self._released)
        except _Taken:
            pass  # taken over meanwhile: the new holder's document stays
        except TransientTrouble as trouble:  # it expires by itself
            log.warning("lease %s not released (%s); it expires at its ttl", self.name, trouble)

    def _renew_until_stopped(self) -> None:
        interval = self.terms.renew_every.total_seconds()
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception as trouble:  # a store hiccup: try again at the next beat
                log.warning("lease %s: renewal failed (%s); trying again in %.0f s", self.name, trouble, interval)
            if self._lost:
                return

    def _claim(self, document: Mapping[str, Any] | None, blocker: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        self.took_over = None
        if document and document.get("holder") not in (None, self.token):
            expires_at = datetime.fromisoformat(document["expires_at"])
            if now < expires_at + self.terms.grace:
                blocker.update(document)
                raise _Held
            self.took_over = dict(document)
        return self._document(now, acquired_at=now)

    def _renewed(self, document: Mapping[str, Any] | None) -> dict[str, Any]:
        if not document or document.get("holder") != self.token:
            raise _Taken((document or {}).get("host_pid", "nobody (the lease document is gone)"))
        return self._document(datetime.now(UTC), acquired_at=datetime.fromisoformat(document["acquired_at"]))

    def _released(self, document: Mapping[str, Any] | None) -> dict[str, Any]:
        if not document or document.get("holder") != self.token:
            raise _Taken((document or {}).get("host_pid", "nobody"))
        now = datetime.now(UTC).isoformat()
        return {"holder": None, "host_pid": None, "released_by": self.holder, "released_at": now, "expires_at": now}

    def _document(self, now: datetime, acquired_at: datetime) -> dict[str, Any]:
        return {"holder": self.token, "host_pid": self.holder, "acquired_at": acquired_at.isoformat(),
                "renewed_at": now.isoformat(), "expires_at": (now + self.terms.ttl).isoformat()}


class _Held(TransientTrouble):
    """The lease is another writer's and has not expired (raised inside `update_json`'s change, so nothing is
    written); caught in this module, never escapes it."""


class _Taken(TransientTrouble):
    """The lease document names another holder; caught in this module, never escapes it."""

    def __init__(self, by: str) -> None:
        super().__init__(by)
        self.by = by
