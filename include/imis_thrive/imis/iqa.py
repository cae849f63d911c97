"""Turn iMIS IQA / query result rows into one typed pandas DataFrame.

Both row shapes are accepted (reference/imis-api.md §2.5-2.6): `/api/IQA` rows are `GenericEntityData` whose
`Properties.$values` carry `{"Name", "Value"}` pairs (`ResultRow` first, values either bare, wrapped as
`{"$type": "System.Int32", "$value": 3}`, null, or missing altogether; datetimes often as plain strings);
`/api/query` rows are flat objects with native JSON values (the ID a JSON integer on real tenants) that can
still hold typed wrappers, e.g. `{"$type": "System.Byte[], mscorlib", "$value": "<base64>"}`. The output (the
contract every sync module relies on):

- column `ID` as `str`, whether the wire sent `"363593"` or `363593` (never let IDs become floats);
- a `System.Byte[]` value as its base64 text; a plain-string datetime typed from the declared types (the IQA
  package) or, without them, from its ISO shape;
- text `str`, booleans `boolean`, integers `Int64`, decimals `Float64`, missing values as NA ("" counts as missing);
- datetimes tz-aware in the instance's time zone: iMIS sends naive local times, and a naive timestamp
  taken for UTC would shift every birthday and expiry by hours;
- `frame.attrs["iqa"]` = the IQA path, so later errors can name it; `frame_from_pages` adds
  `frame.attrs["extraction_seconds"]`.

Rows arrive as decoded JSON or as the structs of `iqa_wire` (what the client reads pages into). `ColumnBuilder`
puts each page's columns into Arrow arrays as the page arrives and types whole columns with Arrow compute;
`typed_column` is the reference it agrees with, and types the rare column Arrow cannot (mixed Python types).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain, islice
from operator import attrgetter, itemgetter
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.arrays import ArrowStringArray

from include.imis_thrive.imis.errors import ImisValueError
from include.imis_thrive.imis.iqa_package import ID_ALIAS
from include.imis_thrive.imis.iqa_wire import EntityRow, TypedValue
from include.imis_thrive.imis.pages import Page

ID_COLUMN = ID_ALIAS  # the iMIS ID column of every frame, as the IQA package names it

_BOOL_TYPES = {"System.Boolean"}
_INT_TYPES = {"System.Int16", "System.Int32", "System.Int64", "System.Byte", "System.SByte", "System.UInt16",
              "System.UInt32", "System.UInt64"}
_FLOAT_TYPES = {"System.Decimal", "System.Double", "System.Single"}
_DATETIME_TYPES = {"System.DateTime", "System.DateTimeOffset"}
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_SKIPPED_COLUMNS = {"ResultRow", "$type"}


def _wire_type(type_name: str) -> str:
    """`System.Int32` from `System.Int32, mscorlib` (assembly suffixes differ by iMIS version)."""
    return type_name.split(",", 1)[0].strip()


def row_values(row: Any) -> Mapping[str, Any]:
    """One wire row as `{alias: value}`, values still as the wire has them (wrapped or not): an `/api/IQA` row's
    properties by name, an `/api/query` row as it is (its `$type` and `ResultRow` are skipped later)."""
    if type(row) is EntityRow:
        return {prop.Name: prop.Value for prop in row.Properties.values if prop.Name is not None}
    properties = row.get("Properties")
    if isinstance(properties, dict):  # decoded JSON: plain dicts (and `dict` is checked far faster than Mapping)
        return {prop["Name"]: prop.get("Value") for prop in properties.get("$values") or ()
                if prop.get("Name") is not None}
    return row


def frame_from_pages(
    pages: Iterable[Page],
    iqa: str,
    timezone: str = "UTC",
    declared_types: Mapping[str, str] | None = None,
    progress: Callable[[int, int | None, int], None] | None = None,
) -> pd.DataFrame:
    """The typed frame of a whole IQA run, read page by page as the pages arrive.

    `progress(pages_done, pages_total, rows_so_far)` is called after each page so a long run can be followed
    in the task log; `frame.attrs["extraction_seconds"]` is how long fetching and building took."""
    started = time.monotonic()
    columns = ColumnBuilder()
    pages_total = None
    for number, page in enumerate(pages, start=1):
        if number == 1 and page.total_count is not None and page.count:
            pages_total = max(1, -(-page.total_count // page.count))
        columns.add(page.rows)  # the page's rows are dropped once their values are in Arrow arrays
        if progress:
            progress(number, pages_total, columns.count)
    frame = columns.frame(iqa, timezone, declared_types)
    frame.attrs["extraction_seconds"] = round(time.monotonic() - started, 3)
    return frame


def rows_to_frame(
    rows: Iterable[Any],
    iqa: str,
    timezone: str = "UTC",
    declared_types: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Build the typed frame from wire rows (decoded JSON objects of either shape, or `iqa_wire` rows).
    `declared_types` (alias -> .NET type, e.g. from the IQA package) wins over what the values suggest, which
    matters for `/api/query`, whose dates arrive as plain strings."""
    columns = ColumnBuilder()
    batches = iter(rows)
    while batch := list(islice(batches, BATCH_ROWS)):
        columns.add(batch)
    return columns.frame(iqa, timezone, declared_types)


