"""The last attempt the guard measures a re-run against: valid until a commit overtakes it."""

from __future__ import annotations

import pandas as pd
import pytest

from include.imis_thrive.sync.attempts import last_attempt, record_attempt
from include.imis_thrive.sync.snapshots import SnapshotStore

SUBJECT = "target_groups/newsletter"


@pytest.fixture
def store(tmp_path) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / "store"))


def _frame(*ids: str) -> pd.DataFrame:
    return pd.DataFrame({"ID": list(ids), "change": ["keep"] * len(ids)})


def test_an_attempt_newer_than_the_commit_is_what_a_re_run_is_measured_against(store):
    committed = store.commit_over(SUBJECT, "run-1", None, lambda theirs, base: _frame("1", "2"))
    record_attempt(store, SUBJECT, store.stage(SUBJECT, _frame("1"), "run-2"))

    attempt = last_attempt(store, SUBJECT, committed)

    assert attempt is not None and list(attempt["ID"]) == ["1"]


def test_a_commit_after_the_attempt_makes_it_moot(store):
    record_attempt(store, SUBJECT, store.stage(SUBJECT, _frame("1"), "run-2"))
    committed = store.commit_over(SUBJECT, "run-2", None, lambda theirs, base: _frame("1"))

    assert last_attempt(store, SUBJECT, committed) is None


def test_no_attempt_or_one_pruned_away_is_none(store):
    assert last_attempt(store, SUBJECT, None) is None
    planned = store.stage(SUBJECT, _frame("1"), "run-2")
    record_attempt(store, SUBJECT, planned)
    store.discard(planned)
    assert last_attempt(store, SUBJECT, None) is None
