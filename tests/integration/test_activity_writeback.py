"""Activity writeback against both sandboxes on loopback: once per event through re-runs, kills, faults and an
event iMIS can never take."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pandas as pd
import pytest

from include.imis_thrive.http_retry import RetryPolicy
from include.imis_thrive.imis.client import ImisClient, ImisConfig
from include.imis_thrive.imis.tokens import MemoryTokenStore
from include.imis_thrive.sync.bad_emails import record_bad_emails
from include.imis_thrive.sync.lease import LeaseTerms
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.thrive.client import ThriveClient, ThriveConfig
from include.imis_thrive.thrive.engagement import FLAG_OF_KIND, flagged_events, iter_engagement
from include.imis_thrive.thrive.errors import ThriveFault
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback.activities import WritebackIncomplete, finish_run, write_activities
from include.imis_thrive.writeback.activity_map import plan_activity
from include.imis_thrive.writeback.results import ActivityWriteback
from sandbox.__main__ import build_sandboxes
from sandbox.airflow_settings import load_settings
from sandbox.faults import FaultConfig
from sandbox.imis_app import ImisSandbox
from sandbox.server import SandboxServer
from sandbox.thrive_app import ThriveSandbox
from sandbox.thrive_engagement import EngagementRates, GeneratedEngagement, generate_engagement
from sandbox.thrive_store import UploadRow
from tests.integration.engagement_expectations import (
    GRID_KINDS,
    Source,
    engagement_sources,
    expected_events,
    unserved,
)

pytestmark = pytest.mark.integration
PROJECT_ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(max_attempts=8, base_delay=0.005, max_delay=0.02, max_retry_after=0.02)
# The interval's lease of a writer process these tests kill, short: it is taken over ~3 s after its last renewal,
# yet a loaded CI machine that delays a renewal thread a second or two does not lose it (ttl 0.8 s did).
FAST_LEASE = {"ttl": 3.0, "renew_every": 0.2, "wait": 60, "grace": 0.3}
# An in-process writer is never killed, so its lease need not expire soon; a long one only guards against load.
IN_PROCESS_LEASE = {"ttl": 30.0, "renew_every": 0.5, "wait": 60, "grace": 0.3}
ZONE = "America/New_York"
INTEREST = "Newsletter"
UNKNOWN_TO_IMIS = ("9999001", "9999002")
# Rich in the rare kinds, so a few hundred events hold every one of the eight.
RATES = EngagementRates(open_per_send=0.5, click_per_open=0.5, unsubscribe_per_send=0.05,
                        resubscribe_per_unsubscribe=0.5, bad_email_per_send=0.03, landing_submit_per_click=0.3,
                        web_visit_per_click=1.0)
# What the activity's detail field (UF_3) must hold, per kind, from the event's own data.
DETAIL = {EngagementKind.LINK_CLICK: "url", EngagementKind.WEB_PAGE_VISIT: "url",
          EngagementKind.LANDING_PAGE_SUBMIT: "page", EngagementKind.BAD_EMAIL: "page"}
DST_DAY = datetime(2026, 3, 8, 6, tzinfo=UTC)  # 01:00 EST; an hour later the clocks jump to 03:00 EDT
# Where the date does not matter: two days ago, on the hour (inside the 100 days every documented grid holds).
RECENT = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)


class LoseAnswers:
    """Lets every `every`-th activity POST reach iMIS, then answers 504 as a gateway whose backend timed out.

    `lost` counts the ones iMIS stored (a sandbox fault may have refused it first)."""

    def __init__(self, app, every: int | None = None) -> None:
        self.app, self.every, self.posts, self.lost = app, every, 0, 0
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].lower().endswith("/api/activity"):
            with self._lock:
                self.posts += 1
                lose = self.every is not None and self.posts % self.every == 0
            if lose:
                async def swallow(message) -> None:
                    if message["type"] == "http.response.start" and message["status"] == 201:
                        with self._lock:
                            self.lost += 1  # stored in iMIS, yet the client will never hear of it

                await self.app(scope, receive, swallow)
                await send({"type": "http.response.start", "status": 504, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


@dataclass
class World:
    imis_sandbox: ImisSandbox
    thrive_sandbox: ThriveSandbox
    imis: ImisClient
    thrive: ThriveClient
    store: SnapshotStore
    imis_url: str
    thrive_url: str
    lose_answers: LoseAnswers
    known: list[str]

    def engage(self, start: datetime, end: datetime, volume: int, seed: int = 1) -> GeneratedEngagement:
        """Mail the interest's members between `start` and `end`; the generated events are the ground truth."""
        store = self.thrive_sandbox.store
        with self.thrive_sandbox._lock:
            generated = generate_engagement(store.subscribed_recipients([store.interest(INTEREST)]), start, end,
                                            volume, seed, RATES, first_mailing_id=store.next_mailing_id())
            store.apply_engagement(generated)
        return generated

    def write(self, start: datetime, end: datetime, **options) -> ActivityWriteback:
        options.setdefault("lease", LeaseTerms(**{name: timedelta(seconds=seconds)
                                                  for name, seconds in IN_PROCESS_LEASE.items()}))
        return write_activities(self.imis, self.thrive, self.store, start, end, **options)

    def writer_process(self, start: datetime, end: datetime) -> subprocess.Popen:
        """`write_activities` of `[start, end)` in a process of its own (the report's JSON on its stdout)."""
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, self.imis_url, self.thrive_url, self.store.base, start.isoformat(),
             end.isoformat(), json.dumps(FAST_LEASE)],
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def write_hourly(self, start: datetime, end: datetime) -> list[ActivityWriteback]:
        hours = int((end - start) / timedelta(hours=1))
        return [self.write(start + timedelta(hours=h), start + timedelta(hours=h + 1)) for h in range(hours)]

    def activities(self, kinds: Iterable[EngagementKind] = GRID_KINDS) -> Counter[tuple]:
        """What iMIS holds of `kinds`, one tuple per activity: (kind, contact, local time, mailing, detail).

        By default the six kinds read from Thrive's grids, whose events the generator's ground truth dates; the
        two derived kinds have tests of their own."""
        names = {kind.value for kind in kinds}
        return Counter((a["Properties"]["SOURCE_CODE"], a["PartyId"], a["Properties"]["TRANSACTION_DATE"],
                        a["Properties"].get("UF_2"), a["Properties"].get("UF_3"))
                       for a in self.imis_sandbox.activities()
                       if a["Properties"]["ACTIVITY_TYPE"] == "HLOGIC" and a["Properties"]["SOURCE_CODE"] in names)

    def sources(self, start: datetime) -> dict[EngagementKind, Source]:
        return engagement_sources(self.thrive_sandbox, start)

    def served(self, start: datetime) -> list[EngagementKind]:
        """The kinds this emulator lets a window from `start` read; a run of the others reports them failed."""
        return [kind for kind in EngagementKind if self.sources(start).get(kind) is not Source.UNSERVED]

    def expected(self, generated: GeneratedEngagement, start: datetime, end: datetime) -> Counter[tuple]:
        """The same tuples computed from the generated events of known contacts in `[start, end)`, as the
        grids this emulator serves let the writeback read them (`engagement_expectations`)."""
        expected: Counter[tuple] = Counter()
        for kind, rows in expected_events(generated, self.known, start, end, self.sources(start)).items():
            local = rows["occurred_at"].dt.tz_convert(ZONE).dt.strftime("%Y-%m-%dT%H:%M:%S")
            mailing = [None if pd.isna(m) else str(m) for m in rows["mailing_instance_id"].fillna(rows["mailing_id"])]
            detail = rows[DETAIL[kind]] if kind in DETAIL else [None] * len(rows)
            for contact, when, instance, text in zip(rows["user_id"], local, mailing, detail, strict=True):
                expected[(kind.value, contact, when, instance, text)] += 1
        return expected


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    with serve_world(tmp_path) as served:
        yield served


