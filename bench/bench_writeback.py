"""Benchmark: the activity writeback of one interval holding E engagement events (default 100,000).

Both sandboxes run in a child process (so the writer's threads do not share a GIL with the servers), on
free loopback ports. The Thrive sandbox holds S subscribers (default 10,000) who are iMIS contacts and
mails them E events in one hour; the bench then runs `write_activities` for that hour: reading the eight
kinds from Thrive and posting one iMIS activity per event through the shared client and the key ledger.

Prints: seconds, events/s and API calls for the first run; the same for a second run of the interval (which
must write 0: the ledger's cost); activities iMIS holds; peak RSS of this (the writer's) process.

    source bin/env.sh && .venv/bin/python bench/bench_writeback.py [--events E] [--subscribers S] [--threads T]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection

import httpx

from include.imis_thrive.imis.client import ImisClient, ImisConfig
from include.imis_thrive.imis.tokens import MemoryTokenStore
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.thrive.client import ThriveClient, ThriveConfig
from include.imis_thrive.writeback.activities import write_activities
from include.imis_thrive.writeback.results import ActivityWriteback

START = datetime(2026, 3, 8, 6, tzinfo=UTC)
END = START + timedelta(hours=1)
INTEREST = "Newsletter"


def serve(subscribers: int, events: int, pipe: Connection) -> None:
    """Child process: both sandboxes seeded and engaged, served until the parent says stop."""
    from sandbox.__main__ import build_sandboxes
    from sandbox.airflow_settings import load_settings
    from sandbox.server import SandboxServer
    from sandbox.thrive_store import UploadRow

    imis, thrive = build_sandboxes(load_settings(), contacts=subscribers, seed=1, broken_lists=False)
    with thrive._lock:
        interest = thrive.store.interest(INTEREST)
        for contact_id in imis.seed.contacts["ID"]:
            thrive.store.upsert(UploadRow(f"m{contact_id}@example.org", str(contact_id), {}), [interest])
    counts = thrive.generate_engagement(START, END, volume=events, seed=1, interests=[INTEREST])
    with SandboxServer(imis.app) as imis_server, SandboxServer(thrive.app) as thrive_server:
        pipe.send((imis_server.url, f"{thrive_server.url}{thrive.config.endpoint_path}", counts))
        pipe.recv()


def run(imis_url: str, thrive_url: str, store: SnapshotStore, threads: int) -> ActivityWriteback:
    imis = ImisClient(ImisConfig(base_url=imis_url, username="hl_integration", password="sandbox-imis-password",
                                 timezone="America/New_York", max_concurrency=threads),
                      token_store=MemoryTokenStore())
    thrive = ThriveClient(ThriveConfig(endpoint=thrive_url, brand_id="7001", brand_name="Sandbox Association",
                                       user="hl_api_user", password="sandbox-thrive-password"))
    with imis, thrive:
        return write_activities(imis, thrive, store, START, END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8, help="writer concurrency (the connection's max_concurrency)")
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(args.subscribers, args.events, child))
    server.start()
    try:
        imis_url, thrive_url, counts = parent.recv()
        print(f"engagement: {sum(counts.values()):,} events in one hour for {args.subscribers:,} contacts "
              f"({', '.join(f'{kind} {count:,}' for kind, count in counts.items())})")
        store = SnapshotStore(tempfile.mkdtemp(prefix="bench-writeback-"))
        for label in ("first run", "second run"):
            report = run(imis_url, thrive_url, store, args.threads)
            read, written = sum(report.read.values()), sum(report.written.values())
            print(f"{label}: {report.seconds:.1f}s, {read:,} events read, {written:,} activities written "
                  f"({written / report.seconds:,.0f}/s), {sum(report.already_written.values()):,} already "
                  f"written, {report.imis_calls:,} iMIS and {report.thrive_calls:,} Thrive calls, "
                  f"{args.threads} threads")
        held = httpx.get(f"{imis_url}/_sandbox").json()["activities"]
        print(f"iMIS holds {held:,} activities; peak RSS of the writer process "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    finally:
        parent.send("stop")
        server.join(timeout=30)


if __name__ == "__main__":
    main()
