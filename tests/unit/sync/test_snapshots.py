from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from include.imis_thrive.sync.snapshots import (
    SnapshotError,
    SnapshotHandle,
    SnapshotStore,
    snapshot_name,
)

GROUP = snapshot_name("$/HigherLogic/MailingLists/Board Members")


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path: Path) -> SnapshotStore:
    """The same behaviour on a local folder and on an fsspec URL (each memory test gets its own root)."""
    if request.param == "local":
        return SnapshotStore(str(tmp_path / "snapshots"))
    return SnapshotStore(f"memory://snapshot-tests-{uuid.uuid4().hex}")


def _members(*ids: str) -> pd.DataFrame:
    return pd.DataFrame({"ID": pd.Series(list(ids), dtype="str")})


def test_nothing_is_committed_before_the_first_run(store: SnapshotStore) -> None:
    assert store.read(GROUP) is None
    assert store.current(GROUP) is None


def test_a_committed_snapshot_reads_back(store: SnapshotStore) -> None:
    handle = store.stage(GROUP, _members("1", "2"), run_id="scheduled__2026-03-01T10:00:00+00:00")
    store.commit(handle)

    pd.testing.assert_frame_equal(store.read(GROUP), _members("1", "2"))
    assert store.current(GROUP) == handle
    assert (handle.rows, handle.run_id) == (2, "scheduled__2026-03-01T10:00:00+00:00")


def test_a_staged_snapshot_is_invisible_until_committed(store: SnapshotStore) -> None:
    store.commit(store.stage(GROUP, _members("1"), run_id="run-1"))

    staged = store.stage(GROUP, _members("1", "2"), run_id="run-2")  # the load then fails, or the worker dies

    assert store.read(GROUP)["ID"].tolist() == ["1"]
    store.commit(staged)
    assert store.read(GROUP)["ID"].tolist() == ["1", "2"]


def test_a_staged_snapshot_is_readable_by_its_handle_before_commit(store: SnapshotStore) -> None:
    staged = store.stage(GROUP, _members("7", "8"), run_id="run-1")

    pd.testing.assert_frame_equal(store.load(staged), _members("7", "8"))
    assert store.read(GROUP) is None


def test_loading_a_pruned_stage_says_to_rerun(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path), open_stage_grace=timedelta(0))
    stale = store.stage(GROUP, _members("1"), run_id="run-1")
    store.commit(store.stage(GROUP, _members("2"), run_id="run-2"))  # prunes the earlier, uncommitted stage

    with pytest.raises(SnapshotError, match=r"another machine.*re-run the sync"):
        store.load(stale)


def test_a_commit_spares_the_stage_of_a_run_still_loading(store: SnapshotStore) -> None:
    """A refresh committing beside the hourly run must not delete the hourly run's plan, staged earlier."""
    still_loading = store.stage(GROUP, _members("1"), run_id="hourly")
    for run in range(store.keep + 2):
        store.commit(store.stage(GROUP, _members(str(run)), run_id=f"refresh-{run}"))

    pd.testing.assert_frame_equal(store.load(still_loading), _members("1"))


def test_a_failed_commit_keeps_the_previous_snapshot(store: SnapshotStore, monkeypatch) -> None:
    store.commit(store.stage(GROUP, _members("1"), run_id="run-1"))
    staged = store.stage(GROUP, _members("2"), run_id="run-2")

    def lost_connection(path: str, data: bytes) -> None:
        raise ConnectionError("storage went away during the pointer write")

    monkeypatch.setattr(store, "_write_whole", lost_connection)
    with pytest.raises(ConnectionError):
        store.commit(staged)

    assert store.read(GROUP)["ID"].tolist() == ["1"]


def test_committing_the_same_handle_again_is_a_no_op(store: SnapshotStore) -> None:
    handle = store.stage(GROUP, _members("1"), run_id="run-1")
    store.commit(handle)
    store.commit(handle)

    assert store.read(GROUP)["ID"].tolist() == ["1"]
    assert len(store.snapshot_keys(GROUP)) == 1


