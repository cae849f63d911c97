"""Benchmark: extracting the contacts IQA through ImisClient into the typed DataFrame (the sync's first step),
against the latency bound.

The iMIS sandbox runs in a child process (its own GIL, as a real server would be) with its latency knob
(`FaultConfig.latency_ms`, added to every request) at `--latency-ms`; the client runs here, `--concurrency` pages
at a time. The bound is what the latency alone costs: pages x latency / concurrency (100,000 rows = 200 pages of
500, at 20 ms and 4 at once: 1.0 s). The sandbox renders each page once and replays it after: rendering an
`/api/IQA` page costs the sandbox ~30 ms of Python, a cost a real iMIS pays on its own hardware and that would
otherwise be timed as the client's on this machine. A first extraction per endpoint (not timed) renders them.

Prints, in A B A B rounds (medians; CPU seconds of this process beside the wall clock, since the machine is shared):
- each endpoint's `run_iqa` seconds vs the latency bound, and the ratio;
- the decoder comparison on the same pages, no network: the generic msgspec decode (a dict per cell, what the
  client did before) vs the typed `iqa_wire` decoder, both into the same `ColumnBuilder`;
- peak RSS per 1M rows of one extraction per endpoint, each in a fresh process (its peak over its RSS after
  imports, scaled to 1M rows);
- the load average before and after.

    source bin/env.sh && .venv/bin/python bench/bench_extract.py [--rows 100000] [--latency-ms 20]
        [--concurrency 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, Literal

import httpx
import msgspec

from include.imis_thrive.imis.client import MAX_PAGE_SIZE, ImisClient, ImisConfig
from include.imis_thrive.imis.iqa import frame_from_pages, rows_to_frame
from include.imis_thrive.imis.iqa_package import CONTACTS_IQA, CONTACTS_IQA_PATH
from include.imis_thrive.imis.iqa_wire import decode_iqa_page
from include.imis_thrive.imis.pages import Page
from include.imis_thrive.imis.tokens import MemoryTokenStore

Endpoint = Literal["query", "iqa"]
USER, PASSWORD = "hl_integration", "sandbox-imis-password"
ENDPOINTS: tuple[Endpoint, ...] = ("query", "iqa")
DECLARED = {column.alias: column.data_type.value for column in CONTACTS_IQA.columns}
TIMEZONE = "America/New_York"


def serve(rows: int, latency_ms: int, pipe: Connection) -> None:
    """Child process: the sandbox with its latency knob set, each IQA page rendered once and replayed after."""
    from sandbox.faults import FaultConfig
    from sandbox.imis_app import ImisSandbox, ImisSandboxConfig
    from sandbox.server import SandboxServer

    sandbox = ImisSandbox(ImisSandboxConfig(users={USER: PASSWORD}, contacts=rows))
    render, rendered = sandbox.run_iqa, {}

    def replay(params: dict[str, list[str]], flat: bool) -> bytes:
        key = (flat, tuple(sorted((name, tuple(values)) for name, values in params.items())))
        if key not in rendered:
            rendered[key] = render(params, flat)
        return rendered[key]

    sandbox.run_iqa = replay  # type: ignore[method-assign]
    sandbox.faults.configure(FaultConfig(latency_ms=latency_ms))
    with SandboxServer(sandbox.app) as server:
        pipe.send(server.url)
        pipe.recv()  # until the benchmark is done


def client(url: str, endpoint: str, concurrency: int) -> ImisClient:
    config = ImisConfig(base_url=url, username=USER, password=PASSWORD, endpoint=endpoint,
                        max_concurrency=concurrency, timezone=TIMEZONE)
    return ImisClient(config, token_store=MemoryTokenStore())


def timed(work: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds of `work()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def extract(url: str, endpoint: str, concurrency: int) -> int:
    with client(url, endpoint, concurrency) as imis:
        return len(imis.run_iqa(CONTACTS_IQA_PATH, declared_types=DECLARED))


def raw_pages(url: str, endpoint: str, rows: int) -> list[bytes]:
    """Every page's bytes as the wire has them, for the decoder comparison."""
    with client(url, endpoint, 1) as imis:
        token = imis._token().authorization
    path = "api/query" if endpoint == "query" else "api/IQA"
    with httpx.Client(base_url=url, headers={"Authorization": token}) as http:
        return [http.get(path, params={"QueryName": CONTACTS_IQA_PATH, "Limit": MAX_PAGE_SIZE, "Offset": offset})
                .content for offset in range(0, rows, MAX_PAGE_SIZE)]