BATCH_ROWS = 500  # rows turned into Arrow arrays at a time by `rows_to_frame` (one iMIS page)
# A page's share of a column: Arrow values, Python values Arrow cannot hold as they are, or that many missing values.
Chunk: TypeAlias = pa.Array | list[Any] | int
# The Arrow type of a page's column holding only these Python types (besides None); any other mix stays a list.
_CHUNK_TYPES: dict[frozenset[type], pa.DataType] = {
    frozenset({str}): pa.large_string(), frozenset({int}): pa.int64(), frozenset({float}): pa.float64(),
    frozenset({bool}): pa.bool_(),
}
# The Arrow type of a whole column from the Python types of all its pages (ints among floats widen to floats).
_COLUMN_TYPES = {**_CHUNK_TYPES, frozenset({int, float}): pa.float64()}


class ColumnBuilder:
    """The columns of one IQA result, filled page by page. Each page's values go into Arrow arrays at once, so
    only one page's Python objects are alive at a time (a result of 1M rows held as Python lists took 1.7 GB),
    and `frame` types whole columns with Arrow compute. A column whose values Arrow cannot type the way
    `typed_column` does (mixed Python types, say) is typed by `typed_column` itself, with its exact rules and
    its error naming the row."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[Chunk]] = {}
        self.python_types: dict[str, set[type]] = {}
        self.wire_types: dict[str, str] = {}  # the .NET type of the last wrapped value seen in each column
        self.count = 0

    def add(self, rows: Sequence[Any]) -> None:
        """One page of rows of any shape `row_values` reads."""
        if not rows:
            return
        columns = _entity_columns(rows) if type(rows[0]) is EntityRow else None
        if columns is None:
            columns = _flat_columns([row_values(row) for row in rows])
        for name, values in columns.items():
            if name not in self.chunks:
                self.chunks[name] = [self.count] if self.count else []
                self.python_types[name] = set()
            self.chunks[name].append(self._chunk(name, values))
        for name, chunks in self.chunks.items():
            if name not in columns:
                chunks.append(len(rows))
        self.count += len(rows)

    def _chunk(self, name: str, values: list[Any]) -> Chunk:
        kinds = set(map(type, values))
        if TypedValue in kinds or dict in kinds:
            values, wire_type = _unwrapped(values)
            if wire_type:
                self.wire_types[name] = wire_type
            kinds = set(map(type, values))
        kinds.discard(type(None))
        self.python_types[name] |= kinds
        if not kinds:
            return len(values)
        arrow_type = _CHUNK_TYPES.get(frozenset(kinds))
        if arrow_type is None:
            return values
        try:
            return pa.array(values, type=arrow_type)
        except (pa.ArrowException, OverflowError):  # an integer beyond 64 bits, say: `typed_column` decides
            return values

    def frame(self, iqa: str, timezone: str, declared_types: Mapping[str, str] | None) -> pd.DataFrame:
        """The typed frame; each column's chunks are let go as soon as it is typed, so the result is held once."""
        declared = {**self.wire_types, **(declared_types or {})}
        typed: dict[str, pd.Series] = {}
        for name in list(self.chunks):
            chunks, wire_type = self.chunks[name], declared.get(name)
            try:
                series = _arrow_column(name, chunks, self.python_types[name], wire_type, timezone)
            except (pa.ArrowException, *_UNTYPABLE):  # not Arrow's to decide: `typed_column` types it or says why
                series = None
            if series is None:
                values = _python_values(chunks)
                try:
                    series = typed_column(name, values, wire_type, timezone)
                except _UNTYPABLE as bad:
                    raise unreadable_value(iqa, name, values, wire_type, timezone, self._ids(typed)) from bad
            typed[name] = series
            del self.chunks[name]
        frame = pd.DataFrame(typed, index=pd.RangeIndex(self.count), copy=False)
        frame.attrs["iqa"] = iqa
        return frame

    def _ids(self, typed: Mapping[str, pd.Series]) -> list[Any] | None:
        """The ID column's values, for an error naming a row: typed already, or still in chunks, or absent."""
        if ID_COLUMN in typed:
            return [None if pd.isna(value) else value for value in typed[ID_COLUMN].tolist()]
        return _python_values(self.chunks[ID_COLUMN]) if ID_COLUMN in self.chunks else None


