"""The sandboxes are witnesses: they import nothing of the clients, and what ships imports nothing of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]
EMULATOR_MODULES = sorted(f"sandbox.{path.stem}" for path in (PROJECT_ROOT / "sandbox").glob("*.py")
                          if path.stem not in {"__init__", "__main__", "demo"})
IMPORTED = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("module", EMULATOR_MODULES)
def test_an_emulator_module_imports_nothing_of_the_project_package(module):
    result = subprocess.run([sys.executable, "-c", IMPORTED, module], capture_output=True, text=True, check=True,
                            cwd=PROJECT_ROOT)
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    assert [name for name in imported if name.startswith("include")] == [], module


def test_the_runtime_package_never_names_the_sandbox_package():
    offenders = [str(path.relative_to(PROJECT_ROOT))
                 for path in [*(PROJECT_ROOT / "include").rglob("*.py"), *(PROJECT_ROOT / "dags").glob("*.py")]
                 if "from sandbox" in path.read_text() or "import sandbox" in path.read_text()]
    assert offenders == []
