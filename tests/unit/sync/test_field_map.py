from __future__ import annotations

import pandas as pd
import pytest

from include.imis_thrive.sync.field_map import (
    CONTACTS_IQA,
    DEFAULT_PERSONALIZATION_MAP,
    PREFERENCE_TOKEN_FIELD,
    MissingIqaColumn,
    panel_field_map,
    render_for_thrive,
    to_thrive_contacts,
    to_thrive_panel_fields,
)

DESIGN_TABLE = {  # DESIGN.md §1, Thrive field ← IQA column
    "AlternativeContactId": "AlternativeContactId", "Birthday": "Birthday", "ContactType": "ContactType",
    "Designation": "Designation", "DoNotEmail": "DoNotEmail", "ExcludeFromDirectory": "ExcludeFromDirectory",
    "FirstName": "FirstName", "Gender": "Gender", "InformalName": "InformalName", "IsMember": "IsMember",
    "IsOrganization": "IsOrganization", "LastName": "LastName", "MemberExpiresOn": "MemberExpiresOn",
    "MemberSince": "MemberSince", "MiddleName": "MiddleName", "OrganizationName": "OrganizationName",
    "ParentContactId": "ParentContactId", "PrefixCode": "Prefix", "PrimaryEmailAddress": "PrimaryEmailAddress",
    "SuffixCode": "Suffix", "Title": "Title", "WebsiteURL": "WebsiteURL",
}


def test_default_map_is_the_design_table_plus_the_preference_token() -> None:
    assert dict(DEFAULT_PERSONALIZATION_MAP) == DESIGN_TABLE | {"iMISv2 - Token": "PreferenceToken"}
    assert PREFERENCE_TOKEN_FIELD == "iMISv2 - Token"


def test_contacts_become_id_plus_thrive_fields_as_text(frames) -> None:
    contacts = frames.contacts(3)

    thrive_bound = to_thrive_contacts(contacts)

    assert list(thrive_bound.columns) == ["ID", *DEFAULT_PERSONALIZATION_MAP]
    assert all(isinstance(dtype, pd.StringDtype) for dtype in thrive_bound.dtypes)
    assert not thrive_bound.isna().any().any()
    assert thrive_bound["ID"].tolist() == ["363593", "363594", "363595"]
    assert thrive_bound["PrefixCode"].tolist() == ["Prefix 0", "Prefix 1", "Prefix 2"]
    assert thrive_bound["SuffixCode"].tolist() == ["Suffix 0", "Suffix 1", "Suffix 2"]
    assert thrive_bound["iMISv2 - Token"].tolist() == ["PreferenceToken 0", "PreferenceToken 1", "PreferenceToken 2"]
    assert thrive_bound.attrs["iqa"] == CONTACTS_IQA


def test_booleans_render_as_true_false_and_missing_as_empty(frames) -> None:
    contacts = frames.contacts(3)
    contacts["IsMember"] = pd.Series([True, False, None], dtype="boolean")

    assert to_thrive_contacts(contacts)["IsMember"].tolist() == ["true", "false", ""]


def test_midnight_renders_as_a_date_and_other_times_as_datetimes_in_the_instance_zone(frames) -> None:
    contacts = frames.contacts(4)
    contacts["MemberExpiresOn"] = frames.datetimes(
        "2026-12-31", "2026-01-15 14:30:05", "2026-07-04 09:00:00.750", None
    )

    rendered = to_thrive_contacts(contacts)["MemberExpiresOn"].tolist()

    assert rendered == ["2026-12-31", "2026-01-15T14:30:05-05:00", "2026-07-04T09:00:00-04:00", ""]


def test_datetimes_render_in_the_zone_they_carry_not_utc(frames) -> None:
    late_evening = frames.datetimes("2026-03-01 23:30:00")

    assert render_for_thrive(late_evening).tolist() == ["2026-03-01T23:30:00-05:00"]
    assert render_for_thrive(late_evening.dt.tz_convert("UTC")).tolist() == ["2026-03-02T04:30:00+00:00"]


