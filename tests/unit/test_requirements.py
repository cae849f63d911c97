"""The two pin files: a worker's (requirements.txt) and the checkout's (requirements-dev.txt) never disagree."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = {"pytest", "pytest-timeout", "moto", "aiosmtpd", "playwright", "ruff", "mypy"}


def _pins(name: str) -> dict[str, str]:
    text = (PROJECT_ROOT / name).read_text()
    return {package.lower(): version for package, version in re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)",
                                                                          text, re.M)}


def test_every_worker_pin_is_the_same_in_the_dev_pins():
    worker, dev = _pins("requirements.txt"), _pins("requirements-dev.txt")
    assert worker and set(worker) <= set(dev)
    assert {name: (version, dev[name]) for name, version in worker.items() if dev[name] != version} == {}


def test_a_worker_installs_no_test_sandbox_or_tooling_package():
    assert DEV_ONLY & set(_pins("requirements.txt")) == set()
    assert set(_pins("requirements-dev.txt")) >= DEV_ONLY


def test_airflow_is_pinned_exactly_for_workers():
    assert _pins("requirements.txt")["apache-airflow"] == "3.3.2"


def test_a_distributed_worker_keeps_every_worker_pin_and_adds_celery_and_postgres():
    worker, distributed = _pins("requirements.txt"), _pins("requirements-distributed.txt")
    assert {name: (version, distributed.get(name)) for name, version in worker.items()
            if distributed.get(name) != version} == {}
    assert DEV_ONLY & set(distributed) == set()
    assert distributed["apache-airflow-providers-celery"] == "3.26.0"
    assert distributed["celery"] == "5.6.3"  # 5.7.0 breaks the provider's worker
    assert {"apache-airflow-providers-postgres", "psycopg2-binary", "kombu", "redis"} <= set(distributed)


def test_the_distributed_pins_share_every_version_with_the_dev_pins():
    dev, distributed = _pins("requirements-dev.txt"), _pins("requirements-distributed.txt")
    assert {name: (version, dev[name]) for name, version in distributed.items()
            if name in dev and dev[name] != version} == {}
