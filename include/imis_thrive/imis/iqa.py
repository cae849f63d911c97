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
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from include.imis_thrive.imis.errors import ImisValueError
from include.imis_thrive.imis.iqa_package import ID_ALIAS
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


def row_values(row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """One wire row as `{alias: value}`, plus the .NET type of every wrapped value seen in it."""
    types: dict[str, str] = {}
    properties = row.get("Properties")
    if isinstance(properties, dict):  # decoded JSON: plain dicts (and `dict` is checked far faster than Mapping)
        values: dict[str, Any] = {}
        for prop in properties.get("$values") or ():
            name = prop.get("Name")
            if name is None or name in _SKIPPED_COLUMNS:
                continue
            values[name] = _unwrap(prop.get("Value"), name, types)
        return values, types
    return {k: _unwrap(v, k, types) for k, v in row.items() if k not in _SKIPPED_COLUMNS}, types


def _unwrap(value: Any, name: str, types: dict[str, str]) -> Any:
    if type(value) is dict and "$value" in value:  # this runs once per cell: millions of times per extraction
        if "$type" in value:
            types[name] = _wire_type(str(value["$type"]))
        return value["$value"]
    return value


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

    def rows() -> Iterator[dict[str, Any]]:
        """Row by row, page by page: each page's raw JSON is dropped once its values are in the columns."""
        pages_total, seen = None, 0
        for number, page in enumerate(pages, start=1):
            if number == 1 and page.total_count is not None and page.count:
                pages_total = max(1, -(-page.total_count // page.count))
            yield from page.rows
            seen += len(page.rows)
            if progress:
                progress(number, pages_total, seen)

    frame = rows_to_frame(rows(), iqa, timezone, declared_types)
    frame.attrs["extraction_seconds"] = round(time.monotonic() - started, 3)
    return frame


def rows_to_frame(
    rows: Iterable[Mapping[str, Any]],
    iqa: str,
    timezone: str = "UTC",
    declared_types: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Build the typed frame from wire rows. `declared_types` (alias -> .NET type, e.g. from the IQA package)
    wins over what the values suggest, which matters for `/api/query`, whose dates arrive as plain strings."""
    columns: dict[str, list[Any]] = {}
    seen_types: dict[str, str] = {}
    count = 0
    for row in rows:
        values, types = row_values(row)
        seen_types.update(types)
        for name in values:
            if name not in columns:
                columns[name] = [None] * count
        for name, column in columns.items():
            column.append(values.get(name))
        count += 1
    declared = {**seen_types, **(declared_types or {})}
    typed = {}
    for name, cells in columns.items():
        try:
            typed[name] = typed_column(name, cells, declared.get(name), timezone)
        except _UNTYPABLE as bad:
            raise unreadable_value(iqa, name, cells, declared.get(name), timezone, columns.get(ID_COLUMN)) from bad
    frame = pd.DataFrame(typed, index=pd.RangeIndex(count))
    frame.attrs["iqa"] = iqa
    return frame


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
        base = _wire_type(wire_type)
        for kind, names in (("bool", _BOOL_TYPES), ("int", _INT_TYPES), ("float", _FLOAT_TYPES),
                            ("datetime", _DATETIME_TYPES)):
            if base in names:
                return kind
        return "str"
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
    has_offset = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True, na=False)
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
