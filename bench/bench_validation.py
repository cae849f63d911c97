"""Benchmark of contacts validation (Great Expectations) on 1M synthetic rows: before and after skipping GX's
whole-frame batch hash, what the result format costs, and GX's import + context in a fresh process.

- before: GX's documented path, `ValidationDefinition.run(batch_parameters={"dataframe": frame})` on a
  whole-dataframe batch definition, offending rows named by the ID column (`unexpected_index_column_names`);
  its `DataFrameAsset.get_batch` hashes the whole frame for the `pandas_data_fingerprint` batch marker.
- after: `validation._run_suite`, the same two Validator calls on a Batch built without the hash, offending
  rows named by position; and `validate_iqa` end to end (suite, IDs, quarantine and clean frames).

A B A B rounds, medians of wall and CPU seconds (the machine is shared: CPU seconds move less with its load).
Peak RSS of one validation each, in its own process. Usage: `python bench/bench_validation.py [--rows N]`.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_sync import synthetic_contacts
from include.imis_thrive.sync import validation
from include.imis_thrive.sync.field_map import ID_COLUMN
from include.imis_thrive.sync.validation import IqaKind

ROUNDS = 3
MALFORMED_SHARES = (0.001, 0.1)
BEFORE_RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [ID_COLUMN],
    "partial_unexpected_count": 0,
    "return_unexpected_index_query": False,
}
RESULT_FORMATS: dict[str, dict[str, Any]] = {
    "BOOLEAN_ONLY (no counts of rows)": {"result_format": "BOOLEAN_ONLY", "return_unexpected_index_query": False},
    "SUMMARY (counts, no rows)": {
        "result_format": "SUMMARY", "partial_unexpected_count": 0, "return_unexpected_index_query": False,
    },
    "COMPLETE, rows by position (after)": dict(validation.RESULT_FORMAT),
    "COMPLETE, rows by ID column (before)": BEFORE_RESULT_FORMAT,
}
PEAK_RSS_MODES = ("before", "after", "after, validate_iqa (with the clean frame's copy)")
FRESH_PROCESS_IMPORT = """
import time
started = time.perf_counter()
import great_expectations
imported = time.perf_counter()
from include.imis_thrive.sync.validation import _gx_context
_gx_context()
print(imported - started, time.perf_counter() - imported)
"""


def with_malformed_emails(frame: pd.DataFrame, share: float, seed: int = 3) -> pd.DataFrame:
    """The frame with `share` of its emails malformed (quarantined by `email_invalid`)."""
    malformed = frame.copy()
    malformed.loc[np.random.default_rng(seed).random(len(frame)) < share, "PrimaryEmailAddress"] = "x@@example.org"
    return malformed


def documented_run(frame: pd.DataFrame) -> Callable[[], Any]:
    """GX's documented path over the same suite (the setup before): a validation definition on a
    whole-dataframe batch definition, run with the frame as its batch parameter."""
    import great_expectations as gx

    rules = validation.rules_for(IqaKind.CONTACTS, frame, validation.THRIVE_LENGTH_LIMITS)
    context, asset = validation._gx_context()
    suite = validation._suite(IqaKind.CONTACTS, rules)
    registered = context.suites.add(gx.ExpectationSuite(name=suite.name, expectations=suite.expectations))
    definition = context.validation_definitions.add(gx.ValidationDefinition(
        name=suite.name, data=asset.add_batch_definition_whole_dataframe("whole_frame"), suite=registered,
    ))
    return lambda: definition.run(batch_parameters={"dataframe": frame}, result_format=BEFORE_RESULT_FORMAT)


def timed(step: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    return time.perf_counter() - wall, time.process_time() - cpu


def medians(label: str, samples: list[tuple[float, float]]) -> None:
    wall = statistics.median(sample[0] for sample in samples)
    cpu = statistics.median(sample[1] for sample in samples)
    print(f"  {label:<58} {wall:7.2f} s wall {cpu:7.2f} s CPU  (rounds: "
          f"{', '.join(f'{sample[0]:.2f}' for sample in samples)})")


def compare(frame: pd.DataFrame) -> None:
    rules = validation.rules_for(IqaKind.CONTACTS, frame, validation.THRIVE_LENGTH_LIMITS)
    validation.validate_iqa(frame.head(10), IqaKind.CONTACTS)  # import, context and suite, once per process
    steps: dict[str, Callable[[], Any]] = {
        "before: ValidationDefinition.run (hashes the frame)": documented_run(frame),
        "after: _run_suite (Batch without the hash)": lambda: validation._run_suite(IqaKind.CONTACTS, rules, frame),
        "after: validate_iqa end to end": lambda: validation.validate_iqa(frame, IqaKind.CONTACTS),
    }
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in steps}
    for _ in range(ROUNDS):
        for label, step in steps.items():
            samples[label].append(timed(step))
    print(f"\n== validation of {len(frame):,} contacts, 0.1% malformed emails, {ROUNDS} rounds A B A B ==")
    for label, figures in samples.items():
        medians(label, figures)
    before = statistics.median(sample[0] for sample in samples["before: ValidationDefinition.run (hashes the frame)"])
    after = statistics.median(sample[0] for sample in samples["after: validate_iqa end to end"])
    print(f"  {'speed-up, validate_iqa vs the GX run before (wall)':<58} {before / after:7.1f} x")


def result_formats(frame: pd.DataFrame) -> None:
    """What naming the offending rows costs: GX's result formats on the Batch without the hash."""
    for share in MALFORMED_SHARES:
        malformed = with_malformed_emails(frame, share)
        rules = validation.rules_for(IqaKind.CONTACTS, malformed, validation.THRIVE_LENGTH_LIMITS)
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label in RESULT_FORMATS}
        for _ in range(2):
            for label, result_format in RESULT_FORMATS.items():
                samples[label].append(timed(functools.partial(
                    validation._run_suite, IqaKind.CONTACTS, rules, malformed, result_format=result_format
                )))
        print(f"\n== result format, {len(frame):,} contacts, {share:.1%} malformed emails, 2 rounds ==")
        for label, figures in samples.items():
            medians(label, figures)


