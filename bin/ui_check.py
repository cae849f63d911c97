"""`make ui-check`: click through the real Airflow UI in headless Chromium, as a data-team member would.

    bin/ui-check [--url URL] [--target-group NAME] [--out DIR] [--timeout SECONDS] [--demo-store DIR]

First the Sync health page over the newest `make demo`'s run reports (the demo runs first when there is none):
an `airflow api-server` of the same Airflow home reading the demo's store must show the four groups with the
figures of the demo's last target-group run, the panel fields and the eight activity kinds as the report files
say (screenshot `sync-health-after-demo.png`). Then the walk-through: logs in, opens the DAG list and each of the
three DAGs, triggers `imis_to_thrive_target_groups` through its *Trigger* form (its *What to sync* section: the
target group; Advanced Options: a run id of its own), waits for the run to succeed, opens the run's *Report* tab
(the Sync health plugin's run view) and the *Sync health* page, which must show every group with its last run's
figures (the triggered group's equal to what its load task returned); runs the group dry through the API and
checks that run's report opens with the DRY RUN banner and "would add"; runs a list that breaks a requirement
(the sandbox's `--broken-lists`) and checks its mapped tasks end skipped, with the reason as a WARNING; and
presses *Test* on the iMIS and Thrive connections, whose hooks must log in and read a row. A screenshot of every
step goes under `.data/ui-check/`. It uses the Airflow at --url (default $AIRFLOW_API_URL, else
http://127.0.0.1:8080) when one answers there, e.g. a `make airflow` in another terminal (started with
SANDBOX_BROKEN_LISTS=1 for the skipped list); otherwise it starts `bin/airflow-local` on that port itself, with
the broken lists, and stops it at the end.

Login: $AIRFLOW_API_USER / $AIRFLOW_API_PASSWORD, else `admin` with the password SimpleAuthManager generated in
$AIRFLOW_HOME. Browser: Debian's Chromium ($CHROMIUM, default `chromium` on PATH), driven by Playwright's
Python package; nothing is downloaded. A developer tool, not part of `make test`: it needs a browser and takes
a minute or two.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Browser, FrameLocator, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from include.imis_thrive.airflow.rest_api import (  # noqa: E402
    PASSWORD_ENV,
    TARGET_GROUP_DAG,
    URL_ENV,
    USER_ENV,
    AirflowApiClient,
    AirflowApiError,
    DagRun,
)

DAG_IDS = (TARGET_GROUP_DAG, "imis_to_thrive_panel_fields", "thrive_to_imis_activities")
DEMO_FOLDER = PROJECT_ROOT / ".data" / "demo"
DEMO_GROUPS = 4  # the sandbox's target groups (without --broken-lists)
ACTIVITY_KINDS = 8
STARTUP_TIMEOUT_S = 240.0
SHUTDOWN_TIMEOUT_S = 120.0
UI_TIMEOUT_MS = 30_000
BROKEN_GROUP = "Broken - Not Shared"  # served when airflow-local starts the sandbox with SANDBOX_BROKEN_LISTS=1
CONNECTIONS_TESTED = ("imis_default", "thrive_default")
SYNC_HEALTH_TIMEOUT_S = 60.0  # the api-server's first page imports pandas and the report models


class UiCheckFailed(Exception):
    """A step of the walk-through did not show what it should; the message names the step."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        check_demo_sync_health(args.demo_store or newest_demo_store(), args.out)
        with airflow_at(args.url, args.out) as url:
            username, password = login_from_environment()
            run = walk_through(url, username, password, args.target_group, args.out, args.timeout)
    except UiCheckFailed as failed:
        print(f"ui-check FAILED: {failed}", file=sys.stderr)
        return 1
    print(f"ui-check passed: run {run.run_id} of {run.dag_id} for {args.target_group!r} succeeded; "
          f"screenshots in {args.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ui-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get(URL_ENV) or "http://127.0.0.1:8080")
    parser.add_argument("--target-group", default="Newsletter", help="the group the trigger form syncs")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / ".data" / "ui-check", help="screenshot folder")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the triggered run")
    parser.add_argument("--demo-store", type=Path, help="the snapshot store of a `make demo` to show on the Sync "
                        "health page (default: the newest under .data/demo/; none there: the demo runs first)")
    return parser