@contextmanager
def serve_world(tmp_path: Path, **thrive_options) -> Iterator[World]:
    imis_sandbox, thrive_sandbox = build_sandboxes(load_settings(), contacts=200, seed=3, broken_lists=False,
                                                   thrive_options=thrive_options)
    known = [str(contact_id) for contact_id in imis_sandbox.seed.contacts["ID"][:40]]
    with thrive_sandbox._lock:
        interest = thrive_sandbox.store.interest(INTEREST)
        for contact_id in [*known, *UNKNOWN_TO_IMIS]:
            thrive_sandbox.store.upsert(UploadRow(f"m{contact_id}@example.org", contact_id, {}), [interest])
        thrive_sandbox.store.upsert(UploadRow("no-id@example.org", None, {}), [interest])
    lose_answers = LoseAnswers(imis_sandbox.app)
    with SandboxServer(lose_answers) as imis_server, SandboxServer(thrive_sandbox.app) as thrive_server:
        thrive_url = f"{thrive_server.url}{thrive_sandbox.config.endpoint_path}"
        imis = ImisClient(ImisConfig(base_url=imis_server.url, username="hl_integration",
                                     password="sandbox-imis-password", timezone=ZONE, retry=FAST),
                          token_store=MemoryTokenStore())
        thrive = ThriveClient(ThriveConfig(endpoint=thrive_url, brand_id="7001", brand_name="Sandbox Association",
                                           user="hl_api_user", password="sandbox-thrive-password", retry=FAST))
        yield World(imis_sandbox, thrive_sandbox, imis, thrive, SnapshotStore(str(tmp_path / "store")),
                    imis_server.url, thrive_url, lose_answers, known)
        imis.close()
        thrive.close()


