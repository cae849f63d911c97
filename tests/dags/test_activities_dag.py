"""`thrive_to_imis_activities` with dag.test() against both sandboxes: per interval, every event once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest

from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback.activities import REPORT_PREFIX
from sandbox.faults import FaultConfig
from sandbox.thrive_engagement import EngagementRates, GeneratedEngagement, generate_engagement
from sandbox.thrive_store import UploadRow
from tests.dags.conftest import PROJECT_ROOT, Sandboxes, asset_events
from tests.integration.engagement_expectations import GRID_KINDS, engagement_sources, expected_events, unserved

pytestmark = [pytest.mark.dags, pytest.mark.integration]
DAG_ID = "thrive_to_imis_activities"
INTEREST = "Newsletter"
# dag.test(logical_date=h) runs the interval [h - 1 h, h); two days ago, inside the 100 days every documented
# grid holds (the date itself does not matter here).
FIRST_END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
ALL_KINDS = [kind.value for kind in EngagementKind]
# The kinds read from Thrive's grids (GRID_KINDS) are compared with the generator's events, as the grids the
# emulator serves let them be read; Resubscribe and Bad Email are derived (test_activity_writeback.py covers them).
RATES = EngagementRates(unsubscribe_per_send=0.05, resubscribe_per_unsubscribe=0.5, bad_email_per_send=0.03,
                        landing_submit_per_click=0.3)


def engage(sandboxes: Sandboxes, start: datetime, end: datetime, volume: int) -> tuple[GeneratedEngagement, set[str]]:
    """Forty iMIS contacts and one Thrive-only contact subscribed, then mailed between `start` and `end`."""
    thrive = sandboxes.thrive
    known = {str(contact_id) for contact_id in sandboxes.imis.seed.contacts["ID"][:40]}
    with thrive._lock:
        interest = thrive.store.interest(INTEREST)
        for contact_id in [*sorted(known), "9999001"]:
            thrive.store.upsert(UploadRow(f"m{contact_id}@example.org", contact_id, {}), [interest])
        generated = generate_engagement(thrive.store.subscribed_recipients([interest]), start, end, volume, 5, RATES,
                                        first_mailing_id=thrive.store.next_mailing_id())
        thrive.store.apply_engagement(generated)
    return generated, known


def expected_keys(sandboxes: Sandboxes, generated: GeneratedEngagement, known: set[str], start: datetime,
                  end: datetime, kinds: tuple[EngagementKind, ...] = GRID_KINDS) -> Counter[tuple[str, str, str]]:
    """(kind, contact, UTC second) of each event of a known contact in `[start, end)`."""
    expected: Counter[tuple[str, str, str]] = Counter()
    sources = engagement_sources(sandboxes.thrive, start)
    for kind, rows in expected_events(generated, known, start, end, sources, kinds).items():
        for contact, moment in zip(rows["user_id"], rows["occurred_at"], strict=True):
            expected[(kind.value, contact, moment.strftime("%Y-%m-%dT%H:%M:%S"))] += 1
    return expected


def written(sandboxes: Sandboxes, kinds: tuple[EngagementKind, ...] = GRID_KINDS) -> Counter[tuple[str, str, str]]:
    """The same tuples from the iMIS sandbox, local time converted back to UTC."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(sandboxes.imis.config.timezone)
    found: Counter[tuple[str, str, str]] = Counter()
    for activity in sandboxes.imis.activities():
        if activity["Properties"]["SOURCE_CODE"] not in {kind.value for kind in kinds}:
            continue
        local = datetime.fromisoformat(activity["Properties"]["TRANSACTION_DATE"]).replace(tzinfo=zone)
        found[(activity["Properties"]["SOURCE_CODE"], activity["PartyId"],
               local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))] += 1
    return found


class Run(NamedTuple):
    state: str
    interval: tuple[datetime, datetime]
    report: dict | None  # the run report finish_run stored
    run_id: str


