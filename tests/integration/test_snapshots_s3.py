"""The snapshot store against a real S3-compatible server (moto) on a free loopback port."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from include.imis_thrive.sync.snapshots import SnapshotError, SnapshotStore, snapshot_name

pytestmark = pytest.mark.integration

GROUP = snapshot_name("$/HigherLogic/MailingLists/Board Members")


@pytest.fixture
def store(s3_bucket) -> SnapshotStore:
    return SnapshotStore(s3_bucket.url, keep=2, storage_options=s3_bucket.options,
                         open_stage_grace=timedelta(0))  # prune at once: these tests pin what is pruned


def _members(*ids: str) -> pd.DataFrame:
    return pd.DataFrame({"ID": pd.Series(list(ids), dtype="str")})


def test_stage_commit_and_read_on_s3(store: SnapshotStore) -> None:
    assert store.read(GROUP) is None
    first = store.stage(GROUP, _members("1", "2"), run_id="scheduled__2026-03-01T10:00:00+00:00")

    assert store.read(GROUP) is None
    store.commit(first)
    pd.testing.assert_frame_equal(store.read(GROUP), _members("1", "2"))


def test_a_failed_load_leaves_the_committed_snapshot_on_s3(store: SnapshotStore) -> None:
    store.commit(store.stage(GROUP, _members("1"), run_id="run-1"))

    store.stage(GROUP, _members("1", "2"), run_id="run-2")  # never committed: the load failed

    assert store.read(GROUP)["ID"].tolist() == ["1"]


def test_dtypes_round_trip_through_s3(store: SnapshotStore) -> None:
    tz = "America/New_York"
    contacts = pd.DataFrame(
        {
            "ID": pd.Series(["363593", "363594"], dtype="str"),
            "FirstName": pd.Series(["Ann", None], dtype="str"),
            "IsMember": pd.Series([True, None], dtype="boolean"),
            "Years": pd.Series([3, None], dtype="Int64"),
            "Dues": pd.Series([120.5, None], dtype="Float64"),
            "MemberExpiresOn": pd.Series(
                [pd.Timestamp("2026-12-31", tz=tz), None], dtype=f"datetime64[us, {tz}]"
            ),
        }
    )

    store.commit(store.stage("contacts", contacts, run_id="run-1"))

    pd.testing.assert_frame_equal(store.read("contacts"), contacts)


def test_pruning_and_json_documents_on_s3(store: SnapshotStore) -> None:
    handles = [store.stage(GROUP, _members(str(run)), run_id=f"run-{run}") for run in range(3)]
    for handle in handles:
        store.commit(handle)

    assert store.snapshot_keys(GROUP) == sorted(handle.key for handle in handles[-2:])
    with pytest.raises(SnapshotError):
        store.commit(handles[0])

    url = store.write_json(f"{GROUP}/reports/run-2", {"added": 1})
    assert url.startswith("s3://") and store.read_json(f"{GROUP}/reports/run-2") == {"added": 1}


def test_a_pointer_put_that_landed_but_whose_answer_was_lost_counts_as_committed(store: SnapshotStore,
                                                                                monkeypatch) -> None:
    """s3fs and botocore retry a PUT whose answer was lost; the retry then meets our own new ETag (412). Taking
    that for another writer's commit would throw away the stage the pointer now names."""
    store.commit(store.stage(GROUP, _members("1"), run_id="run-1"))
    real_pipe = store.fs.pipe_file

    def landed_then_refused(path, data, **condition):
        real_pipe(path, data, **condition)
        if path.endswith("CURRENT.json"):
            raise FileExistsError(path)  # what s3fs makes of the retry's 412

    monkeypatch.setattr(store.fs, "pipe_file", landed_then_refused)
    committed = store.commit_over(GROUP, "run-2", store.current(GROUP),
                                  lambda theirs, base: _members("1", "2"))

    monkeypatch.undo()
    assert store.current(GROUP).key == committed.key
    assert store.read(GROUP)["ID"].tolist() == ["1", "2"]


def test_a_snapshot_another_worker_committed_reads_after_this_worker_listed_the_folder(s3_bucket) -> None:
    """s3fs caches folder listings; a prune lists the snapshots folder, and a later read of an object another
    process wrote since must not be answered from that stale listing."""
    here, there = (SnapshotStore(s3_bucket.url, storage_options=s3_bucket.options) for _ in range(2))
    here.commit(here.stage(GROUP, _members("1"), run_id="run-1"))  # prunes: lists the folder into the cache

    committed = there.commit_over(GROUP, "run-2", there.current(GROUP), lambda theirs, base: _members("1", "2"))

    assert here.current(GROUP) == committed
    assert here.read(GROUP)["ID"].tolist() == ["1", "2"]
