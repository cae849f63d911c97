"""Benchmark: what a target-group run costs in Thrive calls and bytes when little or nothing changed in iMIS.

Runs the steps of `imis_to_thrive_target_groups` in DAG order, in this process, against both sandboxes on
loopback: a first run (everything is new), a run with nothing changed, then a run after 1% of the contacts
were edited and 1% of one list's members moved. For the last two it prints the calls the Thrive sandbox
answered (by action and by grid), the request bytes it received, and the minimum the change needs: the reads
every run makes (the interest list, and any other read the run sends) plus, for the writes,
ceil(changed contacts / 1,000) upserts and, per group, ceil(joiners / 1,000) additions and one removal upload.
The changed contacts are counted from what the sandbox was edited with, not from what the sync decided.

    source bin/env.sh && .venv/bin/python bench/bench_steady_state.py [--contacts N]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from include.imis_thrive.sync import target_groups as steps
from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from tests.integration.sandbox_pair import SandboxPair, serve_pair

MOVED_LIST = "Newsletter"
WRITES = ("Subscribe", "BulkUpload")


def run_once(pair: SandboxPair, store: SnapshotStore, run_id: str) -> dict[str, Any]:
    """One run of the DAG's steps; the run report it wrote."""
    groups = steps.discover_target_groups(pair.imis, pair.thrive)
    contacts = steps.extract_contacts(pair.imis, store, run_id)
    plans = [steps.plan_target_group(pair.imis, pair.thrive, store, group, contacts, run_id) for group in groups]
    upsert = steps.upsert_contacts(pair.thrive, store, contacts, plans, run_id)
    loads = [steps.load_target_group(pair.thrive, store, plan, run_id) for plan in plans if plan.ready]
    steps.finish_run(store, run_id, plans, contacts, upsert, loads)
    report = store.read_json(f"reports/target_groups/{snapshot_name(run_id)}")
    assert report is not None
    return report


class Wire:
    """Counts the Thrive sandbox's answers and the bytes of the requests it received."""

    def __init__(self, pair: SandboxPair) -> None:
        self.pair = pair
        self.bytes_up = 0
        handle = pair.thrive_sandbox.handle

        def counted(body: bytes) -> tuple[int, bytes]:
            self.bytes_up += len(body)
            return handle(body)

        pair.thrive_sandbox.handle = counted  # type: ignore[method-assign]

    def measure(self, run: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        before, bytes_before, started = self.pair.thrive_sandbox.counters(), self.bytes_up, time.perf_counter()
        report = run()
        after = self.pair.thrive_sandbox.counters()

        def grew(kind: str) -> dict[str, int]:
            return {name: count - before[kind].get(name, 0) for name, count in sorted(after[kind].items())
                    if count != before[kind].get(name, 0)}

        figures = {"calls": sum(grew("requests").values()), "actions": grew("actions"), "grids": grew("grids"),
                   "bytes_up": self.bytes_up - bytes_before, "records": grew("records_written"),
                   "seconds": time.perf_counter() - started}
        return report, figures


def minimum_writes(changed_contacts: int, joiners: dict[str, int], leavers: dict[str, int]) -> int:
    """Upserts for the changed contacts, and per group its additions and one removal upload."""
    return (math.ceil(changed_contacts / 1000) + sum(math.ceil(n / 1000) for n in joiners.values())
            + sum(1 for n in leavers.values() if n))


def show(label: str, figures: dict[str, Any], writes_minimum: int, reads_minimum: int) -> None:
    writes = sum(figures["actions"].get(name, 0) for name in WRITES)
    reads = figures["calls"] - writes
    print(f"\n== {label} ({figures['seconds']:.1f} s) ==")
    print(f"  {'Thrive calls':<34} {figures['calls']:>8}   minimum {writes_minimum + reads_minimum}")
    print(f"  {'  writes (Subscribe, BulkUpload)':<34} {writes:>8}   minimum {writes_minimum}   {figures['actions']}")
    print(f"  {'  reads (grids)':<34} {reads:>8}   minimum {reads_minimum}   {figures['grids']}")
    print(f"  {'records written':<34} {sum(figures['records'].values()):>8,}   {figures['records']}")
    print(f"  {'bytes up':<34} {figures['bytes_up']:>8,}   ({figures['bytes_up'] / 2**20:.2f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    contacts = parser.parse_args().contacts
    print(f"steady state, {contacts:,} contacts, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as folder, serve_pair(contacts=contacts) as pair:
        store = SnapshotStore(folder)
        wire = Wire(pair)
        _, first = wire.measure(lambda: run_once(pair, store, "bench-1"))
        print(f"first run: {first['calls']} calls, {first['bytes_up'] / 2**20:.1f} MiB up, {first['seconds']:.1f} s")

        report, quiet = wire.measure(lambda: run_once(pair, store, "bench-2"))
        reads_minimum = 1  # the interest list; a read the run adds (a drift count) shows in the grids line
        show("nothing changed in iMIS", quiet, 0, reads_minimum)
        print(f"  {'held back (refused before, unchanged)':<34} {report['upsert']['refused_unchanged']:>8,}")

        in_thrive = {s["contact_id"] for s in pair.thrive_sandbox.subscribers()}
        newsletter_before = set(pair.thrive_sandbox.interest_members(MOVED_LIST))
        mutated = set(pair.imis_sandbox.mutate_contacts(max(1, contacts // 100), seed=17))
        moved = pair.imis_sandbox.move_list_members(MOVED_LIST, max(1, len(newsletter_before) // 100), seed=19)
        report, changed = wire.measure(lambda: run_once(pair, store, "bench-3"))
        joiners = {MOVED_LIST: len(set(moved["added"]) - newsletter_before)}
        leavers = {MOVED_LIST: len(set(moved["removed"]) & newsletter_before)}
        changed_contacts = len(mutated & in_thrive)
        show(f"1% changed: {changed_contacts:,} contacts edited, {joiners[MOVED_LIST]} joined and "
             f"{leavers[MOVED_LIST]} left {MOVED_LIST!r}", changed,
             minimum_writes(changed_contacts, joiners, leavers), reads_minimum + (1 if leavers[MOVED_LIST] else 0))
        upsert, diff = report["upsert"], report["upsert"]["diff"]
        locating = upsert["calls"] - math.ceil(upsert["sent"] / 1000)
        print(f"  {'contacts sent':<34} {upsert['sent']:>8,}   diff: {diff['changed']:,} changed, "
              f"{diff['added']:,} new to Thrive ({upsert['refused_unchanged']:,} of them held back: refused "
              "before, unchanged)")
        print(f"  {'upsert calls':<34} {upsert['calls']:>8}   of which {locating} located {upsert['rejected']} "
              "refused rows by halving (a Subscribe reply holds counts only)")
        print("  (a removal is a BulkUpload; each upload's status is polled in upload_history: the +1 read)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
