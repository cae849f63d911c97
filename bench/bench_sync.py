"""Benchmark of the sync core on synthetic contacts: validate → map → diff → snapshot write/read.

Prints seconds per step, peak RSS and snapshot size for 100k and 1M contacts. Each size runs in its own
process so its peak RSS is its own. Usage: `python bench/bench_sync.py [--rows N ...]`.

The previous snapshot differs from the current extract the way an hourly run does: 2% of contacts
changed (one or two fields), 0.5% added, 0.5% removed, and 0.1% of emails malformed (quarantined).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from include.imis_thrive.sync.field_map import CONTACTS_IQA, to_thrive_contacts

SIZES = (100_000, 1_000_000)
TZ = "America/New_York"
FIRST_NAMES = np.array(["Ann", "Bo", "Cy", "Dee", "Eve", "Finn", "Gus", "Hana", "Ivo", "Jo"])
LAST_NAMES = np.array(["Ng", "Smith", "García", "O'Brien", "Kowalski", "Dubois", "Okafor", "Tanaka"])
T = TypeVar("T")


def synthetic_contacts(rows: int, seed: int = 7) -> pd.DataFrame:
    """A contacts IQA frame typed exactly like the extraction's, built without a Python loop per row."""
    rng = np.random.default_rng(seed)
    ids = pd.Series((np.arange(rows) + 100_000).astype(str), dtype="str")

    def text(pool: np.ndarray) -> pd.Series:
        return pd.Series(rng.choice(pool, rows), dtype="str")

    def dates(start: str, days: int) -> pd.Series:
        offsets = pd.to_timedelta(rng.integers(0, days, rows), unit="D")
        return pd.Series(pd.Timestamp(start, tz=TZ) + offsets).astype(f"datetime64[us, {TZ}]")

    def flags(share: float) -> pd.Series:
        return pd.Series(rng.random(rows) < share, dtype="boolean")

    emails = "member" + ids + "@example.org"
    emails[rng.random(rows) < 0.001] = "broken@@example.org"
    frame = pd.DataFrame(
        {
            "ID": ids,
            "AlternativeContactId": "ALT-" + ids,
            "Birthday": dates("1940-01-01", 25_000),
            "ContactType": text(np.array(["Individual", "Organization"])),
            "Designation": text(np.array(["CAE", "FASAE", "", "PhD"])),
            "DoNotEmail": flags(0.02),
            "ExcludeFromDirectory": flags(0.05),
            "FirstName": text(FIRST_NAMES),
            "Gender": text(np.array(["F", "M", "X"])),
            "InformalName": text(FIRST_NAMES),
            "IsMember": flags(0.6),
            "IsOrganization": flags(0.1),
            "LastName": text(LAST_NAMES),
            "MemberExpiresOn": dates("2026-01-01", 730),
            "MemberSince": dates("1990-01-01", 12_000),
            "MiddleName": text(np.array(["", "J", "K", "Lee"])),
            "OrganizationName": text(np.array(["Acme Assoc.", "Globex", "Initech", "Umbrella"])),
            "ParentContactId": pd.Series(rng.integers(1, 5_000, rows).astype(str), dtype="str"),
            "Prefix": text(np.array(["Dr.", "Mr.", "Ms.", "Mx."])),
            "PrimaryEmailAddress": emails,
            "Suffix": text(np.array(["", "Jr.", "III"])),
            "Title": text(np.array(["Director", "Manager", "Analyst", "CEO"])),
            "WebsiteURL": text(np.array(["https://example.org", "https://acme.example"])),
            "PreferenceToken": "cp-" + ids + "-" + pd.Series(rng.integers(0, 2**31, rows).astype(str), dtype="str"),
            "Status": pd.Series(np.where(rng.random(rows) < 0.95, "A", "I"), dtype="str"),
        }
    )
    frame.attrs["iqa"] = CONTACTS_IQA
    return frame


def previous_run_of(thrive_bound: pd.DataFrame, seed: int = 11, changed_share: float = 0.02) -> pd.DataFrame:
    """What the last snapshot held: some rows different, some not yet there, some since removed."""
    rng = np.random.default_rng(seed)
    rows = len(thrive_bound)
    previous = thrive_bound.copy()
    changed = rng.random(rows) < changed_share
    previous.loc[changed, "LastName"] = "Formerly"
    previous.loc[changed & (rng.random(rows) < 0.5), "MemberExpiresOn"] = "2025-12-31"
    previous = previous[rng.random(rows) >= 0.005]  # not yet in the snapshot: added this run
    removed = previous.iloc[: rows // 200].assign(ID=lambda frame: "9" + frame["ID"])  # gone from iMIS since
    return pd.concat([previous, removed], ignore_index=True)


def timed(label: str, figures: dict[str, float], step: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = step()
    figures[label] = time.perf_counter() - started
    return result


def run_one(rows: int) -> None:
    from include.imis_thrive.sync.diff import diff_contacts
    from include.imis_thrive.sync.snapshots import SnapshotStore
    from include.imis_thrive.sync.validation import IqaKind, validate_iqa

    figures: dict[str, float] = {}
    contacts = timed("build synthetic frame", figures, lambda: synthetic_contacts(rows))
    timed(
        "GX import + context + suite (once per process)", figures,
        lambda: validate_iqa(contacts.head(10), IqaKind.CONTACTS),
    )
    outcome = timed("validate", figures, lambda: validate_iqa(contacts, IqaKind.CONTACTS))
    thrive_bound = timed("map to Thrive fields", figures, lambda: to_thrive_contacts(outcome.clean))
    previous = previous_run_of(thrive_bound)
    diff = timed("diff vs previous snapshot", figures, lambda: diff_contacts(previous, thrive_bound))
    with tempfile.TemporaryDirectory() as folder:
        store = SnapshotStore(folder)
        handle = timed(
            "snapshot stage (Parquet write)", figures, lambda: store.stage("contacts", thrive_bound, "bench")
        )
        timed("snapshot commit (pointer + prune)", figures, lambda: store.commit(handle))
        timed("snapshot read", figures, lambda: store.read("contacts"))
        size = store.size(handle)

    core = figures["validate"] + figures["map to Thrive fields"] + figures["diff vs previous snapshot"]
    print(f"\n== {rows:,} contacts ==")
    for label, seconds in figures.items():
        print(f"  {label:<48} {seconds:8.3f} s")
    print(f"  {'validate + map + diff':<48} {core:8.3f} s")
    print(f"  {'quarantined rows':<48} {outcome.summary['quarantined_rows']:>8,}")
    print(f"  {'diff':<48} {diff.summary() | {'changed_by_column': '...'}}")
    print(f"  {'snapshot size (Parquet, Thrive-bound text)':<48} {size / 2**20:8.1f} MiB")
    print(f"  {'peak RSS':<48} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:8.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", help="sizes to run (default: 100k and 1M)")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    sizes = arguments.rows or SIZES
    if arguments.in_process:
        run_one(sizes[0])
        return
    for rows in sizes:
        subprocess.run([sys.executable, __file__, "--in-process", "--rows", str(rows)], check=True)


if __name__ == "__main__":
    main()
