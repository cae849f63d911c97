"""The run report of the writeback: written next to the snapshots, failing on refusals, quarantined events or a
failed write, never before the report is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from include.imis_thrive.reports import render_activities
from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.writeback.activities import WritebackIncomplete, finish_run
from include.imis_thrive.writeback.quarantine import RETRY_RUNS
from include.imis_thrive.writeback.results import ActivitiesReport, ActivityWriteback
from include.imis_thrive.writeback.writer import WritebackTally

START = datetime(2026, 3, 8, 6, tzinfo=UTC)
END = START + timedelta(hours=1)


def result_of(tally: WritebackTally) -> ActivityWriteback:
    """What `write_activities` returns for this tally."""
    interval = {"start": START.isoformat(), "end": END.isoformat()}
    return ActivityWriteback.model_validate(tally.summary() | {"interval": interval, "timezone": "America/New_York"})


def summary(written: int = 3, unknown: tuple[str, ...] = (), rejected: dict[str, int] | None = None
            ) -> ActivityWriteback:
    tally = WritebackTally()
    tally.written["Mail Open"] = written
    tally.unknown_contacts.update(unknown)
    tally.unknown_contact_events["Mail Open"] = len(unknown)
    tally.rejected.update(rejected or {})
    return result_of(tally)


@pytest.fixture
def store(tmp_path) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / "store"))


def test_the_report_is_stored_with_counts_per_kind(store):
    run_id = "scheduled__2026-03-08T06:00:00+00:00"
    finish_run(store, run_id, START, END, summary())
    stored = store.read_json(f"reports/activities/{snapshot_name(run_id)}")
    assert stored["writeback"]["written"]["Mail Open"] == 3
    assert stored["writeback"]["written"]["Link Click"] == 0
    assert stored["interval"] == {"start": START.isoformat(), "end": END.isoformat()}


def test_unknown_contacts_are_reported_without_failing_the_run(store):
    report = finish_run(store, "run-1", START, END, summary(unknown=("9999001", "9999002")))
    assert report.writeback.unknown_contacts.ids == ["9999001", "9999002"]


def test_refused_activities_fail_the_run_with_the_reasons(store):
    with pytest.raises(WritebackIncomplete, match=r"refused 2 activities.*\n2 × Description is too long"):
        finish_run(store, "run-1", START, END, summary(rejected={"Description is too long": 2}))


def test_a_failed_write_step_fails_the_run_after_the_report(store):
    with pytest.raises(WritebackIncomplete, match=r"write_activities task failed.*writes only what is missing"):
        finish_run(store, "run-1", START, END, None)
    stored = store.read_json(f"reports/activities/{snapshot_name('run-1')}")
    assert ActivitiesReport.from_xcom(stored).writeback is None


def quarantined(runs: int = 1, *, skipped: bool = False) -> ActivityWriteback:
    """A summary with one event quarantined in this run (or, `skipped`, one stuck from earlier runs)."""
    tally = WritebackTally()
    tally.written["Mail Open"] = 9
    entry = {"key": "HL1-0123456789abcdef0123456789abcdef", "contact_id": "1000123", "kind": "Mail Open",
             "reason": "HTTP 500: An error occurred. Please contact the administrator.", "runs": runs,
             "attempts": 5 * runs, "first_seen": "2026-03-08T07:00:01+00:00", "last_seen": "2026-03-08T07:00:01+00:00",
             "stuck": runs >= RETRY_RUNS}
    (tally.stuck_skipped if skipped else tally.quarantined).append(entry)
    return result_of(tally)


def test_a_quarantined_event_fails_the_run_after_the_report_naming_its_key_contact_and_reason(store):
    with pytest.raises(WritebackIncomplete) as failed:
        finish_run(store, "run-1", START, END, quarantined())
    first_line = str(failed.value).splitlines()[0]
    assert first_line.startswith("1 event(s) quarantined, every other event was written")
    assert "HL1-0123456789abcdef0123456789abcdef for contact 1000123 (Mail Open): HTTP 500: An error occurred. " \
           "Please contact the administrator. [failed runs 1 of 3, 5 posts" in first_line
    assert failed.value.alert_lines[0].startswith("HL1-0123456789abcdef0123456789abcdef for contact 1000123")
    assert failed.value.alert_lines[-1].startswith("report: ")
    stored = store.read_json(f"reports/activities/{snapshot_name('run-1')}")
    assert stored["writeback"]["quarantine"]["entries"][0]["key"] == "HL1-0123456789abcdef0123456789abcdef"
    text = render_activities(ActivitiesReport.from_xcom(stored))
    assert "1 event(s) quarantined" in text
    assert "| HL1-0123456789abcdef0123456789abcdef | 1000123 | Mail Open | HTTP 500: An error occurred. Please " \
           "contact the administrator. | 1 of 3 | 5 | 2026-03-08T07:00:01+00:00 | no |" in text


def test_the_run_that_makes_an_event_stuck_says_so(store):
    with pytest.raises(WritebackIncomplete, match=r"failed runs 3 of 3, 15 posts; stuck: not tried again until "
                                                  r"cleared with the param retry_stuck"):
        finish_run(store, "run-1", START, END, quarantined(runs=RETRY_RUNS))


def test_stuck_events_skipped_are_reported_without_failing_the_run(store):
    report = finish_run(store, "run-1", START, END, quarantined(runs=RETRY_RUNS, skipped=True))
    text = render_activities(report)
    assert "1 stuck event(s) skipped" in text and "| HL1-0123456789abcdef0123456789abcdef | 1000123 |" in text