def test_every_kind_lands_once_with_contact_local_time_and_fields(tmp_path):
    # Each event at its own local time across the spring-forward night: the per-event grids, and, this date being
    # more than 100 days ago, the `_all` archive for Mail Sent. Only an emulator serving extended grids has both.
    with serve_world(tmp_path, grids="extended") as world:
        assert set(world.sources(DST_DAY).values()) == {Source.GRID}
        _every_kind_lands_once_with_contact_local_time_and_fields(world)


def _every_kind_lands_once_with_contact_local_time_and_fields(world: World) -> None:
    end = DST_DAY + timedelta(hours=2)
    generated = world.engage(DST_DAY, end, volume=400)
    reports = world.write_hourly(DST_DAY, end)
    assert world.activities() == world.expected(generated, DST_DAY, end)
    kinds = {kind for kind, *_ in world.activities()}
    assert kinds == {kind.value for kind in GRID_KINDS}
    local_hours = {when[11:13] for _, _, when, _, _ in world.activities()}
    assert local_hours == {"01", "03"}  # 02:xx does not exist on the spring-forward night
    unknown = [report.unknown_contacts for report in reports]
    assert {contact for u in unknown for contact in u.ids} == set(UNKNOWN_TO_IMIS)
    assert sum(sum(report.no_contact_id.values()) for report in reports) > 0
    written = sum(sum(report.written.values()) for report in reports)
    assert written == sum(world.activities(EngagementKind).values())


def test_a_second_run_of_an_interval_writes_nothing(world):
    end = RECENT + timedelta(hours=1)
    world.engage(RECENT, end, volume=300)
    first = world.write(RECENT, end)
    assert sorted(first.failed_kinds) == unserved(world.sources(RECENT))
    before = world.imis_sandbox.activities()
    second = world.write(RECENT, end)
    assert sum(second.written.values()) == 0
    # Read again, the events from per-mailing flags included (the same window derives them again), and recognised.
    assert second.already_written == {k: v for k, v in first.written.items() if v}
    assert world.imis_sandbox.activities() == before


def test_a_three_day_backfill_writes_exactly_those_days_and_again_nothing(world):
    day = timedelta(days=1)
    first_day = RECENT.replace(hour=0) - 5 * day
    generated = world.engage(first_day - day, first_day + 4 * day, volume=600)
    reports = world.write_hourly(first_day, first_day + 3 * day)
    expected = world.expected(generated, first_day, first_day + 3 * day)
    assert world.activities() == expected
    assert {tuple(sorted(report.failed_kinds)) for report in reports} == {tuple(unserved(world.sources(first_day)))}
    assert sum(world.expected(generated, first_day - day, first_day).values()) > 0  # there was more to take
    again = world.write_hourly(first_day, first_day + 3 * day)
    assert sum(sum(report.written.values()) for report in again) == 0
    assert world.activities() == expected


