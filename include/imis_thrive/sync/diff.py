"""What changed since the last committed snapshot, keyed on the iMIS `ID`, so only changes are loaded.

Rows are compared as the text Thrive would receive (`field_map.render_for_thrive`): NA, NaN, None and ""
all become "", and a column whose dtype changed (Int64 5 → Float64 5.0, boolean → "true") is unchanged
when Thrive would see the same text. A column present on one side only counts as empty on the other, so a
new panel column changes exactly the rows that have a value in it.

Each row is hashed by DuckDB's `hash()` over its columns in name order (no seed: the same in every process), as it
scans the Arrow buffers of the `str` columns in place on every core, and the IDs are matched and checked for
repeats in one Arrow dictionary encoding of both sides (pandas' own `hash_pandas_object`, `is_unique` and
`get_indexer` box or dictionary-encode every value first: 3.5 times the CPU time on a million contacts,
`bench/bench_diff.py`). Only rows whose hashes differ are compared column by column, and the per-row lists of
changed columns are built from the few distinct change patterns, never by a Python loop over rows.

A committed snapshot carries each row's hash (`with_row_hashes`) in a column named after the compared columns
(`row_hash_column`), so the diff hashes only the current side and renders only the previous rows whose hash
differs. DuckDB does not promise `hash()` stays the same across its versions, so the column's name covers the
hashing scheme (`HASH_SCHEME`, DuckDB's version in it) too: a snapshot without a column of that name (written
before it existed, over other columns, or by another scheme) is hashed here, and its next commit stores the
hashes anew. A stored hash that differs while every column's text is the same (the rendering changed between
versions) is not a change: the text decides, as it did before hashes were stored.

So the previous side need not be held whole: `SnapshotRows` (`SnapshotStore.load_keys`) is a snapshot's ID and
row-hash columns, and the diff reads the other columns of just the rows whose stored hash differs (~1% of a
million contacts, instead of 24 text columns of all of them in memory). One without a usable stored hash is read
whole and diffed as a frame.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from include.imis_thrive.errors import BadData
from include.imis_thrive.sync.field_map import ID_COLUMN, THRIVE_EMPTY, iqa_of, render_for_thrive

ROW_HASH_PREFIX = "_row_hash_"  # + a digest of the hashed columns' names: a snapshot column, never a field
HASH_DTYPE = "UInt64"  # nullable, so a concat with rows that have no hash keeps every bit of the others
HASH_SCHEME = f"duckdb {duckdb.__version__} hash()"  # how `row_hashes` hashes; part of each hash column's name


class DuplicateIds(BadData):
    """A frame handed to the diff has repeated IDs, so rows cannot be matched; the IQA must be fixed."""

    def __init__(self, iqa: str, side: str, duplicates: pd.Index) -> None:
        self.iqa = iqa
        self.side = side
        self.duplicates = duplicates
        sample = ", ".join(str(value) for value in duplicates[:10])
        super().__init__(
            f"the {side} frame of IQA {iqa!r} repeats {len(duplicates):,} ID(s) (e.g. {sample}); "
            "the IQA must return one row per ID"
        )


class SchemaDrift(BadData):
    """The IQA no longer returns a column the last committed run had (removed, or renamed, in its Display tab).

    Left alone, the column's field would silently stop being kept up to date in Thrive (a renamed one would
    even reach Thrive as a second field), so the run stops before loading; the override accepts the change."""

    def __init__(self, iqa: str, gone: Sequence[str], new: Sequence[str]) -> None:
        self.iqa = iqa
        self.gone = list(gone)
        self.new = list(new)
        added = f"; it now returns the new column(s) {_quoted(new)}, so a rename is likely" if new else ""
        super().__init__(
            f"schema drift: IQA {iqa!r} no longer returns the column(s) {_quoted(gone)} that the last committed "
            f"snapshot has (removed or renamed in the IQA's Display tab{added}). Nothing was loaded and the "
            "snapshot is kept; Thrive keeps the fields' last values. Restore the column under its alias, or, if "
            "the change is meant, re-run with the mass-change override (allow_mass_change)"
        )


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def check_schema_drift(previous: Sequence[str] | None, current: Sequence[str], iqa: str,
                       override: bool = False) -> list[str]:
    """The columns the last committed run had and this one lacks; raises `SchemaDrift` unless overridden."""
    if previous is None:
        return []
    gone = [name for name in previous if name not in current]
    if gone and not override:
        raise SchemaDrift(iqa, gone, [name for name in current if name not in previous])
    return gone


@dataclass(frozen=True)
class ContactDiff:
    """Contacts (or panel rows) added, changed (with their changed columns) and removed since the snapshot."""

    added: pd.Index
    changed_columns: pd.Series  # ID → tuple of the columns whose Thrive text changed
    removed: pd.Index
    unchanged: int
    previous_count: int
    changed_by_column: dict[str, int] = field(default_factory=dict)
    current_hashes: pd.Series | None = None  # ID → row hash of each current row, as `with_row_hashes` stores it
    hash_column: str | None = None

    @property
    def changed(self) -> pd.Index:
        return self.changed_columns.index

    @property
    def change_count(self) -> int:
        """Rows this run touches in Thrive: added + changed + removed."""
        return len(self.added) + len(self.changed_columns) + len(self.removed)

    def upserts(self, current: pd.DataFrame) -> pd.DataFrame:
        """The rows of `current` to send: the added and the changed ones, in `current`'s order, each with its
        row hash (so the snapshot committed from them needs no hashing)."""
        ids = pd.Index(current[ID_COLUMN], dtype="str")
        sent = pc.is_in(_arrow(ids), value_set=_arrow(self.added.append(self.changed))).to_numpy(zero_copy_only=False)
        rows = current[sent]
        if self.current_hashes is None or self.hash_column is None:
            return rows
        hashes = (self.current_hashes.array[sent] if self.current_hashes.index.equals(ids)  # the frame diffed
                  else self.current_hashes.reindex(rows[ID_COLUMN]).array)
        return rows.assign(**{self.hash_column: hashes})

    def without_added(self) -> ContactDiff:
        """The same diff over only the rows the previous snapshot holds (what the mass-change guard measures:
        newly synced rows are new people, not a rewrite of Thrive)."""
        return replace(self, added=self.added[:0])

    def summary(self) -> dict[str, Any]:
        """Counts only (no IDs, no values): small enough for XCom and the run report."""
        return {
            "previous": self.previous_count,
            "added": len(self.added),
            "changed": len(self.changed_columns),
            "removed": len(self.removed),
            "unchanged": self.unchanged,
            "changed_by_column": dict(self.changed_by_column),
        }


@dataclass(frozen=True)
class SnapshotRows:
    """A stored snapshot as its ID, row-hash (and a few asked-for) columns, its other columns read on demand:
    the previous side of a diff, which needs every row's ID and hash but the text only of rows that differ."""

    keys: pd.DataFrame  # indexed by each row's position in the snapshot, which `read` takes
    columns: tuple[str, ...]  # every column the snapshot has, in its order (what drift checks and unions use)
    read: Callable[[np.ndarray], pd.DataFrame]  # every column of the rows at these positions, in that order

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def empty(self) -> bool:
        return self.keys.empty

    def where(self, mask: np.ndarray | pd.Series) -> SnapshotRows:
        """The rows `mask` selects of `keys`, still read on demand."""
        return replace(self, keys=self.keys[np.asarray(mask, dtype=bool)])

    def rows(self, positions: np.ndarray) -> pd.DataFrame:
        """Every column of the rows at these positions of `keys`, labelled as in `keys`."""
        labels = self.keys.index[positions]
        return self.read(labels.to_numpy()).set_axis(labels, axis=0)

    def frame(self) -> pd.DataFrame:
        """The whole rows of `keys`, as `pd.read_parquet` would give them."""
        return self.rows(np.arange(len(self.keys)))