def test_naive_datetimes_render_without_an_offset() -> None:
    naive = pd.Series(pd.to_datetime(["2026-03-01", "2026-03-01 08:15:00"], format="ISO8601"))

    assert render_for_thrive(naive).tolist() == ["2026-03-01", "2026-03-01T08:15:00"]


def test_numbers_render_as_their_shortest_exact_text() -> None:
    assert render_for_thrive(pd.Series([7, None, -12], dtype="Int64")).tolist() == ["7", "", "-12"]
    assert render_for_thrive(pd.Series([12.5, 100.0, None, 0.1], dtype="Float64")).tolist() == [
        "12.5", "100", "", "0.1"
    ]


def test_text_keeps_its_value_and_missing_becomes_empty() -> None:
    assert render_for_thrive(pd.Series(["O'Brien", None, ""], dtype="str")).tolist() == ["O'Brien", "", ""]


def test_rendering_keeps_the_row_index(frames) -> None:
    contacts = frames.contacts(3).iloc[[2, 0]]

    assert to_thrive_contacts(contacts).index.tolist() == [2, 0]


def test_a_missing_iqa_column_names_the_iqa_the_column_and_the_thrive_field(frames) -> None:
    contacts = frames.contacts(2).drop(columns=["Prefix", "PreferenceToken"])

    with pytest.raises(MissingIqaColumn) as failure:
        to_thrive_contacts(contacts)

    message = str(failure.value)
    assert CONTACTS_IQA in message
    assert "'Prefix' (for Thrive field 'PrefixCode')" in message
    assert "'PreferenceToken' (for Thrive field 'iMISv2 - Token')" in message
    assert failure.value.missing == {"PrefixCode": "Prefix", PREFERENCE_TOKEN_FIELD: "PreferenceToken"}


def test_a_missing_id_column_is_named(frames) -> None:
    with pytest.raises(MissingIqaColumn, match="'ID'"):
        to_thrive_contacts(frames.contacts(1).drop(columns=["ID"]))


def test_panel_fields_map_every_custom_column_to_itself_with_no_code_change(frames) -> None:
    panel = frames.iqa(
        "$/HigherLogic/Panels/Demographics",
        ID=frames.text("1", "2"),
        Chapter=frames.text("North", None),
        YearsOfService=pd.Series([12, None], dtype="Int64"),
        BoardMember=pd.Series([True, False], dtype="boolean"),
    )

    assert panel_field_map(panel) == {
        "Chapter": "Chapter", "YearsOfService": "YearsOfService", "BoardMember": "BoardMember",
    }
    thrive_bound = to_thrive_panel_fields(panel)
    assert thrive_bound.to_dict("list") == {
        "ID": ["1", "2"], "Chapter": ["North", ""], "YearsOfService": ["12", ""], "BoardMember": ["true", "false"],
    }
    assert thrive_bound.attrs["iqa"] == "$/HigherLogic/Panels/Demographics"


@pytest.mark.parametrize("zone", ["America/New_York", "UTC", "Europe/Berlin", "Asia/Tokyo"])
def test_dotnet_bounds_go_to_thrive_as_the_text_imis_shows(zone) -> None:
    """Issue 13, defect 3: iMIS's "never expires" (9999-12-31T23:59:59, .NET's last second) and "no date"
    (0001-01-01) reach Thrive, whose personalization fields take text, as the values iMIS holds, in every zone."""
    from include.imis_thrive.imis.iqa import localize

    wire = pd.Series(["9999-12-31T23:59:59", "9999-12-31T23:59:59.9999999", "0001-01-01T00:00:00",
                      "2026-07-01T00:00:00", None], dtype=object)
    rendered = render_for_thrive(localize(wire, zone)).tolist()
    offset = {"America/New_York": "-05:00", "UTC": "+00:00", "Europe/Berlin": "+01:00", "Asia/Tokyo": "+09:00"}[zone]
    assert rendered == [f"9999-12-31T23:59:59{offset}", f"9999-12-31T23:59:59{offset}", "0001-01-01", "2026-07-01", ""]
