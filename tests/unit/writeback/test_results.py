"""The writeback's results: what `write_activities` pushes to XCom comes back equal in `finish_run`, built from
the writer's tally, and a document that does not fit is refused."""

from __future__ import annotations

import json

import pydantic
import pytest

from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.writeback.results import ActivitiesReport, ActivityWriteback, WritebackQuarantine
from include.imis_thrive.writeback.writer import WritebackTally

INTERVAL = {"start": "2026-03-02T10:00:00+00:00", "end": "2026-03-02T11:00:00+00:00"}
ENTRY = {"key": "HL1-0123", "contact_id": "1000123", "kind": "Mail Open", "reason": "HTTP 500: An error occurred.",
         "runs": 1, "attempts": 5, "first_seen": "2026-03-02T11:00:01+00:00",
         "last_seen": "2026-03-02T11:00:01+00:00", "stuck": False}


def writeback() -> ActivityWriteback:
    """As `write_activities` builds it: the tally's summary and the run's figures."""
    tally = WritebackTally()
    tally.read["Mail Open"], tally.written["Mail Open"] = 3, 2
    tally.unknown_contacts["9999001"] += 1
    tally.unknown_contact_events["Mail Open"] += 1
    tally.quarantined.append(ENTRY)
    return ActivityWriteback.model_validate(tally.summary() | {
        "interval": INTERVAL, "timezone": "America/New_York", "failed_kinds": {}, "sources": {},
        "unsubscribed_tracked": 0, "ledger": {"records_added": 2, "records_compacted": 0}, "imis_calls": 4,
        "thrive_calls": 2, "seconds": 0.5, "activities_per_second": 4.0})


def through_xcom(result):
    return type(result).from_xcom(json.loads(json.dumps(result.to_xcom())))


def test_the_writeback_comes_back_equal_through_xcom_json():
    result = writeback()
    assert through_xcom(result) == result
    assert result.quarantine.entries[0].key == "HL1-0123" and result.unknown_contacts.ids == ["9999001"]


def test_the_tally_counts_every_kind_so_a_report_reads_the_same_every_run():
    assert list(writeback().written) == [kind.value for kind in EngagementKind]


def test_a_report_without_a_writeback_says_the_write_step_failed():
    report = ActivitiesReport(run_id="run-1", finished_at="2026-03-02T11:05:00+00:00", interval=INTERVAL)
    assert "writeback" not in report.to_xcom() and through_xcom(report).writeback is None
    full = report.model_copy(update={"writeback": writeback(), "location": "file:///r.json"})
    assert through_xcom(full) == full


def test_a_quarantine_entry_missing_what_a_person_needs_is_refused():
    incomplete = {key: value for key, value in ENTRY.items() if key != "contact_id"}
    with pytest.raises(pydantic.ValidationError, match="contact_id"):
        WritebackQuarantine.from_xcom({"events": 1, "entries": [incomplete]})


def test_an_unknown_field_is_refused():
    with pytest.raises(pydantic.ValidationError, match="writen"):
        ActivityWriteback.from_xcom(writeback().to_xcom() | {"writen": {}})