def fresh_process_start() -> None:
    samples = []
    for _ in range(ROUNDS):
        output = subprocess.run([sys.executable, "-c", FRESH_PROCESS_IMPORT], check=True, capture_output=True,
                                text=True, env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        samples.append(tuple(float(value) for value in output.stdout.split()))
    print(f"\n== fresh process, {ROUNDS} rounds ==")
    print(f"  {'import great_expectations':<58} {statistics.median(s[0] for s in samples):7.2f} s  (rounds: "
          f"{', '.join(f'{s[0]:.2f}' for s in samples)})")
    print(f"  {'ephemeral context + pandas asset (_gx_context)':<58} {statistics.median(s[1] for s in samples):7.2f} s")


def peak_rss(rows: int) -> None:
    print(f"\n== peak RSS, one validation of {rows:,} contacts in its own process (frame and GX already loaded) ==")
    for mode in PEAK_RSS_MODES:
        output = subprocess.run([sys.executable, __file__, "--peak-rss-of", mode, "--rows", str(rows)],
                                check=True, capture_output=True, text=True)
        loaded, peak = output.stdout.split()
        print(f"  {mode:<58} {peak:>7} MiB peak, {int(peak) - int(loaded):>5} MiB over the {loaded} MiB loaded")


def peak_rss_of(mode: str, rows: int) -> None:
    """Peak RSS while validating, the peak reset once the frame is built and GX imported (Linux clear_refs)."""
    frame = synthetic_contacts(rows)
    validation.validate_iqa(frame.head(10), IqaKind.CONTACTS)
    rules = validation.rules_for(IqaKind.CONTACTS, frame, validation.THRIVE_LENGTH_LIMITS)
    run = {
        "before": documented_run(frame),
        "after": lambda: validation._run_suite(IqaKind.CONTACTS, rules, frame),
        "after, validate_iqa (with the clean frame's copy)": lambda: validation.validate_iqa(frame, IqaKind.CONTACTS),
    }[mode]
    Path("/proc/self/clear_refs").write_text("5")
    loaded = _status_mib("VmRSS")
    run()
    print(loaded, _status_mib("VmHWM"))


def _status_mib(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) // 2**10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--peak-rss-of", choices=PEAK_RSS_MODES, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.peak_rss_of:
        peak_rss_of(arguments.peak_rss_of, arguments.rows)
        return
    import logging

    logging.getLogger("include.imis_thrive.sync.validation").setLevel(logging.ERROR)  # the quarantine warning
    print(f"load average at start: {', '.join(f'{load:.2f}' for load in os.getloadavg())} ({os.cpu_count()} CPUs)")
    fresh_process_start()
    frame = synthetic_contacts(arguments.rows)
    compare(frame)
    result_formats(frame)
    peak_rss(arguments.rows)
    print(f"\nload average at end: {', '.join(f'{load:.2f}' for load in os.getloadavg())}")


if __name__ == "__main__":
    main()
