"""The Thrive tenant check against the emulator on loopback, in each of its open alternatives, in process and as
the command a person runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr

from include.imis_thrive.http_retry import RetryPolicy
from include.imis_thrive.thrive.client import ThriveConfig
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.thrive.tenant_check import (
    EXIT_OK,
    EXIT_PROBLEMS,
    PASSWORD_ENV,
    THIRD_PARTY_GRIDS,
    Compression,
    FaultShape,
    TenantReport,
    check_tenant,
)
from sandbox.server import SandboxServer
from sandbox.thrive_app import ThriveSandbox, ThriveSandboxConfig
from tests.integration.thrive_fixtures import THRIVE_INTERESTS, THRIVE_PASSWORD, THRIVE_USER

pytestmark = pytest.mark.integration
PROJECT_ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_retry_after=0.05)
# Every kind but Resubscribe: no tenant serves `subscriber_resubscribes` (no vendor page names it).
SERVED_KINDS = list(EngagementKind)  # Resubscribe is read back from the documented subscriber grid


@contextmanager
def _tenant(**alternatives) -> Iterator[tuple[ThriveSandbox, ThriveConfig]]:
    """The emulator in the given alternatives (explicit, so THRIVE_SANDBOX_ALTERNATIVES cannot change them)."""
    settings = dict(startrow_base=0, fault_shape="aapi", grids="extended", compression="on-request")
    sandbox = ThriveSandbox(ThriveSandboxConfig(users={THRIVE_USER: THRIVE_PASSWORD}, interests=THRIVE_INTERESTS,
                                                seed_subscribers=3, **{**settings, **alternatives}))
    with SandboxServer(sandbox.app, port=0) as server:
        yield sandbox, ThriveConfig(
            endpoint=f"{server.url}{sandbox.config.endpoint_path}", brand_id=sandbox.config.brand_id,
            brand_name=sandbox.config.brand_name, user=THRIVE_USER, password=THRIVE_PASSWORD, timeout_s=5,
            status_email_recipients=["data-team@sandbox.invalid"], retry=FAST)


def _check(config: ThriveConfig, **kwargs) -> TenantReport:
    kwargs.setdefault("kinds", SERVED_KINDS)
    return check_tenant(config, **kwargs)


def _lines(report: TenantReport, prefix: str) -> list[str]:
    return [line for line in report.render().splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("startrow_base", [0, 1])
def test_the_startrow_base_is_named(startrow_base):
    with _tenant(startrow_base=startrow_base) as (_, config):
        report = _check(config)
    assert report.startrow.base == startrow_base and report.startrow.grid == "interest_target_group"
    assert f"OPEN StartRow base: {startrow_base} (startrow_base={startrow_base}; probed on grid " \
           "interest_target_group)" in report.render()
    assert report.tips == [f"set the thrive connection's extra startrow_base to {startrow_base} (detected here), "
                           "so no run has to probe it"]
    assert report.exit_code == EXIT_OK, report.render()
    assert report.grid("subscriber").count == 3 and report.grid("subscriber").rows_read == 3


@pytest.mark.parametrize("startrow_base", [0, 1])
def test_a_startrow_extra_that_contradicts_the_tenant_is_a_fix(startrow_base):
    with _tenant(startrow_base=startrow_base) as (_, config):
        report = _check(config.model_copy(update={"startrow_base": 1 - startrow_base}))
    assert report.exit_code == EXIT_PROBLEMS
    assert _lines(report, "FIX") == [
        f"FIX  the thrive connection's extra startrow_base is {1 - startrow_base} but this tenant counts rows from "
        f"{startrow_base}: paging would skip or repeat rows; set it to {startrow_base} (or remove it, to detect it "
        "on each run)"]


@pytest.mark.parametrize(("shape", "detail"), [
    ("aapi", "InformzAAPIFault detail"), ("service", "InformzServiceFault detail"),
    ("faultcode", "only a prefixed faultcode")])
def test_the_fault_shape_is_named(shape, detail):
    with _tenant(fault_shape=shape) as (_, config):
        report = _check(config)
    assert report.fault_shape is FaultShape(shape) and report.fault_code == "InvalidGridCategoryException"
    [line] = [line for line in report.render().splitlines() if line.startswith("OPEN fault shape")]
    assert line.startswith(f"OPEN fault shape: {detail}") and f"(fault_shape={shape})" in line
    assert report.alternatives()["fault_shape"] == shape and report.ok


@pytest.mark.parametrize(("compression", "found"), [("on-request", Compression.SUPPORTED),
                                                    ("never", Compression.PLAIN_REPLY)])
def test_compression_is_named(compression, found):
    with _tenant(compression=compression) as (_, config):
        report = _check(config.model_copy(update={"compress_grids": True}))
    assert report.compression is found and report.alternatives()["compression"] == compression
    assert f"OPEN compression: {found.value} (compression={compression})" in report.render()
    assert report.ok  # the client reads a plain reply to a compressed request too


def test_documented_grids_refuse_every_third_party_engagement_grid_by_name():
    with _tenant(grids="documented") as (_, config):
        report = _check(config)
        without_the_two = check_tenant(config, kinds=[k for k in SERVED_KINDS if k not in (
            EngagementKind.LANDING_PAGE_SUBMIT, EngagementKind.WEB_PAGE_VISIT)])
    assert report.alternatives()["grids"] == "documented"
    third_party = {check.use.grid for check in report.grids} & THIRD_PARTY_GRIDS
    assert len(third_party) == 4  # opens, clicks, form usage, web pages (`_all` is read only for old windows)
    assert "OPEN grids: documented (grids=documented); 0 of 4 third-party grid tokens served" in report.render()
    refused = {check.use.grid for check in report.grids if not check.available}
    assert refused == third_party
    # opens and clicks come from the documented per-mailing flags; form usage and web pages have no stand-in
    fixes = _lines(report, "FIX  grid ")
    assert sorted(line.split()[2] for line in fixes) == ["subscriber_form_usage", "subscriber_web_tracking_pages"]
    assert report.exit_code == EXIT_PROBLEMS
    notes = _lines(report, "NOTE grid mailing_activity_")
    assert len(notes) == 2 and all("mailing_activity_subscriber_actions flags are read instead" in n for n in notes)
    assert _lines(report, "OK   grid mailing_activity_subscriber_actions")
    assert without_the_two.exit_code == EXIT_OK, without_the_two.render()


def test_extended_grids_serve_every_grid_the_pipeline_reads_for_all_eight_kinds():
    with _tenant(grids="extended") as (_, config):
        report = check_tenant(config)  # every kind, Resubscribe (read back from `subscriber`) included
    assert report.alternatives()["grids"] == "extended"
    assert [check.use.grid for check in report.grids if not check.available] == []
    assert not _lines(report, "FIX  grid ")


def test_a_wrong_password_gives_the_credentials_fix_and_nothing_else():
    with _tenant() as (sandbox, config):
        report = _check(config.model_copy(update={"password": SecretStr("not-the-password")}))
    assert report.exit_code == EXIT_PROBLEMS and report.credentials_code == "InvalidCredentialsException"
    assert report.render().splitlines()[1:] == [
        "FIX  Thrive refused the credentials (InvalidCredentialsException: The brand id, user or password is not "
        "valid); check the thrive connection's login, password and brand_id extra (a RemoteService API user of "
        "this brand)",
        "nothing else was checked: the pipeline cannot run until this is fixed"]
    assert sandbox.counters()["requests"]["PostInformzMessage"] == 1


def test_missing_status_email_recipients_gives_its_fix_line():
    with _tenant() as (_, config):
        report = _check(config.model_copy(update={"status_email_recipients": []}))
    assert _lines(report, "FIX") == [
        "FIX  the thrive connection has no status_email_recipients extra: every BulkUpload (upserts above "
        "bulk_threshold and every target-group removal) is refused without it; set it to the comma-separated "
        "address(es) that should receive Thrive's upload reports"]
    assert report.exit_code == EXIT_PROBLEMS


def test_list_iqas_without_a_target_group_are_named_and_nothing_is_written():
    with _tenant() as (sandbox, config):
        report = _check(config, list_names=["Newsletter", "annual conference", "Lapsed Members"])
        counters = sandbox.counters()
    assert _lines(report, "FIX") == [
        "FIX  list IQA 'Lapsed Members' ($/HigherLogic/MailingLists) has no Thrive target group of that name; create "
        "the target group in Thrive (the AAPI cannot create one) or rename the IQA, else every sync skips this list"]
    assert counters["actions"] == {} and counters["records_written"] == {}
    assert "OK   target groups" not in report.render()


def _cli(*args: str, script: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    """The check in its own process, the password only in the environment; `script` runs bin/check-thrive itself
    (which prepares the Airflow home first: slow on the tests' fresh one, so only once)."""
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env}
    command = [str(PROJECT_ROOT / "bin" / "check-thrive")] if script else \
        [sys.executable, "-m", "include.imis_thrive.thrive.tenant_check"]
    return subprocess.run([*command, *args], cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True,
                          timeout=300)


