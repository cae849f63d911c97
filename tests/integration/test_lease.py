"""The store lease (`sync/lease.py`) on a local folder and on a real S3 server: one holder at a time, renewed while
it lives, waited on while renewed, taken over only after its holder stopped renewing, and a holder taken over
stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from include.imis_thrive.sync.lease import Lease, LeaseHeld, LeaseLost, LeaseTerms
from include.imis_thrive.sync.snapshots import SnapshotStore

pytestmark = pytest.mark.integration
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHORT = LeaseTerms(ttl=timedelta(seconds=0.8), renew_every=timedelta(seconds=0.1), wait=timedelta(seconds=10),
                   grace=timedelta(seconds=0.2))


@pytest.fixture(params=["local", "s3"])
def store_spec(request, tmp_path) -> tuple[str, dict]:
    """(base URL, fsspec options) of a fresh store: a local folder, or a bucket on the loopback S3 server."""
    if request.param == "local":
        return str(tmp_path / "store"), {}
    bucket = request.getfixturevalue("s3_bucket")
    return bucket.url, bucket.options


@pytest.fixture
def store(store_spec) -> SnapshotStore:
    return SnapshotStore(store_spec[0], storage_options=store_spec[1])


class StalledLease(Lease):
    """A holder whose heartbeat never beats: a process stopped by the kernel, or one that cannot reach the store."""

    def _renew_until_stopped(self) -> None:
        self._stop.wait()


def test_a_second_writer_waits_while_the_first_renews_then_gets_the_released_lease(store) -> None:
    first = Lease(store, "activities/interval-1", SHORT)
    with first.hold():
        impatient = Lease(store, "activities/interval-1", LeaseTerms(
            ttl=SHORT.ttl, renew_every=SHORT.renew_every, wait=timedelta(seconds=2), grace=SHORT.grace))
        with pytest.raises(LeaseHeld, match=rf"held by .*pid {os.getpid()}.*kept renewing it"):
            impatient.acquire()  # waited past the ttl: only renewals kept the lease from expiring
        first.check()
    second = Lease(store, "activities/interval-1", SHORT)
    with second.hold():
        assert second.took_over is None  # released, not taken over
        assert store.read_json("leases/activities/interval-1")["holder"] == second.token


def test_leases_of_other_intervals_do_not_wait_on_each_other(store) -> None:
    patient_of_none = LeaseTerms(ttl=SHORT.ttl, renew_every=SHORT.renew_every, wait=timedelta(0), grace=SHORT.grace)
    with Lease(store, "activities/interval-1", SHORT).hold(), \
            Lease(store, "activities/interval-2", patient_of_none).hold() as other:
        other.check()


def test_a_stalled_holder_is_taken_over_after_expiry_and_stops_before_its_next_step(store) -> None:
    stalled = StalledLease(store, "activities/interval-1", SHORT)
    stalled.acquire()
    taker = Lease(store, "activities/interval-1", SHORT)
    with taker.hold():
        assert taker.took_over is not None and taker.took_over["holder"] == stalled.token
        with pytest.raises(LeaseLost, match="was not renewed within"):
            stalled.check()  # by its own clock, before the taker could start
        stalled.renew()  # a late renewal finds the taker's document and does not overwrite it
        with pytest.raises(LeaseLost, match=r"taken over by .*pid"):
            stalled.check()
        stalled.release()
        taker.check()
        assert store.read_json("leases/activities/interval-1")["holder"] == taker.token


HOLDER = """
import json, sys, time
from datetime import timedelta
from include.imis_thrive.sync.lease import Lease, LeaseTerms
from include.imis_thrive.sync.snapshots import SnapshotStore

base, options = sys.argv[1], json.loads(sys.argv[2])
terms = LeaseTerms(ttl=timedelta(seconds=0.8), renew_every=timedelta(seconds=0.1), wait=timedelta(seconds=10),
                   grace=timedelta(seconds=0.2))
Lease(SnapshotStore(base, storage_options=options), "activities/interval-1", terms).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_holder_killed_with_sigkill_is_taken_over_once_its_lease_expired(store_spec) -> None:
    base, options = store_spec
    child = subprocess.Popen([sys.executable, "-c", HOLDER, base, json.dumps(options)], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        assert child.stdout.readline() == b"held\n"
        store = SnapshotStore(base, storage_options=options)
        blocked = Lease(store, "activities/interval-1", LeaseTerms(
            ttl=SHORT.ttl, renew_every=SHORT.renew_every, wait=timedelta(seconds=1.5), grace=SHORT.grace))
        with pytest.raises(LeaseHeld, match=rf"pid {child.pid}\b"):
            blocked.acquire()  # alive, it renews
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    taker = Lease(store, "activities/interval-1", SHORT)
    with taker.hold():
        assert taker.took_over is not None and taker.took_over["host_pid"].endswith(f"pid {child.pid}")
