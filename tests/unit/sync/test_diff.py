from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.imis_thrive.errors import BadData
from include.imis_thrive.sync.diff import (
    DuplicateIds,
    SchemaDrift,
    SnapshotRows,
    check_schema_drift,
    diff_contacts,
    diff_membership,
    is_row_hash_column,
    row_hash_column,
    row_hashes,
    with_row_hashes,
)
from include.imis_thrive.sync.field_map import to_thrive_contacts

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _contacts(frames, ids: list[str], **columns: list) -> pd.DataFrame:
    return frames.iqa(
        "$/HigherLogic/Contacts/Contacts",
        ID=frames.text(*ids),
        **{name: values if isinstance(values, pd.Series) else frames.text(*values) for name, values in columns.items()},
    )


def test_added_changed_removed_and_unchanged(frames) -> None:
    previous = _contacts(
        frames, ["1", "2", "3", "4"], FirstName=["Ann", "Bo", "Cy", "Di"], LastName=["A", "B", "C", "D"]
    )
    current = _contacts(
        frames, ["2", "3", "4", "5"], FirstName=["Bo", "Cyrus", "Di", "Ed"], LastName=["B", "C", "Dee", "E"]
    )

    diff = diff_contacts(previous, current)

    assert diff.added.tolist() == ["5"]
    assert diff.removed.tolist() == ["1"]
    assert diff.changed.tolist() == ["3", "4"]
    assert diff.unchanged == 1
    assert diff.change_count == 4
    assert diff.summary() == {
        "previous": 4, "added": 1, "changed": 2, "removed": 1, "unchanged": 1,
        "changed_by_column": {"FirstName": 1, "LastName": 1},
    }
    json.dumps(diff.summary())


def test_each_changed_id_lists_its_changed_columns(frames) -> None:
    previous = _contacts(frames, ["1", "2", "3"], FirstName=["Ann", "Bo", "Cy"], Title=["Dr", "Mr", "Ms"])
    current = _contacts(frames, ["1", "2", "3"], FirstName=["Anne", "Bo", "Cyd"], Title=["Prof", "Sir", "Ms"])

    diff = diff_contacts(previous, current)

    assert diff.changed_columns.to_dict() == {
        "1": ("FirstName", "Title"), "2": ("Title",), "3": ("FirstName",),
    }


def test_na_nan_none_and_empty_text_are_all_the_same_empty_value(frames) -> None:
    previous = _contacts(frames, ["1", "2", "3"], MiddleName=[None, "", None])
    current = frames.iqa(
        "$/HigherLogic/Contacts/Contacts",
        ID=frames.text("1", "2", "3"),
        MiddleName=pd.Series(["", np.nan, pd.NA], dtype="object"),
    )

    diff = diff_contacts(previous, current)

    assert diff.changed.empty and diff.unchanged == 3


def test_a_value_appearing_or_disappearing_is_a_change(frames) -> None:
    previous = _contacts(frames, ["1", "2"], MiddleName=[None, "Q"])
    current = _contacts(frames, ["1", "2"], MiddleName=["J", None])

    assert diff_contacts(previous, current).changed_columns.to_dict() == {"1": ("MiddleName",), "2": ("MiddleName",)}


def test_a_dtype_change_with_the_same_thrive_text_is_not_a_change(frames) -> None:
    previous = _contacts(
        frames, ["1", "2", "3"],
        Years=pd.Series([5, None, 7], dtype="Int64"),
        IsMember=pd.Series([True, False, None], dtype="boolean"),
    )
    current = _contacts(
        frames, ["1", "2", "3"],
        Years=pd.Series([5.0, None, 7.5], dtype="Float64"),
        IsMember=["true", "false", None],
    )

    assert diff_contacts(previous, current).changed_columns.to_dict() == {"3": ("Years",)}


def test_typed_contacts_and_their_thrive_bound_form_compare_equal(frames) -> None:
    contacts = frames.contacts(4)

    diff = diff_contacts(to_thrive_contacts(contacts), to_thrive_contacts(contacts))

    assert diff.change_count == 0 and diff.unchanged == 4


def test_datetime_changes_are_seen_to_the_second(frames) -> None:
    previous = _contacts(frames, ["1", "2"], MemberExpiresOn=frames.datetimes("2026-12-31", "2026-06-30 12:00:00"))
    current = _contacts(frames, ["1", "2"], MemberExpiresOn=frames.datetimes("2027-12-31", "2026-06-30 12:00:00"))

    assert diff_contacts(previous, current).changed.tolist() == ["1"]


