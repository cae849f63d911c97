"""The typed IQA page decoders: every documented row and value shape (reference/imis-api.md §2.3-2.6, §5 A and B)
decodes, and gives the same frame as a generic decode of the same page; any other shape is refused."""

import json

import msgspec
import pandas as pd
import pytest

from include.imis_thrive.imis.iqa import frame_from_pages, rows_to_frame
from include.imis_thrive.imis.iqa_wire import EntityRow, TypedValue, decode_iqa_page
from include.imis_thrive.imis.pages import Page

TZ = "America/New_York"
PROPERTY = "Asi.Soa.Core.DataContracts.GenericPropertyData, Asi.Contracts"


def prop(name, *value):
    """A GenericPropertyData; no value given leaves the `Value` key out, as iMIS 2017 does for nulls."""
    return {"$type": PROPERTY, "Name": name, **({"Value": value[0]} if value else {})}


def wrap(type_name, value):
    return {"$type": type_name, "$value": value}


def entity(number, *props):
    return {"$type": "Asi.Soa.Core.DataContracts.GenericEntityData, Asi.Contracts", "EntityTypeName": "48",
            "PrimaryParentEntityTypeName": "Party",
            "PrimaryParentIdentity": {"$type": "Asi.Soa.Core.DataContracts.IdentityData, Asi.Contracts",
                                      "EntityTypeName": "Party", "IdentityElements": {"$values": ["363593"]}},
            "Properties": {"$type": "Asi.Soa.Core.DataContracts.GenericPropertyDataCollection, Asi.Contracts",
                           "$values": [prop("ResultRow", str(number)), *props]}}


def envelope(rows, items_as_list=False, **fields):
    items = rows if items_as_list else {"$type": "System.Collections.Generic.List`1[...], mscorlib", "$values": rows}
    return json.dumps({"$type": "Asi.Soa.Core.DataContracts.PagedResult, Asi.Contracts", "Items": items,
                       "Offset": 0, "Limit": 500, "Count": len(rows), "TotalCount": len(rows), "NextPageLink": None,
                       "HasNext": False, "NextOffset": 0, **fields}).encode()


# Every documented `/api/IQA` value: bare text, each wrapped type (with and without an assembly suffix), a datetime
# wrapped and bare, null, and no `Value` at all.
IQA_ROWS = [
    entity(1, prop("ID", "363593"), prop("Email", "a@example.org"), prop("EventCount", wrap("System.Int32", 3)),
           prop("OptIn", wrap("System.Boolean", True)), prop("LastDues", wrap("System.Decimal", 125.0)),
           prop("JoinDate", wrap("System.DateTime", "2019-05-01T00:00:00")), prop("Renewed", "2024-06-01T00:00:00"),
           prop("Key", wrap("System.Guid", "0f8fad5b-d9cb-469f-a165-70867728950e")),
           prop("Flags", wrap("System.Byte", 7)), prop("Delta", wrap("System.SByte", -2)),
           prop("Stamp", wrap("System.Byte[], mscorlib", "AAAAAAAbZ3Q=")),
           prop("Count64", wrap("System.Int64, mscorlib", 9)),
           prop("Company")),
    entity(2, prop("ID", "17"), prop("Email", ""), prop("EventCount", wrap("System.Int32", 0)),
           prop("OptIn", wrap("System.Boolean", False)), prop("LastDues", None),
           prop("JoinDate", wrap("System.DateTime", None)), prop("Renewed", None), prop("Key", None),
           prop("Flags", wrap("System.Byte", 0)), prop("Delta"), prop("Stamp"), prop("Count64"),
           prop("Company", "Núñez & D'Angelo")),
]
QUERY_ROWS = [
    {"$type": "System.Dynamic.ExpandoObject, System.Core", "ID": 65, "FullName": "A&O Shearman", "Email": "",
     "Latitude": -33.8698949, "Company": None, "ExcludeDirectory": False, "Visits": 4,
     "Since": "2020-01-31T09:15:00", "TimeStamp": wrap("System.Byte[], mscorlib", "AAAAAAAbZ3Q=")},
    {"$type": "System.Dynamic.ExpandoObject, System.Core", "ID": "66", "FullName": "B", "Email": "b@example.org",
     "Latitude": 51.5, "Company": "C", "ExcludeDirectory": True, "Visits": None, "Since": None,
     "TimeStamp": wrap("System.Byte[], mscorlib", "AAAAAAAbZ3U=")},
]


def generic_frame(content, declared=None):
    return rows_to_frame(Page.from_envelope(msgspec.json.decode(content), 0).rows, "$/X", TZ, declared)


def typed_frame(content, endpoint, declared=None):
    page = Page.from_envelope(decode_iqa_page(content, endpoint).as_body(), 0)
    frame = frame_from_pages([page], "$/X", TZ, declared)
    frame.attrs.pop("extraction_seconds")
    return frame


def test_each_documented_iqa_value_shape_decodes_to_its_value():
    rows = decode_iqa_page(envelope(IQA_ROWS), "iqa").as_body()["Items"]
    assert all(type(row) is EntityRow for row in rows)
    first = {p.Name: p.Value for p in rows[0].Properties.values}
    assert first["ID"] == "363593" and first["Company"] is None  # no `Value` key: null
    assert first["EventCount"] == TypedValue(3, "System.Int32")
    assert first["Stamp"] == TypedValue("AAAAAAAbZ3Q=", "System.Byte[], mscorlib")
    assert first["JoinDate"] == TypedValue("2019-05-01T00:00:00", "System.DateTime")
    assert first["Renewed"] == "2024-06-01T00:00:00"  # a datetime sent bare, as real tenants do


