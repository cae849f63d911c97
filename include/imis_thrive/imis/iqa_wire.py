"""Typed msgspec decoders for an IQA page, one per row shape (reference/imis-api.md §2.3-2.6).

Why typed: a generic decode of an `/api/IQA` page builds a dict for every cell (each `{"$type", "Name", "Value"}`
property) and a string for every property's long `$type`, only for `iqa.py` to take them apart again; decoding
straight into the structs below skips what the frame never reads and is several times faster on the same pages.

Every documented alternative still decodes: `Items` as `{"$values": [...]}` or a bare list; a `Value` bare, wrapped
(`{"$type": "System.Int32", "$value": 5}`, `$type` with or without an assembly suffix), null or missing; flat
`/api/query` rows with native JSON values and wrapped `Byte[]` values. Each endpoint's decoder is tried first, then
the other shape (an instance that answers `/api/IQA` with flat rows, or the reverse). A row neither decoder knows
raises `msgspec.ValidationError`, which the client turns into `ImisUnexpectedAnswer` naming the call: never an
empty answer for a reply it did not understand.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import msgspec

Scalar = str | int | float | bool | None


class TypedValue(msgspec.Struct, gc=False):
    """`{"$type": "System.Int32", "$value": 5}`: a .NET-typed value; `$value` is always a JSON scalar."""

    value: Scalar = msgspec.field(name="$value")
    type: str = msgspec.field(name="$type", default="")


WireValue = Scalar | TypedValue


class Property(msgspec.Struct, gc=False):
    """One `GenericPropertyData`: the column alias and its value (`Value` missing = null, as iMIS 2017 sends)."""

    Name: str | None = None
    Value: WireValue = None


class PropertyBag(msgspec.Struct, gc=False):
    values: list[Property] = msgspec.field(name="$values", default_factory=list)


class EntityRow(msgspec.Struct, gc=False):
    """An `/api/IQA` row (`GenericEntityData`); only its properties become columns."""

    Properties: PropertyBag


FlatRow = dict[str, WireValue]  # an `/api/query` row (`ExpandoObject`): alias -> value, `$type` among them

R = TypeVar("R")


class RowList(msgspec.Struct, Generic[R], gc=False):
    values: list[R] = msgspec.field(name="$values", default_factory=list)


class Envelope(msgspec.Struct, Generic[R]):
    """`PagedResult`; the paging fields stay untyped so `Page.from_envelope` checks them as for any other call."""

    Items: RowList[R] | list[R] | msgspec.UnsetType | None = msgspec.UNSET
    Offset: Any = msgspec.UNSET
    Limit: Any = msgspec.UNSET
    Count: Any = msgspec.UNSET
    TotalCount: Any = msgspec.UNSET
    HasNext: Any = msgspec.UNSET
    NextOffset: Any = msgspec.UNSET

    def as_body(self) -> dict[str, Any]:
        """The envelope as a generic decode would give it (absent fields left out), `Items` the typed rows, for
        `Page.from_envelope` to check as it checks every paged answer."""
        body = {field: value for field in self.__struct_fields__
                if (value := getattr(self, field)) is not msgspec.UNSET}
        if isinstance(self.Items, RowList):
            body["Items"] = self.Items.values
        return body


_ENTITY_PAGE = msgspec.json.Decoder(Envelope[EntityRow])
_FLAT_PAGE = msgspec.json.Decoder(Envelope[FlatRow])


def decode_iqa_page(content: bytes, endpoint: Literal["query", "iqa"]) -> Envelope[Any]:
    """One IQA page, rows typed; `msgspec.ValidationError` (the endpoint's own decoder's) for rows of no known
    shape, `msgspec.DecodeError` for an answer that is not JSON."""
    first, second = (_ENTITY_PAGE, _FLAT_PAGE) if endpoint == "iqa" else (_FLAT_PAGE, _ENTITY_PAGE)
    try:
        return first.decode(content)
    except msgspec.ValidationError as unknown:
        try:
            return second.decode(content)
        except msgspec.ValidationError:
            raise unknown from None
