"""Benchmark: the Thrive client against the Thrive sandbox over loopback HTTP.

Prints: upserting N subscribers (default 50,000) with personalization fields as `Subscribe` calls of 1,000
and as BulkUploads (records/s, calls); generating 1,000,000 engagement events in the sandbox; and reading
about E events (default 100,000) through the engagement readers, i.e. SOAP paging of 1,000-row grids with
every reply parsed by defusedxml (events/s). The client and server share this process and its cores.

    source bin/env.sh && .venv/bin/python bench/bench_thrive.py [--subscribers N] [--events E]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from include.imis_thrive.thrive.client import ThriveClient, ThriveConfig
from include.imis_thrive.thrive.engagement import EngagementKind, iter_engagement
from include.imis_thrive.thrive.grids import DERIVED_KINDS
from include.imis_thrive.thrive.models import Subscriber
from sandbox.server import SandboxServer
from sandbox.thrive_app import ThriveSandbox, ThriveSandboxConfig

USER, PASSWORD = "hl_api_user", "sandbox-thrive-password"
START = datetime(2026, 1, 5, tzinfo=UTC)
END = START + timedelta(days=7)


def subscribers(count: int) -> list[Subscriber]:
    return [Subscriber(str(100_000 + i), f"member{i}@example.org", {
        "FirstName": f"First{i}", "LastName": "Member & Co", "MemberExpiresOn": "2027-06-30", "IsMember": "1",
        "iMISv2 - Token": f"tok{i:010d}",
    }) for i in range(count)]


def client_for(server: SandboxServer, sandbox: ThriveSandbox, **settings: object) -> ThriveClient:
    return ThriveClient(ThriveConfig(
        endpoint=f"{server.url}{sandbox.config.endpoint_path}", brand_id=sandbox.config.brand_id,
        brand_name=sandbox.config.brand_name, user=USER, password=PASSWORD, poll_interval_s=0.05,
        status_email_recipients=["data-team@sandbox.invalid"], **settings,
    ))


def bench_upsert(count: int, bulk: bool) -> None:
    sandbox = ThriveSandbox(ThriveSandboxConfig(users={USER: PASSWORD}, interests=["Newsletter"]))
    rows = subscribers(count)
    with SandboxServer(sandbox.app) as server, client_for(
            server, sandbox, bulk_threshold=0 if bulk else count, bulk_chunk_size=count) as client:
        started = time.perf_counter()
        result = client.upsert_subscribers(rows, interest="Newsletter")
        elapsed = time.perf_counter() - started
    mode = "BulkUpload + polling" if bulk else "Subscribe x1000"
    print(f"upsert {count:,} subscribers ({mode}): {elapsed:.2f}s, {count / elapsed:,.0f} records/s, "
          f"{result.calls} write calls, {client.calls} HTTP requests, {result.accepted_count:,} accepted")


def bench_engagement(events: int) -> None:
    sandbox = ThriveSandbox(ThriveSandboxConfig(users={USER: PASSWORD}, seed_subscribers=100_000))
    started = time.perf_counter()
    counts = sandbox.generate_engagement(START - timedelta(days=7), START, volume=1_000_000, seed=1)
    print(f"generate {sum(counts.values()):,} engagement events for 100,000 subscribers: "
          f"{time.perf_counter() - started:.2f}s")
    sandbox.generate_engagement(START, END, volume=events, seed=2)
    with SandboxServer(sandbox.app) as server, client_for(server, sandbox) as client:
        started = time.perf_counter()
        read = sum(1 for kind in EngagementKind if kind not in DERIVED_KINDS
                   for _ in iter_engagement(client, kind, START, END))
        elapsed = time.perf_counter() - started
    print(f"read {read:,} engagement events (the 6 grid-read kinds, 1,000-row pages): {elapsed:.2f}s, "
          f"{read / elapsed:,.0f} events/s, {client.calls} HTTP requests")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=100_000)
    arguments = parser.parse_args()
    bench_upsert(arguments.subscribers, bulk=False)
    bench_upsert(arguments.subscribers, bulk=True)
    bench_engagement(arguments.events)


if __name__ == "__main__":
    main()
