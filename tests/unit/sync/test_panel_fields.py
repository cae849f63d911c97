"""Panel-field sync steps without a network: a stand-in iMIS client that returns a frame, and a stand-in
Thrive client that records each upsert call, so the field sets sent per call can be asserted exactly."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import pytest

from include.imis_thrive.imis.iqa_package import PANEL_FIELDS_IQA_PATH
from include.imis_thrive.sync import panel_fields
from include.imis_thrive.sync.diff import diff_contacts
from include.imis_thrive.sync.guard import MassChangeBlocked, MassChangeLimits
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.sync.target_groups import CONTACTS_SNAPSHOT
from include.imis_thrive.sync.validation import ValidationFailed
from include.imis_thrive.thrive.models import OutcomeStatus, Subscriber, SubscriberOutcome, UpsertResult


class PanelIqa:
    """Answers `run_iqa` with the frame a test sets, as the extraction would type it."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def run_iqa(self, query_name: str, **_: object) -> pd.DataFrame:
        frame = self.frame.copy()
        frame.attrs["iqa"] = query_name
        return frame


class RecordingThrive:
    """Keeps every upsert call's subscribers; rejects the contact IDs in `rejects`."""

    def __init__(self, rejects: Iterable[str] = ()) -> None:
        self.calls: list[list[Subscriber]] = []
        self.rejects = set(rejects)

    def upsert_subscribers(self, subscribers: Iterable[Subscriber]) -> UpsertResult:
        batch = list(subscribers)
        self.calls.append(batch)
        return UpsertResult(outcomes=[
            SubscriberOutcome(s.contact_id, s.email, OutcomeStatus.REJECTED if s.contact_id in self.rejects
                              else OutcomeStatus.UPDATED, "malformed" if s.contact_id in self.rejects else None)
            for s in batch], calls=1)

    def field_sets(self) -> dict[str, tuple[str, ...]]:
        return {s.contact_id: tuple(s.fields) for batch in self.calls for s in batch}


def panel(ids: list[str], **columns: list[object]) -> pd.DataFrame:
    frame = pd.DataFrame({"ID": pd.Series(ids, dtype="str")})
    for name, values in columns.items():
        frame[name] = pd.Series(values, dtype="str" if all(isinstance(v, str | None) for v in values) else None)
    return frame


@pytest.fixture
def store(tmp_path) -> SnapshotStore:
    """A store whose contacts snapshot says Thrive holds contacts 1 to 4 (not 5)."""
    store = SnapshotStore(str(tmp_path / "store"))
    contacts = pd.DataFrame({"ID": pd.Series(["1", "2", "3", "4"], dtype="str"),
                             "PrimaryEmailAddress": pd.Series([f"m{i}@example.org" for i in range(1, 5)],
                                                              dtype="str")})
    store.commit(store.stage(CONTACTS_SNAPSHOT, contacts, "target-groups"))
    return store


def run(store: SnapshotStore, frame: pd.DataFrame, thrive: RecordingThrive, run_id: str, **options) -> dict:
    extracted = panel_fields.extract_panel_fields(PanelIqa(frame), store, run_id)
    upserted = panel_fields.upsert_panel_fields(thrive, store, extracted, run_id, **options)
    panel_fields.finish_run(store, run_id, extracted, upserted)
    return store.read_json(panel_fields.report_key(run_id))


BASE = dict(ChapterName=["North", "South", "East", "West", "North"], CommitteeCount=[1, 2, 3, 4, 5])
IDS = ["1", "2", "3", "4", "5"]


def test_first_run_sends_every_field_to_the_contacts_thrive_holds_only(store):
    thrive = RecordingThrive()
    report = run(store, panel(IDS, **BASE), thrive, "r1")
    assert thrive.field_sets() == {cid: ("ChapterName", "CommitteeCount") for cid in ["1", "2", "3", "4"]}
    assert [s.email for s in thrive.calls[0]] == [f"m{i}@example.org" for i in range(1, 5)]
    assert thrive.calls[0][2].fields == {"ChapterName": "East", "CommitteeCount": "3"}
    assert report["upsert"]["not_in_thrive"] == 1 and report["upsert"]["sent"] == 4


