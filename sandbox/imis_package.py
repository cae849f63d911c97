"""The Higher Logic IQA package as the iMIS sandbox serves it: its own description, not the client's.

The client (`include/imis_thrive/imis/iqa_package.py`) describes what it *expects*; this module describes
what the sandbox *has*. They are written separately on purpose: if both came from one module, a wrong guess
in the client (an alias, a path, a type name) would be served straight back to it and no test could fail.
`tests/unit/sandbox/test_imis_package.py` compares the two, so a drift between them is a visible decision.

Each served column knows its query source and source property as well as its display alias, because real
`QueryDefinition` answers key a column by `Alias` (often empty), else `PropertyName`, and on iMIS 2017 by the
tail of `Caption` (`CsContact.ID`); `Name` is an internal id (`CsContact.ID`, or `{GUID}.CL3` on 2017).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ROOT_FOLDER = "$/HigherLogic"
CONTACTS_PATH = "$/HigherLogic/Contacts/Contacts"
MAILING_LISTS_FOLDER = "$/HigherLogic/MailingLists"
PANEL_FIELDS_PATH = "$/HigherLogic/Panels/PanelFields"

ID = "ID"
STATUS = "Status"
ACTIVE = "A"
PREFERENCE_TOKEN = "PreferenceToken"
CONTACT_SOURCE = "CsContact"

_NOT_PROMPTED = frozenset({"", "no", "none"})


class WireType(StrEnum):
    """.NET type names the sandbox puts in `{"$type","$value"}` wrappers and (short) in `DataTypeName`."""

    STRING = "System.String"
    BOOLEAN = "System.Boolean"
    DATETIME = "System.DateTime"
    INT32 = "System.Int32"
    DECIMAL = "System.Decimal"
    INT16 = "System.Int16"
    INT64 = "System.Int64"
    DOUBLE = "System.Double"
    GUID = "System.Guid"
    BYTE = "System.Byte"
    BYTES = "System.Byte[]"

    @classmethod
    def parse(cls, name: str) -> WireType:
        """`System.Int32`, `System.Int32, mscorlib` or `Int32`."""
        base = name.split(",", 1)[0].strip()
        qualified = base if base.startswith("System.") else f"System.{base}"
        try:
            return cls(qualified)
        except ValueError:
            raise ValueError(f"unsupported iMIS data type {name!r}; expected one of "
                             f"{', '.join(t.value for t in cls)}") from None

    @property
    def short_name(self) -> str:
        return self.value.removeprefix("System.")

    @property
    def wrapper_type(self) -> str:
        """The `$type` of a value wrapper; arrays carry their assembly, as Json.NET writes them."""
        return f"{self.value}, mscorlib" if self is WireType.BYTES else self.value


class ListBreak(StrEnum):
    """Which list requirement a deliberately broken sandbox list violates."""

    ACTIVE_RECORD = "no active record"
    SHARED_WITH_EVERYONE = "not shared with Everyone"
    ID_ALIAS = "no ID alias"
    NO_PROMPTS = "a prompted filter"


@dataclass(frozen=True)
class ServedColumn:
    """One display column: the alias rows carry, its type, and the source property behind it."""

    alias: str
    data_type: WireType = WireType.STRING
    source_property: str | None = None  # None means the same as the alias
    source: str = CONTACT_SOURCE

    @property
    def property_name(self) -> str:
        return self.source_property or self.alias


@dataclass(frozen=True)
class ServedFilter:
    """One IQA filter; `operation` is the name, rendered as iMIS's number on the wire."""

    property_name: str
    operation: str = "Equal"
    prompt: str | None = None
    values: tuple[str, ...] = ()

    @property
    def is_prompt(self) -> bool:
        return self.prompt is not None and self.prompt.strip().lower() not in _NOT_PROMPTED


@dataclass(frozen=True)
class ServedIqa:
    """An IQA the sandbox serves: where it lives, its display columns and its filters."""

    path: str
    columns: tuple[ServedColumn, ...]
    filters: tuple[ServedFilter, ...] = ()

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]

    @property
    def folder(self) -> str:
        return self.path.rsplit("/", 1)[0]

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(column.alias for column in self.columns)

    @property
    def prompts(self) -> tuple[ServedFilter, ...]:
        return tuple(f for f in self.filters if f.is_prompt)

    def with_column(self, column: ServedColumn) -> ServedIqa:
        if column.alias in self.aliases:
            raise ValueError(f"IQA {self.path} already has a column {column.alias!r}")
        return ServedIqa(self.path, (*self.columns, column), self.filters)

    def without_column(self, alias: str) -> ServedIqa:
        """This IQA with one display column taken out, as a careless edit in iMIS would."""
        if alias not in self.aliases:
            raise ValueError(f"IQA {self.path} has no column {alias!r}")
        return ServedIqa(self.path, tuple(c for c in self.columns if c.alias != alias), self.filters)


def _columns(*spec: tuple[str, WireType] | tuple[str, WireType, str]) -> tuple[ServedColumn, ...]:
    return tuple(ServedColumn(*item) for item in spec)


_S, _B, _D = WireType.STRING, WireType.BOOLEAN, WireType.DATETIME

CONTACTS = ServedIqa(CONTACTS_PATH, _columns(
    (ID, _S), ("AlternativeContactId", _S), ("Birthday", _D), ("ContactType", _S),
    ("Designation", _S), ("DoNotEmail", _B), ("ExcludeFromDirectory", _B), ("FirstName", _S),
    ("Gender", _S), ("InformalName", _S), ("IsMember", _B), ("IsOrganization", _B), ("LastName", _S),
    ("MemberExpiresOn", _D, "PaidThrough"), ("MemberSince", _D, "JoinDate"), ("MiddleName", _S),
    ("OrganizationName", _S, "Company"), ("ParentContactId", _S, "CompanyID"), ("Prefix", _S),
    ("PrimaryEmailAddress", _S, "Email"), ("Suffix", _S), ("Title", _S), ("WebsiteURL", _S, "Website"),
    (PREFERENCE_TOKEN, _S, "CommunicationPreferencesToken"), (STATUS, _S),
))

PANEL_FIELDS = ServedIqa(PANEL_FIELDS_PATH, _columns(
    (ID, _S), ("ChapterName", _S, "Chapter"), ("CommitteeCount", WireType.INT32),
    ("CEUCredits", WireType.DECIMAL), ("VolunteerOptIn", _B), ("LastEventDate", _D),
))

LIST_COLUMNS = _columns((ID, _S), ("FullName", _S), (STATUS, _S))


def list_iqa(name: str, columns: tuple[ServedColumn, ...] = LIST_COLUMNS,
             filters: tuple[ServedFilter, ...] = ()) -> ServedIqa:
    if "/" in name:
        raise ValueError(f"list IQA name {name!r} must not contain '/'")
    return ServedIqa(f"{MAILING_LISTS_FOLDER}/{name}", columns, filters)
