"""Benchmark: the activity writeback of one interval holding E engagement events (default 100,000).

Both sandboxes run in a child process (so the writer's threads do not share a GIL with the servers), on
free loopback ports, the iMIS one adding `--latency-ms` (default 10) to every request as a remote site would
(the sandbox's fault injector, `sandbox/faults.py`). The Thrive sandbox holds S subscribers (default 10,000)
who are iMIS contacts and mails them E events in one hour. Each writer runs in a process of its own, so its CPU
time (user + system, all threads) is the client's alone: `write_activities` for that hour, reading the eight
kinds from Thrive and posting one iMIS activity per event through the shared client and the key ledger, then the
same interval again (which must write 0: the ledger's cost, as a share of the first run's time).

With `--baseline REF` (e.g. `main`), the writer code of that git ref (its `include/`, exported to a temporary
folder) runs beside this checkout's, A B A B for `--rounds` rounds, iMIS emptied of activities before each; the
figures are medians. Prints per variant: activities/s against the bound for its concurrency (threads / latency)
and the ratio, client CPU per activity, the re-run's share, the load average before and after.

    source bin/env.sh && .venv/bin/python bench/bench_writeback.py [--events E] [--subscribers S] [--threads T]
        [--latency-ms L] [--baseline main] [--rounds 2] [--profile DIR]

`--profile DIR` records each writer with `py-spy record --gil` (samples of the thread holding the GIL: where the
writer's CPU goes) as raw collapsed stacks in DIR; py-spy is taken from PY_SPY or PATH.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

START = datetime(2026, 3, 8, 6, tzinfo=UTC)
END = START + timedelta(hours=1)
INTEREST = "Newsletter"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CURRENT = "this checkout"


def serve(subscribers: int, events: int, latency_ms: int, pipe: Connection) -> None:
    """Child process: both sandboxes seeded and engaged, served until the parent says stop; "reset" empties iMIS
    of the activities written so far (the latency stays). Answers each command with the CPU seconds it has used,
    so the bench can tell a writer waiting on the servers from one waiting on itself."""
    from sandbox.__main__ import build_sandboxes
    from sandbox.airflow_settings import load_settings
    from sandbox.faults import FaultConfig
    from sandbox.server import SandboxServer
    from sandbox.thrive_store import UploadRow

    imis, thrive = build_sandboxes(load_settings(), contacts=subscribers, seed=1, broken_lists=False)
    with thrive._lock:
        interest = thrive.store.interest(INTEREST)
        for contact_id in imis.seed.contacts["ID"]:
            thrive.store.upsert(UploadRow(f"m{contact_id}@example.org", str(contact_id), {}), [interest])
    counts = thrive.generate_engagement(START, END, volume=events, seed=1, interests=[INTEREST])
    imis.faults.configure(FaultConfig(latency_ms=latency_ms))
    with SandboxServer(imis.app) as imis_server, SandboxServer(thrive.app) as thrive_server:
        pipe.send((imis_server.url, f"{thrive_server.url}{thrive.config.endpoint_path}", counts))
        while (command := pipe.recv()) != "stop":
            if command == "reset":
                imis.reset()
            pipe.send(_cpu_seconds())


def write_twice(imis_url: str, thrive_url: str, threads: int) -> dict[str, Any]:
    """Writer process: the interval written into a fresh store, then again; seconds, counts and CPU of each."""
    from include.imis_thrive.imis.client import ImisClient, ImisConfig
    from include.imis_thrive.imis.tokens import MemoryTokenStore
    from include.imis_thrive.sync.snapshots import SnapshotStore
    from include.imis_thrive.thrive.client import ThriveClient, ThriveConfig
    from include.imis_thrive.writeback.activities import write_activities

    store = SnapshotStore(tempfile.mkdtemp(prefix="bench-writeback-"))
    runs: dict[str, Any] = {}
    for label in ("first", "rerun"):
        imis = ImisClient(ImisConfig(base_url=imis_url, username="hl_integration", password="sandbox-imis-password",
                                     timezone="America/New_York", max_concurrency=threads),
                          token_store=MemoryTokenStore())
        thrive = ThriveClient(ThriveConfig(endpoint=thrive_url, brand_id="7001", brand_name="Sandbox Association",
                                           user="hl_api_user", password="sandbox-thrive-password"))
        cpu_before, system_before = _cpu_seconds(), _system_seconds()
        with imis, thrive:
            report = write_activities(imis, thrive, store, START, END)
        runs[label] = {"seconds": report.seconds, "cpu": _cpu_seconds() - cpu_before,
                       "system_cpu": _system_seconds() - system_before,
                       "read": sum(report.read.values()), "written": sum(report.written.values()),
                       "already_written": sum(report.already_written.values()),
                       "imis_calls": report.imis_calls, "thrive_calls": report.thrive_calls}
    shutil.rmtree(store.base, ignore_errors=True)
    runs["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return runs


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _system_seconds() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


@dataclass(frozen=True)
class Variant:
    """Writer code to run: this checkout's, or a git ref's `include/` exported to `code_root`."""

    label: str
    code_root: Path

    def run(self, imis_url: str, thrive_url: str, threads: int, profile: Path | None, round_no: int) -> dict[str, Any]:
        command = [sys.executable, __file__, "--write-once", imis_url, thrive_url, "--threads", str(threads)]
        if profile is not None:
            slug = "".join(c if c.isalnum() else "-" for c in self.label)
            command = [_py_spy(), "record", "--gil", "--format", "raw", "--rate", "200", "--output",
                       str(profile / f"{slug}-round{round_no}.txt"), "--", *command]
        path = os.pathsep.join([str(self.code_root), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
        done = subprocess.run(command, env=os.environ | {"PYTHONPATH": path}, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the writer of {self.label} failed:\n{done.stderr[-3000:]}")
        return json.loads(next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{")))


def _py_spy() -> str:
    found = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not found:
        raise SystemExit("--profile needs py-spy: put it on PATH or name it in PY_SPY")
    return found


def exported(ref: str) -> Path:
    """The `include/` tree of `ref`, in a temporary folder that goes first on the writer's import path."""
    folder = Path(tempfile.mkdtemp(prefix="bench-writeback-baseline-"))
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", ref, "include"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def describe(runs: dict[str, Any]) -> str:
    first, rerun = runs["first"], runs["rerun"]
    return (f"first {first['seconds']:.1f}s, {first['read']:,} read, {first['written']:,} written "
            f"({first['written'] / first['seconds']:,.0f}/s), CPU {first['cpu']:.1f}s ({first['system_cpu']:.1f}s "
            f"system, {first['cpu'] / first['seconds']:.0%} of a core), {first['imis_calls']:,} iMIS / "
            f"{first['thrive_calls']:,} Thrive calls; re-run {rerun['seconds']:.2f}s, {rerun['written']:,} written, "
            f"{rerun['already_written']:,} already written; sandboxes' CPU {runs['server_cpu']:.1f}s; writer peak "
            f"RSS {runs['peak_rss_mb']:,.0f} MB")