def run_interval(dagbag, sandboxes: Sandboxes, end: datetime, **conf) -> Run:
    """One dag.test() run for the hour ending at `end`.

    The conf is always complete: params given to one dag.test() stay on the session's DAG object."""
    run = dagbag.get_dag(DAG_ID).test(logical_date=end, run_conf={"kinds": ALL_KINDS} | conf)
    report = SnapshotStore(sandboxes.store_url).read_json(f"{REPORT_PREFIX}/{snapshot_name(run.run_id)}")
    return Run(str(run.state), (run.data_interval_start, run.data_interval_end), report, run.run_id)


def assert_finished(sandboxes: Sandboxes, run: Run) -> None:
    """A run of every kind succeeds where the emulator serves them all; elsewhere it fails after writing the
    others, and its report names exactly the kinds not served (never an empty success)."""
    missing = unserved(engagement_sources(sandboxes.thrive, run.interval[0]))
    assert sorted(run.report["writeback"]["failed_kinds"]) == missing
    assert run.state == ("failed" if missing else "success")


def test_the_dag_follows_the_project_policies(dagbag):
    from airflow.sdk import CronDataIntervalTimetable

    dag = dagbag.get_dag(DAG_ID)
    assert not dagbag.import_errors
    assert dag.timetable == CronDataIntervalTimetable("0 * * * *", timezone="UTC")  # a real data interval
    assert not dag.catchup and dag.max_active_runs == 1
    assert {"imis", "thrive", "writeback"} <= set(dag.tags)
    assert dag.default_args["owner"] == "data-team" and dag.default_args["retries"] >= 1
    assert dag.task_dict["write_activities"].pool == "imis_api"
    assert dag.params["kinds"] == ALL_KINDS


def test_the_kinds_param_offers_exactly_the_defined_kinds(dagbag):
    """The DAG, the activity map and the docs name the kinds of `EngagementKind`, no hand copy of them."""
    from include.imis_thrive.writeback.activity_map import KIND_LAYOUT

    dag = dagbag.get_dag(DAG_ID)
    schema = dag.params.get_param("kinds").schema
    assert schema["items"]["enum"] == ALL_KINDS == dag.params["kinds"]
    assert set(KIND_LAYOUT) == set(EngagementKind)
    doc = " ".join(dag.doc_md.split())
    assert [kind for kind in ALL_KINDS if kind not in doc] == []


def test_the_backfill_cli_accepts_three_days(dagbag):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()  # what the DAG processor does, so the CLI finds the DAG
    sync_bag_to_db(dagbag, "dags-folder", None)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", DAG_ID, "--from-date",
         "2026-03-02T00:00:00+00:00", "--to-date", "2026-03-04T23:00:00+00:00", "--dry-run"],
        capture_output=True, text=True, env=os.environ.copy(), check=True)
    runs = [line for line in result.stdout.splitlines() if line.startswith("| 2026-")]
    assert len(runs) == 72
    assert runs[0].startswith("| 2026-03-02 00:00:00+00:00") and runs[-1].startswith("| 2026-03-04 23:00:00+00:00")


def test_a_run_writes_its_interval_and_a_second_run_writes_nothing(dagbag, sandboxes):
    generated, known = engage(sandboxes, FIRST_END - timedelta(hours=2), FIRST_END + timedelta(hours=1), 600)
    run = run_interval(dagbag, sandboxes, FIRST_END)
    assert_finished(sandboxes, run)
    start, end = run.interval
    assert (start, end) == (FIRST_END - timedelta(hours=1), FIRST_END)
    expected = expected_keys(sandboxes, generated, known, start, end)
    assert written(sandboxes) == expected and sum(expected.values()) > 50
    [event] = asset_events(run.run_id).values()  # the activities asset, with the run's figures
    assert event["added"] == sum(run.report["writeback"]["written"].values()) == len(sandboxes.imis.activities())
    again = run_interval(dagbag, sandboxes, FIRST_END)
    assert_finished(sandboxes, again)
    assert written(sandboxes) == expected
    assert asset_events(again.run_id) == {}  # it wrote nothing, so nothing downstream may fire


