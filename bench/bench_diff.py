"""Benchmark of the contact diff against the engines it could be: the project's `diff_contacts`, a DuckDB hash
join and a polars struct-hash join, on the Thrive-bound contacts frame (ID + 23 text fields) of `bench_sync`.

The previous snapshot differs from the current frame as an hourly run's does: 1% of the contacts changed (one or
two fields), 0.5% added, 0.5% removed. Both frames are written to Parquet once; each measurement then runs in a
child process of its own that reads them back (as a task reads its snapshots), so its peak RSS is its own. The
previous side is a committed snapshot: it carries its stored row hashes (`with_row_hashes`), so the project hashes
only the current side, and reads the previous one as the pipeline does (`SnapshotStore.load_keys`: IDs and hashes
up front, the other columns of the rows whose hash differs during the diff; a checkout without it reads the
frame whole); DuckDB and polars read its fields whole and hash both sides. Every engine must find the same added,
changed, removed and changed-by-column counts, or the benchmark fails. "peak RSS" is the diff's (reads of rows it
asks for included); "peak w/ reads" that of the whole child, the reading of its inputs included; "previous read"
the wall time of reading the previous side before the diff (its rows' reads during the diff are in "wall").

Rounds go A B C A B C ... (3 by default) and the medians are printed with the load average: on a shared machine
read the ratios, measured in the same run. `--compare-with PATH` adds the diff of another checkout (e.g. a
`git worktree add /tmp/main main`) as one more engine, so a before/after ratio comes from one run too.

    .venv/bin/python bench/bench_diff.py [--rows 1000000] [--rounds 3] [--compare-with /tmp/main]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("project", "duckdb", "polars")


def prepare(rows: int, folder: Path) -> None:
    """Write the current extract and the previous snapshot as committed (with its rows' hashes)."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from bench_sync import previous_run_of, synthetic_contacts

    from include.imis_thrive.sync.diff import with_row_hashes
    from include.imis_thrive.sync.field_map import to_thrive_contacts

    current = to_thrive_contacts(synthetic_contacts(rows))
    fields = [name for name in current.columns if name != "ID"]
    with_row_hashes(previous_run_of(current, changed_share=0.01), fields).to_parquet(folder / "previous.parquet",
                                                                                     index=False)
    current.to_parquet(folder / "current.parquet")


def measure(engine: str, folder: Path, root: Path) -> dict[str, Any]:
    """Read both frames, ready the engine's inputs, then time its diff alone (wall, CPU of all its threads, the
    peak RSS while it ran, the frames included)."""
    current = pd.read_parquet(folder / "current.parquet")
    fields = [name for name in current.columns if name != "ID"]
    source = engine
    read = time.perf_counter()
    if engine == "project":
        sys.path.insert(0, str(root))
        from include.imis_thrive.sync.diff import diff_contacts
        from include.imis_thrive.sync.snapshots import SnapshotHandle, SnapshotStore

        store = SnapshotStore(str(folder))
        handle = SnapshotHandle(name="contacts", key="previous.parquet", run_id="bench", rows=0, staged_at="")
        previous = store.load_keys(handle) if hasattr(store, "load_keys") else store.load(handle)
        source = diff_contacts.__code__.co_filename
        run = lambda: _project_counts(diff_contacts(previous, current, columns=fields))  # noqa: E731
    else:
        previous = pd.read_parquet(folder / "previous.parquet", columns=["ID", *fields])
        engine_counts = _duckdb_counts if engine == "duckdb" else _polars_counts
        run = lambda: engine_counts(previous, current, fields)  # noqa: E731
    read = time.perf_counter() - read
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    read_peak = _status("VmHWM")
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS (VmHWM) starts again from here
    before = _status("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    counts = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = _status("VmHWM")
    return {"wall": wall, "cpu": cpu, "peak_mb": peak, "frames_mb": before, "whole_peak_mb": max(read_peak, peak),
            "read": read,
            "counts": counts, "source": source}


def _status(key: str) -> float:
    """A figure of /proc/self/status in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def _project_counts(diff: Any) -> dict[str, Any]:
    return {"added": len(diff.added), "changed": len(diff.changed), "removed": len(diff.removed),
            "changed_by_column": dict(sorted(diff.changed_by_column.items()))}


def _duckdb_counts(previous: pd.DataFrame, current: pd.DataFrame, fields: list[str]) -> dict[str, Any]:
    """Hash both sides' rows, full-join on ID, compare the columns of the rows whose hashes differ."""
    import duckdb
    import pyarrow as pa

    quoted = [f'"{name}"' for name in sorted(fields)]
    differs = ", ".join(f'cur.{name} IS DISTINCT FROM prev.{name} AS {name}' for name in quoted)
    with duckdb.connect() as connection:
        connection.register("cur", pa.Table.from_pandas(current, preserve_index=False))
        connection.register("prev", pa.Table.from_pandas(previous, preserve_index=False))
        result = connection.execute(f"""
            WITH c AS (SELECT ID, hash({", ".join(quoted)}) AS h FROM cur),
                 p AS (SELECT ID, hash({", ".join(quoted)}) AS h FROM prev),
                 j AS (SELECT c.ID AS cid, p.ID AS pid FROM c FULL JOIN p ON c.ID = p.ID
                       WHERE c.h IS DISTINCT FROM p.h)
            SELECT j.cid IS NULL AS gone, j.pid IS NULL AS new, {differs}
            FROM j LEFT JOIN cur ON cur.ID = j.cid LEFT JOIN prev ON prev.ID = j.pid
        """).fetchnumpy()
    return _counts_of(result["gone"], result["new"], {name: result[name] for name in sorted(fields)})


def _polars_counts(previous: pd.DataFrame, current: pd.DataFrame, fields: list[str]) -> dict[str, Any]:
    """Hash both sides' rows (`struct(...).hash()`), full-join on ID, compare the differing rows' columns."""
    import polars as pl

    columns = sorted(fields)
    cur, prev = pl.from_pandas(current[["ID", *columns]]), pl.from_pandas(previous[["ID", *columns]])
    hashed = [frame.select("ID", pl.struct(columns).hash().alias("h")) for frame in (cur, prev)]
    joined = hashed[0].join(hashed[1], on="ID", how="full", suffix="_prev")
    joined = joined.filter(pl.col("h").ne_missing(pl.col("h_prev")))
    both = joined.filter(pl.col("ID").is_not_null() & pl.col("ID_prev").is_not_null()).select("ID")
    pair = both.join(cur, on="ID").join(prev, on="ID", suffix="_prev")
    differs = pair.select([pl.col(name).ne_missing(pl.col(f"{name}_prev")).alias(name) for name in columns])
    gone, new = joined["ID"].is_null().to_numpy(), joined["ID_prev"].is_null().to_numpy()
    return _counts_of(gone, new, {name: differs[name].to_numpy() for name in columns}, both=len(both))


def _counts_of(gone: np.ndarray, new: np.ndarray, differs: dict[str, np.ndarray],
               both: int | None = None) -> dict[str, Any]:
    """Added, changed and removed counts from the differing rows (columns given for the rows in both sides)."""
    gone, new = np.asarray(gone, dtype=bool), np.asarray(new, dtype=bool)
    matrix = np.column_stack([np.asarray(values, dtype=bool) for values in differs.values()])
    if both is None:  # DuckDB: one row per differing ID, columns false where a side is missing
        matrix = matrix[~gone & ~new]
    counts = matrix.sum(axis=0)
    return {"added": int(new.sum()), "changed": int(matrix.any(axis=1).sum()), "removed": int(gone.sum()),
            "changed_by_column": {name: int(count) for name, count in zip(differs, counts, strict=True) if count}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare-with", type=Path, help="another checkout whose diff runs as one more engine")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        print(json.dumps(measure(arguments.measure, arguments.data, arguments.root)))
        return
    engines = [(engine, PROJECT_ROOT) for engine in ENGINES]
    if arguments.compare_with:
        engines.append((f"project @ {arguments.compare_with}", arguments.compare_with.resolve()))
    print(f"diff of {arguments.rows:,} contacts x 24 text columns (1% changed, 0.5% added, 0.5% removed), "
          f"{arguments.rounds} rounds; load average {_load()}")
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in engines}
    with tempfile.TemporaryDirectory(prefix="bench-diff-") as folder:
        prepare(arguments.rows, Path(folder))
        for _ in range(arguments.rounds):
            for label, root in engines:
                engine = "project" if label.startswith("project") else label
                child = subprocess.run(
                    [sys.executable, __file__, "--measure", engine, "--data", folder, "--root", str(root)],
                    check=True, capture_output=True, text=True)
                results[label].append(json.loads(child.stdout.splitlines()[-1]))
    _report(results)


def _report(results: dict[str, list[dict[str, Any]]]) -> None:
    counts = {label: runs[0]["counts"] for label, runs in results.items()}
    print(f"  counts: {counts['project']}")
    for label, runs in results.items():
        if label.startswith("project"):
            print(f"  {label}: {runs[0]['source']}")
    disagreeing = [label for label, found in counts.items() if found != counts["project"]]
    medians = {label: {key: statistics.median(run[key] for run in runs)
                       for key in ("wall", "cpu", "peak_mb", "frames_mb", "whole_peak_mb", "read")}
               for label, runs in results.items()}
    print(f"  {'engine':<34} {'wall s':>7} {'CPU s':>7} {'peak RSS MB':>12} {'frames MB':>10} {'diff MB':>8}"
          f" {'peak w/ reads MB':>17} {'previous read s':>16} {'walls of the rounds':>22}")
    for label, median in medians.items():
        walls = " ".join(f"{run['wall']:.2f}" for run in results[label])
        print(f"  {label:<34} {median['wall']:7.2f} {median['cpu']:7.2f} {median['peak_mb']:12.0f} "
              f"{median['frames_mb']:10.0f} {median['peak_mb'] - median['frames_mb']:8.0f} "
              f"{median['whole_peak_mb']:17.0f} {median['read']:16.2f} {walls:>22}")
    project = medians["project"]["wall"]
    for label, median in medians.items():
        if label != "project":
            print(f"  {label} / project wall: {median['wall'] / project:.2f}x")
    print(f"  load average after: {_load()}")
    if disagreeing:
        sys.exit(f"engines disagree with the project's counts: {', '.join(disagreeing)}: {counts}")


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