def test_no_previous_snapshot_means_everything_is_added(frames) -> None:
    current = _contacts(frames, ["1", "2"], FirstName=["Ann", "Bo"])

    for previous in (None, _contacts(frames, [], FirstName=[])):
        diff = diff_contacts(previous, current)
        assert diff.added.tolist() == ["1", "2"]
        assert diff.removed.empty and diff.changed.empty and diff.unchanged == 0 and diff.previous_count == 0


def test_an_empty_current_frame_removes_everyone(frames) -> None:
    previous = _contacts(frames, ["1", "2"], FirstName=["Ann", "Bo"])

    diff = diff_contacts(previous, _contacts(frames, [], FirstName=[]))

    assert diff.removed.tolist() == ["1", "2"] and diff.added.empty


def test_a_new_column_changes_only_the_rows_that_have_a_value_in_it(frames) -> None:
    previous = _contacts(frames, ["1", "2"], Chapter=["North", "South"])
    current = _contacts(frames, ["1", "2"], Chapter=["North", "South"], Committee=[None, "Finance"])

    diff = diff_contacts(previous, current)

    assert diff.changed_columns.to_dict() == {"2": ("Committee",)}


def test_columns_limits_the_comparison(frames) -> None:
    previous = _contacts(frames, ["1"], FirstName=["Ann"], Status=["A"])
    current = _contacts(frames, ["1"], FirstName=["Ann"], Status=["I"])

    assert diff_contacts(previous, current, columns=["FirstName"]).change_count == 0
    assert diff_contacts(previous, current).changed.tolist() == ["1"]


def test_upserts_are_the_added_and_changed_rows_of_the_current_frame(frames) -> None:
    previous = _contacts(frames, ["1", "2", "3"], FirstName=["Ann", "Bo", "Cy"])
    current = _contacts(frames, ["1", "2", "4"], FirstName=["Ann", "Bob", "Di"])

    upserts = diff_contacts(previous, current).upserts(current)

    assert upserts["ID"].tolist() == ["2", "4"]


def test_duplicate_ids_cannot_be_diffed_and_the_iqa_is_named(frames) -> None:
    current = _contacts(frames, ["1", "1"], FirstName=["Ann", "Ann"])

    with pytest.raises(DuplicateIds, match=r"current frame of IQA '\$/HigherLogic/Contacts/Contacts' repeats 1 ID"):
        diff_contacts(None, current)


def test_an_id_the_previous_snapshot_repeats_is_named_on_its_side(frames) -> None:
    previous = _contacts(frames, ["7", "8", "7", "8", "9"], FirstName=["A", "B", "A", "B", "C"])
    current = _contacts(frames, ["7"], FirstName=["A"])

    with pytest.raises(DuplicateIds, match=r"previous frame .* repeats 2 ID\(s\) \(e.g. 7, 8\)") as raised:
        diff_contacts(previous, current)
    assert raised.value.side == "previous"


def test_ids_are_matched_whatever_order_and_chunks_each_side_has(frames) -> None:
    ids = [str(value) for value in range(1000, 4000)]
    previous = _contacts(frames, ids, FirstName=[f"F{value}" for value in ids])
    current = pd.concat([previous.iloc[2000:], previous.iloc[:1000]], ignore_index=True)  # Arrow data in 2 chunks
    current.attrs = dict(previous.attrs)
    current.loc[current["ID"] == "1500", "FirstName"] = "Changed"

    diff = diff_contacts(previous, current)

    assert diff.removed.tolist() == ids[1000:2000]
    assert diff.changed_columns.to_dict() == {"1500": ("FirstName",)} and diff.unchanged == 1999


def test_row_hashes_are_the_same_in_another_process_with_another_hash_seed(frames) -> None:
    text = pd.DataFrame({"FirstName": frames.text("Ann", "", "Zoë"), "City": frames.text("Québec", "Oslo", "")})
    script = textwrap.dedent(
        """
        import pandas as pd
        from include.imis_thrive.sync.diff import row_hashes
        text = pd.DataFrame({"FirstName": pd.Series(["Ann", "", "Zoë"], dtype="str"),
                             "City": pd.Series(["Québec", "Oslo", ""], dtype="str")})
        print(",".join(str(value) for value in row_hashes(text)))
        """
    )
    environment = os.environ | {"PYTHONHASHSEED": "12345", "PYTHONPATH": str(PROJECT_ROOT)}

    other = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True)

    assert other.stdout.strip() == ",".join(str(value) for value in row_hashes(text))