def test_an_hour_without_engagement_writes_nothing_and_emits_no_asset_event(dagbag, sandboxes):
    run = run_interval(dagbag, sandboxes, FIRST_END - timedelta(days=1))
    assert_finished(sandboxes, run)
    assert sum(run.report["writeback"]["read"].values()) == 0 and written(sandboxes) == Counter()
    assert asset_events(run.run_id) == {}


def test_three_consecutive_intervals_write_exactly_their_events(dagbag, sandboxes):
    generated, known = engage(sandboxes, FIRST_END - timedelta(hours=2), FIRST_END + timedelta(hours=3), 600)
    for hour in range(3):
        assert_finished(sandboxes, run_interval(dagbag, sandboxes, FIRST_END + timedelta(hours=hour)))
    one_hour = timedelta(hours=1)
    expected = expected_keys(sandboxes, generated, known, FIRST_END - one_hour, FIRST_END + 2 * one_hour)
    assert written(sandboxes) == expected
    assert expected_keys(sandboxes, generated, known, FIRST_END - 2 * one_hour, FIRST_END - one_hour)


def test_the_kinds_param_writes_only_those_kinds(dagbag, sandboxes):
    end = FIRST_END + timedelta(days=1)
    generated, known = engage(sandboxes, end - timedelta(hours=1), end, 400)
    assert run_interval(dagbag, sandboxes, end, kinds=["Link Click", "Mail Open"]).state == "success"
    only = (EngagementKind.LINK_CLICK, EngagementKind.MAIL_OPEN)
    assert written(sandboxes, tuple(EngagementKind)) == expected_keys(sandboxes, generated, known,
                                                                      end - timedelta(hours=1), end, only)


def test_faults_during_writes_still_end_with_one_activity_per_event(dagbag, sandboxes):
    generated, known = engage(sandboxes, FIRST_END - timedelta(hours=1), FIRST_END, 400)
    sandboxes.imis.faults.configure(FaultConfig(rate_429=0.03, rate_500=0.03, rate_503=0.03, drop_rate=0.03,
                                                retry_after_s=0, path_prefix="/api/activity", seed=5))
    assert_finished(sandboxes, run_interval(dagbag, sandboxes, FIRST_END))
    assert written(sandboxes) == expected_keys(sandboxes, generated, known, FIRST_END - timedelta(hours=1), FIRST_END)
    assert {"500", "drop"} <= set(sandboxes.imis.faults.injected)


KILLED_RUN = """
import sys
from datetime import datetime
sys.path.insert(0, sys.argv[1])
from airflow.models import DagBag
DagBag(dag_folder=sys.argv[1] + "/dags").get_dag(sys.argv[2]).test(logical_date=datetime.fromisoformat(sys.argv[3]))
"""


def test_a_run_killed_halfway_and_run_again_has_no_gap_and_no_duplicate(dagbag, sandboxes):
    generated, known = engage(sandboxes, FIRST_END - timedelta(hours=1), FIRST_END, 400)
    expected = expected_keys(sandboxes, generated, known, FIRST_END - timedelta(hours=1), FIRST_END)
    sandboxes.imis.faults.configure(FaultConfig(latency_ms=20, path_prefix="/api/activity"))
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(PROJECT_ROOT), DAG_ID, FIRST_END.isoformat()],
                             env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while sum(written(sandboxes).values()) < sum(expected.values()) // 2:
        assert child.poll() is None, "the run ended before it could be killed halfway"
        assert time.monotonic() < deadline, "the run did not get halfway in time"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 0 < sum(written(sandboxes).values()) < sum(expected.values())
    sandboxes.imis.faults.configure(FaultConfig())
    assert_finished(sandboxes, run_interval(dagbag, sandboxes, FIRST_END))
    assert written(sandboxes) == expected
