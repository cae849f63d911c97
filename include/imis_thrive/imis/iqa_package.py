"""The iMIS IQA package this integration expects, described as data.

Higher Logic's iMIS integration reads a fixed set of IQAs: one contacts query with the default
personalization columns, a folder of list IQAs (each one a Thrive target group) and a panel-field
template the customer extends. Writing them down here, once, lets the sandbox serve exactly this
package and lets a check compare a real instance's `QueryDefinition` against it, naming the IQA and
column a person must fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from include.imis_thrive.imis.errors import ImisUnexpectedAnswer

ROOT_FOLDER = "$/HigherLogic"
CONTACTS_IQA_PATH = "$/HigherLogic/Contacts/Contacts"
MAILING_LISTS_FOLDER = "$/HigherLogic/MailingLists"
PANEL_FIELDS_IQA_PATH = "$/HigherLogic/Panels/PanelFields"

ID_ALIAS = "ID"
STATUS_ALIAS = "Status"
ACTIVE_STATUS = "A"
PREFERENCE_TOKEN_ALIAS = "PreferenceToken"

# Prompt values that mean "this filter is not shown to the person running the IQA".
_NOT_PROMPTED = frozenset({"", "no", "none"})
# CriteriaData.Operation arrives as a number on real tenants; only 3 = Equal has been seen. Other numbers are
# kept as their digits rather than guessed.
_OPERATION_NAMES = {3: "Equal"}


class ImisDataType(StrEnum):
    """The .NET type names iMIS uses in typed `{"$type","$value"}` wrappers."""

    STRING = "System.String"
    BOOLEAN = "System.Boolean"
    DATETIME = "System.DateTime"
    INT32 = "System.Int32"
    DECIMAL = "System.Decimal"
    # Also seen in customers' IQAs; the package itself uses only the five above.
    INT16 = "System.Int16"
    INT64 = "System.Int64"
    DOUBLE = "System.Double"
    GUID = "System.Guid"
    BYTE = "System.Byte"

    @classmethod
    def parse(cls, name: str) -> ImisDataType:
        """Accept both `System.Int32` (value wrappers) and `Int32` (QueryDefinition `DataTypeName`)."""
        qualified = name if name.startswith("System.") else f"System.{name}"
        try:
            return cls(qualified)
        except ValueError:
            raise ValueError(f"unsupported iMIS data type {name!r}; expected one of "
                             f"{', '.join(t.value for t in cls)}") from None

    @property
    def short_name(self) -> str:
        """The spelling of `QueryPropertyData.DataTypeName` (`Int32`, not `System.Int32`)."""
        return self.value.removeprefix("System.")


class ListRequirement(StrEnum):
    """What makes an IQA in the mailing-lists folder usable as a Thrive target group."""

    ACTIVE_RECORD = "returns at least one active record (Status A)"
    SHARED_WITH_EVERYONE = "is shared with Everyone"
    ID_ALIAS = "returns the iMIS ID under the display alias ID"
    NO_PROMPTS = "has no prompts (every filter's Prompt set to No)"


@dataclass(frozen=True)
class IqaColumn:
    """One display column: its alias (the name on the wire) and its iMIS data type."""

    alias: str
    data_type: ImisDataType = ImisDataType.STRING


@dataclass(frozen=True)
class IqaFilter:
    """One IQA filter; `prompt` other than None/"No" makes it a prompt the caller must pass."""

    property_name: str
    operation: str = "Equal"
    prompt: str | None = None
    values: tuple[str, ...] = ()

    @property
    def is_prompt(self) -> bool:
        return self.prompt is not None and self.prompt.strip().lower() not in _NOT_PROMPTED


@dataclass(frozen=True)
class IqaDefinition:
    """An IQA as the integration sees it: where it lives, what it returns, what it asks for."""

    path: str
    columns: tuple[IqaColumn, ...]
    filters: tuple[IqaFilter, ...] = ()
    required_aliases: tuple[str, ...] = (ID_ALIAS,)

    def __post_init__(self) -> None:
        if not self.path.startswith("$/"):
            raise ValueError(f"IQA path {self.path!r} must start with '$/'")
        aliases = self.aliases
        if len(set(aliases)) != len(aliases):
            raise ValueError(f"IQA {self.path}: duplicate column aliases in {aliases}")

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
    def prompts(self) -> tuple[IqaFilter, ...]:
        return tuple(f for f in self.filters if f.is_prompt)

    def column(self, alias: str) -> IqaColumn:
        for column in self.columns:
            if column.alias == alias:
                return column
        raise KeyError(f"IQA {self.path} has no column with alias {alias!r}")

    def missing_aliases(self, present: Iterable[str]) -> tuple[str, ...]:
        """Required aliases absent from `present` (iMIS aliases are case-sensitive on the wire)."""
        found = set(present)
        return tuple(alias for alias in self.required_aliases if alias not in found)

    def with_column(self, column: IqaColumn) -> IqaDefinition:
        """This IQA extended by one display column, as a customer does to the panel template."""
        if column.alias in self.aliases:
            raise ValueError(f"IQA {self.path} already has a column {column.alias!r}")
        return IqaDefinition(self.path, (*self.columns, column), self.filters, self.required_aliases)

    @classmethod
    def from_query_definition(cls, payload: Mapping[str, Any],
                              required_aliases: tuple[str, ...] = (ID_ALIAS,)) -> IqaDefinition:
        """Read a `POST /api/QueryDefinition/_execute` (FindByPath) answer: EMS (inside `Result`, with
        `Document`) or iMIS 2017 (the definition at the top level).

        A column is keyed as its rows are: by `Alias`, else by `PropertyName`, else (2017, where the source
        property is only in `Caption`, e.g. `CsContact.ID`) by the part of `Caption` after the last dot. Never
        by `Name`, which is an internal id (`CsContact.ID`, or `{GUID}.CL3` on 2017)."""
        definition = payload.get("Result", payload)
        if not definition:
            raise ValueError("QueryDefinition answer has no Result: the IQA path does not exist")
        path = str(definition.get("Path") or (definition.get("Document") or {}).get("Path") or "")
        properties = _values(definition, "Properties", path)
        properties = sorted(properties, key=lambda p: p.get("DisplayOrder") or 0)
        columns = tuple(IqaColumn(_column_key(p, path), _column_type(p.get("DataTypeName") or "String"))
                        for p in properties)
        filters = tuple(
            IqaFilter(str(c.get("PropertyName") or ""), _operation(c.get("Operation")),
                      None if c.get("Prompt") is None else str(c.get("Prompt")),
                      tuple(str(v) for v in (c.get("Values") or {}).get("$values") or ())
                      if isinstance(c.get("Values"), Mapping) else ())
            for c in (_values(definition, "Parameters", path) if definition.get("Parameters") is not None else [])
        )
        return cls(path, columns, filters, required_aliases)


def _values(definition: Mapping[str, Any], key: str, path: str) -> list[Mapping[str, Any]]:
    """`definition[key].$values`, or a typed error naming the IQA if the answer is not shaped like that."""
    container = definition.get(key)
    values = container.get("$values") if isinstance(container, Mapping) else None
    if not isinstance(values, list) or not all(isinstance(v, Mapping) for v in values):
        raise ImisUnexpectedAnswer(
            f"QueryDefinition of IQA {path or '(no path)'}: expected {key}.$values to be a list of objects, "
            f"got {type(container).__name__} (keys of the answer: {', '.join(sorted(map(str, definition)))})")
    return values


def _column_key(prop: Mapping[str, Any], path: str) -> str:
    for key in ("Alias", "PropertyName"):
        value = prop.get(key)
        if isinstance(value, str) and value.strip():
            return value
    caption = prop.get("Caption")
    if isinstance(caption, str) and caption.strip():
        return caption.rsplit(".", 1)[-1]
    raise ImisUnexpectedAnswer(f"QueryDefinition of IQA {path}: display property {prop.get('Name')!r} has no "
                               "Alias, PropertyName or Caption to key its column by")


def _operation(value: Any) -> str:
    """`Operation` as a name: real tenants send a number (3 = Equal), older samples a name."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        return _OPERATION_NAMES.get(number, str(number))
    return str(value)