def test_an_older_staged_snapshot_cannot_roll_the_baseline_back(store: SnapshotStore) -> None:
    older = store.stage(GROUP, _members("1"), run_id="run-1")
    newer = store.stage(GROUP, _members("1", "2"), run_id="run-2")
    store.commit(newer)

    with pytest.raises(SnapshotError, match="would roll the baseline back"):
        store.commit(older)
    assert store.read(GROUP)["ID"].tolist() == ["1", "2"]


def test_dtypes_and_attrs_round_trip_exactly(store: SnapshotStore, frames) -> None:
    contacts = frames.contacts(3)
    contacts.loc[1, ["FirstName", "IsMember", "Birthday"]] = [None, None, None]
    contacts["Years"] = pd.Series([3, None, 12], dtype="Int64")
    contacts["Dues"] = pd.Series([120.5, None, 0.0], dtype="Float64")

    store.commit(store.stage("contacts", contacts, run_id="run-1"))

    read_back = store.read("contacts")
    pd.testing.assert_frame_equal(read_back, contacts)
    assert str(read_back["Birthday"].dtype) == "datetime64[us, America/New_York]"
    assert read_back.attrs["iqa"] == "$/HigherLogic/Contacts/Contacts"


def test_an_empty_frame_keeps_its_columns_and_dtypes(store: SnapshotStore, frames) -> None:
    empty = frames.contacts(2).iloc[:0]

    store.commit(store.stage("contacts", empty, run_id="run-1"))

    pd.testing.assert_frame_equal(store.read("contacts"), empty.reset_index(drop=True))


def test_old_snapshots_are_pruned_after_commit_keeping_the_last_n(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path), keep=2, open_stage_grace=timedelta(0))
    handles = [store.stage(GROUP, _members(str(run)), run_id=f"run-{run}") for run in range(4)]
    for handle in handles:
        store.commit(handle)

    assert store.snapshot_keys(GROUP) == sorted(handle.key for handle in handles[-2:])


def test_a_pruned_or_never_written_snapshot_cannot_be_committed(store: SnapshotStore) -> None:
    handle = store.stage(GROUP, _members("1"), run_id="run-1")
    store.discard(handle)

    with pytest.raises(SnapshotError, match=r"no longer exists .* re-run the sync"):
        store.commit(handle)
    assert store.read(GROUP) is None


def test_pruning_spares_a_snapshot_staged_later_by_another_run(store: SnapshotStore) -> None:
    first = store.stage(GROUP, _members("1"), run_id="run-1")
    later = store.stage(GROUP, _members("2"), run_id="run-2")

    store.commit(first)

    assert later.key in store.snapshot_keys(GROUP)
    store.commit(later)
    assert store.read(GROUP)["ID"].tolist() == ["2"]


def test_a_pointer_to_a_missing_object_says_what_to_restore(store: SnapshotStore) -> None:
    handle = store.stage(GROUP, _members("1"), run_id="run-1")
    store.commit(handle)
    store.discard(handle)

    with pytest.raises(SnapshotError, match=f"names '{handle.key}', which is missing"):
        store.read(GROUP)


def test_the_local_pointer_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path))
    store.commit(store.stage(GROUP, _members("1"), run_id="run-1"))

    assert sorted(path.name for path in (tmp_path / GROUP).iterdir()) == ["CURRENT.json", "snapshots"]


def test_the_handle_travels_as_json(store: SnapshotStore) -> None:
    handle = store.stage(GROUP, _members("1"), run_id="manual__2026-03-01T10:00:00+00:00")

    travelled = SnapshotHandle.from_dict(json.loads(json.dumps(handle.as_dict())))

    store.commit(travelled)
    assert store.current(GROUP) == handle


def test_json_documents_live_next_to_the_snapshots(store: SnapshotStore) -> None:
    report = {"run_id": "run-1", "added": 3, "quarantined_ids": ["363594"]}

    url = store.write_json(f"{GROUP}/reports/run-1", report)

    assert url.endswith(f"{GROUP}/reports/run-1.json")
    assert store.read_json(f"{GROUP}/reports/run-1") == report
    assert store.read_json(f"{GROUP}/reports/run-2") is None
    store.write_json(f"{GROUP}/reports/run-1", {"replaced": True})
    assert store.read_json(f"{GROUP}/reports/run-1") == {"replaced": True}