def test_each_upsert_call_carries_one_field_set_and_only_changed_fields(store):
    run(store, panel(IDS, **BASE), RecordingThrive(), "r1")
    thrive = RecordingThrive()
    changed = panel(IDS, ChapterName=["North", "Mid", "East", "Mid", "North"], CommitteeCount=[1, 2, 9, 9, 5])

    report = run(store, changed, thrive, "r2", limits=MassChangeLimits(max_changed_share=1.0))

    assert thrive.field_sets() == {"2": ("ChapterName",), "3": ("CommitteeCount",),
                                   "4": ("ChapterName", "CommitteeCount")}
    assert all(len({tuple(s.fields) for s in batch}) == 1 for batch in thrive.calls) and len(thrive.calls) == 3
    assert report["upsert"]["field_sets"]["count"] == 3


def test_a_new_column_is_sent_alone_and_not_counted_by_the_guard(store):
    run(store, panel(IDS, **BASE), RecordingThrive(), "r1")
    thrive = RecordingThrive()

    report = run(store, panel(IDS, **BASE, Region=["NE", "SE", None, "W", "NE"]), thrive, "r2")

    assert thrive.field_sets() == {"1": ("Region",), "2": ("Region",), "4": ("Region",)}
    assert report["extract"]["custom_fields"] == ["Region"]
    assert report["upsert"]["guard"]["count"] == 0 and report["upsert"]["guard"]["base"] == 4


def test_the_guard_counts_changed_and_vanished_rows_of_known_columns(store):
    run(store, panel(IDS, **BASE), RecordingThrive(), "r1")
    thrive = RecordingThrive()

    with pytest.raises(MassChangeBlocked, match=r"PanelFields'.*2 of 4 changed contacts"):
        run(store, panel(["1", "2", "3"], ChapterName=["North", "South", "Gone"], CommitteeCount=[1, 2, 3]),
            thrive, "r2")

    assert thrive.calls == []
    assert store.read_json(panel_fields.report_key("r2"))["upsert"]["status"] == "blocked"


def test_an_iqa_that_returns_nothing_is_judged_by_the_guard_not_by_a_missing_id_column(store):
    run(store, panel(IDS, **BASE), RecordingThrive(), "r1")
    with pytest.raises(MassChangeBlocked, match="4 of 4 changed contacts"):
        run(store, pd.DataFrame(index=pd.RangeIndex(0)), RecordingThrive(), "r2")


def test_rejected_rows_are_quarantined_and_left_out_of_the_snapshot_so_they_are_retried(store):
    report = run(store, panel(IDS, **BASE), RecordingThrive(rejects={"3"}), "r1")
    assert report["upsert"]["rejected"] == 1 and report["upsert"]["quarantine"]["by_reason"] == {"malformed": 1}
    assert set(store.read(panel_fields.PANEL_FIELDS_SNAPSHOT)["ID"]) == {"1", "2", "4"}

    thrive = RecordingThrive()
    run(store, panel(IDS, **BASE), thrive, "r2")
    assert thrive.field_sets() == {"3": ("ChapterName", "CommitteeCount")}
    assert store.read_json("quarantine/panel_fields")["entries"] == {}


def test_dry_run_sends_and_commits_nothing(store):
    thrive = RecordingThrive()
    report = run(store, panel(IDS, **BASE), thrive, "r1", dry_run=True)
    assert thrive.calls == [] and report["upsert"]["to_send"] == 4
    assert store.current(panel_fields.PANEL_FIELDS_SNAPSHOT) is None


def test_duplicate_ids_block_before_anything_is_staged(store):
    with pytest.raises(ValidationFailed, match=r"IQA '\$/HigherLogic/Panels/PanelFields'.*id_unique"):
        panel_fields.extract_panel_fields(PanelIqa(panel(["1", "1"], ChapterName=["a", "b"])), store, "r1")


def test_field_sets_give_new_contacts_every_field_and_changed_ones_their_changes():
    before = panel(["1", "2"], A=["x", "y"], B=["p", "q"])
    after = panel(["1", "2", "3"], A=["x", "z"], B=["p", "q"], C=["c", None, "c"])
    after.attrs["iqa"] = PANEL_FIELDS_IQA_PATH
    sets = panel_fields.field_sets(diff_contacts(before, after, columns=["A", "B", "C"]), ["A", "B", "C"])
    assert sets.to_dict() == {"3": ("A", "B", "C"), "1": ("C",), "2": ("A",)}