def test_the_command_checks_a_url_with_the_password_from_the_environment(imis_server):
    with _tenant(startrow_base=1, fault_shape="service") as (_, config):
        result = _cli("--url", config.endpoint, "--brand-id", config.brand_id, "--brand-name", config.brand_name,
                      "--user", THRIVE_USER, "--status-email-recipients", "data-team@sandbox.invalid",
                      "--imis-url", imis_server.url, "--imis-user", "hl_integration",
                      "--kinds", ",".join(SERVED_KINDS),
                      **{PASSWORD_ENV: THRIVE_PASSWORD, "IMIS_PASSWORD": "sandbox-imis-password"})
    lines = result.stdout.splitlines()
    assert result.returncode == EXIT_PROBLEMS, result.stdout + result.stderr
    assert "OPEN StartRow base: 1 (startrow_base=1; probed on grid interest_target_group)" in lines
    assert any(line.startswith("OPEN fault shape: InformzServiceFault detail") for line in lines)
    assert any(line.startswith("FIX  list IQA 'Lapsed Members'") for line in lines)
    assert not any("'Newsletter'" in line for line in lines)
    assert THRIVE_PASSWORD not in result.stdout + result.stderr


def test_the_command_reads_an_airflow_connection_and_says_when_imis_was_not_checked():
    with _tenant() as (_, config):
        connection = {"conn_type": "thrive", "host": config.endpoint, "login": THRIVE_USER,
                      "password": THRIVE_PASSWORD, "extra": {"brand_id": config.brand_id,
                                                             "brand_name": config.brand_name, "startrow_base": 0}}
        result = _cli("--conn-id", "thrive_check", "--imis-conn-id", "imis_absent",
                      "--kinds", ",".join(SERVED_KINDS), script=True,
                      AIRFLOW_CONN_THRIVE_CHECK=json.dumps(connection))
    lines = result.stdout.splitlines()
    assert result.returncode == EXIT_PROBLEMS, result.stdout + result.stderr
    assert [line for line in lines if line.startswith("FIX")] == [
        "FIX  the thrive connection has no status_email_recipients extra: every BulkUpload (upserts above "
        "bulk_threshold and every target-group removal) is refused without it; set it to the comma-separated "
        "address(es) that should receive Thrive's upload reports"]
    assert any(line.startswith("NOTE target groups: not checked against iMIS") for line in lines)
    assert not any(line.startswith("TIP") for line in lines)  # startrow_base is pinned, and right
    assert THRIVE_PASSWORD not in result.stdout + result.stderr