def test_faults_during_writes_still_end_with_one_activity_per_event(world):
    end = RECENT + timedelta(hours=1)
    generated = world.engage(RECENT, end, volume=400)
    world.imis_sandbox.faults.configure(FaultConfig(rate_429=0.04, rate_500=0.04, rate_503=0.04, drop_rate=0.04,
                                                    retry_after_s=0, seed=11))
    world.lose_answers.every = 9  # and some posts land but their answer is lost
    report = world.write(RECENT, end)
    assert world.activities() == world.expected(generated, RECENT, end)
    assert sorted(report.failed_kinds) == unserved(world.sources(RECENT))
    assert set(world.imis_sandbox.faults.injected) == {"429", "500", "503", "drop"}
    assert world.lose_answers.lost > 0
    assert sum(report.found_in_imis.values()) == world.lose_answers.lost
    assert report.checked_in_imis > 0


CHILD = """
import json, sys
from datetime import datetime, timedelta
from include.imis_thrive.imis.client import ImisClient, ImisConfig
from include.imis_thrive.imis.tokens import FileTokenStore
from include.imis_thrive.sync.lease import LeaseTerms
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.thrive.client import ThriveClient, ThriveConfig
from include.imis_thrive.writeback.activities import write_activities

imis_url, thrive_url, store, start, end, lease = sys.argv[1:]
terms = LeaseTerms(**{name: timedelta(seconds=value) for name, value in json.loads(lease).items()})
imis = ImisClient(ImisConfig(base_url=imis_url, username="hl_integration", password="sandbox-imis-password",
                             timezone="America/New_York", max_concurrency=2),
                  token_store=FileTokenStore(store + "-tokens"))  # one token for the writers of one machine
thrive = ThriveClient(ThriveConfig(endpoint=thrive_url, brand_id="7001", brand_name="Sandbox Association",
                                   user="hl_api_user", password="sandbox-thrive-password"))
report = write_activities(imis, thrive, SnapshotStore(store), datetime.fromisoformat(start),
                          datetime.fromisoformat(end), batch_size=25, lease=terms)
print(json.dumps(report.to_xcom()))
"""


def test_a_run_killed_halfway_then_rerun_leaves_no_gap_and_no_duplicate(world):
    end = RECENT + timedelta(hours=1)
    generated = world.engage(RECENT, end, volume=400)
    expected = world.expected(generated, RECENT, end)
    world.imis_sandbox.faults.configure(FaultConfig(latency_ms=5))
    child = world.writer_process(RECENT, end)
    deadline = time.monotonic() + 60
    while len(world.imis_sandbox.activities()) < sum(expected.values()) // 2:
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the child run did not get halfway in time"
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    halfway = sum(world.activities().values())
    assert 0 < halfway < sum(expected.values())
    world.imis_sandbox.faults.configure(FaultConfig())
    report = world.write(RECENT, end)
    assert world.activities() == expected
    grid_kinds = {kind.value for kind in GRID_KINDS}
    resolved = sum(count for kind, count in [*report.already_written.items(), *report.found_in_imis.items()]
                   if kind in grid_kinds)
    assert resolved == halfway
    assert sum(report.written[kind] for kind in grid_kinds) == sum(expected.values()) - halfway


def _finished(child: subprocess.Popen) -> ActivityWriteback:
    """The report a writer process printed; its stderr (the log) in the failure message otherwise."""
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err.decode()[-3000:]
    return ActivityWriteback.from_xcom(json.loads(out.decode().strip().splitlines()[-1]))


def _keys_once(world: World) -> bool:
    keys = Counter(a["Properties"]["UF_1"] for a in world.imis_sandbox.activities())
    return bool(keys) and set(keys.values()) == {1}


def test_two_writers_of_one_interval_at_once_post_each_event_once(world):
    # An orphaned attempt and its retry, both alive: without the lease both read an empty ledger and post it all.
    end = RECENT + timedelta(hours=1)
    generated = world.engage(RECENT, end, volume=400)
    world.imis_sandbox.faults.configure(FaultConfig(latency_ms=10))  # posting takes seconds: the two overlap
    writers = [world.writer_process(RECENT, end), world.writer_process(RECENT, end)]
    reports = [_finished(writer) for writer in writers]
    assert world.activities() == world.expected(generated, RECENT, end)
    assert _keys_once(world)
    grid_kinds = {kind.value for kind in GRID_KINDS}
    written = [sum(report.written[kind] for kind in grid_kinds) for report in reports]
    assert sorted(written) == [0, sum(world.expected(generated, RECENT, end).values())]  # one wrote, one waited


