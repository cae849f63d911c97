"""Benchmark: the iMIS sandbox at full size (1,000,000 contacts).

Prints: seed time and peak RSS; time to render one 500-row page in-process (`/api/IQA` and `/api/query`
shapes); and a real read over loopback of the first N pages with K concurrent requests, the way the
client pages a large IQA. The reader runs in this process and does not parse the bodies, so the figure is
the server's (plus transfer), not the client's JSON decoding. Targets: seed well under a minute and
~2 GB; a page in a few ms.

    source bin/env.sh && .venv/bin/python bench/bench_imis_sandbox.py [--contacts N] [--pages N] [--concurrency K]
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from include.imis_thrive.imis.iqa_package import CONTACTS_IQA
from sandbox.imis_app import MAX_LIMIT, ImisSandbox, ImisSandboxConfig
from sandbox.server import SandboxServer


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def render_ms(sandbox: ImisSandbox, flat: bool, offset: int, repeats: int = 40) -> tuple[float, int]:
    params = {"queryname": [CONTACTS_IQA.path], "limit": [str(MAX_LIMIT)], "offset": [str(offset)]}
    started = time.perf_counter()
    for _ in range(repeats):
        body = sandbox.run_iqa(params, flat=flat)
    return (time.perf_counter() - started) / repeats * 1000, len(body)


def read_over_http(sandbox: ImisSandbox, endpoint: str, pages: int, concurrency: int) -> tuple[float, int]:
    """Seconds and bytes for `pages` pages of 500 read with `concurrency` requests in flight."""
    with SandboxServer(sandbox.app) as server, httpx.Client(
        base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=concurrency)
    ) as http:
        token = http.post("/token", data={"grant_type": "password", "username": "bench", "password": "bench"})
        http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

        def page(offset: int) -> int:
            response = http.get(endpoint, params={"QueryName": CONTACTS_IQA.path, "Limit": MAX_LIMIT, "Offset": offset})
            response.raise_for_status()
            return len(response.content)

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            size = sum(pool.map(page, range(0, pages * MAX_LIMIT, MAX_LIMIT)))
        return time.perf_counter() - started, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    started = time.perf_counter()
    sandbox = ImisSandbox(ImisSandboxConfig(users={"bench": "bench"}, contacts=args.contacts, broken_lists=True))
    print(f"seed {args.contacts:,} contacts: {time.perf_counter() - started:.2f} s, peak RSS {peak_rss_mb():,.0f} MB")

    middle = args.contacts // 2
    for flat, name in ((False, "/api/IQA"), (True, "/api/query")):
        ms, size = render_ms(sandbox, flat, middle)
        print(f"render one 500-row page, {name}: {ms:.2f} ms ({size / 1e6:.2f} MB)")

    for endpoint in ("/api/IQA", "/api/query"):
        seconds, size = read_over_http(sandbox, endpoint, args.pages, args.concurrency)
        print(f"serve {args.pages} pages over loopback, {endpoint}, {args.concurrency} concurrent: "
              f"{seconds / args.pages * 1000:.2f} ms/page, {args.pages * MAX_LIMIT / seconds:,.0f} rows/s, "
              f"{size / seconds / 1e6:.0f} MB/s")
    print(f"peak RSS at the end {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
