"""Which iMIS IQA column feeds which Thrive personalization field, and how values are rendered for Thrive.

The default map is data, not code: DESIGN.md §1's table from the integration's own description (equal
names except `PrefixCode ← Prefix` and `SuffixCode ← Suffix`), plus the preference token as `iMISv2 - Token`.
Panel (custom personalization) fields map one to one, so a column the customer adds to the panel IQA
reaches Thrive with no code change.

Thrive receives every personalization value as text, so rendering is part of the map:

- text as is; booleans as `true` / `false`; integers as digits; decimals in their shortest exact form
  (`12.5`, and `100` rather than `100.0`);
- datetimes in the instance time zone the column carries: an ISO date (`2026-03-01`) when the time is
  midnight, else an ISO datetime to the second with its UTC offset (`2026-03-01T14:30:00-05:00`);
- missing values (NA, NaN, None) as the empty string.

Rendering formats each distinct value once (vectorised) and spreads the result with `take`, so a
million rows of birthdays cost little more than the few thousand distinct dates among them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow as pa

from include.imis_thrive.errors import BadData
from include.imis_thrive.imis.iqa import utc_offsets
from include.imis_thrive.imis.iqa_package import CONTACTS_IQA_PATH, ID_ALIAS

CONTACTS_IQA = CONTACTS_IQA_PATH
ID_COLUMN = ID_ALIAS  # the iMIS ID column of every frame, as the IQA package names it
PREFERENCE_TOKEN_FIELD = "iMISv2 - Token"
PREFERENCE_TOKEN_COLUMN = "PreferenceToken"

THRIVE_TRUE = "true"
THRIVE_FALSE = "false"
THRIVE_EMPTY = ""

# Thrive personalization field ← IQA column of `$/HigherLogic/Contacts/Contacts`, in the description's order.
DEFAULT_PERSONALIZATION_MAP: Mapping[str, str] = MappingProxyType(
    {
        "AlternativeContactId": "AlternativeContactId",
        "Birthday": "Birthday",
        "ContactType": "ContactType",
        "Designation": "Designation",
        "DoNotEmail": "DoNotEmail",
        "ExcludeFromDirectory": "ExcludeFromDirectory",
        "FirstName": "FirstName",
        "Gender": "Gender",
        "InformalName": "InformalName",
        "IsMember": "IsMember",
        "IsOrganization": "IsOrganization",
        "LastName": "LastName",
        "MemberExpiresOn": "MemberExpiresOn",
        "MemberSince": "MemberSince",
        "MiddleName": "MiddleName",
        "OrganizationName": "OrganizationName",
        "ParentContactId": "ParentContactId",
        "PrefixCode": "Prefix",
        "PrimaryEmailAddress": "PrimaryEmailAddress",
        "SuffixCode": "Suffix",
        "Title": "Title",
        "WebsiteURL": "WebsiteURL",
        PREFERENCE_TOKEN_FIELD: PREFERENCE_TOKEN_COLUMN,
    }
)


class MissingIqaColumn(BadData):
    """The IQA does not return a column the field map needs; the fix is in the IQA's Display tab."""

    def __init__(self, iqa: str, missing: Mapping[str, str]) -> None:
        self.iqa = iqa
        self.missing = dict(missing)
        needed = ", ".join(f"{column!r} (for Thrive field {field!r})" for field, column in self.missing.items())
        super().__init__(
            f"IQA {iqa!r} does not return column(s) {needed}; add them to the IQA's Display tab under "
            "exactly these aliases"
        )


def iqa_of(frame: pd.DataFrame) -> str:
    """The IQA path the extraction stored on the frame, for error messages."""
    return str(frame.attrs.get("iqa", "<unknown IQA>"))


def panel_field_map(panel: pd.DataFrame) -> dict[str, str]:
    """Identity map over every custom column the panel IQA returns (everything but `ID`)."""
    return {column: column for column in panel.columns if column != ID_COLUMN}