def test_a_writer_waits_for_the_interval_held_by_another_then_takes_over_when_it_is_killed(world):
    end = RECENT + timedelta(hours=1)
    generated = world.engage(RECENT, end, volume=400)
    expected = world.expected(generated, RECENT, end)
    world.imis_sandbox.faults.configure(FaultConfig(latency_ms=5))
    first = world.writer_process(RECENT, end)
    deadline = time.monotonic() + 60
    while len(world.imis_sandbox.activities()) < sum(expected.values()) // 3:
        assert first.poll() is None, first.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the first writer did not get a third of the way in time"
        time.sleep(0.005)
    second = world.writer_process(RECENT, end)  # waits: the first renews its lease
    while len(world.imis_sandbox.activities()) < sum(expected.values()) * 2 // 3:
        assert first.poll() is None and second.poll() is None
        assert time.monotonic() < deadline, "the first writer did not get two thirds of the way in time"
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)  # in the middle of a batch: some of its keys are intent without a record
    first.communicate()
    by_first = sum(world.activities().values())
    assert by_first < sum(expected.values())
    report = _finished(second)
    assert world.activities() == expected
    assert _keys_once(world)
    grid_kinds = {kind.value for kind in GRID_KINDS}
    assert sum(report.written[kind] for kind in grid_kinds) == sum(expected.values()) - by_first
    resolved = sum(count for kind, count in [*report.already_written.items(), *report.found_in_imis.items()]
                   if kind in grid_kinds)
    assert resolved == by_first


def test_a_resubscribe_is_derived_from_the_recorded_unsubscribe_and_written_once(world):
    end = DST_DAY + timedelta(hours=1)
    generated = world.engage(DST_DAY, end, volume=2000, seed=4)
    comebacks = set(generated.events[EngagementKind.RESUBSCRIBE]["user_id"]) & set(world.known)
    assert comebacks, "the generator should make some unsubscribers come back"

    first = world.write(DST_DAY, end)
    again = world.write(DST_DAY, end)

    written = world.activities([EngagementKind.RESUBSCRIBE])
    assert {contact for _, contact, *_ in written} == comebacks and set(written.values()) == {1}
    assert first.written["Resubscribe"] == len(comebacks) and again.written["Resubscribe"] == 0
    later = world.write(end, end + timedelta(hours=1))
    assert later.written["Resubscribe"] == 0  # they are subscribed now: nothing left to derive


def test_a_malformed_address_the_sync_added_becomes_one_bad_email_activity(world):
    contact = world.known[0]
    contacts = pd.DataFrame({"ID": [contact, world.known[1]],
                             "PrimaryEmailAddress": ["jo@example.com.com", "fine@example.org"]})
    added, later = DST_DAY + timedelta(minutes=5), DST_DAY + timedelta(hours=3)
    assert record_bad_emails(world.store, contacts, "ID", "PrimaryEmailAddress", now=added) == 1
    assert record_bad_emails(world.store, contacts, "ID", "PrimaryEmailAddress", now=later) == 0

    report = world.write(DST_DAY, DST_DAY + timedelta(hours=1), kinds=[EngagementKind.BAD_EMAIL])
    world.write(DST_DAY, DST_DAY + timedelta(hours=1), kinds=[EngagementKind.BAD_EMAIL])

    assert report.written["Bad Email"] == 1
    assert list(world.activities([EngagementKind.BAD_EMAIL])) == [
        ("Bad Email", contact, "2026-03-08T01:05:00", None, "the domain ends in a doubled .com")]


def test_a_kind_thrive_refuses_fails_alone_and_the_run_names_it(world, monkeypatch):
    end = RECENT + timedelta(hours=1)
    generated = world.engage(RECENT, end, volume=400)
    refused = ThriveFault("grid subscriber_web_tracking_pages", "InvalidGridCategoryException",
                          "Grid type 'subscriber_web_tracking_pages' is not available")
    real_iter_grid = world.thrive.iter_grid

    def iter_grid(grid, *args, **kwargs):
        if grid == "subscriber_web_tracking_pages":
            raise refused
        return real_iter_grid(grid, *args, **kwargs)

    monkeypatch.setattr(world.thrive, "iter_grid", iter_grid)
    report = world.write(RECENT, end)

    expected = world.expected(generated, RECENT, end)
    assert world.activities() == Counter({k: v for k, v in expected.items() if k[0] != "Web Tracking Page Visit"})
    assert sorted(report.failed_kinds) == sorted({*unserved(world.sources(RECENT)), "Web Tracking Page Visit"})
    with pytest.raises(WritebackIncomplete, match=r"Web Tracking Page Visit: .*InvalidGridCategoryException"):
        finish_run(world.store, "run-1", RECENT, end, report)