def summarise(variant: str, rounds: list[dict[str, Any]], threads: int, latency_ms: int) -> str:
    rates = [r["first"]["written"] / r["first"]["seconds"] for r in rounds]
    cpu_ms = [1000 * r["first"]["cpu"] / max(r["first"]["written"], 1) for r in rounds]
    shares = [r["rerun"]["seconds"] / r["first"]["seconds"] for r in rounds]
    bound = threads * 1000 / latency_ms if latency_ms else None
    rate = statistics.median(rates)
    against = f" vs bound {bound:,.0f}/s ({threads} threads / {latency_ms} ms) = {rate / bound:.2f}" if bound else ""
    return (f"{variant}: {rate:,.0f} activities/s{against}; client CPU {statistics.median(cpu_ms):.2f} ms/activity; "
            f"re-run {statistics.median(shares):.1%} of the first run "
            f"(medians of {len(rounds)}: rates {', '.join(f'{x:,.0f}' for x in rates)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8, help="writer concurrency (the connection's max_concurrency)")
    parser.add_argument("--latency-ms", type=int, default=10, help="added by the iMIS sandbox to every request")
    parser.add_argument("--baseline", metavar="REF", help="also run the writer code of this git ref, A B A B")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy raw profiles of each writer, here")
    parser.add_argument("--write-once", nargs=2, metavar=("IMIS_URL", "THRIVE_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_once:
        imis_url, thrive_url = args.write_once
        print(json.dumps(write_twice(imis_url, thrive_url, args.threads)))
        return
    variants = [Variant(CURRENT, PROJECT_ROOT)]
    if args.baseline:
        variants.insert(0, Variant(f"baseline {args.baseline}", exported(args.baseline)))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=serve, args=(args.subscribers, args.events, args.latency_ms, child))
    server.start()
    try:
        imis_url, thrive_url, counts = parent.recv()
        print(f"engagement: {sum(counts.values()):,} events in one hour for {args.subscribers:,} contacts "
              f"({', '.join(f'{kind} {count:,}' for kind, count in counts.items())}); iMIS latency "
              f"{args.latency_ms} ms, {args.threads} threads; load average before {load_average()}")
        results: dict[str, list[dict[str, Any]]] = {variant.label: [] for variant in variants}
        for round_no in range(1, args.rounds + 1):
            for variant in variants:
                parent.send("reset")
                server_cpu = parent.recv()
                runs = variant.run(imis_url, thrive_url, args.threads, args.profile, round_no)
                parent.send("cpu")
                runs["server_cpu"] = parent.recv() - server_cpu
                results[variant.label].append(runs)
                print(f"  round {round_no}, {variant.label}: {describe(runs)}; load {load_average()}")
        for label, rounds in results.items():
            print(summarise(label, rounds, args.threads, args.latency_ms))
        print(f"load average after: {load_average()}")
    finally:
        parent.send("stop")
        server.join(timeout=30)
        for variant in variants:
            if variant.code_root != PROJECT_ROOT:
                shutil.rmtree(variant.code_root, ignore_errors=True)


if __name__ == "__main__":
    main()