def _column_type(name: str) -> ImisDataType:
    """A definition's column type; a type the package never uses (Money, Byte[], …) counts as text, since a
    customer's extra column must not stop the integration from reading the IQA's aliases and prompts."""
    try:
        return ImisDataType.parse(name)
    except ValueError:
        return ImisDataType.STRING


@dataclass(frozen=True)
class PackageMismatch:
    """One way a real IQA differs from the package; `str()` is the sentence a person acts on."""

    iqa_path: str
    problem: str
    alias: str | None = None

    def __str__(self) -> str:
        where = f"IQA {self.iqa_path}" + (f", column {self.alias}" if self.alias else "")
        return f"{where}: {self.problem}"


def package_mismatches(expected: IqaDefinition, found: IqaDefinition) -> list[PackageMismatch]:
    """Compare an instance's IQA with the package: missing required columns, wrong types, prompts."""
    found_types = {column.alias: column.data_type for column in found.columns}
    mismatches = [
        PackageMismatch(expected.path, f"required column missing (add a display column aliased {alias!r})", alias)
        for alias in expected.missing_aliases(found_types)
    ]
    mismatches += [
        PackageMismatch(expected.path, f"has type {found_types[c.alias]}, expected {c.data_type}", c.alias)
        for c in expected.columns
        if c.alias in found_types and found_types[c.alias] != c.data_type
    ]
    mismatches += [
        PackageMismatch(expected.path, f"filter on {f.property_name} is a prompt ({f.prompt}); set Prompt to No")
        for f in found.prompts
    ]
    return mismatches


