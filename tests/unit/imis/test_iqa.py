import pandas as pd
import pytest

from include.imis_thrive.errors import FAILS_AT_ONCE
from include.imis_thrive.imis.errors import ImisValueError
from include.imis_thrive.imis.iqa import rows_to_frame, typed_column

TZ = "America/New_York"


def iqa_row(number, **values):
    """One `/api/IQA` GenericEntityData row; a value of ... leaves the `Value` key out, as iMIS 2017 does."""
    props = [{"Name": "ResultRow", "Value": str(number)}]
    for name, value in values.items():
        props.append({"Name": name} if value is ... else {"Name": name, "Value": value})
    return {"$type": "Asi.Soa.Core.DataContracts.GenericEntityData, Asi.Contracts",
            "Properties": {"$values": props}}


def wrap(type_name, value):
    return {"$type": type_name, "$value": value}


def test_iqa_rows_unwrap_typed_values_and_missing_values():
    frame = rows_to_frame([
        iqa_row(1, ID="363593", EventCount=wrap("System.Int32", 3), OptIn=wrap("System.Boolean", True),
                LastDues=wrap("System.Decimal", 125.0), Company=...),
        iqa_row(2, ID="17", EventCount=wrap("System.Int32", 0), OptIn=wrap("System.Boolean", False),
                LastDues=None, Company="Núñez & D'Angelo"),
    ], "$/HigherLogic/Test", TZ)
    assert list(frame.columns) == ["ID", "EventCount", "OptIn", "LastDues", "Company"]
    assert frame["ID"].tolist() == ["363593", "17"]
    assert str(frame["ID"].dtype) == "str"
    assert str(frame["EventCount"].dtype) == "Int64" and frame["EventCount"].tolist() == [3, 0]
    assert str(frame["OptIn"].dtype) == "boolean" and frame["OptIn"].tolist() == [True, False]
    assert str(frame["LastDues"].dtype) == "Float64" and pd.isna(frame["LastDues"][1])
    assert pd.isna(frame["Company"][0]) and frame["Company"][1] == "Núñez & D'Angelo"
    assert frame.attrs["iqa"] == "$/HigherLogic/Test"


def test_wrapper_type_names_with_assembly_suffixes_are_understood():
    frame = rows_to_frame([iqa_row(1, ID="1", N=wrap("System.Int32, mscorlib", 5))], "$/X", TZ)
    assert str(frame["N"].dtype) == "Int64"


def test_naive_datetimes_are_instance_local_and_dst_edges_do_not_fail():
    frame = rows_to_frame([
        iqa_row(1, ID="1", Joined=wrap("System.DateTime", "2019-05-01T00:00:00")),
        iqa_row(2, ID="2", Joined=wrap("System.DateTime", "2024-03-10T02:30:00")),  # skipped hour (spring)
        iqa_row(3, ID="3", Joined=wrap("System.DateTime", "2024-11-03T01:30:00")),  # repeated hour (fall)
        iqa_row(4, ID="4", Joined=...),
    ], "$/X", TZ)
    joined = frame["Joined"]
    assert str(joined.dtype) == f"datetime64[us, {TZ}]"
    assert joined[0] == pd.Timestamp("2019-05-01T00:00:00", tz=TZ)
    assert joined[0].tz_convert("UTC") == pd.Timestamp("2019-05-01T04:00:00Z")
    assert joined[1] == pd.Timestamp("2024-03-10T03:00:00", tz=TZ)
    assert joined[2].utcoffset() == pd.Timedelta(hours=-4)  # first occurrence, still daylight time
    assert pd.isna(joined[3])


def test_query_rows_are_flat_with_native_types():
    frame = rows_to_frame([
        {"$type": "System.Dynamic.ExpandoObject, System.Core", "ID": 65, "FullName": "A&O Shearman", "Email": "",
         "Latitude": -33.8698949, "Company": None, "ExcludeDirectory": False, "Since": "2020-01-31T09:15:00"},
    ], "$/X", TZ)
    assert frame["ID"].tolist() == ["65"]
    assert pd.isna(frame["Email"][0])  # "" is a null, not a value
    assert str(frame["Latitude"].dtype) == "Float64"
    assert str(frame["ExcludeDirectory"].dtype) == "boolean"
    assert frame["Since"][0] == pd.Timestamp("2020-01-31T09:15:00", tz=TZ)


def test_declared_types_win_over_value_guessing():
    frame = rows_to_frame([{"ID": "1", "Birthday": "1980-02-29T00:00:00", "Code": "0042", "Flag": "true"}],
                          "$/X", TZ, declared_types={"Code": "System.String", "Flag": "System.Boolean"})
    assert frame["Code"][0] == "0042"
    assert frame["Flag"][0] is True or bool(frame["Flag"][0]) is True
    assert frame["Birthday"][0] == pd.Timestamp("1980-02-29", tz=TZ)


def test_datetimes_with_an_offset_are_converted_into_the_instance_zone():
    frame = rows_to_frame([{"ID": "1", "At": "2024-01-01T12:00:00Z"}], "$/X", TZ)
    assert frame["At"][0] == pd.Timestamp("2024-01-01T07:00:00", tz=TZ)


