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
    parser.addoption("--thrive-alternatives", default=None, metavar="NAME=VALUE,...",
                     help="the Thrive emulator's reading of the details the vendor leaves open, for every test "
                          "that does not pin one, e.g. `grids=documented` or `startrow_base=1,fault_shape=faultcode` "
                          "(sets $THRIVE_SANDBOX_ALTERNATIVES; `make test-alternatives` runs each in turn)")
    parser.addoption("--run-distributed", action="store_true", default=False,
                     help="collect tests/distributed too: a Celery deployment on PostgreSQL and Redis, minutes long "
                          "(`make test-distributed`; plain `make test` leaves it out)")


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """tests/distributed is its own command (`make test-distributed`), not minutes added to every `make test`."""
    if collection_path.name == "distributed" and collection_path.parent == Path(__file__).parent:
        return None if config.getoption("--run-distributed") else True
    return None


def pytest_configure(config) -> None:
    # The sandbox reads IMIS_SANDBOX_FLAVOR when a test builds it without a flavor; subprocesses inherit it.
    flavor = config.getoption("--imis-flavor")
    if flavor:
        os.environ["IMIS_SANDBOX_FLAVOR"] = flavor
    alternatives = config.getoption("--thrive-alternatives")
    if alternatives is not None:
        import pytest

        from sandbox.thrive_app import ALTERNATIVES_ENV, ThriveSandboxConfig, alternatives_from_env

        try:  # a misspelt name or value stops the session here, not in every test
            ThriveSandboxConfig(**alternatives_from_env({ALTERNATIVES_ENV: alternatives}))
        except ValueError as error:
            raise pytest.UsageError(f"--thrive-alternatives: {error}") from error
        os.environ[ALTERNATIVES_ENV] = alternatives


def pytest_report_header(config) -> str:
    return (f"iMIS sandbox flavor: {os.environ.get('IMIS_SANDBOX_FLAVOR', 'ems')}; Thrive emulator alternatives: "
            f"{os.environ.get('THRIVE_SANDBOX_ALTERNATIVES') or 'the defaults'}")