@pytest.mark.parametrize("key", ["../escape", "/absolute", "two//slashes", "has space", "$/HigherLogic/x", ""])
def test_unsafe_keys_are_refused(store: SnapshotStore, key: str) -> None:
    with pytest.raises(ValueError, match="use snapshot_name"):
        store.write_json(key, {})


def test_snapshot_names_are_readable_safe_and_distinct() -> None:
    spaced = snapshot_name("$/HigherLogic/MailingLists/Board Members")
    underscored = snapshot_name("$/HigherLogic/MailingLists/Board_Members")

    assert spaced.startswith("higherlogic-mailinglists-board-members-")
    assert spaced != underscored
    assert snapshot_name("$/HigherLogic/MailingLists/Board Members") == spaced


def test_keep_must_leave_the_committed_snapshot(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep must be at least 1"):
        SnapshotStore(str(tmp_path), keep=0)


def test_json_documents_of_a_folder_are_listed_and_deleted(store: SnapshotStore) -> None:
    assert store.json_names("ledger/2026-03-02T10") == []
    store.write_json("ledger/2026-03-02T10/b", {"n": 2})
    store.write_json("ledger/2026-03-02T10/a", {"n": 1})

    assert store.json_names("ledger/2026-03-02T10") == ["a", "b"]
    store.delete_json("ledger/2026-03-02T10/a")
    store.delete_json("ledger/2026-03-02T10/a")  # already gone: not an error
    assert store.json_names("ledger/2026-03-02T10") == ["b"]


def test_the_newest_document_is_the_one_written_last_not_the_last_by_name(store: SnapshotStore) -> None:
    assert store.newest_name("reports/target_groups") is None
    store.write_json("reports/target_groups/zeta", {"run": 1})
    time.sleep(0.05)  # past the filesystem's timestamp granularity
    store.write_json("reports/target_groups/alpha", {"run": 2})
    store.write_text("reports/target_groups/alpha", "# run 2")

    assert store.newest_name("reports/target_groups") == "alpha"
    assert store.newest_name("reports/target_groups", suffix=".md") == "alpha"
    assert store.read_text("reports/target_groups/alpha") == "# run 2"
    assert store.read_text("reports/target_groups/zeta") is None


def test_a_discarded_stage_is_gone_and_its_size_was_what_was_written(store: SnapshotStore) -> None:
    handle = store.stage(GROUP, _members("1", "2"), run_id="run-1")
    assert store.size(handle) > 0 and store.snapshot_keys(GROUP) == [handle.key]

    store.discard(handle)
    store.discard(handle)  # already gone: not an error
    assert store.snapshot_keys(GROUP) == []


def test_a_snapshots_keys_load_alone_and_its_rows_read_back_as_load_gives_them(store: SnapshotStore) -> None:
    from include.imis_thrive.sync.diff import row_hash_column, with_row_hashes

    frame = with_row_hashes(pd.DataFrame({
        "ID": pd.Series(["1", "2", "3"], dtype="str"),
        "PrimaryEmailAddress": pd.Series(["a@x.org", None, "c@x.org"], dtype="str"),
        "Visits": pd.array([1, None, 3], dtype="Int64"),
        "Member": pd.array([True, None, False], dtype="boolean"),
    }), ["PrimaryEmailAddress", "Visits", "Member"])
    handle = store.stage(GROUP, frame, run_id="manual__1")
    hash_column = row_hash_column(["PrimaryEmailAddress", "Visits", "Member"])

    rows = store.load_keys(handle, ["PrimaryEmailAddress"])
    selected = rows.where(rows.keys["ID"] != "1")

    assert list(rows.keys.columns) == ["ID", "PrimaryEmailAddress", hash_column]
    assert rows.columns == tuple(frame.columns)
    pd.testing.assert_frame_equal(selected.rows([1]), store.load(handle).iloc[[2]])
    pd.testing.assert_frame_equal(rows.frame(), store.load(handle))
    pd.testing.assert_frame_equal(rows.rows([]), store.load(handle).iloc[[]])  # no column read, same dtypes


def test_reading_rows_of_a_pruned_snapshot_says_to_rerun(store: SnapshotStore) -> None:
    handle = store.stage(GROUP, _members("1", "2"), run_id="manual__1")
    rows = store.load_keys(handle)
    store.discard(handle)

    with pytest.raises(SnapshotError, match="re-run the sync"):
        rows.rows([0])
