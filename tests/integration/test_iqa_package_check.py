"""The IQA package check against the real iMIS sandbox on loopback, in process and as the command a person runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from include.imis_thrive.http_retry import RetryPolicy
from include.imis_thrive.imis import package_check
from include.imis_thrive.imis.client import ImisClient, ImisConfig
from include.imis_thrive.imis.iqa_package import (
    CONTACTS_IQA,
    MAILING_LISTS_FOLDER,
    PANEL_FIELDS_IQA_PATH,
)
from include.imis_thrive.imis.package_check import (
    EXIT_CANNOT_CHECK,
    EXIT_OK,
    EXIT_PROBLEMS,
    CheckStatus,
    PackageReport,
    check_package,
)
from include.imis_thrive.imis.tokens import MemoryTokenStore
from sandbox import imis_app
from sandbox.faults import FaultConfig
from sandbox.imis_app import ImisSandbox, ImisSandboxConfig
from sandbox.server import SandboxServer

pytestmark = pytest.mark.integration
USER, PASSWORD = "hl_integration", "sandbox-imis-password"
FAST = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05, max_retry_after=0.05)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
VALID_LISTS = ("All Members", "Annual Conference 2026", "Lapsed Members", "Newsletter")


def _check(url: str, retry: RetryPolicy = FAST) -> PackageReport:
    config = ImisConfig(base_url=url, username=USER, password=PASSWORD, retry=retry)
    with ImisClient(config, token_store=MemoryTokenStore()) as client:
        return check_package(client)


def _list(name: str) -> str:
    return f"{MAILING_LISTS_FOLDER}/{name}"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The check as a person runs it: its own process, the project's environment, nothing on the command line
    that should stay secret."""
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env}
    return subprocess.run([sys.executable, "-m", "include.imis_thrive.imis.package_check", *args], cwd=PROJECT_ROOT,
                          env=environment, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("not_shared_status", [401, 403])
def test_each_broken_list_is_named_and_every_good_iqa_is_ok(not_shared_status: int) -> None:
    sandbox = ImisSandbox(ImisSandboxConfig(users={USER: PASSWORD}, contacts=300, broken_lists=True,
                                            not_shared_status=not_shared_status))
    with SandboxServer(sandbox.app, port=0) as server:
        report = _check(server.url)
    fixes = [line for line in report.render().splitlines() if line.startswith("FIX ")]
    assert fixes == [
        f"FIX  IQA {_list('Broken - No ID Alias')}, column ID: required column missing "
        "(add a display column aliased 'ID')",
        f"FIX  IQA {_list('Broken - Not Shared')}: the integration user may not run it (HTTP 401/403); "
        "it must be an IQA that is shared with Everyone",
        f"FIX  IQA {_list('Broken - Prompted')}: filter on Status is a prompt (Required); set Prompt to No",
    ]
    good = {check.path for check in report.checks if check.ok}
    assert {CONTACTS_IQA.path, PANEL_FIELDS_IQA_PATH, *map(_list, VALID_LISTS)} <= good
    assert report.exit_code == EXIT_PROBLEMS


def test_a_contacts_column_missing_on_the_instance_is_named(imis_server, imis_sandbox: ImisSandbox) -> None:
    imis_sandbox.seed.contacts_definition = imis_sandbox.seed.contacts_definition.without_column("MemberSince")
    report = _check(imis_server.url)
    contacts = report.check(CONTACTS_IQA.path)
    assert contacts.status is CheckStatus.MISMATCH and contacts.columns == 24
    assert [str(p) for p in contacts.problems] == [
        f"IQA {CONTACTS_IQA.path}, column MemberSince: required column missing "
        "(add a display column aliased 'MemberSince')"]


def test_an_absent_panel_iqa_is_reported_missing_and_the_rest_still_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imis_app, "PANEL_FIELDS_PATH", "$/HigherLogic/Panels/PanelFields (old)")
    sandbox = ImisSandbox(ImisSandboxConfig(users={USER: PASSWORD}, contacts=50))
    with SandboxServer(sandbox.app, port=0) as server:
        report = _check(server.url)
    assert report.check(PANEL_FIELDS_IQA_PATH).status is CheckStatus.MISSING
    assert report.problems == [f"IQA {PANEL_FIELDS_IQA_PATH}: missing (or not visible to the integration user); "
                               "the panel fields IQA must exist here with the display columns ID"]
    assert report.check(CONTACTS_IQA.path).ok and len(report.checks) == 2 + len(VALID_LISTS)