def key_frame(previous: pd.DataFrame | SnapshotRows) -> pd.DataFrame:
    """The frame holding the previous side's IDs (and hashes): `keys` of a `SnapshotRows`, else the frame."""
    return previous.keys if isinstance(previous, SnapshotRows) else previous


@dataclass(frozen=True)
class MembershipDiff:
    """Who joined and who left one target group since its snapshot."""

    target_group: str
    added: pd.Index
    removed: pd.Index
    previous_count: int
    current_count: int

    def summary(self) -> dict[str, Any]:
        return {
            "target_group": self.target_group,
            "previous": self.previous_count,
            "current": self.current_count,
            "added": len(self.added),
            "removed": len(self.removed),
        }


def diff_contacts(
    previous: pd.DataFrame | SnapshotRows | None, current: pd.DataFrame, columns: Sequence[str] | None = None
) -> ContactDiff:
    """Compare `current` with the previous snapshot (None on a first run: everything is added).

    `columns` defaults to every non-ID column of either frame; pass the mapped Thrive fields to ignore others.
    The previous side's hashes come from its row-hash column when it has one for these columns; a
    `SnapshotRows` without one for every row is read whole first.
    """
    previous = previous if previous is not None else pd.DataFrame({ID_COLUMN: pd.Series(dtype="str")})
    columns = list(columns) if columns is not None else _union_columns(previous, current)
    if isinstance(previous, SnapshotRows) and _stored_hashes(previous.keys, row_hash_column(columns)).hasnans:
        previous = previous.frame()
    previous_ids = pd.Index(key_frame(previous)[ID_COLUMN], dtype="str")
    current_ids = pd.Index(current[ID_COLUMN], dtype="str")
    positions = _positions_in(previous_ids, current_ids, iqa_of(current))  # in previous, -1 if new
    current_text = _thrive_text(current, columns)
    current_hashes = row_hashes(current_text)

    matched = np.flatnonzero(positions >= 0)
    previous_hashes = _previous_hashes(key_frame(previous), columns, positions[matched])
    differs = previous_hashes != current_hashes[matched]
    candidates = matched[differs]
    seen = np.zeros(len(previous_ids), dtype=bool)
    seen[positions[matched]] = True

    differing = positions[candidates]
    previous_rows = previous.rows(differing) if isinstance(previous, SnapshotRows) else previous.iloc[differing]
    previous_text = _thrive_text(previous_rows, columns)
    changed_columns, changed_by_column = _changed_columns(
        previous_text, current_text.iloc[candidates], current_ids[candidates]
    )
    hash_column = row_hash_column(columns)
    return ContactDiff(
        added=current_ids[positions < 0],
        changed_columns=changed_columns,
        removed=previous_ids[~seen],
        unchanged=len(matched) - len(changed_columns),
        previous_count=len(previous_ids),
        changed_by_column=changed_by_column,
        current_hashes=pd.Series(current_hashes, index=current_ids, name=hash_column, dtype=HASH_DTYPE),
        hash_column=hash_column,
    )