def _entity_columns(rows: Sequence[EntityRow]) -> dict[str, list[Any]] | None:
    """An `/api/IQA` page's columns by position when every row lists the same properties in the same order (as
    iMIS sends them): one pass of C-level list operations instead of a dict per row. None if a row differs."""
    properties = [row.Properties.values for row in rows]
    names = list(map(_NAME, properties[0]))
    cells = [prop for row in properties for prop in row]
    if len(cells) != len(names) * len(rows) or list(map(_NAME, cells)) != names * len(rows) or None in names:
        return None
    values = list(map(_VALUE, cells))
    width = len(names)
    return {name: values[position::width] for position, name in enumerate(names) if name not in _SKIPPED_COLUMNS}


_NAME, _VALUE = attrgetter("Name"), attrgetter("Value")


def _flat_columns(rows: list[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """A page of `{alias: value}` rows as columns, in the order the aliases first appear; absent = None. Rows
    that all have the same aliases (as iMIS sends them) are transposed by C-level `itemgetter` and `zip`."""
    first = rows[0].keys()
    if all(row.keys() == first for row in rows):
        names = [name for name in first if name not in _SKIPPED_COLUMNS]
        if len(names) > 1:
            return dict(zip(names, map(list, zip(*map(itemgetter(*names), rows), strict=True)), strict=True))
    else:
        names = [name for name in dict.fromkeys(chain.from_iterable(rows)) if name not in _SKIPPED_COLUMNS]
    return {name: [row.get(name) for row in rows] for name in names}


def _unwrapped(values: list[Any]) -> tuple[list[Any], str | None]:
    """A column's values with `{"$type", "$value"}` wrappers (typed or decoded JSON) replaced by their value, and
    the .NET type of the last wrapper that names one."""
    wire_type = None
    for value in reversed(values):
        if type(value) is TypedValue and value.type:
            wire_type = _wire_type(value.type)
            break
        if type(value) is dict and "$value" in value and "$type" in value:
            wire_type = _wire_type(str(value["$type"]))
            break
    return [value.value if type(value) is TypedValue
            else value["$value"] if type(value) is dict and "$value" in value else value
            for value in values], wire_type


def _python_values(chunks: list[Chunk]) -> list[Any]:
    """A column back as Python values (the rare column `typed_column` types, and error reports)."""
    values: list[Any] = []
    for chunk in chunks:
        if isinstance(chunk, int):
            values += [None] * chunk
        elif isinstance(chunk, list):
            values += chunk
        else:
            values += chunk.to_pylist()
    return values


def _arrow_column(name: str, chunks: list[Chunk], python_types: set[type], wire_type: str | None,
                  timezone: str) -> pd.Series | None:
    """The column typed as `typed_column` would type it, with Arrow compute; None where only `typed_column`
    knows the answer (mixed Python types, values Arrow would read differently)."""
    arrow_type = _COLUMN_TYPES.get(frozenset(python_types), pa.large_string() if not python_types else None)
    if arrow_type is None:
        return None
    arrays = []
    for chunk in chunks:
        if isinstance(chunk, list):
            return None
        arrays.append(pa.nulls(chunk, arrow_type) if isinstance(chunk, int) else chunk.cast(arrow_type))
    array = pa.chunked_array(arrays, arrow_type)  # not combined: the frame's text columns are these very chunks
    if arrow_type == pa.large_string():
        empty = pc.equal(array, "")
        if pc.any(empty).as_py():  # "" counts as missing; a column without one is not copied
            array = pc.if_else(empty, pa.scalar(None, arrow_type), array)
    if name == ID_COLUMN:
        if arrow_type == pa.large_string():
            return _series(pc.utf8_trim_whitespace(array))
        return _series(array.cast(pa.large_string())) if arrow_type == pa.int64() else None
    kind = _declared_kind(wire_type) if wire_type else _arrow_kind(array)
    if kind == "str":  # Arrow spells floats and booleans otherwise than Python's str(): `typed_column` does those
        return _series(array.cast(pa.large_string())) if arrow_type in (pa.large_string(), pa.int64()) else None
    if kind == "bool":
        if arrow_type == pa.large_string():
            truthy = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(array)), value_set=_TRUE_TEXTS)
            return _series(pc.if_else(pc.is_valid(array), truthy, pa.scalar(None, pa.bool_())))
        return _series(array if arrow_type == pa.bool_() else pc.not_equal(array, 0))
    if kind in ("int", "float"):
        if arrow_type == pa.bool_():
            return None
        return _series(array.cast(pa.int64() if kind == "int" else pa.float64()))
    if kind == "datetime" and arrow_type == pa.large_string():
        return _arrow_localize(array, timezone)
    return None