def test_row_hashes_follow_the_rows_across_chunks_and_threads() -> None:
    values = pd.Series([f"value {number}" for number in range(300_000)], dtype="str")
    text = pd.DataFrame({"A": values, "B": values.str[::-1]})
    backwards = text.iloc[::-1].reset_index(drop=True)
    pieces = pd.concat([text.iloc[:1], text.iloc[1:150_000], text.iloc[150_000:]], ignore_index=True)

    hashes = row_hashes(text)

    assert (row_hashes(backwards) == hashes[::-1]).all() and (row_hashes(pieces) == hashes).all()
    assert len(np.unique(hashes)) == len(text)


def test_row_hashes_tell_where_one_value_ends_and_any_name_may_be_hashed() -> None:
    text = pd.DataFrame({'Nick "the" name': pd.Series(["ab", "a", ""], dtype="str"),
                         "iMISv2 - Token": pd.Series(["c", "bc", "abc"], dtype="str")})

    assert len(set(row_hashes(text).tolist())) == 3
    assert row_hashes(text.iloc[:0]).tolist() == []


def test_membership_diff_from_previous_and_current_ids() -> None:
    diff = diff_membership("Board Members", ["1", "2", "3"], ["2", "3", "4", "5"])

    assert diff.added.tolist() == ["4", "5"]
    assert diff.removed.tolist() == ["1"]
    assert diff.summary() == {"target_group": "Board Members", "previous": 3, "current": 4, "added": 2, "removed": 1}


def test_membership_diff_on_a_first_run_adds_everyone_once() -> None:
    diff = diff_membership("Board Members", None, pd.Series(["9", "8", "9"], dtype="str"))

    assert diff.added.tolist() == ["9", "8"] and diff.removed.empty and diff.previous_count == 0


def test_a_column_gone_since_the_last_commit_is_schema_drift_naming_the_iqa_and_columns():
    with pytest.raises(SchemaDrift, match=r"schema drift: IQA '\$/P' no longer returns the column\(s\) 'Chapter' that "
                                          r"the last committed snapshot has .*new column\(s\) 'ChapterName', so a "
                                          r"rename is likely.*Nothing was loaded and the snapshot is kept"):
        check_schema_drift(["Chapter", "Credits"], ["Credits", "ChapterName"], "$/P")
    assert issubclass(SchemaDrift, BadData)


def test_schema_drift_is_accepted_by_the_override_and_new_columns_alone_are_no_drift():
    assert check_schema_drift(["Chapter", "Credits"], ["Credits"], "$/P", override=True) == ["Chapter"]
    assert check_schema_drift(["Credits"], ["Credits", "Chapter"], "$/P") == []
    assert check_schema_drift(None, ["Credits"], "$/P") == []


# -- row hashes stored in the snapshot ---------------------------------------------------------------------

def _sent(frames, ids: list[str], first: list[str], last: list[str]) -> pd.DataFrame:
    return _contacts(frames, ids, FirstName=first, LastName=last)


def test_a_snapshot_with_stored_hashes_diffs_exactly_like_one_without(frames) -> None:
    previous = _sent(frames, ["1", "2", "3", "4"], ["Ann", "Bo", "Cy", "Di"], ["A", "B", "C", "D"])
    current = _sent(frames, ["2", "3", "4", "5"], ["Bo", "Cyrus", "Di", "Ed"], ["B", "C", "Dee", "E"])
    hashed = with_row_hashes(previous, ["FirstName", "LastName"])

    with_hashes, without = diff_contacts(hashed, current), diff_contacts(previous, current)

    assert is_row_hash_column(next(c for c in hashed.columns if c not in previous.columns))
    assert with_hashes.summary() == without.summary()
    assert with_hashes.changed_columns.to_dict() == without.changed_columns.to_dict() == {
        "3": ("FirstName",), "4": ("LastName",)}


def test_the_previous_side_is_not_rehashed_when_the_snapshot_stores_its_hashes(frames) -> None:
    previous = _sent(frames, ["1", "2"], ["Ann", "Bo"], ["A", "B"])
    current = _sent(frames, ["1", "2"], ["Ann", "Bob"], ["A", "B"])
    hashed = with_row_hashes(previous, ["FirstName", "LastName"])
    column = row_hash_column(["FirstName", "LastName"])
    hashed[column] = with_row_hashes(current, ["FirstName", "LastName"])[column]  # claims row 2 was "Bob"

    assert diff_contacts(hashed, current).changed.empty  # the stored hash was believed, the row not rehashed
    assert diff_contacts(previous, current).changed.tolist() == ["2"]


def test_a_stored_hash_that_differs_while_every_column_reads_the_same_is_no_change(frames) -> None:
    previous = _sent(frames, ["1", "2"], ["Ann", "Bo"], ["A", "B"])
    hashed = with_row_hashes(previous, ["FirstName", "LastName"])
    column = row_hash_column(["FirstName", "LastName"])
    hashed[column] = pd.array([1, 2], dtype="UInt64")  # e.g. written by a version that rendered text otherwise

    diff = diff_contacts(hashed, previous.copy())

    assert diff.changed.empty and diff.unchanged == 2