def _columns(*spec: tuple[str, ImisDataType]) -> tuple[IqaColumn, ...]:
    return tuple(IqaColumn(alias, data_type) for alias, data_type in spec)


_S, _B, _D = ImisDataType.STRING, ImisDataType.BOOLEAN, ImisDataType.DATETIME

_CONTACT_COLUMNS = _columns(
    (ID_ALIAS, _S), ("AlternativeContactId", _S), ("Birthday", _D), ("ContactType", _S),
    ("Designation", _S), ("DoNotEmail", _B), ("ExcludeFromDirectory", _B), ("FirstName", _S),
    ("Gender", _S), ("InformalName", _S), ("IsMember", _B), ("IsOrganization", _B), ("LastName", _S),
    ("MemberExpiresOn", _D), ("MemberSince", _D), ("MiddleName", _S), ("OrganizationName", _S),
    ("ParentContactId", _S), ("Prefix", _S), ("PrimaryEmailAddress", _S), ("Suffix", _S), ("Title", _S),
    ("WebsiteURL", _S), (PREFERENCE_TOKEN_ALIAS, _S), (STATUS_ALIAS, _S),
)
# Every contacts column is required: the field map sends all of them to Thrive.
CONTACTS_IQA = IqaDefinition(
    CONTACTS_IQA_PATH, _CONTACT_COLUMNS, required_aliases=tuple(c.alias for c in _CONTACT_COLUMNS)
)

# The 22 default-personalization columns (everything but the key, the token and the status).
PERSONALIZATION_ALIASES: tuple[str, ...] = tuple(
    alias for alias in CONTACTS_IQA.aliases if alias not in (ID_ALIAS, PREFERENCE_TOKEN_ALIAS, STATUS_ALIAS)
)

PANEL_FIELDS_IQA = IqaDefinition(
    path=PANEL_FIELDS_IQA_PATH,
    columns=_columns(
        (ID_ALIAS, _S), ("ChapterName", _S), ("CommitteeCount", ImisDataType.INT32),
        ("CEUCredits", ImisDataType.DECIMAL), ("VolunteerOptIn", _B), ("LastEventDate", _D),
    ),
)

LIST_IQA_COLUMNS: tuple[IqaColumn, ...] = _columns((ID_ALIAS, _S), ("FullName", _S), (STATUS_ALIAS, _S))


def list_iqa_definition(name: str, columns: tuple[IqaColumn, ...] = LIST_IQA_COLUMNS,
                        filters: tuple[IqaFilter, ...] = ()) -> IqaDefinition:
    """A list IQA named `name` in the mailing-lists folder; every list must return `ID`."""
    if "/" in name:
        raise ValueError(f"list IQA name {name!r} must not contain '/'")
    return IqaDefinition(f"{MAILING_LISTS_FOLDER}/{name}", columns, filters, required_aliases=(ID_ALIAS,))
