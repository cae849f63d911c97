"""The README's layout section names every top-level folder of the checkout and every module of the package."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = PROJECT_ROOT / "include" / "imis_thrive"
IGNORED = {"__init__.py", "__pycache__"}


def _layout_block() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Layout", 1)[1]
    return re.search(r"```\n(.*?)```", section, flags=re.S).group(1)


def test_every_package_module_and_subpackage_is_in_the_layout() -> None:
    layout = _layout_block()
    entries = [path for path in PACKAGE.iterdir() if path.name not in IGNORED]
    missing = [path.name for path in entries
               if (f"{path.name}/" if path.is_dir() else path.name) not in layout]
    assert not missing, f"README layout does not name: {missing}"


def test_every_top_level_folder_is_in_the_layout() -> None:
    layout = _layout_block()
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    folders = sorted({line.split("/", 1)[0] for line in tracked.stdout.splitlines() if "/" in line}
                     - {"include", ".ci"})
    missing = [name for name in folders if not re.search(rf"^{re.escape(name)}/", layout, flags=re.M)]
    assert not missing, f"README layout does not name: {missing}"
