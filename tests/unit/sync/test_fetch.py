"""Fetch tasks' half of a sync step: an IQA's rows staged as iMIS returned them and read back the same by the next
task; a list iMIS refuses comes back as a reason, not a failure; old fetches do not pile up."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pandas.testing as pdt
import pytest

from include.imis_thrive.imis.errors import ImisAuthError
from include.imis_thrive.imis.iqa_package import PANEL_FIELDS_IQA_PATH
from include.imis_thrive.sync import fetch
from include.imis_thrive.sync.results import TargetGroup
from include.imis_thrive.sync.snapshots import SnapshotStore


class ScriptedIqa:
    """Answers `run_iqa` with one frame, or refuses it as iMIS does an IQA not shared with Everyone."""

    def __init__(self, frame: pd.DataFrame | None = None) -> None:
        self.frame = frame
        self.runs = 0

    def run_iqa(self, query_name: str, **_: object) -> pd.DataFrame:
        self.runs += 1
        if self.frame is None:
            raise ImisAuthError(f"IQA {query_name}: still unauthorised after a fresh login")
        return self.frame.copy()


def test_a_fetched_frame_reads_back_with_its_dtypes_and_iqa(tmp_path, frames) -> None:
    store = SnapshotStore(str(tmp_path))
    rows = frames.iqa(PANEL_FIELDS_IQA_PATH, ID=frames.text("1", "2"), Joined=frames.datetimes("2026-01-02", None),
                      Flag=pd.Series([True, pd.NA], dtype="boolean"))
    fetched = fetch.fetch_panel_fields(ScriptedIqa(rows), store, "run-1")  # type: ignore[arg-type]
    assert fetched.rows == 2 and fetched.denied is None
    again = fetch.fetched_frame(store, fetch.FetchedIqa.from_xcom(fetched.to_xcom()))
    pdt.assert_frame_equal(again, rows)
    assert again.attrs["iqa"] == PANEL_FIELDS_IQA_PATH


def test_a_list_imis_refuses_is_a_reason_for_the_plan_and_a_skipped_list_is_not_run(tmp_path) -> None:
    store = SnapshotStore(str(tmp_path))
    refusing = ScriptedIqa()
    group = TargetGroup(name="Board", iqa="$/HigherLogic/MailingLists/Board")
    denied = fetch.fetch_target_group(refusing, store, group, "run-1")  # type: ignore[arg-type]
    assert "unauthorised" in (denied.denied or "") and denied.handle is None
    assert fetch.fetched_frame(store, denied) is None
    skipped = TargetGroup(name="Board", iqa="$/HigherLogic/MailingLists/Board", problem="it has prompts")
    assert fetch.fetch_target_group(refusing, store, skipped, "run-1").handle is None  # type: ignore[arg-type]
    assert refusing.runs == 1
    with pytest.raises(ImisAuthError):  # the contacts and panel IQAs are no list: a refusal fails the task
        fetch.fetch_panel_fields(refusing, store, "run-1")  # type: ignore[arg-type]


def test_fetches_older_than_the_grace_are_pruned_by_the_next_fetch(tmp_path, frames) -> None:
    rows = frames.iqa(PANEL_FIELDS_IQA_PATH, ID=frames.text("1"))
    store = SnapshotStore(str(tmp_path), open_stage_grace=timedelta(hours=6))
    first = fetch.fetch_panel_fields(ScriptedIqa(rows), store, "run-1")  # type: ignore[arg-type]
    second = fetch.fetch_panel_fields(ScriptedIqa(rows), store, "run-2")  # type: ignore[arg-type]
    name = fetch.fetched_name(PANEL_FIELDS_IQA_PATH)
    assert store.snapshot_keys(name) == sorted([first.handle.key, second.handle.key])  # young: another run's
    store.open_stage_grace = timedelta(0)
    third = fetch.fetch_panel_fields(ScriptedIqa(rows), store, "run-3")  # type: ignore[arg-type]
    assert store.snapshot_keys(name) == [third.handle.key]
