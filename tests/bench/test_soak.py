"""A few soak seeds in `make test`: bench/soak.py as `make soak` runs it, in its quick form (150 contacts, 100
engagement events, each DAG once, one reference shared by the seeds, a run SIGKILLed with chance 0.3), two seeds of
faults, token purges and kills. Each seed must end exactly where the fault-free reference does: nothing lost,
nothing written twice, nothing different. `make soak` (20 seeds, the changes, kill chance 0.5) is the full form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SEEDS = 2

pytestmark = [pytest.mark.dags, pytest.mark.integration]


@pytest.mark.timeout(900)  # a dozen DAG runs in child processes; on a loaded 2-core machine, minutes
def test_two_soak_seeds_end_where_the_fault_free_reference_does(tmp_path):
    rows_file = tmp_path / "soak.json"
    finished = subprocess.run(
        [sys.executable, "bench/soak.py", "--seeds", str(SEEDS), "--first-seed", "1", "--data-seed", "1",
         "--contacts", "150", "--engagement", "100", "--no-changes", "--kill-rate", "0.3", "--json", str(rows_file)],
        cwd=PROJECT_ROOT, capture_output=True, text=True,
        env={key: value for key, value in os.environ.items() if key != "AIRFLOW__CORE__UNIT_TEST_MODE"})
    table = finished.stdout + finished.stderr[-3000:]

    assert finished.returncode == 0, table
    rows = json.loads(rows_file.read_text())
    assert [row["seed"] for row in rows] == [1, 2], table
    for row in rows:
        assert (row["lost"], row["duplicated"], row["mismatched"], row["failed_steps"]) == (0, 0, 0, []), table
        assert row["activities"] > 0, table  # the writeback had events to lose or duplicate
    assert sum(row["faults"] for row in rows) > 0, table  # the faulty worlds did meet faults