CANNOT_TAKE = "An error occurred. Please contact the administrator."


def test_one_event_imis_cannot_take_is_quarantined_and_every_other_of_10000_is_written_once(world):
    end = RECENT + timedelta(hours=1)
    # Opens and clicks read from per-mailing flags, and kinds not served, leave fewer events of the same volume.
    every_event = set(world.sources(RECENT).values()) == {Source.GRID}
    generated = world.engage(RECENT, end, volume=11_000 if every_event else 16_000, seed=4)
    expected = world.expected(generated, RECENT, end)
    assert sum(expected.values()) >= 10_000
    # The poisoned event: a Mail Sent of a known contact, as the writer itself will read it from Thrive (from a
    # per-event grid under every alternative; see the flags test below for a poisoned Link Click without one).
    poisoned = next(event for event in iter_engagement(world.thrive, EngagementKind.MAIL_SENT, RECENT, end)
                    if event.contact_id in world.known)
    poisoned_key = plan_activity(poisoned, ZoneInfo(ZONE)).key
    poisoned_tuple = (poisoned.kind.value, poisoned.contact_id,
                      poisoned.occurred_at.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%dT%H:%M:%S"),
                      poisoned.mailing_instance_id or poisoned.mailing_id, poisoned.url)
    assert expected[poisoned_tuple] >= 1

    def keys() -> Counter[str]:
        return Counter(a["Properties"]["UF_1"] for a in world.imis_sandbox.activities())
    with httpx.Client(base_url=world.imis_url, timeout=10) as admin:
        assert admin.put("/_sandbox/activities/failing", json={"matches": [poisoned_key]}).json() == {
            "failing": [poisoned_key]}
    imis = ImisClient(ImisConfig(base_url=world.imis_url, username="hl_integration", password="sandbox-imis-password",
                                 timezone=ZONE, retry=FAST, max_concurrency=16), token_store=MemoryTokenStore())

    def run() -> dict:
        # Only the kinds this emulator serves: a kind it refuses would fail the run before the quarantine did.
        return write_activities(imis, world.thrive, world.store, RECENT, end, kinds=world.served(RECENT),
                                concurrency=16, batch_size=1_000)

    started = time.monotonic()
    with imis:
        first = run()
        written_once = expected - Counter({poisoned_tuple: 1})
        assert world.activities() == written_once  # the other 9,999+ events
        assert set(keys().values()) == {1} and poisoned_key not in keys()  # each exactly once
        assert sum(first.written[kind.value] for kind in GRID_KINDS) == sum(written_once.values())
        [entry] = first.quarantine.entries
        assert (entry.key, entry.contact_id, entry.kind) == (poisoned_key, poisoned.contact_id, "Mail Sent")
        assert (entry.reason, entry.runs, entry.attempts) == (f"HTTP 500: {CANNOT_TAKE}", 1, 5)
        assert first.checked_in_imis == 5  # one look-up after each failed post: none before, nothing pending
        with pytest.raises(WritebackIncomplete) as failed:  # the run fails, after the report, naming the event
            finish_run(world.store, "scheduled__run-1", RECENT, end, first)
        assert f"{poisoned_key} for contact {poisoned.contact_id} (Mail Sent): HTTP 500: {CANNOT_TAKE}" in \
            str(failed.value).splitlines()[0]
        assert "@" not in str(failed.value)  # contact IDs only, never an email

        again = run()  # the knob still on: looked up, tried again, quarantined again; nothing else posted
        assert sum(again.written.values()) == 0
        assert sum(again.already_written.get(kind.value, 0) for kind in GRID_KINDS) == sum(written_once.values())
        # Looked up first (pending), then 5 look-ups after its 5 posts; plus the unknown contacts' events in flight
        # before iMIS first says the party does not exist (at most one per thread and contact).
        assert 1 + 5 <= again.checked_in_imis <= 1 + 5 + 16 * len(UNKNOWN_TO_IMIS)
        assert [(e.key, e.runs, e.attempts) for e in again.quarantine.entries] == [
            (poisoned_key, 2, 10)]
        assert world.activities() == written_once

        with httpx.Client(base_url=world.imis_url, timeout=10) as admin:
            assert admin.delete("/_sandbox/activities/failing").json() == {"failing": []}
        fixed = run()
        assert fixed.written["Mail Sent"] == 1 and sum(fixed.written.values()) == 1
        assert fixed.quarantine.released == 1 and fixed.quarantine.open == 0
        assert world.activities() == expected
        assert keys()[poisoned_key] == 1 and set(keys().values()) == {1}
        assert finish_run(world.store, "scheduled__run-3", RECENT, end, fixed).writeback.quarantine.events == 0
    seconds = time.monotonic() - started
    print(f"\n10k writeback with one poisoned event: three runs in {seconds:.1f} s (first run {first.seconds} s, "
          f"{first.activities_per_second} activities/s; re-run {again.seconds} s; fixed {fixed.seconds} s)")