def diff_membership(
    target_group: str, previous_ids: Iterable[str] | None, current_ids: Iterable[str]
) -> MembershipDiff:
    """Members added and removed, from the previous and current ID sets (None: first run, all added)."""
    previous = pd.Index([] if previous_ids is None else previous_ids, dtype="str").drop_duplicates()
    current = pd.Index(current_ids, dtype="str").drop_duplicates()
    return MembershipDiff(
        target_group=target_group,
        added=current.difference(previous, sort=False),
        removed=previous.difference(current, sort=False),
        previous_count=len(previous),
        current_count=len(current),
    )


def row_hashes(text: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash per row over the given text columns, taken in name order (so a snapshot's stored hash does
    not depend on the order a frame lists its columns in); the same in every process under one `HASH_SCHEME`."""
    names = sorted(text.columns)
    if not names:
        return np.zeros(len(text), dtype=np.uint64)
    # positional names: a field's own name may hold anything, quotes included
    table = pa.Table.from_pandas(text[names].set_axis([f"c{i}" for i in range(len(names))], axis=1),
                                 preserve_index=False)
    with duckdb.connect(config={"preserve_insertion_order": True}) as connection:  # rows in, hashes out, in order
        connection.register("text_rows", table)
        hashed = connection.execute(f"SELECT hash({', '.join(table.column_names)}) AS h FROM text_rows")
        return np.asarray(hashed.fetchnumpy()["h"], dtype=np.uint64)


def row_hash_column(columns: Sequence[str]) -> str:
    """The snapshot column holding each row's hash over `columns`: named after them and the `HASH_SCHEME`, so a
    hash over other columns (a field added to the map since) or by another scheme is never mistaken for one."""
    digest = hashlib.sha256("\x1f".join([HASH_SCHEME, *sorted(columns)]).encode()).hexdigest()[:12]
    return f"{ROW_HASH_PREFIX}{digest}"


def is_row_hash_column(name: object) -> bool:
    return isinstance(name, str) and name.startswith(ROW_HASH_PREFIX)


def with_row_hashes(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`frame` as a snapshot to commit: its row-hash column over `columns` complete (rows that came without a
    hash, e.g. from an older snapshot, are hashed once here), any hash column over other columns dropped."""
    name = row_hash_column(columns)
    frame = frame.drop(columns=[c for c in frame.columns if is_row_hash_column(c) and c != name])
    hashes = _stored_hashes(frame, name)
    missing = hashes.isna().to_numpy()
    if missing.any():
        hashes = hashes.copy()
        hashes[missing] = _hashes_of(frame, columns, missing)
    return frame.assign(**{name: hashes.to_numpy()}).astype({name: HASH_DTYPE})


def _previous_hashes(previous: pd.DataFrame, columns: Sequence[str], rows: np.ndarray) -> np.ndarray:
    """The previous side's hashes of `rows`: stored ones where the snapshot has them, the others computed."""
    stored = _stored_hashes(previous, row_hash_column(columns))
    missing = stored.isna().to_numpy()
    hashes = stored.to_numpy(dtype="uint64", na_value=0)
    if missing.any():
        hashes[missing] = _hashes_of(previous, columns, missing)
    return hashes[rows]


def _hashes_of(frame: pd.DataFrame, columns: Sequence[str], rows: np.ndarray) -> np.ndarray:
    """The hashes of the rows `rows` (a mask) selects; all of them straight from the frame's own columns (a
    snapshot hashed by another scheme: no copy of it), some through a copy of just those."""
    if rows.all():
        return row_hashes(_thrive_text(frame, columns))
    return row_hashes(_thrive_text(frame[rows], columns))


def _stored_hashes(frame: pd.DataFrame, name: str) -> pd.Series:
    """The frame's hashes in column `name` (nullable), all missing when it has none it can be trusted with: a
    hash column that went through a float (a reindex adds NaN as float) has lost bits, so it is not used."""
    if name in frame.columns and pd.api.types.is_unsigned_integer_dtype(frame[name].dtype):
        return frame[name].astype(HASH_DTYPE)
    return pd.Series(pd.NA, index=frame.index, dtype=HASH_DTYPE)


def _positions_in(previous_ids: pd.Index, current_ids: pd.Index, iqa: str) -> np.ndarray:
    """The position of each current ID among the previous ones, -1 for a new one, from one Arrow hash table over
    both sides (a code per distinct ID), which also finds an ID either side repeats (`DuplicateIds`)."""
    chunks = [chunk for ids in (previous_ids, current_ids) for chunk in _arrow(ids).chunks]
    encoded = pc.dictionary_encode(pa.chunked_array(chunks, type=pa.large_string()), null_encoding="encode")
    encoded = encoded.combine_chunks()
    codes = encoded.indices.to_numpy()
    previous_codes, current_codes = codes[: len(previous_ids)], codes[len(previous_ids):]
    for side, ids, side_codes in (("previous", previous_ids, previous_codes), ("current", current_ids, current_codes)):
        if np.bincount(side_codes, minlength=len(encoded.dictionary)).max(initial=0) > 1:
            raise DuplicateIds(iqa, side, ids[ids.duplicated()].unique())
    position_of_code = np.full(len(encoded.dictionary), -1, dtype=np.int64)
    position_of_code[previous_codes] = np.arange(len(previous_codes))
    return position_of_code[current_codes]


def _arrow(ids: pd.Index) -> pa.ChunkedArray:
    """The Arrow array behind a `str` index as it is (no copy, its chunks kept), as `large_string`."""
    column = pa.Table.from_pandas(pd.DataFrame({ID_COLUMN: ids}), preserve_index=False).column(0)
    return column.cast(pa.large_string())


def _union_columns(previous: pd.DataFrame | SnapshotRows, current: pd.DataFrame) -> list[str]:
    names = [name for name in current.columns if name != ID_COLUMN and not is_row_hash_column(name)]
    return names + [name for name in previous.columns
                    if name != ID_COLUMN and name not in current.columns and not is_row_hash_column(name)]


def _thrive_text(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Every compared column as Thrive text; a column the frame lacks is empty throughout."""
    empty = pd.Series(THRIVE_EMPTY, index=frame.index, dtype="str")
    return pd.DataFrame(
        {name: render_for_thrive(frame[name]) if name in frame.columns else empty for name in columns},
        index=frame.index,
        columns=list(columns),
    )


def _changed_columns(
    previous_text: pd.DataFrame, current_text: pd.DataFrame, ids: pd.Index
) -> tuple[pd.Series, dict[str, int]]:
    """Per ID whose hash differs, the tuple of columns whose text differs (rows aligned by position), via the
    distinct change patterns; an ID none of whose columns differs is not changed."""
    columns = list(current_text.columns)
    if len(ids) == 0 or not columns:
        return pd.Series([], index=pd.Index([], dtype="str", name=ID_COLUMN), dtype=object), {}
    differs = np.column_stack(
        [np.asarray(current_text[name].array != previous_text[name].array, dtype=bool) for name in columns]
    )
    really = differs.any(axis=1)
    differs, ids = differs[really], ids[really]
    patterns, pattern_of_row = np.unique(np.packbits(differs, axis=1), axis=0, return_inverse=True)
    names = np.array(columns, dtype=object)
    pattern_columns = np.empty(len(patterns), dtype=object)
    pattern_columns[:] = [
        tuple(names[np.unpackbits(pattern, count=len(columns)).astype(bool)]) for pattern in patterns
    ]
    changed = pd.Series(pattern_columns[pattern_of_row.ravel()], index=ids.rename(ID_COLUMN), dtype=object)
    counts = differs.sum(axis=0)
    return changed, {name: int(count) for name, count in zip(columns, counts, strict=True) if count}