def login_from_environment() -> tuple[str, str]:
    """The API user from the environment, else the admin SimpleAuthManager generated a password for."""
    if os.environ.get(USER_ENV) and os.environ.get(PASSWORD_ENV):
        return os.environ[USER_ENV], os.environ[PASSWORD_ENV]
    passwords = Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    try:
        return "admin", json.loads(passwords.read_text())["admin"]
    except (OSError, ValueError, KeyError) as missing:
        raise UiCheckFailed(f"no login: set {USER_ENV} / {PASSWORD_ENV}, or start Airflow with `make airflow` "
                            f"so that {passwords} holds the admin password ({missing})") from missing


# --- the Airflow to check ------------------------------------------------------------------------------------

def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v2/version", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def airflow_at(url: str, out: Path) -> Iterator[str]:
    """The Airflow already at `url`, or `bin/airflow-local` started on its port for the duration."""
    if answers(url):
        print(f"using the Airflow at {url}")
        yield url
        return
    port = urlsplit(url).port or 8080
    log_path = out / "airflow-local.log"
    print(f"no Airflow at {url}: starting bin/airflow-local on port {port} (log: {log_path})", flush=True)
    with log_path.open("wb") as log:
        airflow = subprocess.Popen([str(PROJECT_ROOT / "bin" / "airflow-local")], cwd=PROJECT_ROOT,
                                   env=os.environ | {"AIRFLOW_PORT": str(port), "SANDBOX_BROKEN_LISTS": "1"},
                                   stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_banner(airflow, log_path)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(airflow)


def _wait_for_banner(airflow: subprocess.Popen, log_path: Path) -> None:
    """bin/airflow-local prints the UI URL after the API answers and the DAGs are unpaused."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while "Airflow UI:" not in log_path.read_text(errors="replace"):
        if airflow.poll() is not None or time.monotonic() > deadline:
            raise UiCheckFailed(f"bin/airflow-local did not come up within {STARTUP_TIMEOUT_S:g}s; "
                                f"last lines of {log_path}:\n{_tail(log_path)}")
        time.sleep(1)


def _stop(airflow: subprocess.Popen) -> None:
    """SIGTERM: bin/airflow-local then stops Airflow and the sandboxes itself. Not SIGINT: a job started in the
    background by a non-interactive shell (`.ci/run &`, nohup) ignores SIGINT, and a shell cannot trap a signal
    ignored on entry, so the Airflow it started outlived ui-check."""
    if airflow.poll() is None:
        os.killpg(airflow.pid, signal.SIGTERM)
        try:
            airflow.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(airflow.pid, signal.SIGKILL)
            airflow.wait()


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- the Sync health page after `make demo` -----------------------------------------------------------------

def newest_demo_store() -> Path:
    """The store of the newest `make demo` under .data/demo/; with none there, the demo runs now (2-4 minutes)."""
    stores = sorted(DEMO_FOLDER.glob("*/store/reports"))
    if not stores:
        print("no `make demo` under .data/demo/: running it first", flush=True)
        _prepare_airflow_home()
        if subprocess.run([sys.executable, "-m", "sandbox.demo"], cwd=PROJECT_ROOT, check=False).returncode:
            raise UiCheckFailed("`make demo` (python -m sandbox.demo) failed: see its output above")
        stores = sorted(DEMO_FOLDER.glob("*/store/reports"))
    if not stores:
        raise UiCheckFailed(f"the demo wrote no run reports under {DEMO_FOLDER}")
    return stores[-1].parent


def check_demo_sync_health(store: Path, out: Path) -> None:
    """The Sync health page over the demo's run reports, in an api-server of the same Airflow home (where the
    demo's `airflow dags test` runs are, so the page's run links open them) whose snapshot store is the demo's: the
    four groups with the figures of the demo's last target-group run, the panel fields of its last panel run and
    the eight activity kinds of its last writeback, as the report files say (read here as plain JSON)."""
    expected = DemoFigures.read(store)
    _prepare_airflow_home()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = out / "api-server-demo.log"
    print(f"Sync health over the demo's reports in {store}: airflow api-server on port {port}", flush=True)
    environment = os.environ | {"AIRFLOW_VAR_IMIS_THRIVE_STORE_URL": str(store), "AIRFLOW__API__BASE_URL": url,
                                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin"}
    with log_path.open("wb") as log:
        server = subprocess.Popen(["airflow", "api-server", "--port", str(port), "--host", "127.0.0.1"],
                                  cwd=PROJECT_ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not answers(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise UiCheckFailed(f"airflow api-server did not answer on {url}; last lines of {log_path}:\n"
                                    f"{_tail(log_path)}")
            time.sleep(1)
        username, password = login_from_environment()
        with sync_playwright() as playwright, _chromium(playwright) as browser:
            page = browser.new_page(viewport={"width": 1440, "height": 1400})
            page.set_default_timeout(UI_TIMEOUT_MS)
            try:
                log_in(page, url, username, password, lambda name: None)
                page.get_by_role("link", name="Sync health").first.click()
                frame = page.frame_locator("iframe[title='Sync health']")
                expected.expect_on(frame)
                page.wait_for_load_state("networkidle")
                path = out / "sync-health-after-demo.png"
                page.screenshot(path=str(path), full_page=True)
            except (AssertionError, PlaywrightError) as failed:
                page.screenshot(path=str(out / "failure.png"), full_page=True)
                first_line = str(failed).strip().splitlines()[0]
                raise UiCheckFailed(f"the demo's Sync health page: {first_line} (see failure.png)") from failed
        print(f"  the demo's Sync health page: {expected}; screenshot {path}", flush=True)
    finally:
        _stop(server)


@dataclass(frozen=True)
class DemoFigures:
    """What the last report of each DAG in a store says, read from the JSON files as they are."""

    groups: dict[str, dict[str, int]]
    panel: dict[str, int]
    written: dict[str, int]

    @classmethod
    def read(cls, store: Path) -> DemoFigures:
        last = {folder: _last_report(store / "reports" / folder)
                for folder in ("target_groups", "panel_fields", "activities")}
        groups = {outcome["group"]: {name: outcome["load"][name] for name in ("members", "added", "removed")}
                  for outcome in last["target_groups"]["target_groups"]}
        upsert = last["panel_fields"]["upsert"]
        panel = {"read": last["panel_fields"]["extract"]["rows"], "added": upsert["diff"]["added"],
                 "changed": upsert["diff"]["changed"], "sent": upsert["sent"]}
        written = last["activities"]["writeback"]["written"]
        if len(groups) != DEMO_GROUPS or len(written) != ACTIVITY_KINDS:
            raise UiCheckFailed(f"the demo's last reports hold {len(groups)} groups and {len(written)} activity "
                                f"kinds, not {DEMO_GROUPS} and {ACTIVITY_KINDS}: {store}")
        return cls(groups, panel, written)

    def expect_on(self, frame: FrameLocator) -> None:
        for name, figures in self.groups.items():
            row = frame.locator(f'tr[data-group="{name}"]')
            for figure, value in figures.items():
                expect(row.locator(f'[data-figure="{figure}"]')).to_have_text(str(value))
        for figure, value in self.panel.items():
            expect(frame.locator(f'#panel-fields [data-figure="{figure}"]')).to_have_text(str(value))
        expect(frame.locator("#activities tr[data-kind]")).to_have_count(ACTIVITY_KINDS)
        for kind, value in self.written.items():
            expect(frame.locator(f'#activities tr[data-kind="{kind}"] [data-figure="written"]')).to_have_text(
                str(value))

    def __str__(self) -> str:
        groups = "; ".join(f"{name} {f['members']} (+{f['added']} -{f['removed']})" for name, f in self.groups.items())
        return (f"{groups}; panel fields read {self.panel['read']}, sent {self.panel['sent']}; "
                f"{sum(self.written.values())} activities over {len(self.written)} kinds")


def _prepare_airflow_home() -> None:
    """What `make demo` does first: the Airflow home migrated, its connections and pool set (a clean clone has none)."""
    if subprocess.run([str(PROJECT_ROOT / "bin" / "prepare-airflow-home")], cwd=PROJECT_ROOT, check=False).returncode:
        raise UiCheckFailed("bin/prepare-airflow-home failed: see its output above")


def _last_report(folder: Path) -> dict:
    reports = sorted(folder.glob("*.json"), key=lambda path: json.loads(path.read_text())["finished_at"])
    if not reports:
        raise UiCheckFailed(f"no run report in {folder}")
    return json.loads(reports[-1].read_text())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the walk-through --------------------------------------------------------------------------------------

def walk_through(url: str, username: str, password: str, target_group: str, out: Path,
                 timeout_s: float) -> DagRun:
    with sync_playwright() as playwright, _chromium(playwright) as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(UI_TIMEOUT_MS)
        shot = _screenshots(page, out)
        try:
            log_in(page, url, username, password, shot)
            open_each_dag(page, url, shot)
            run_id = trigger_target_group(page, url, target_group, shot)
            with AirflowApiClient(url, username, password) as api:
                run = wait_for_run(api, run_id, target_group, timeout_s)
            show_run(page, url, run, shot)
            show_run_report(page, url, run, shot)
            show_sync_health(page, url, run, target_group, _token(url, username, password), shot)
            with AirflowApiClient(url, username, password) as api:
                dry_run = run_dry(api, target_group, timeout_s)
                show_dry_run_report(page, url, dry_run, shot)
                broken = run_broken_group(api, timeout_s)
            show_skipped_group(page, url, broken, _token(url, username, password), shot)
            test_connections(page, url, shot)
        except (AssertionError, PlaywrightError, AirflowApiError, UiCheckFailed) as failed:
            shot("failure")
            first_line = str(failed).strip().splitlines()[0]
            raise UiCheckFailed(f"{first_line} (at {page.url}; see failure.png)") from failed
    return run


@contextmanager
def _chromium(playwright) -> Iterator[Browser]:
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        raise UiCheckFailed(f"no Chromium at {executable}: `apt-get install chromium` (make ui-check does it)")
    # Chromium refuses to run as root inside its own sandbox; a root shell in a container needs this flag.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    browser = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
    try:
        yield browser
    finally:
        browser.close()


def _screenshots(page: Page, out: Path) -> Callable[[str], None]:
    counter = iter(range(1, 100))

    def shot(name: str) -> None:
        path = out / (f"{next(counter):02d}-{name}.png" if name != "failure" else "failure.png")
        page.screenshot(path=str(path), full_page=True)
        print(f"  screenshot {path.name}", flush=True)

    return shot


def log_in(page: Page, url: str, username: str, password: str, shot: Callable[[str], None]) -> None:
    """The SimpleAuthManager's sign-in form; success lands on the home page with its navigation."""
    page.goto(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    shot("login")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Dags", exact=True)).to_be_visible()
    page.wait_for_load_state("networkidle")
    shot("home")


def open_each_dag(page: Page, url: str, shot: Callable[[str], None]) -> None:
    """The DAG list shows the three DAGs; each DAG's page shows its tasks."""
    page.goto(f"{url}/dags")
    for dag_id in DAG_IDS:
        expect(page.get_by_role("link", name=dag_id, exact=True)).to_be_visible()
    page.wait_for_load_state("networkidle")
    shot("dags")
    for dag_id in DAG_IDS:
        page.goto(f"{url}/dags/{dag_id}")
        expect(page.get_by_role("link", name="Code", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Trigger Dag")).to_be_visible()
        page.wait_for_load_state("networkidle")
        shot(f"dag-{dag_id}")


def trigger_target_group(page: Page, url: str, target_group: str, shot: Callable[[str], None]) -> str:
    """The Trigger form: its *What to sync* section takes the group (the params come in sections: What to sync,
    How, Mass-change guard), Advanced Options a run id to follow; returns it."""
    run_id = f"ui_check__{datetime.now(UTC):%Y%m%dT%H%M%S}"
    page.goto(f"{url}/dags/{TARGET_GROUP_DAG}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Trigger Dag - {TARGET_GROUP_DAG}")).to_be_visible()
    for section in ("How", "Mass-change guard"):
        expect(dialog.get_by_role("button", name=section, exact=True)).to_be_visible()
    dialog.get_by_role("button", name="What to sync", exact=True).click()
    dialog.locator("input[name=element_target_group]").fill(target_group)
    shot("trigger-form-params")
    dialog.get_by_role("button", name="Advanced Options").click()
    dialog.locator("input[name=dagRunId]").fill(run_id)
    shot("trigger-form-run-id")
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    expect(dialog).to_be_hidden()
    return run_id


def wait_for_run(api: AirflowApiClient, run_id: str, target_group: str, timeout_s: float) -> DagRun:
    """The run the form created, read through the API: its conf carries the group, and it must succeed."""
    run = api.get_dag_run(TARGET_GROUP_DAG, run_id)
    if run.conf.get("target_group") != target_group:
        raise UiCheckFailed(f"run {run_id} was triggered with conf {run.conf}, not target_group={target_group!r}")
    run = api.wait_for_dag_run(TARGET_GROUP_DAG, run_id, timeout_s, poll_s=3,
                               on_state=lambda changed: print(f"  run {run_id}: {changed.state}", flush=True))
    if run.state != "success":
        raise UiCheckFailed(f"run {run_id} of {TARGET_GROUP_DAG} ended {run.state}: see its task logs in the UI")
    return run


def show_run(page: Page, url: str, run: DagRun, shot: Callable[[str], None]) -> None:
    """The run's page in the UI says success too (the screenshot a reviewer looks at)."""
    page.goto(f"{url}/dags/{run.dag_id}/runs/{run.run_id}")
    expect(page.get_by_text(run.run_id).first).to_be_visible()
    expect(page.get_by_text("success", exact=False).first).to_be_visible()
    page.wait_for_load_state("networkidle")
    shot("run-success")


def show_run_report(page: Page, url: str, run: DagRun, shot: Callable[[str], None]) -> None:
    """The run's *Report* tab (the Sync health plugin's view on a DAG run) shows the run's readable report."""
    page.goto(f"{url}/dags/{run.dag_id}/runs/{run.run_id}")
    page.get_by_role("link", name="Report", exact=True).click()
    report = page.frame_locator("iframe[title='Report']")
    expect(report.get_by_role("heading", name=f"Target-group sync {run.run_id}")).to_be_visible()
    expect(report.get_by_role("heading", name="Target groups")).to_be_visible()
    page.wait_for_load_state("networkidle")
    shot("run-report")


def run_dry(api: AirflowApiClient, target_group: str, timeout_s: float) -> DagRun:
    """A dry run of the same group, triggered through the API as `bin/refresh-target-group --dry-run` does."""
    run_id = f"ui_check_dry_run__{datetime.now(UTC):%Y%m%dT%H%M%S}"
    api.trigger_dag_run(TARGET_GROUP_DAG, {"target_group": target_group, "dry_run": True}, run_id=run_id)
    return wait_for_run(api, run_id, target_group, timeout_s)


def show_dry_run_report(page: Page, url: str, run: DagRun, shot: Callable[[str], None]) -> None:
    """A dry run's *Report* tab says so before any figure (the DRY RUN banner) and shows what a real run would
    add and remove, not 0/0."""
    page.goto(f"{url}/dags/{run.dag_id}/runs/{run.run_id}")
    page.get_by_role("link", name="Report", exact=True).click()
    report = page.frame_locator("iframe[title='Report']")
    expect(report.get_by_role("heading", name=f"Target-group sync {run.run_id}")).to_be_visible()
    expect(report.get_by_text("DRY RUN", exact=True).first).to_be_visible()
    expect(report.get_by_text("would add", exact=True).first).to_be_visible()
    page.wait_for_load_state("networkidle")
    shot("dry-run-report")


def run_broken_group(api: AirflowApiClient, timeout_s: float) -> DagRun:
    """A run of a list that breaks a requirement (the sandbox's `--broken-lists`: not shared with everyone). The
    run fails (finish_run says which list and why); its mapped tasks for the list end skipped, not failed."""
    run_id = f"ui_check_broken_list__{datetime.now(UTC):%Y%m%dT%H%M%S}"
    api.trigger_dag_run(TARGET_GROUP_DAG, {"target_group": BROKEN_GROUP}, run_id=run_id)
    run = api.wait_for_dag_run(TARGET_GROUP_DAG, run_id, timeout_s, poll_s=3,
                               on_state=lambda changed: print(f"  run {run_id}: {changed.state}", flush=True))
    if run.state != "failed":
        raise UiCheckFailed(f"run {run_id} of the broken list {BROKEN_GROUP!r} ended {run.state}, not failed")
    return run


def show_skipped_group(page: Page, url: str, run: DagRun, token: str, shot: Callable[[str], None]) -> None:
    """The broken list's mapped tasks are skipped in the grid (the task's page says so), and the plan's log holds
    the reason as one WARNING line."""
    instances = f"{url}/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances"
    for task_id in ("plan_target_group", "load_target_group"):
        state = _get_json(f"{instances}/{task_id}/0", token)["state"]
        if state != "skipped":
            raise UiCheckFailed(f"{task_id} of the broken list {BROKEN_GROUP!r} ended {state}, not skipped")
    log = _get_json(f"{instances}/plan_target_group/logs/1?map_index=0", token)["content"]
    warnings = [line for line in log if isinstance(line, dict) and line.get("level") == "warning"]
    if not any("not shared" in str(line.get("event", "")).lower() for line in warnings):
        raise UiCheckFailed(f"the skipped plan's log has no WARNING naming the reason: {warnings}")
    page.goto(f"{url}/dags/{run.dag_id}/runs/{run.run_id}/tasks/plan_target_group/mapped/0")
    expect(page.get_by_text("skipped", exact=False).first).to_be_visible()
    page.wait_for_load_state("networkidle")
    shot("skipped-group")
    page.goto(f"{url}/dags/{run.dag_id}/runs/{run.run_id}")
    page.wait_for_load_state("networkidle")
    shot("skipped-group-grid")


def test_connections(page: Page, url: str, shot: Callable[[str], None]) -> None:
    """*Admin → Connections*: each connection's Test button runs its hook's test_connection(), which logs in and
    reads one row (iMIS) or one grid row (Thrive); the API's answer must say it passed."""
    page.goto(f"{url}/connections")
    for conn_id in CONNECTIONS_TESTED:
        row = page.locator("tr", has_text=conn_id)
        with page.expect_response(lambda reply: reply.url.endswith("/api/v2/connections/test")) as replied:
            row.get_by_role("button", name="Test Connection").click()
        reply = replied.value
        answer = reply.json() if reply.ok else {"status": False, "message": reply.text()}
        if not answer.get("status"):
            raise UiCheckFailed(f"Test on {conn_id} answered {reply.status}: {answer.get('message') or answer}")
        print(f"  Test {conn_id}: {answer['message']}", flush=True)
    page.wait_for_load_state("networkidle")
    shot("connections-tested")


def show_sync_health(page: Page, url: str, run: DagRun, target_group: str, token: str,
                     shot: Callable[[str], None]) -> None:
    """The *Sync health* page in the navigation: each group the JSON endpoint lists, with its last run's members,
    additions and removals; the triggered group's last run is this run, with the figures its load task returned.
    Its *run* link opens the run's page in the surrounding UI."""
    health = _get_json(f"{url}/sync-health/api/health", token)
    groups = {group["group"]: group for group in health["target_groups"]}
    if target_group not in groups:
        raise UiCheckFailed(f"the Sync health JSON lists no group {target_group!r} after its run: {sorted(groups)}")
    loaded = _get_json(f"{url}/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/load_target_group/"
                       "xcomEntries/return_value?map_index=0&deserialize=true", token)["value"]
    mine = groups[target_group]
    figures = {name: mine[name] for name in ("members", "added", "removed")}
    expected = {name: loaded[name] for name in figures}
    if mine["last_run"]["run_id"] != run.run_id or figures != expected:
        raise UiCheckFailed(f"Sync health shows {target_group!r} from run {mine['last_run']['run_id']} with "
                            f"{figures}; run {run.run_id} loaded {expected}")
    page.goto(url)
    page.get_by_role("link", name="Sync health").first.click()
    frame = page.frame_locator("iframe[title='Sync health']")
    for name, group in groups.items():
        _expect_group_row(frame, name, group)
    page.wait_for_load_state("networkidle")
    shot("sync-health")
    frame.locator(f'tr[data-group="{target_group}"] a.airflow').click()
    expect(page).to_have_url(re.compile(rf"/dags/{run.dag_id}/runs/"))
    print(f"  Sync health: {len(groups)} group(s) shown with their last run's figures: "
          + "; ".join(f"{name} {group['members']} members (+{group['added']} -{group['removed']})"
                      for name, group in groups.items()), flush=True)


def _expect_group_row(frame: FrameLocator, name: str, group: dict) -> None:
    row = frame.locator(f'tr[data-group="{name}"]')
    expect(row).to_be_visible()
    members = "—" if group["members"] is None else str(group["members"])
    expect(row.locator('[data-figure="members"]')).to_have_text(members)
    for figure in ("added", "removed"):  # a dry run's cell adds "(would add N)"
        expect(row.locator(f'[data-figure="{figure}"]')).to_have_text(re.compile(rf"^{group[figure]}(\D|$)"))


def _token(url: str, username: str, password: str) -> str:
    reply = httpx.post(f"{url}/auth/token", json={"username": username, "password": password}, timeout=30)
    if reply.status_code >= 400:
        raise UiCheckFailed(f"POST {url}/auth/token answered {reply.status_code}")
    return reply.json()["access_token"]


def _get_json(address: str, token: str) -> dict:
    reply = httpx.get(address, headers={"Authorization": f"Bearer {token}"}, timeout=SYNC_HEALTH_TIMEOUT_S)
    if reply.status_code != 200:
        raise UiCheckFailed(f"GET {address} answered {reply.status_code}: {reply.text[:300]}")
    return reply.json()


if __name__ == "__main__":
    sys.exit(main())
