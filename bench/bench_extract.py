"""Benchmark: extracting the contacts IQA through ImisClient into the typed DataFrame (the sync's first step).

The iMIS sandbox runs in a child process (its own GIL, as a real server would be), the client here; prints
rows/s for sequential paging and for 4 and 8 concurrent pages, on both endpoints, and the client's peak RSS.

    .venv/bin/python bench/bench_extract.py [--contacts 200000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from multiprocessing.connection import Connection

from include.imis_thrive.imis.client import ImisClient, ImisConfig
from include.imis_thrive.imis.iqa_package import CONTACTS_IQA, CONTACTS_IQA_PATH
from include.imis_thrive.imis.tokens import MemoryTokenStore

USER, PASSWORD = "hl_integration", "sandbox-imis-password"


def serve(contacts: int, pipe: Connection) -> None:
    from sandbox.imis_app import ImisSandbox, ImisSandboxConfig
    from sandbox.server import SandboxServer

    sandbox = ImisSandbox(ImisSandboxConfig(users={USER: PASSWORD}, contacts=contacts))
    with SandboxServer(sandbox.app) as server:
        pipe.send(server.url)
        pipe.recv()  # until the benchmark is done


def extract(url: str, endpoint: str, concurrency: int) -> tuple[int, float]:
    config = ImisConfig(base_url=url, username=USER, password=PASSWORD, endpoint=endpoint,
                        max_concurrency=concurrency, timezone="America/New_York")
    declared = {column.alias: column.data_type.value for column in CONTACTS_IQA.columns}
    with ImisClient(config, token_store=MemoryTokenStore()) as client:
        started = time.perf_counter()
        frame = client.run_iqa(CONTACTS_IQA_PATH, declared_types=declared)
        return len(frame), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=200_000)
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(args.contacts, child), daemon=True)
    server.start()
    url = parent.recv()
    print(f"extract {args.contacts:,} contacts ({len(CONTACTS_IQA.columns)} columns) through ImisClient")
    for endpoint in ("query", "iqa"):
        for concurrency in (1, 4, 8):
            rows, seconds = extract(url, endpoint, concurrency)
            print(f"  /api/{endpoint:<5} {concurrency} page(s) at a time: {rows:,} rows in {seconds:5.1f} s "
                  f"= {rows / seconds:8,.0f} rows/s")
    print(f"client peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    parent.send("done")
    server.join(timeout=10)


if __name__ == "__main__":
    main()