def test_faults_on_the_wire_do_not_change_the_verdict(imis_server, imis_sandbox: ImisSandbox) -> None:
    clean = _check(imis_server.url)
    # One fault of each kind for certain, then 20% at random; 12 attempts per call make a give-up
    # (0.2**12) too unlikely to flake, whatever order the concurrent checks draw in.
    imis_sandbox.faults.configure(FaultConfig(script=[429, 503, 0], rate_429=0.1, rate_503=0.05, drop_rate=0.05,
                                              retry_after_s=0, seed=4))
    assert _check(imis_server.url, RetryPolicy(max_attempts=12, base_delay=0.01, max_delay=0.05,
                                               max_retry_after=0.05)) == clean
    assert {"429", "503", "drop"} <= imis_sandbox.faults.injected.keys()


def test_the_command_checks_a_url_with_the_password_from_the_environment(imis_server) -> None:
    result = _cli("--url", imis_server.url, "--user", USER, IMIS_PASSWORD=PASSWORD)
    assert result.returncode == EXIT_PROBLEMS, result.stderr
    lines = result.stdout.splitlines()
    assert f"OK   IQA {CONTACTS_IQA.path} (contacts IQA, 25 columns)" in lines
    assert sum(line.startswith("FIX ") for line in lines) == 3
    assert any("Broken - Not Shared" in line and "shared with Everyone" in line for line in lines)
    assert lines[-1].endswith("3 problems to fix")
    assert PASSWORD not in result.stdout + result.stderr


def test_the_command_reads_an_airflow_connection(tmp_path: Path) -> None:
    sandbox = ImisSandbox(ImisSandboxConfig(users={USER: PASSWORD}, contacts=50))
    with SandboxServer(sandbox.app, port=0) as server:
        connection = {"conn_type": "imis", "host": server.url, "login": USER, "password": PASSWORD,
                      "extra": {"token_store_dir": str(tmp_path / "tokens")}}
        result = _cli("--conn-id", "imis_check", AIRFLOW_CONN_IMIS_CHECK=json.dumps(connection))
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.splitlines()[-1] == f"{2 + len(VALID_LISTS)} IQAs checked, {2 + len(VALID_LISTS)} OK: " \
                                             "the package is complete"
    assert PASSWORD not in result.stdout + result.stderr


def test_a_refused_login_is_a_failure_to_check_not_a_list_of_missing_iqas(
        imis_server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(package_check.PASSWORD_ENV, "not-the-password")
    assert package_check.main(["--url", imis_server.url, "--user", USER]) == EXIT_CANNOT_CHECK
    out, err = capsys.readouterr()
    assert out == "" and f"refused the login of user {USER!r}" in err and "not-the-password" not in err


def _bin_check(url: str) -> subprocess.CompletedProcess[str]:
    """`bin/check-iqa-package` itself, as the user runs it."""
    return subprocess.run([str(PROJECT_ROOT / "bin" / "check-iqa-package"), "--url", url, "--user", USER],
                          cwd=PROJECT_ROOT, env={**os.environ, "IMIS_PASSWORD": PASSWORD}, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("flavor", ["ems", "2017"])
def test_the_package_is_complete_on_both_flavors_and_a_missing_column_is_named(flavor: str) -> None:
    """EMS (empty aliases, numeric operations, envelopes) and 2017 (bare definition, GUID names, Caption)."""
    sandbox = ImisSandbox(ImisSandboxConfig(users={USER: PASSWORD}, contacts=50, flavor=flavor))
    with SandboxServer(sandbox.app, port=0) as server:
        complete = _bin_check(server.url)
        sandbox.seed.contacts_definition = sandbox.seed.contacts_definition.without_column("PrimaryEmailAddress")
        broken = _bin_check(server.url)
    assert complete.returncode == EXIT_OK, complete.stdout + complete.stderr
    assert complete.stdout.splitlines()[-1] == f"{2 + len(VALID_LISTS)} IQAs checked, {2 + len(VALID_LISTS)} OK: " \
                                               "the package is complete"
    assert broken.returncode == EXIT_PROBLEMS, broken.stdout + broken.stderr
    assert [line for line in broken.stdout.splitlines() if line.startswith("FIX")] == [
        f"FIX  IQA {CONTACTS_IQA.path}, column PrimaryEmailAddress: required column missing "
        "(add a display column aliased 'PrimaryEmailAddress')"]