def _arrow_localize(text: pa.ChunkedArray, timezone: str) -> pd.Series:
    """`localize` for a text column, parsed by Arrow's ISO 8601 cast when no value carries an offset (as iMIS sends
    them): `localize` itself goes through Python objects. Values with an offset, or that Arrow does not parse, go
    to `localize`."""
    text = pc.replace_substring_regex(text, _SUB_MICROSECONDS, r"\1")
    if not pc.any(pc.match_substring_regex(text, _UTC_OFFSET)).as_py():
        try:
            wall_clock = text.cast(pa.timestamp("us")).to_pandas()
        except pa.ArrowInvalid:
            pass
        else:
            return utc_from_wall_clock(wall_clock, timezone).dt.tz_localize("UTC").dt.tz_convert(timezone)
    return localize(_series(text), timezone)


_TRUE_TEXTS = pa.array(["true", "1", "yes", "y"], pa.large_string())  # `_to_bool`'s spellings of true
_TEXT = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' default `str`
_PANDAS_DTYPES = {pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype(), pa.bool_(): pd.BooleanDtype()}


def _series(array: pa.ChunkedArray) -> pd.Series:
    """The project's dtypes: text `str` (Arrow-backed, no copy), `Int64`, `Float64`, `boolean`."""
    if pa.types.is_large_string(array.type):  # wrapped as it is: `to_pandas` would go through Python objects
        return pd.Series(ArrowStringArray(array, dtype=_TEXT), copy=False)
    return array.to_pandas(types_mapper=_PANDAS_DTYPES.get)


def _arrow_kind(array: pa.ChunkedArray) -> str:
    """`_kind` for a column with no declared type, from its Arrow type and, for text, its ISO datetime shape."""
    if array.null_count == len(array):
        return "str"
    if pa.types.is_large_string(array.type):
        return "datetime" if pc.all(pc.match_substring_regex(array, _ISO_DATETIME.pattern)).as_py() else "str"
    return {pa.bool_(): "bool", pa.int64(): "int", pa.float64(): "float"}[array.type]


# What typing a column raises on a value it cannot hold; pandas raises NotImplementedError (not OverflowError) for
# a timestamp whose year leaves its range, e.g. 9999-12-31 moved west of UTC.
_UNTYPABLE = (ValueError, TypeError, OverflowError, NotImplementedError)


def unreadable_value(iqa: str, name: str, values: Sequence[Any], wire_type: str | None, timezone: str,
                     ids: Sequence[Any] | None) -> ImisValueError:
    """The error for a column that cannot be typed, naming the first row whose value is the cause (by ID, never
    by value: it is member data); found value by value, which only a failing column pays for."""
    kind = _kind(pd.Series(values, dtype=object).replace({"": None}), wire_type)
    for row, value in enumerate(values):
        try:
            typed_column(name, [value], wire_type or _KIND_TYPES.get(kind), timezone)
        except _UNTYPABLE:
            who = f"ID {ids[row]}" if ids is not None and ids[row] not in (None, "") else f"row {row + 1}"
            break
    else:
        who = "a row"
    expected = wire_type or kind
    return ImisValueError(
        f"IQA {iqa}: column {name!r} holds a value that is not a {expected} for {who}, so the IQA cannot be read "
        f"and nothing was loaded; correct that value in iMIS (or the column's type in the IQA)")


_KIND_TYPES = {"bool": "System.Boolean", "int": "System.Int64", "float": "System.Decimal",
               "datetime": "System.DateTime"}