def test_a_tenant_serving_only_documented_grids_gets_opens_and_clicks_from_the_mailing_flags(tmp_path):
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)  # within 100 days
    end = start + timedelta(hours=1)
    with serve_world(tmp_path, grids="documented") as world:
        generated = world.engage(start, end, volume=600, seed=6)

        first = world.write(start, end)
        again = world.write(start, end)  # derives the same events again: the ledger knows them
        later = world.write(end, end + timedelta(hours=1))

        for kind in (EngagementKind.MAIL_OPEN, EngagementKind.LINK_CLICK):
            events = generated.events[kind]
            events = events[events["user_id"].isin(world.known)]
            expected = {(contact, str(instance)) for contact, instance in
                        zip(events["user_id"], events["mailing_instance_id"], strict=True)}
            written = world.activities([kind])
            assert {(contact, instance) for _, contact, _, instance, _ in written} == expected and expected
            assert set(written.values()) == {1}  # one per contact and mailing, however often they opened
            assert first.sources[kind.value] == f"mailing_activity_subscriber_actions.{FLAG_OF_KIND[kind]}"
            assert again.written[kind.value] == 0 and later.written[kind.value] == 0  # never twice
        assert sorted(first.failed_kinds) == ["Landing Page Submit", "Web Tracking Page Visit"]
        assert "InvalidGridCategoryException" in first.failed_kinds["Landing Page Submit"]
        sent = world.expected(generated, start, end)
        assert world.activities([EngagementKind.MAIL_SENT]) == Counter(
            {k: v for k, v in sent.items() if k[0] == "Mail Sent"})


def test_a_quarantined_click_from_the_mailing_flags_is_tried_again_by_the_next_run_of_its_interval(tmp_path):
    start = RECENT
    end = start + timedelta(hours=1)
    with serve_world(tmp_path, grids="documented") as world:
        world.engage(start, end, volume=400, seed=6)
        clicks, _ = flagged_events(world.thrive, EngagementKind.LINK_CLICK, {}, start, end)
        poisoned = plan_activity(next(e for e in clicks if e.contact_id in world.known), ZoneInfo(ZONE)).key
        with httpx.Client(base_url=world.imis_url, timeout=10) as admin:
            admin.put("/_sandbox/activities/failing", json={"matches": [poisoned]})
        kinds = [EngagementKind.LINK_CLICK]
        assert [e.key for e in world.write(start, end, kinds=kinds).quarantine.entries] == [poisoned]
        again = world.write(start, end, kinds=kinds)
    assert [(e.key, e.runs) for e in again.quarantine.entries] == [(poisoned, 2)]


def test_a_window_older_than_100_days_fails_mail_sent_where_the_archive_grid_is_not_served(tmp_path):
    with serve_world(tmp_path, grids="documented") as world:
        world.engage(DST_DAY, DST_DAY + timedelta(hours=1), volume=200)
        report = world.write(DST_DAY, DST_DAY + timedelta(hours=1), kinds=[EngagementKind.MAIL_SENT])
    assert "subscriber_mailing_history_all" in report.failed_kinds["Mail Sent"]