def test_the_diff_hands_the_rows_to_send_their_hashes_for_the_commit(frames) -> None:
    previous = _sent(frames, ["1"], ["Ann"], ["A"])
    current = _sent(frames, ["1", "2"], ["Anne", "Bo"], ["A", "B"])

    sent = diff_contacts(previous, current, columns=["LastName", "FirstName"]).upserts(current)

    column = row_hash_column(["FirstName", "LastName"])
    assert sent[column].tolist() == with_row_hashes(current, ["FirstName", "LastName"])[column].tolist()


def test_upserts_of_the_frame_reordered_still_carry_each_rows_own_hash(frames) -> None:
    previous = _sent(frames, ["1"], ["Ann"], ["A"])
    current = _sent(frames, ["1", "2", "3"], ["Anne", "Bo", "Cy"], ["A", "B", "C"])
    diff = diff_contacts(previous, current)

    sent = diff.upserts(current.iloc[::-1].reset_index(drop=True))

    column = row_hash_column(["FirstName", "LastName"])
    expected = with_row_hashes(current, ["FirstName", "LastName"]).set_index("ID")[column]
    assert sent["ID"].tolist() == ["3", "2", "1"]
    assert sent[column].tolist() == expected.reindex(sent["ID"]).tolist()


def test_hashes_stored_by_an_older_hashing_scheme_are_not_believed_but_derived_again(frames) -> None:
    previous = _sent(frames, ["1", "2"], ["Ann", "Bo"], ["A", "B"])
    current = _sent(frames, ["1", "2"], ["Ann", "Bob"], ["A", "B"])
    column = row_hash_column(["FirstName", "LastName"])
    # the column snapshots stored before the scheme was part of its name (pandas' SipHash, over the columns alone)
    older = "_row_hash_" + hashlib.sha256("\x1f".join(["FirstName", "LastName"]).encode()).hexdigest()[:12]
    claims_bob = with_row_hashes(current, ["FirstName", "LastName"])[column].to_numpy()
    written_before = previous.assign(**{older: claims_bob})

    assert is_row_hash_column(older) and older != column
    assert diff_contacts(written_before, current).changed_columns.to_dict() == {"2": ("FirstName",)}
    committed = with_row_hashes(written_before, ["FirstName", "LastName"])
    assert [name for name in committed.columns if is_row_hash_column(name)] == [column]
    assert committed[column].tolist() == with_row_hashes(previous, ["FirstName", "LastName"])[column].tolist()


def test_hashes_do_not_depend_on_column_order_and_name_the_columns_they_cover(frames) -> None:
    frame = _sent(frames, ["1", "2"], ["Ann", "Bo"], ["A", "B"])
    reordered = frame[["ID", "LastName", "FirstName"]]

    assert row_hash_column(["FirstName", "LastName"]) == row_hash_column(["LastName", "FirstName"])
    assert row_hash_column(["FirstName"]) != row_hash_column(["FirstName", "LastName"])
    column = row_hash_column(["FirstName", "LastName"])
    assert (with_row_hashes(frame, ["FirstName", "LastName"])[column].tolist()
            == with_row_hashes(reordered, ["LastName", "FirstName"])[column].tolist())


def test_a_commit_over_an_older_snapshot_hashes_its_rows_once_and_drops_hashes_over_other_columns(frames) -> None:
    older = _sent(frames, ["1", "2"], ["Ann", "Bo"], ["A", "B"])  # written before snapshots stored hashes
    sent = with_row_hashes(_sent(frames, ["3"], ["Cy"], ["C"]), ["FirstName", "LastName"])
    stale = with_row_hashes(older, ["FirstName"])  # hashed over another field map

    merged = with_row_hashes(pd.concat([stale, sent], ignore_index=True), ["FirstName", "LastName"])

    column = row_hash_column(["FirstName", "LastName"])
    assert [c for c in merged.columns if is_row_hash_column(c)] == [column]
    fresh = with_row_hashes(pd.concat([older, sent.drop(columns=[column])], ignore_index=True),
                            ["FirstName", "LastName"])
    assert merged[column].tolist() == fresh[column].tolist() and merged[column].notna().all()