def typed_column(name: str, values: Sequence[Any], wire_type: str | None, timezone: str) -> pd.Series:
    """One column in its pandas dtype; "" and null both become NA."""
    raw = pd.Series(values, dtype=object).replace({"": None})
    if name == ID_COLUMN:
        return _id_series(raw)
    kind = _kind(raw, wire_type)
    if kind == "bool":
        return raw.map(_to_bool, na_action="ignore").astype("boolean")
    if kind == "int":
        return pd.to_numeric(raw).astype("Int64")
    if kind == "float":
        return pd.to_numeric(raw).astype("Float64")
    if kind == "datetime":
        return localize(raw, timezone)
    return raw.astype("str")


def _id_series(raw: pd.Series) -> pd.Series:
    as_text = raw.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip(),
                      na_action="ignore")
    return as_text.astype("str")


def _kind(raw: pd.Series, wire_type: str | None) -> str:
    if wire_type:
        return _declared_kind(wire_type)
    present = raw.dropna()
    if present.empty:
        return "str"
    python_types = set(map(type, present))
    if python_types == {bool}:
        return "bool"
    if python_types == {int}:
        return "int"
    if python_types <= {int, float}:
        return "float"
    if python_types == {str} and present.map(lambda v: bool(_ISO_DATETIME.match(v))).all():
        return "datetime"
    return "str"


def _declared_kind(wire_type: str) -> str:
    base = _wire_type(wire_type)
    for kind, names in (("bool", _BOOL_TYPES), ("int", _INT_TYPES), ("float", _FLOAT_TYPES),
                        ("datetime", _DATETIME_TYPES)):
        if base in names:
            return kind
    return "str"


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "y"}
    return bool(value)


def localize(raw: pd.Series, timezone: str) -> pd.Series:
    """Naive wire datetimes are instance-local; values that carry an offset are converted to that zone.

    In the repeated hour of a DST fall-back the first occurrence is taken; in the skipped spring-forward
    hour the time moves forward: iMIS stores local wall time and cannot tell us more. .NET's own bounds
    (`0001-01-01`, `9999-12-31T23:59:59.9999999`, which iMIS users store for "no date" and "never expires")
    are kept as the values they are (see `utc_from_wall_clock`); fractions beyond microseconds are dropped.
    """
    text = raw.astype("str").where(raw.notna(), None).str.replace(_SUB_MICROSECONDS, r"\1", regex=True)
    has_offset = text.str.contains(_UTC_OFFSET, regex=True, na=False)
    utc = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us]")
    naive = text.notna() & ~has_offset
    if naive.any():
        wall_clock = pd.to_datetime(text[naive], format="ISO8601").astype("datetime64[us]")
        utc[naive] = utc_from_wall_clock(wall_clock, timezone)
    if has_offset.any():
        aware = pd.to_datetime(text[has_offset], format="ISO8601", utc=True)
        utc[has_offset] = aware.dt.tz_localize(None).astype("datetime64[us]")
    return utc.dt.tz_localize("UTC").dt.tz_convert(timezone)


# Python's datetime, which pandas asks for a zone's offset, cannot step outside years 1-9999, so a wall-clock
# time at .NET's bounds cannot be localised the usual way (pandas: "year 10000 is out of range"). Its offset is
# looked up a day inward instead: the same offset for every zone, whose rules are fixed at both ends of time.
_OFFSET_LOOKUP_FROM = np.datetime64("0001-01-02T00:00:00", "us")
_OFFSET_LOOKUP_TO = np.datetime64("9999-12-30T23:59:59", "us")
_SUB_MICROSECONDS = r"(\.\d{6})\d+"
_UTC_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"


def utc_from_wall_clock(wall_clock: pd.Series, timezone: str) -> pd.Series:
    """Naive local times (`datetime64[us]`) as naive UTC, each shifted by its zone's offset at that moment."""
    lookup = wall_clock.clip(_OFFSET_LOOKUP_FROM, _OFFSET_LOOKUP_TO)
    localized = lookup.dt.tz_localize(timezone, ambiguous=np.ones(len(lookup), dtype=bool),
                                      nonexistent="shift_forward")
    return wall_clock - (lookup - localized.dt.tz_convert("UTC").dt.tz_localize(None))


def utc_offsets(utc: pd.DatetimeIndex, timezone: Any) -> pd.TimedeltaIndex:
    """The zone's UTC offset at each naive UTC moment (local time = UTC + offset), safe at .NET's bounds."""
    lookup = pd.DatetimeIndex(np.clip(utc.to_numpy(), _OFFSET_LOOKUP_FROM, _OFFSET_LOOKUP_TO))
    return pd.TimedeltaIndex(lookup.tz_localize("UTC").tz_convert(timezone).tz_localize(None) - lookup)
