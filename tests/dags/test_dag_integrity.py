"""Every DAG file parses, follows the project's policies, and stays cheap to parse.

The DAG processor parses each file every 30 s, so a DAG file must not import pandas, Great Expectations,
pyarrow or the domain modules at its top level: they load inside tasks only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))
EXPECTED_DAGS = {"imis_to_thrive_target_groups", "imis_to_thrive_panel_fields", "thrive_to_imis_activities",
                 "thrive_reconciliation"}
HEAVY_MODULES = ("pandas", "great_expectations", "pyarrow", "numpy", "include.imis_thrive.sync",
                 "include.imis_thrive.imis", "include.imis_thrive.thrive", "include.imis_thrive.writeback", "sandbox")
# Domain modules a DAG file may import to name things (param choices): bare definitions, no imports of their own.
NAME_MODULES = {"include.imis_thrive.thrive", "include.imis_thrive.thrive.kinds"}

PARSE = """
import json, runpy, sys, time
sys.path.insert(0, sys.argv[2])
import airflow.sdk
before = set(sys.modules)
started = time.perf_counter()
runpy.run_path(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - started, "modules": sorted(set(sys.modules) - before)}))
"""


def test_every_dag_file_loads_without_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED_DAGS


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_policies_owner_retries_tags_docs_and_described_params(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert dag.tags and dag.doc_md and len(dag.doc_md) > 500
    assert dag.max_active_runs == 1  # snapshots and ledgers assume one run at a time
    for task in dag.tasks:
        assert task.owner == "data-team" and task.retries >= 2, task.task_id
        assert _docstring(task), f"{dag_id}.{task.task_id} has no docstring"
    for name, param in dag.params.items():
        assert param.description, f"{dag_id} param {name!r} has no description for the trigger form"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_parsing_a_dag_file_imports_nothing_heavy(dag_file):
    result = subprocess.run([sys.executable, "-c", PARSE, str(dag_file), str(PROJECT_ROOT)],
                            capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    heavy = [m for m in parsed["modules"] if m not in NAME_MODULES
             and (m.split(".")[0] in HEAVY_MODULES or m.startswith(HEAVY_MODULES))]
    assert heavy == [], f"{dag_file.name} imports at parse time: {heavy[:10]}"


def _docstring(task) -> str | None:
    """A TaskFlow task's docstring; a mapped task keeps its callable among the partial arguments."""
    callable_ = getattr(task, "python_callable", None) or getattr(task, "partial_kwargs", {}).get("python_callable")
    return task.doc_md or getattr(callable_, "__doc__", None)
