"""Frames shaped exactly like the iMIS extraction's output, built in code from a few lines."""

from __future__ import annotations

import pandas as pd
import pytest

from include.imis_thrive.sync.field_map import CONTACTS_IQA

INSTANCE_TZ = "America/New_York"
CONTACT_TEXT_COLUMNS = [
    "AlternativeContactId", "ContactType", "Designation", "FirstName", "Gender", "InformalName", "LastName",
    "MiddleName", "OrganizationName", "ParentContactId", "Prefix", "Suffix", "Title", "WebsiteURL",
    "PreferenceToken",
]
CONTACT_FLAG_COLUMNS = ["DoNotEmail", "ExcludeFromDirectory", "IsMember", "IsOrganization"]
CONTACT_DATE_COLUMNS = ["Birthday", "MemberExpiresOn", "MemberSince"]


class Frames:
    """Builders for typed IQA frames: `ID` is `str`, text `str`, flags `boolean`, datetimes instance-local."""

    tz = INSTANCE_TZ

    @staticmethod
    def text(*values: str | None) -> pd.Series:
        return pd.Series(list(values), dtype="str")

    @staticmethod
    def datetimes(*values: str | None) -> pd.Series:
        parsed = pd.Series(pd.to_datetime(list(values), format="ISO8601"))
        return parsed.dt.tz_localize(INSTANCE_TZ).astype(f"datetime64[us, {INSTANCE_TZ}]")

    @staticmethod
    def iqa(iqa: str, **columns: pd.Series) -> pd.DataFrame:
        """A list or panel IQA frame: `ID` plus whatever columns the IQA returns."""
        frame = pd.DataFrame(columns)
        frame.attrs["iqa"] = iqa
        return frame

    def contacts(self, count: int = 3) -> pd.DataFrame:
        """`count` active contacts of `$/HigherLogic/Contacts/Contacts`, every column typed as extracted."""
        rows = range(count)
        columns = {"ID": self.text(*(str(363593 + row) for row in rows))}
        columns |= {name: self.text(*(f"{name} {row}" for row in rows)) for name in CONTACT_TEXT_COLUMNS}
        columns |= {name: pd.Series([row % 2 == 0 for row in rows], dtype="boolean") for name in CONTACT_FLAG_COLUMNS}
        columns |= {name: self.datetimes(*(f"1980-01-{row + 1:02d}" for row in rows)) for name in CONTACT_DATE_COLUMNS}
        columns["PrimaryEmailAddress"] = self.text(*(f"member{row}@example.org" for row in rows))
        columns["Status"] = self.text(*("A" for _ in rows))
        return self.iqa(CONTACTS_IQA, **columns)


@pytest.fixture
def frames() -> Frames:
    return Frames()