def generic_decode(pages: list[bytes]) -> None:
    """Before: a generic msgspec decode (a dict per row, and per property on /api/IQA), then the frame."""
    rows_to_frame((row for page in pages for row in Page.from_envelope(msgspec.json.decode(page), 0).rows),
                  CONTACTS_IQA_PATH, TIMEZONE, DECLARED)


def typed_decode(pages: list[bytes], endpoint: Endpoint) -> None:
    """Now: the typed `iqa_wire` decoder, then the same frame."""
    frame_from_pages((Page.from_envelope(decode_iqa_page(page, endpoint).as_body(), 0) for page in pages),
                     CONTACTS_IQA_PATH, TIMEZONE, DECLARED)


def peak_rss(url: str, endpoint: str, concurrency: int, pipe: Connection) -> None:
    """Child process: one extraction; sends (RSS after imports, peak RSS) in bytes. The peak is the process's
    `VmHWM`, which a new program starts afresh (`ru_maxrss` keeps the parent's peak across a spawn)."""
    with client(url, endpoint, concurrency):
        pass  # imports and the HTTP stack in place before the baseline
    before = _status_bytes("VmRSS")
    extract(url, endpoint, concurrency)
    pipe.send((before, _status_bytes("VmHWM")))


def _status_bytes(field: str) -> int:
    """A memory figure of this process from /proc/self/status (`VmRSS`, `VmHWM`), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def median(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f}"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="contacts in the sandbox, all extracted")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spawn = multiprocessing.get_context("spawn")
    parent, child = multiprocessing.Pipe()
    server = spawn.Process(target=serve, args=(args.rows, args.latency_ms, child), daemon=True)
    server.start()
    url = parent.recv()
    pages = -(-args.rows // MAX_PAGE_SIZE)
    bound = pages * args.latency_ms / 1000 / args.concurrency
    print(f"extract {args.rows:,} contacts ({len(CONTACTS_IQA.columns)} columns, {pages} pages of {MAX_PAGE_SIZE}) "
          f"through ImisClient, {args.latency_ms} ms latency, {args.concurrency} pages at a time; latency bound "
          f"{bound:.2f} s; load average {load()}")
    try:
        rendering = {endpoint: timed(partial(extract, url, endpoint, args.concurrency))[0] for endpoint in ENDPOINTS}
        print("  first extraction, the sandbox rendering each page (not the client's cost): "
              + ", ".join(f"/api/{endpoint} {seconds:.2f} s" for endpoint, seconds in rendering.items()))
        runs: dict[str, list[tuple[float, float]]] = {endpoint: [] for endpoint in ENDPOINTS}
        for _ in range(args.rounds):
            for endpoint in ENDPOINTS:
                runs[endpoint].append(timed(partial(extract, url, endpoint, args.concurrency)))
        for endpoint in ENDPOINTS:
            walls, cpus = [w for w, _ in runs[endpoint]], [c for _, c in runs[endpoint]]
            print(f"  /api/{endpoint:<5} run_iqa: {median(walls)} s wall ({median(cpus)} s CPU) = "
                  f"{statistics.median(walls) / bound:5.2f} x the bound; rounds {', '.join(f'{w:.2f}' for w in walls)}")
        print(f"decoder on the same pages, no network ({args.rounds} rounds A B A B, medians):")
        for endpoint in ENDPOINTS:
            wire = raw_pages(url, endpoint, args.rows)
            generic, typed = [], []
            for _ in range(args.rounds):
                generic.append(timed(partial(generic_decode, wire)))
                typed.append(timed(partial(typed_decode, wire, endpoint)))
            old, new = statistics.median(w for w, _ in generic), statistics.median(w for w, _ in typed)
            print(f"  /api/{endpoint:<5} generic {old:6.2f} s ({median([c for _, c in generic])} s CPU), typed "
                  f"{new:6.2f} s ({median([c for _, c in typed])} s CPU): {old / new:4.1f}x "
                  f"({sum(map(len, wire)) / pages / 1e3:,.0f} kB a page)")
            del wire
        print("peak RSS of one extraction, each in a fresh process:")
        for endpoint in ENDPOINTS:
            receive, send = multiprocessing.Pipe()
            child_run = spawn.Process(target=peak_rss, args=(url, endpoint, args.concurrency, send))
            child_run.start()
            before, peak = receive.recv()
            child_run.join()
            print(f"  /api/{endpoint:<5} {(peak - before) / 2**20:7,.0f} MB over the process's "
                  f"{before / 2**20:,.0f} MB = {(peak - before) / args.rows * 1e6 / 2**30:5.2f} GB per 1M rows")
    finally:
        print(f"load average after: {load()}")
        parent.send("done")
        server.join(timeout=10)


if __name__ == "__main__":
    main()
