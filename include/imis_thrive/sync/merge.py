"""Three-way merges for a commit that another run's commit overtook.

Two runs may load the same snapshot's subject at once (an hourly sync and a pre-publish refresh of one group).
Each diffed against the snapshot committed when it started (the *base*), loaded its changes and commits; if the
other run committed meanwhile (*theirs*), this run's snapshot (*mine*) must not erase what theirs recorded, and
may claim only what Thrive surely holds:

- membership is one bit per contact, and both runs flipped a bit only away from the same base, so
  theirs - what I removed + what I added is exact whatever order the loads reached Thrive in;
- a contact's fields: my sent row wins where theirs kept the base row; where both runs sent the same contact
  with different values, Thrive holds whichever arrived last, so the row is dropped and the next run resends it.
"""

from __future__ import annotations

import pandas as pd

from include.imis_thrive.imis.iqa_package import ID_ALIAS


def merge_members(mine: pd.Series, theirs: pd.Series | None, base: pd.Series | None) -> pd.Series:
    """Member IDs after both runs: theirs, minus the members I removed from the base, plus those I added."""
    mine_ids = pd.Index(mine, dtype="str")
    if theirs is None:
        return pd.Series(mine_ids, dtype="str", name=ID_ALIAS)
    base_ids = pd.Index([] if base is None else base, dtype="str")
    theirs_ids = pd.Index(theirs, dtype="str")
    removed_by_me = base_ids.difference(mine_ids)
    added_by_me = mine_ids.difference(base_ids)
    merged = theirs_ids.difference(removed_by_me).union(added_by_me)
    return pd.Series(merged, dtype="str", name=ID_ALIAS)


def merge_sent_rows(sent: pd.DataFrame, theirs: pd.DataFrame | None, base: pd.DataFrame | None) -> pd.DataFrame:
    """The snapshot of what Thrive was sent: theirs, with my sent rows over it; a contact both runs sent with
    different values is left out (its value in Thrive depends on which load arrived last)."""
    if theirs is None or theirs.empty:
        return sent.reset_index(drop=True)
    sent_ids = sent[ID_ALIAS].astype("str")
    changed_by_them = _changed_ids(theirs, base)
    contested = sent_ids[sent_ids.isin(changed_by_them)]
    disagreeing = contested[~contested.isin(_same_rows(sent, theirs, contested))]
    untouched = theirs[~theirs[ID_ALIAS].astype("str").isin(sent_ids)]
    mine = sent[~sent_ids.isin(disagreeing)]
    return pd.concat([untouched, mine], ignore_index=True)


def _changed_ids(theirs: pd.DataFrame, base: pd.DataFrame | None) -> pd.Index:
    """IDs whose row in theirs is not the base's row (new in theirs, or different)."""
    if base is theirs:
        return pd.Index([], dtype="str")
    theirs_ids = pd.Index(theirs[ID_ALIAS].astype("str"))
    if base is None or base.empty:
        return theirs_ids
    same = _same_rows(theirs, base, theirs_ids.to_series())
    return theirs_ids.difference(pd.Index(same, dtype="str"))


def _same_rows(left: pd.DataFrame, right: pd.DataFrame, ids: pd.Series) -> pd.Index:
    """Those of `ids` whose row is identical in both frames (same columns, same values)."""
    if sorted(left.columns) != sorted(right.columns) or ids.empty:
        return pd.Index([], dtype="str")
    columns = sorted(column for column in left.columns if column != ID_ALIAS)
    left_hash = _row_hashes(left, columns).reindex(pd.Index(ids, dtype="str"))
    right_hash = _row_hashes(right, columns).reindex(pd.Index(ids, dtype="str"))
    return left_hash.index[left_hash.eq(right_hash).to_numpy()]


def _row_hashes(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    keyed = frame.set_index(frame[ID_ALIAS].astype("str"))[columns].astype(object)
    return pd.util.hash_pandas_object(keyed.where(keyed.notna(), None).astype(str), index=False).set_axis(keyed.index)
