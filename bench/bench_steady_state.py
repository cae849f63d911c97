"""Benchmark: what a target-group run costs in Thrive calls and bytes when little or nothing changed in iMIS.

Runs the steps of `imis_to_thrive_target_groups` in DAG order, in this process, against both sandboxes on
loopback: a first run (everything is new), a run with nothing changed, then a run after 1% of the contacts
were edited and 1% of one list's members moved. For the last two it prints the calls the Thrive sandbox
answered (by action and by grid), the records and request bytes it received, and the minimum the change needs.
Reads every run makes: the interest list, and one Count per synced group (the drift check); each BulkUpload
adds its status polls (one, plus the polls the sandbox is configured to answer "pending"). Writes:
ceil(changed contacts / 1,000) upserts and, per group, ceil(additions / 1,000) additions and one removal upload.
The minimum is counted from the sandboxes, not from what the sync decided: the changed contacts are the members
of a synced list that were edited or are new to the synced lists, of those validation let through (a few of them
the client still refuses to send, e.g. a `.com.com` email); a group's additions are its list's members Thrive
holds after the run that the interest lacked before, its removals the interest's members before that the list
no longer has. Rows Thrive refuses cost one Subscribe above it: a reply holds counts only, so the rows it will
likely refuse go in a call of their own.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from include.imis_thrive.sync import target_groups as steps
from include.imis_thrive.sync.snapshots import SnapshotHandle, SnapshotStore, snapshot_name
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


@dataclass(frozen=True)
class Minimum:
    """What a run must send for a change: its writes and records, and the reads every run makes."""

    changed_contacts: int = 0
    additions: dict[str, int] = field(default_factory=dict)
    removals: dict[str, int] = field(default_factory=dict)
    groups: int = 0  # synced groups: one drift Count each
    pending_polls: int = 0  # upload_history polls the sandbox answers "pending" before an upload is done

    @property
    def writes(self) -> int:
        """Upserts for the changed contacts, and per group its additions and one removal upload."""
        return (math.ceil(self.changed_contacts / 1000) + sum(math.ceil(n / 1000) for n in self.additions.values())
                + self.uploads)

    @property
    def uploads(self) -> int:
        return sum(1 for n in self.removals.values() if n)

    @property
    def reads(self) -> int:
        """The interest list, a Count per group, and each upload's status polls."""
        return 1 + self.groups + self.uploads * (1 + self.pending_polls)

    @property
    def records(self) -> int:
        return self.changed_contacts + sum(self.additions.values()) + sum(self.removals.values())


def show(label: str, figures: dict[str, Any], minimum: Minimum) -> None:
    writes = sum(figures["actions"].get(name, 0) for name in WRITES)
    reads = figures["calls"] - writes
    records = sum(figures["records"].values())
    print(f"\n== {label} ({figures['seconds']:.1f} s) ==")
    print(f"  {'Thrive calls':<34} {figures['calls']:>8}   minimum {minimum.writes + minimum.reads}")
    print(f"  {'  writes (Subscribe, BulkUpload)':<34} {writes:>8}   minimum {minimum.writes}   {figures['actions']}")
    print(f"  {'  reads (grids)':<34} {reads:>8}   minimum {minimum.reads} (interests 1, drift Counts "
          f"{minimum.groups}, upload polls {minimum.uploads * (1 + minimum.pending_polls)})   {figures['grids']}")
    print(f"  {'records written':<34} {records:>8,}   minimum {minimum.records:,}   {figures['records']}")
    per_record = f", {figures['bytes_up'] / records:,.0f} per record written" if records else ""
    print(f"  {'bytes up':<34} {figures['bytes_up']:>8,}   ({figures['bytes_up'] / 2**20:.2f} MiB{per_record})")


def list_members(pair: SandboxPair, report: dict[str, Any]) -> dict[str, set[str]]:
    """Each synced group's members, as its list IQA in iMIS returns them now."""
    return {group["group"]: set(pair.imis.run_iqa(group["iqa"])["ID"])
            for group in report["target_groups"] if group["status"] == "ready"}


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
        groups = list_members(pair, report)
        synced_before = set().union(*groups.values())
        pending_polls = pair.thrive_sandbox.config.upload_polls
        show("nothing changed in iMIS", quiet, Minimum(groups=len(groups), pending_polls=pending_polls))
        print(f"  {'held back (refused before, unchanged)':<34} {report['upsert']['refused_unchanged']:>8,}")

        interests_before = {name: set(pair.thrive_sandbox.interest_members(name)) for name in groups}
        mutated = set(pair.imis_sandbox.mutate_contacts(max(1, contacts // 100), seed=17))
        moved = pair.imis_sandbox.move_list_members(MOVED_LIST, max(1, len(interests_before[MOVED_LIST]) // 100),
                                                    seed=19)
        report, changed = wire.measure(lambda: run_once(pair, store, "bench-3"))
        in_thrive = {s["contact_id"] for s in pair.thrive_sandbox.subscribers()}
        groups = list_members(pair, report)
        synced = set().union(*groups.values())
        sendable = set(store.load(SnapshotHandle.from_dict(report["contacts"]["handle"]))["ID"])  # passed validation
        minimum = Minimum(changed_contacts=len(synced & sendable & (mutated | (synced - synced_before))),
                          additions={name: len((members & in_thrive) - interests_before[name])
                                     for name, members in groups.items()},
                          removals={name: len(interests_before[name] - members) for name, members in groups.items()},
                          groups=len(groups), pending_polls=pending_polls)
        joined = len(set(moved["added"]) - interests_before[MOVED_LIST])
        left = len(set(moved["removed"]) & interests_before[MOVED_LIST])
        show(f"1% changed: {len(mutated):,} contacts edited, {joined} joined and {left} left {MOVED_LIST!r}: "
             f"{minimum.changed_contacts:,} to upsert", changed, minimum)
        print(f"  {'additions, removals by group':<34} {minimum.additions}, {minimum.removals}")
        upsert, diff = report["upsert"], report["upsert"]["diff"]
        print(f"  {'contacts sent':<34} {upsert['sent']:>8,}   diff: {diff['changed']:,} changed, "
              f"{diff['added']:,} new to Thrive ({upsert['refused_unchanged']:,} of them held back: refused "
              "before, unchanged)")
        print(f"  {'upsert calls':<34} {upsert['calls']:>8}   for {upsert['rejected']} refused rows (a Subscribe "
              "reply holds counts only: rows whose email another contact holds go in calls of their own)")
        print("  (a removal is a BulkUpload; each upload's status is polled in upload_history until done)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