def to_thrive_contacts(
    contacts: pd.DataFrame, field_map: Mapping[str, str] = DEFAULT_PERSONALIZATION_MAP
) -> pd.DataFrame:
    """The Thrive-bound frame for the contacts IQA: `ID` plus one text column per Thrive field."""
    return to_thrive_fields(contacts, field_map)


def to_thrive_panel_fields(panel: pd.DataFrame) -> pd.DataFrame:
    """The Thrive-bound frame for a panel IQA: `ID` plus each custom column under its own name."""
    return to_thrive_fields(panel, panel_field_map(panel))


def to_thrive_fields(frame: pd.DataFrame, field_map: Mapping[str, str]) -> pd.DataFrame:
    """Rename IQA columns to Thrive fields and render their values as the text Thrive receives."""
    missing = {field: column for field, column in field_map.items() if column not in frame.columns}
    if ID_COLUMN not in frame.columns:
        missing = {ID_COLUMN: ID_COLUMN, **missing}
    if missing:
        raise MissingIqaColumn(iqa_of(frame), missing)
    rendered = {ID_COLUMN: frame[ID_COLUMN].astype("str")}
    rendered |= {field: render_for_thrive(frame[column]) for field, column in field_map.items()}
    thrive_bound = pd.DataFrame(rendered, index=frame.index)
    thrive_bound.attrs = dict(frame.attrs)
    return thrive_bound


def render_for_thrive(values: pd.Series) -> pd.Series:
    """One column as Thrive text (`str` dtype, never missing): see the module docstring for the forms."""
    if isinstance(values.dtype, pd.StringDtype):
        return values.fillna(THRIVE_EMPTY).astype("str")
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    formatted = _formatter_for(values.dtype)(distinct)
    lookup = pd.Index([*formatted, THRIVE_EMPTY], dtype="str")
    positions = np.where(codes < 0, len(lookup) - 1, codes)  # missing (code -1) takes the empty string
    return pd.Series(lookup.take(positions), index=values.index, name=values.name)


def _formatter_for(dtype: object) -> Callable[[pd.Index], Sequence[str] | np.ndarray]:
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return _format_datetimes
    if pd.api.types.is_bool_dtype(dtype):
        return lambda distinct: np.where(distinct.to_numpy(dtype=bool), THRIVE_TRUE, THRIVE_FALSE)
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        # Arrow's cast gives digits for integers and the shortest exact text for decimals ("12.5", "100")
        return lambda distinct: pa.array(distinct.to_numpy()).cast(pa.string()).to_pylist()
    return lambda distinct: distinct.astype("str")


def _format_datetimes(distinct: pd.DatetimeIndex) -> Sequence[str]:
    """ISO date at midnight, ISO datetime with its UTC offset otherwise, in the zone the values carry.

    The wall clock is UTC plus the zone's offset (`iqa.utc_offsets`), not pandas' own conversion, which fails
    at .NET's bounds: `9999-12-31T23:59:59`, iMIS's "never expires", goes to Thrive as the text iMIS shows."""
    if distinct.tz is not None:
        utc = distinct.tz_convert("UTC").tz_localize(None)
        offsets = utc_offsets(utc, distinct.tz)
        wall_clock = utc + offsets
    else:
        wall_clock = distinct
    seconds = wall_clock.to_numpy().astype("datetime64[s]")
    stamps = np.datetime_as_string(seconds, unit="s")
    if distinct.tz is not None:
        stamps = np.strings.add(stamps, _iso_offsets((offsets // pd.Timedelta(minutes=1)).to_numpy()))
    dates = np.datetime_as_string(seconds, unit="D")
    return np.where(wall_clock == wall_clock.normalize(), dates, stamps)


def _iso_offsets(offset_minutes: np.ndarray) -> np.ndarray:
    """`-05:00` style suffixes; a zone has only a few distinct offsets, so format those once."""
    codes, distinct = pd.factorize(offset_minutes)
    suffixes = [
        f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}" for minutes in distinct
    ]
    return np.asarray(suffixes)[codes]