@pytest.mark.parametrize("items_as_list", [False, True])
@pytest.mark.parametrize("declared", [None, {"Renewed": "System.DateTime", "Key": "System.String"}])
def test_typed_and_generic_decoding_of_the_same_iqa_page_give_the_same_frame(items_as_list, declared):
    content = envelope(IQA_ROWS, items_as_list)
    frame = typed_frame(content, "iqa", declared)
    pd.testing.assert_frame_equal(frame, generic_frame(content, declared))
    assert frame["ID"].tolist() == ["363593", "17"] and str(frame["ID"].dtype) == "str"
    assert str(frame["EventCount"].dtype) == "Int64" and str(frame["Flags"].dtype) == "Int64"
    assert str(frame["OptIn"].dtype) == "boolean" and str(frame["LastDues"].dtype) == "Float64"
    assert str(frame["JoinDate"].dtype) == f"datetime64[us, {TZ}]" and pd.isna(frame["JoinDate"][1])
    assert frame["Stamp"][0] == "AAAAAAAbZ3Q=" and pd.isna(frame["Email"][1])  # "" is missing
    assert frame["Company"].isna().tolist() == [True, False]


def test_typed_and_generic_decoding_of_the_same_query_page_give_the_same_frame():
    content = envelope(QUERY_ROWS)
    frame = typed_frame(content, "query")
    pd.testing.assert_frame_equal(frame, generic_frame(content))
    assert frame["ID"].tolist() == ["65", "66"]  # a JSON integer and a string, both text
    assert str(frame["Latitude"].dtype) == "Float64" and str(frame["ExcludeDirectory"].dtype) == "boolean"
    assert str(frame["Visits"].dtype) == "Int64" and frame["TimeStamp"].tolist() == ["AAAAAAAbZ3Q=", "AAAAAAAbZ3U="]
    assert frame["Since"][0] == pd.Timestamp("2020-01-31T09:15:00", tz=TZ)


@pytest.mark.parametrize(("rows", "endpoint"), [(QUERY_ROWS, "iqa"), (IQA_ROWS, "query")])
def test_an_endpoint_answering_in_the_other_row_shape_still_decodes(rows, endpoint):
    content = envelope(rows)
    pd.testing.assert_frame_equal(typed_frame(content, endpoint), generic_frame(content))


@pytest.mark.parametrize("unknown", [
    pytest.param(entity(1, prop("ID", "1"), prop("Tags", ["a", "b"])), id="an array value"),
    pytest.param(entity(1, prop("ID", "1"), prop("Nested", {"$type": "X", "$value": {"a": 1}})), id="object $value"),
    pytest.param(entity(1, prop("ID", "1"), prop("Odd", {"$type": "System.DBNull"})), id="wrapper without $value"),
    pytest.param({"ID": "1", "Address": {"Street": "Main St"}}, id="flat row holding an object"),
    pytest.param(["1", "Jane"], id="a row that is an array"),
])
@pytest.mark.parametrize("endpoint", ["iqa", "query"])
def test_a_row_of_no_known_shape_is_refused_not_read_as_something(unknown, endpoint):
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.Items"):
        decode_iqa_page(envelope([unknown]), endpoint)


def test_pages_whose_columns_and_value_types_differ_are_typed_over_the_whole_result():
    """A column absent from a page is null there; a column holding ints in one page and text in another is typed
    as the generic path types it (by the Python types of all its values)."""
    first = envelope([entity(1, prop("ID", "1"), prop("Code", wrap("System.Int32", 5)))])
    second = envelope([entity(2, prop("ID", "2"), prop("Code", "0042"), prop("Late", "x"))])
    pages = [Page.from_envelope(decode_iqa_page(content, "iqa").as_body(), 0) for content in (first, second)]
    frame = frame_from_pages(pages, "$/X", TZ, {"Code": "System.String"})
    assert frame["Code"].tolist() == ["5", "0042"] and pd.isna(frame["Late"][0]) and frame["Late"][1] == "x"
    generic = rows_to_frame([*msgspec.json.decode(first)["Items"]["$values"],
                             *msgspec.json.decode(second)["Items"]["$values"]], "$/X", TZ, {"Code": "System.String"})
    frame.attrs.pop("extraction_seconds")
    pd.testing.assert_frame_equal(frame, generic)


def test_a_page_whose_rows_list_their_properties_differently_is_read_by_name():
    """Rows are read by position only when every row lists the same properties in the same order."""
    rows = [entity(1, prop("ID", "1"), prop("A", "x"), prop("B", wrap("System.Int32", 1))),
            entity(2, prop("B", wrap("System.Int32", 2)), prop("ID", "2")),  # another order, A left out
            entity(3, prop("ID", "3"), prop("A", "z"), prop("B", None), prop("C", "new"))]
    content = envelope(rows)
    frame = typed_frame(content, "iqa")
    pd.testing.assert_frame_equal(frame, generic_frame(content))
    assert list(frame.columns) == ["ID", "A", "B", "C"]
    assert frame["B"].tolist()[:2] == [1, 2] and pd.isna(frame["A"][1])
    assert frame["C"].isna().tolist() == [True, True, False]
