"""Test-wide setup: a throwaway Airflow home, so tests never touch the developer's `.airflow/`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="imis-thrive-tests-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path(__file__).resolve().parents[1] / "dags"))


def pytest_addoption(parser) -> None:
    parser.addoption("--imis-flavor", choices=("ems", "2017"), default=None,
                     help="iMIS sandbox flavor for every test that does not pin one (default: $IMIS_SANDBOX_FLAVOR, "
                          "else ems); `--imis-flavor 2017` runs the client, package-check and sync tests against "
                          "iMIS 2017 QueryDefinition answers")


def pytest_configure(config) -> None:
    # The sandbox reads IMIS_SANDBOX_FLAVOR when a test builds it without a flavor; subprocesses inherit it.
    flavor = config.getoption("--imis-flavor")
    if flavor:
        os.environ["IMIS_SANDBOX_FLAVOR"] = flavor


def pytest_report_header(config) -> str:
    return f"iMIS sandbox flavor: {os.environ.get('IMIS_SANDBOX_FLAVOR', 'ems')}"