def test_a_hash_column_that_went_through_a_float_is_not_trusted(frames) -> None:
    previous = with_row_hashes(_sent(frames, ["1", "2"], ["Ann", "Bo"], ["A", "B"]), ["FirstName", "LastName"])
    column = row_hash_column(["FirstName", "LastName"])
    floated = previous.astype({column: "float64"})  # what a reindex with NaN does to uint64: the low bits go

    assert diff_contacts(floated, previous.drop(columns=[column])).unchanged == 2
    assert with_row_hashes(floated, ["FirstName", "LastName"])[column].tolist() == previous[column].tolist()


def _read_on_demand(snapshot: pd.DataFrame, asked: list[list[int]]) -> SnapshotRows:
    """`snapshot` as `SnapshotStore.load_keys` hands it over, each read of whole rows noted in `asked`."""
    def read(rows: np.ndarray) -> pd.DataFrame:
        asked.append(rows.tolist())
        return snapshot.take(rows).reset_index(drop=True)

    keys = snapshot[[name for name in snapshot.columns if name == "ID" or is_row_hash_column(name)]]
    return SnapshotRows(keys=keys, columns=tuple(snapshot.columns), read=read)


def test_a_snapshot_read_on_demand_diffs_like_its_frame_reading_only_the_rows_whose_hash_differs(frames) -> None:
    previous = _sent(frames, ["1", "2", "3", "4"], ["Ann", "Bo", "Cy", "Di"], ["A", "B", "C", "D"])
    current = _sent(frames, ["2", "3", "4", "5"], ["Bo", "Cyrus", "Di", "Ed"], ["B", "C", "Dee", "E"])
    hashed = with_row_hashes(previous, ["FirstName", "LastName"])
    asked: list[list[int]] = []

    on_demand, whole = diff_contacts(_read_on_demand(hashed, asked), current), diff_contacts(hashed, current)

    assert asked == [[2, 3]]  # the rows of "3" and "4", the only ones whose stored hash differs
    assert on_demand.summary() == whole.summary()
    assert on_demand.changed_columns.to_dict() == whole.changed_columns.to_dict() == {
        "3": ("FirstName",), "4": ("LastName",)}
    assert on_demand.removed.tolist() == ["1"] and on_demand.added.tolist() == ["5"]


def test_a_selection_of_a_snapshot_reads_its_rows_at_their_place_in_the_snapshot(frames) -> None:
    previous = _sent(frames, ["1", "2", "3"], ["Ann", "Bo", "Cy"], ["A", "B", "C"])
    current = _sent(frames, ["2", "3"], ["Bo", "Cyrus"], ["B", "C"])
    asked: list[list[int]] = []
    rows = _read_on_demand(with_row_hashes(previous, ["FirstName", "LastName"]), asked)

    diff = diff_contacts(rows.where(rows.keys["ID"] != "1"), current)

    assert asked == [[2]]
    assert diff.changed_columns.to_dict() == {"3": ("FirstName",)} and diff.removed.empty


def test_a_snapshot_without_stored_hashes_for_these_columns_is_read_whole_and_diffs_as_before(frames) -> None:
    previous = _sent(frames, ["1", "2", "3"], ["Ann", "Bo", "Cy"], ["A", "B", "C"])
    current = _sent(frames, ["1", "2", "3"], ["Ann", "Bob", "Cy"], ["A", "B", "Cee"])
    for snapshot in (previous, with_row_hashes(previous, ["FirstName"])):  # none, or over other columns
        asked: list[list[int]] = []

        diff = diff_contacts(_read_on_demand(snapshot, asked), current, columns=["FirstName", "LastName"])

        assert asked == [[0, 1, 2]]
        assert diff.summary() == diff_contacts(previous, current).summary()
        assert diff.changed_columns.to_dict() == {"2": ("FirstName",), "3": ("LastName",)}


def test_a_column_only_the_snapshot_on_demand_has_is_compared_as_emptied(frames) -> None:
    previous = _contacts(frames, ["1", "2"], FirstName=["Ann", "Bo"], Title=["Dr", None])
    current = _contacts(frames, ["1", "2"], FirstName=["Ann", "Bo"])

    diff = diff_contacts(_read_on_demand(previous, []), current)

    assert diff.changed_columns.to_dict() == {"1": ("Title",)}


def test_an_id_a_snapshot_on_demand_repeats_is_named_on_its_side(frames) -> None:
    previous = _contacts(frames, ["7", "8", "7"], FirstName=["A", "B", "A"])
    hashed = with_row_hashes(previous, ["FirstName"])

    with pytest.raises(DuplicateIds, match=r"previous frame .* repeats 1 ID\(s\) \(e.g. 7\)") as raised:
        diff_contacts(_read_on_demand(hashed, []), _contacts(frames, ["7"], FirstName=["A"]))
    assert raised.value.side == "previous"
