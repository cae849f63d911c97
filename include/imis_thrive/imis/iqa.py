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
    frame = pd.DataFrame(
        {name: typed_column(name, values, declared.get(name), timezone) for name, values in columns.items()},
        index=pd.RangeIndex(count),
    )
    frame.attrs["iqa"] = iqa
    return frame


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
    hour the time moves forward: iMIS stores local wall time and cannot tell us more.
    """
    text = raw.astype("str").where(raw.notna(), None)
    has_offset = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True, na=False)
    result = pd.Series(pd.NaT, index=raw.index, dtype=f"datetime64[us, {timezone}]")
    naive = text.notna() & ~has_offset
    if naive.any():
        parsed = pd.to_datetime(text[naive], format="ISO8601").astype("datetime64[us]")
        result[naive] = parsed.dt.tz_localize(
            timezone, ambiguous=np.ones(len(parsed), dtype=bool), nonexistent="shift_forward"
        )
    if has_offset.any():
        result[has_offset] = pd.to_datetime(text[has_offset], format="ISO8601", utc=True).dt.tz_convert(timezone)
    return result