def test_columns_missing_from_some_rows_are_null_there_and_order_follows_the_wire():
    frame = rows_to_frame([{"ID": "1", "A": "x"}, {"ID": "2", "B": "y", "A": "z"}], "$/X", TZ)
    assert list(frame.columns) == ["ID", "A", "B"]
    assert pd.isna(frame["B"][0]) and frame["B"][1] == "y"


def test_empty_result_gives_an_empty_frame_that_still_names_the_iqa():
    frame = rows_to_frame([], "$/HigherLogic/Empty", TZ)
    assert frame.empty and frame.attrs["iqa"] == "$/HigherLogic/Empty"


def test_dotnet_bounds_are_read_as_the_values_they_are_in_any_zone():
    """Issue 13, defect 3: `9999-12-31T23:59:59` ("never expires") stopped the whole extraction in a zone west
    of UTC with pandas' "year 10000 is out of range"; it and `0001-01-01` are real iMIS values, kept as they are."""
    for zone in (TZ, "Europe/Berlin", "Asia/Tokyo"):
        frame = rows_to_frame([
            iqa_row(1, ID="1", Expires=wrap("System.DateTime", "9999-12-31T23:59:59")),
            iqa_row(2, ID="2", Expires=wrap("System.DateTime", "9999-12-31T23:59:59.9999999")),
            iqa_row(3, ID="3", Expires=wrap("System.DateTime", "0001-01-01T00:00:00")),
            iqa_row(4, ID="4", Expires=wrap("System.DateTime", "2026-07-01T12:00:00")),
        ], "$/X", zone)
        expires = frame["Expires"]
        assert str(expires.dtype) == f"datetime64[us, {zone}]"
        assert [(t.year, t.month, t.day) for t in expires.dt.tz_convert("UTC").dt.tz_localize(None)[3:]] == \
            [(2026, 7, 1)]
        assert expires[3] == pd.Timestamp("2026-07-01T12:00:00", tz=zone)  # the ordinary path is unchanged


def test_a_value_that_is_not_of_its_column_type_names_the_iqa_column_and_id_not_the_value():
    rows = [iqa_row(1, ID="101", Joined=wrap("System.DateTime", "2020-01-01T00:00:00")),
            iqa_row(2, ID="102", Joined=wrap("System.DateTime", "sometime soon"))]
    with pytest.raises(ImisValueError, match=r"IQA \$/X: column 'Joined' holds a value that is not a System.DateTime "
                                             r"for ID 102, so the IQA cannot be read and nothing was loaded") as failed:
        rows_to_frame(rows, "$/X", TZ)
    assert "sometime" not in str(failed.value)
    assert issubclass(ImisValueError, FAILS_AT_ONCE)


@pytest.mark.parametrize(("values", "wire_type"), [
    (["a", "", None, " b "], None),
    (["a", "", None], "System.String"),
    ([1, None, 3], None),
    ([1, None, 3], "System.String"),
    ([1.5, None], "System.String"),  # Python's str(), not Arrow's spelling
    ([True, None], "System.String"),
    ([1, 2.5, None], None),
    (["42", " 7", None], "System.Int32"),
    ([3.0, None], "System.Int64"),
    (["125.00", "", None], "System.Decimal"),
    ([True, False, None], None),
    (["true", " Yes", "0", "no", None], "System.Boolean"),
    ([1, 0, None], "System.Boolean"),
    (["2019-05-01T00:00:00", "2024-01-01T12:00:00Z", None], None),
    (["2019-05-01T00:00:00", "", None], "System.DateTime"),
    (["9999-12-31T23:59:59.9999999", "0001-01-01T00:00:00", "2024-11-03T01:30:00", "2024-03-10T02:30:00"],
     "System.DateTime"),  # .NET's bounds, the repeated and the skipped hour
    (["2020-01-31T09:15", "2019-05-01", "2019-05-01T00:00:00.5"], "System.DateTime"),
    (["x", 5, None], None),
    ([None, None], None),
    ([None, None], "System.Int32"),
])
def test_arrow_typed_columns_match_typed_column_value_for_value(values, wire_type):
    """`ColumnBuilder` types most columns with Arrow compute; `typed_column` is the reference it must agree with."""
    rows = [{"ID": str(number), "C": value} for number, value in enumerate(values)]
    frame = rows_to_frame(rows, "$/X", TZ, {"C": wire_type} if wire_type else None)
    pd.testing.assert_series_equal(frame["C"], typed_column("C", values, wire_type, TZ), check_names=False)


@pytest.mark.parametrize("ids", [["363593", " 17 ", None], [65, 66], [65, "66"], [65.0, 66.0]])
def test_ids_become_text_whatever_the_wire_sent(ids):
    frame = rows_to_frame([{"ID": value} for value in ids], "$/X", TZ)
    pd.testing.assert_series_equal(frame["ID"], typed_column("ID", ids, None, TZ), check_names=False)
    assert str(frame["ID"].dtype) == "str"


def test_an_unreadable_value_in_a_row_without_an_id_is_named_by_its_row_number():
    rows = [iqa_row(1, ID="101", Joined=wrap("System.DateTime", "2020-01-01T00:00:00")),
            iqa_row(2, ID=..., Joined=wrap("System.DateTime", "sometime soon"))]
    with pytest.raises(ImisValueError, match=r"column 'Joined' holds a value that is not a System.DateTime for row 2,"):
        rows_to_frame(rows, "$/X", TZ)
