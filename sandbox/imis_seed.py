"""Deterministic, columnar seed data for the iMIS sandbox: contacts, panel fields and list IQAs.

Everything is drawn from one `numpy.random.Generator`, so a seed and a size always give the same
instance. Columns are numpy arrays (strings as object arrays whose values are shared from small
pools, so 1,000,000 contacts take about 560 MB); the sandbox renders rows per page on request.
Row order is ascending iMIS ID, which is the stable sort key every IQA here pages on.
"""

from __future__ import annotations

import base64
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

import numpy as np
import pandas as pd

from sandbox.imis_package import (
    ACTIVE,
    CONTACTS,
    ID,
    LIST_COLUMNS,
    PANEL_FIELDS,
    STATUS,
    ListBreak,
    ServedColumn,
    ServedFilter,
    ServedIqa,
    WireType,
    list_iqa,
)

MIN_CONTACTS = 10
MAX_CONTACTS = 1_000_000
MALFORMED_EMAIL_RATE = 0.005
AS_OF = np.datetime64(date(2026, 1, 1), "s")  # the seed's "today": expiry is relative to it, not the clock
FIRST_ID = 1_000_000  # IDs stay 7 digits up to 1M contacts, so string order equals numeric order

ROW_VERSION = "TimeStamp"  # a customer's extra list column of type Byte[] (SQL rowversion)
_ROW_VERSION_COLUMN = ServedColumn(ROW_VERSION, WireType.BYTES, "TIME_STAMP")

DAY = np.timedelta64(1, "D")
_NAT = np.datetime64("NaT", "s")

# (first name, informal name, gender): accents, apostrophes and hyphens on purpose.
_FIRST_NAMES = (
    ("James", "Jim", "M"), ("Mary", "Mary", "F"), ("Zoë", "Zoë", "F"), ("José", "Pepe", "M"),
    ("Renée", "Renée", "F"), ("François", "François", "M"), ("Siobhán", "Siobhán", "F"), ("Bjørn", "Bjørn", "M"),
    ("Łukasz", "Łukasz", "M"), ("Chloé", "Chloé", "F"), ("Mary-Kate", "MK", "F"), ("William", "Bill", "M"),
    ("Elizabeth", "Liz", "F"), ("Robert", "Bob", "M"), ("Patricia", "Pat", "F"), ("Michael", "Mike", "M"),
    ("Jennifer", "Jen", "F"), ("David", "Dave", "M"), ("Linda", "Linda", "F"), ("Ngozi", "Ngozi", "F"),
    ("Mei", "Mei", "F"), ("Hiroshi", "Hiroshi", "M"), ("Aoife", "Aoife", "F"), ("Søren", "Søren", "M"),
    ("Inés", "Inés", "F"), ("Ximena", "Xime", "F"), ("Ana", "Ana", "F"), ("Priya", "Priya", "F"),
    ("Olúwaseun", "Seun", "M"), ("Thomas", "Tom", "M"), ("Sarah", "Sarah", "F"), ("D'Arcy", "D'Arcy", "M"),
    ("Jean-Luc", "Jean-Luc", "M"), ("Ahmed", "Ahmed", "M"), ("Fatima", "Fatima", "F"),
    ("Katarzyna", "Kasia", "F"), ("Giulia", "Giulia", "F"), ("Héctor", "Héctor", "M"), ("Emily", "Em", "F"),
    ("Christopher", "Chris", "M"),
)
_LAST_NAMES = (
    "O'Brien", "Núñez", "D'Angelo", "Müller", "García", "Smith", "Nguyen", "van der Berg", "St. John",
    "O'Connor", "Björk", "Łukasiewicz", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis",
    "Rodríguez", "Martínez", "Hernández", "López", "González", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Pérez", "Thompson", "White", "Harris", "Sánchez", "Clark",
    "Ramírez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Dubois",
    "Lefèvre", "Kowalski", "Østergaard", "MacDonald", "Fitzgerald", "Okafor", "Tanaka", "Ó Súilleabháin",
    "Schäfer", "Çelik", "Ng", "Smith-Jones", "de la Cruz",
)
_ORG_HEADS = (
    "Acme", "Société Générale", "O'Reilly", "Nordic", "Pacific", "Blue Ridge", "Zürich", "Great Lakes",
    "Summit", "Riverside", "Crescent", "Évora", "Keystone", "Harbor", "Lone Star", "Maple Leaf", "Sunbelt",
    "Cascade", "Atlantic", "Prairie", "Granite State", "Bayou", "Golden Gate", "Peachtree", "Rocky Mountain",
)
_ORG_TAILS = (
    "Associates", "Consulting Group", "Inc.", "Foundation", "University", "Medical Center", "& Sons",
    "Partners LLP", "Credit Union", "Hospital", "Society", "Institute", "Engineering", "Logistics", "Labs",
)
_TITLES = (
    "Director of Membership", "Chief Executive Officer", "Executive Director", "Marketing Manager",
    "Program Coordinator", "Professor", "Registered Nurse", "Senior Engineer", "Board Chair", "Consultant",
    "Responsable des adhésions", "Vice President, Operations", "Student", "Retired",
)
_DESIGNATIONS = ("CAE", "CPA", "PhD", "MBA", "RN", "PE", "CAE, CPA", "FASAE")
_PREFIXES = {"Male": ("Mr.", "Mr.", "Dr.", "Prof."), "Female": ("Ms.", "Mrs.", "Dr.", "Prof."),
             "Non-binary": ("Mx.", "Dr.")}
_SUFFIXES = ("Jr.", "Sr.", "II", "III", "Esq.")
_MEMBER_TYPES = ("Regular Member", "Student Member", "Retired Member")
_WEBMAIL = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "orange.fr", "web.de", "hotmail.co.uk")
_CHAPTERS = ("Northeast", "Southeast", "Midwest", "Mountain West", "Pacific Northwest", "Québec", "Texas Gulf")
_PANEL_WORDS = ("Alpha", "Bravo", "Charlie", "Delta", "Écho", "Foxtrot")
_TOKEN_ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8)
TOKEN_LENGTH = 22

# Contact fields the admin "mutate" action may change, by kind of contact.
_PERSON_MUTABLE = ("FirstName", "LastName", "Title", "PrimaryEmailAddress", "Designation", "DoNotEmail",
                   "ExcludeFromDirectory", "MemberExpiresOn", "InformalName")
_ORGANIZATION_MUTABLE = ("WebsiteURL", "PrimaryEmailAddress", "DoNotEmail", "ExcludeFromDirectory",
                         "MemberExpiresOn")


class SeedError(ValueError):
    """A seed request a person must correct (size out of range, unknown list, bad panel column)."""


@dataclass
class SeedList:
    """A list IQA served by the sandbox: its definition and its members (row positions, ascending)."""

    definition: ServedIqa
    members: np.ndarray
    shared_with_everyone: bool = True
    breaks: ListBreak | None = None

    @property
    def name(self) -> str:
        return self.definition.name


@dataclass
class ImisSeed:
    """The sandbox's data: contact columns, panel columns and lists, all aligned on contact row position."""

    contacts: dict[str, np.ndarray]
    panel: dict[str, np.ndarray]
    panel_definition: ServedIqa
    lists: dict[str, SeedList]
    id_numbers: np.ndarray = field(repr=False)  # ascending, for ID -> row lookups by binary search
    all_rows: np.ndarray = field(repr=False)  # every row position, built once for the all-contacts IQAs
    seed: int = 1
    contacts_definition: ServedIqa = CONTACTS  # a test may take a column out, as a careless edit in iMIS would

    @property
    def size(self) -> int:
        return len(self.id_numbers)

    def row_of(self, contact_id: str) -> int | None:
        """Row position of an iMIS ID, or None when no such contact exists."""
        if not contact_id.isdigit():
            return None
        number = int(contact_id)
        row = int(np.searchsorted(self.id_numbers, number))
        return row if row < self.size and self.id_numbers[row] == number else None

    def find_list(self, name: str) -> SeedList:
        """A list by name or full path, case-insensitively (iMIS document paths are)."""
        key = name.rsplit("/", 1)[-1].casefold()
        for seed_list in self.lists.values():
            if seed_list.name.casefold() == key:
                return seed_list
        raise SeedError(f"no list IQA named {name!r}; lists are: {', '.join(self.lists)}")

    def column(self, alias: str, rows: np.ndarray | slice) -> np.ndarray:
        """Values of one IQA display column for the given contact rows (derived columns included)."""
        if alias in self.contacts:
            return self.contacts[alias][rows]
        if alias in self.panel:
            return self.panel[alias][rows]
        if alias == "FullName":
            return _full_names(self.contacts, rows)
        if alias == "ContactKey":
            return self.contacts[ID][rows]
        if alias == ROW_VERSION:
            return _row_versions(self.id_numbers[rows])
        raise SeedError(f"no seed column behind IQA alias {alias!r}")

    def contacts_frame(self) -> pd.DataFrame:
        """The contacts as a typed DataFrame, for tests and demos (the server never builds it)."""
        frame = pd.DataFrame({alias: self.contacts[alias] for alias in CONTACTS.aliases})
        for column in CONTACTS.columns:
            if column.data_type is WireType.STRING:
                frame[column.alias] = frame[column.alias].astype("str")
        return frame

    def mutate_contacts(self, count: int, seed: int) -> list[str]:
        """Change 1-3 mapped fields on `count` random contacts, as staff edits would; the changed IDs."""
        rng = np.random.default_rng([self.seed, seed])
        rows = np.sort(rng.choice(self.size, size=min(count, self.size), replace=False))
        is_org = self.contacts["IsOrganization"]
        for row in rows.tolist():
            fields = _ORGANIZATION_MUTABLE if is_org[row] else _PERSON_MUTABLE
            for name in rng.choice(fields, size=int(rng.integers(1, 4)), replace=False).tolist():
                self.contacts[name][row] = _changed_value(name, self.contacts[name][row], rng, row)
        return self.contacts[ID][rows].tolist()

    def move_list_members(self, list_name: str, count: int, seed: int) -> dict[str, list[str]]:
        """Add `count` non-members to a list and remove up to `count` members; keeps one active member."""
        seed_list = self.find_list(list_name)
        rng = np.random.default_rng([self.seed, seed, zlib.crc32(seed_list.name.encode())])
        members = seed_list.members
        active = self.contacts[STATUS][members] == ACTIVE
        keep = members[np.argmax(active)] if active.any() else None
        removable = members[members != keep] if keep is not None else members
        removed = rng.choice(removable, size=min(count, len(removable)), replace=False)
        outsiders = np.setdiff1d(np.arange(self.size), members, assume_unique=True)
        added = rng.choice(outsiders, size=min(count, len(outsiders)), replace=False)
        seed_list.members = np.union1d(np.setdiff1d(members, removed, assume_unique=True), added)
        ids = self.contacts[ID]
        return {"added": ids[np.sort(added)].tolist(), "removed": ids[np.sort(removed)].tolist()}

    def mutate_panel(self, count: int, seed: int) -> dict[str, list[str]]:
        """Change 1-2 panel values on `count` random contacts; per changed ID, the columns that changed."""
        rng = np.random.default_rng([self.seed, seed, zlib.crc32(b"panel")])
        rows = np.sort(rng.choice(self.size, size=min(count, self.size), replace=False))
        columns = [column for column in self.panel_definition.columns if column.alias != ID]
        changed: dict[str, list[str]] = {}
        for row in rows.tolist():
            picked = rng.choice(len(columns), size=min(int(rng.integers(1, 3)), len(columns)), replace=False)
            for column in (columns[index] for index in sorted(picked.tolist())):
                values = self.panel[column.alias]
                values[row] = _changed_panel_value(column, values[row], rng)
                changed.setdefault(str(self.contacts[ID][row]), []).append(column.alias)
        return changed

    def edit_contacts(self, edits: dict[str, dict[str, object]]) -> list[str]:
        """Set values on named contacts, as staff (or an import) would: `{ID: {alias: value}}`, where a datetime is
        ISO text (`9999-12-31T23:59:59`, iMIS's "never expires", and `0001-01-01` are values iMIS holds) and None
        empties the cell. Editing `ID` gives a contact a null, repeated or non-numeric iMIS ID, which the contacts
        IQA then returns. Returns the IDs edited."""
        for contact_id, values in edits.items():
            row = self._row_by_id(contact_id)
            for alias, value in values.items():
                column = self._editable(alias)
                if column.dtype.kind == "M":
                    column[row] = _NAT if value is None else np.datetime64(str(value)[:19], "s")
                elif column.dtype.kind == "b":
                    column[row] = bool(value)
                else:
                    column[row] = value
        return list(edits)

    def change_column(self, iqa: str, alias: str, rename_to: str | None = None) -> ServedIqa:
        """Take a display column out of the contacts or panel IQA (`iqa` "contacts" or "panel"), or rename its
        alias, as an edit of the IQA's Display tab would; the values stay behind the new alias."""
        definition = self.contacts_definition if iqa == "contacts" else self.panel_definition
        try:
            column = next(c for c in definition.columns if c.alias == alias)
            changed = definition.without_column(alias)
            if rename_to:
                changed = changed.with_column(ServedColumn(rename_to, column.data_type, column.property_name,
                                                           column.source))
        except (StopIteration, ValueError) as error:
            raise SeedError(f"cannot change column {alias!r} of the {iqa} IQA: {error or 'no such column'}") from None
        if rename_to:
            values = self.contacts if alias in self.contacts else self.panel
            values[rename_to] = values[alias]
        if iqa == "contacts":
            self.contacts_definition = changed
        else:
            self.panel_definition = changed
        return changed

    def _row_by_id(self, contact_id: str) -> int:
        matches = np.flatnonzero(self.contacts[ID] == contact_id)
        if not len(matches):
            raise SeedError(f"no contact with ID {contact_id!r}")
        return int(matches[0])

    def _editable(self, alias: str) -> np.ndarray:
        if alias in self.contacts:
            return self.contacts[alias]
        if alias in self.panel:
            return self.panel[alias]
        raise SeedError(f"no contact or panel column {alias!r} to edit")

    def add_panel_column(self, alias: str, data_type: WireType | str) -> ServedColumn:
        """Extend the panel template by one column with deterministic values, as a customer would."""
        try:
            column = ServedColumn(alias, WireType.parse(str(data_type)))
            self.panel_definition = self.panel_definition.with_column(column)
        except ValueError as error:
            raise SeedError(f"cannot add panel column {alias!r}: {error}") from None
        rng = np.random.default_rng([self.seed, zlib.crc32(alias.encode())])
        self.panel[alias] = _panel_values(column.data_type, self.size, rng)
        return column


def build_seed(contacts: int, seed: int = 1, broken_lists: bool = False, edge_dates: int = 0) -> ImisSeed:
    """Build a whole instance: `contacts` contacts (10 to 1,000,000), the same for the same seed.

    `edge_dates` members get .NET's bounds, as real iMIS data has them: `MemberExpiresOn` 9999-12-31T23:59:59
    ("never expires", e.g. life members) and as many contacts a `Birthday` of 0001-01-01 ("no date")."""
    if not MIN_CONTACTS <= contacts <= MAX_CONTACTS:
        raise SeedError(f"contacts must be between {MIN_CONTACTS:,} and {MAX_CONTACTS:,}, got {contacts:,}")
    rng = np.random.default_rng(seed)
    id_numbers = FIRST_ID + np.cumsum(rng.integers(1, 4, size=contacts))
    columns = _contact_columns(rng, id_numbers)
    if edge_dates:
        _set_edge_dates(columns, edge_dates)
    panel = {
        "ChapterName": _with_nulls(_pick(rng, _CHAPTERS, contacts), rng, 0.15),
        "CommitteeCount": rng.poisson(0.8, size=contacts).astype(np.int64),
        "CEUCredits": np.where(rng.random(contacts) < 0.2, np.nan, np.round(rng.gamma(2.0, 6.0, contacts), 1)),
        "VolunteerOptIn": rng.random(contacts) < 0.3,
        "LastEventDate": np.where(rng.random(contacts) < 0.4, _NAT, AS_OF - rng.integers(1, 1500, contacts) * DAY),
    }
    lists = _valid_lists(rng, columns)
    if broken_lists:
        lists |= _broken_lists(rng, columns)
    return ImisSeed(columns, panel, PANEL_FIELDS, lists, id_numbers, np.arange(contacts), seed)


def _contact_columns(rng: np.random.Generator, id_numbers: np.ndarray) -> dict[str, np.ndarray]:
    n = len(id_numbers)
    ids = id_numbers.astype("U7").astype(object)
    is_org = rng.random(n) < 0.08
    if not is_org.any():
        is_org[int(rng.integers(n))] = True
    person = ~is_org
    org_rows = np.flatnonzero(is_org)

    first_idx = rng.integers(len(_FIRST_NAMES), size=n)
    first = _masked(_pool(name for name, _, _ in _FIRST_NAMES)[first_idx], person)
    informal = _masked(_pool(nick for _, nick, _ in _FIRST_NAMES)[first_idx], person & (rng.random(n) < 0.8))
    last_idx = rng.integers(len(_LAST_NAMES), size=n)
    last = _masked(_pool(_LAST_NAMES)[last_idx], person)
    company = rng.integers(len(_COMPANY_NAMES), size=n)  # every row draws one; only organisations keep theirs
    company_names = _COMPANY_NAMES[company]

    parent_row = np.where(person & (rng.random(n) < 0.45), org_rows[rng.integers(len(org_rows), size=n)], -1)
    has_parent = parent_row >= 0
    parent_id = _masked(ids[np.maximum(parent_row, 0)], has_parent)
    # Persons name their parent organisation, or now and then an employer that is not an iMIS contact.
    employer = np.where(has_parent, company_names[np.maximum(parent_row, 0)], company_names[::-1])
    organization_name = np.where(is_org, company_names, _masked(employer, has_parent | (rng.random(n) < 0.2)))

    history = rng.random(n) < 0.65
    expired = history & (rng.random(n) < 0.22)
    is_member = history & ~expired
    expires_on = np.where(is_member, AS_OF + rng.integers(1, 366, n) * DAY,
                          np.where(expired, AS_OF - rng.integers(1, 1500, n) * DAY, _NAT))
    member_since = np.where(history, expires_on - rng.integers(365, 9000, n) * DAY, _NAT)
    birthday = np.where(person & (rng.random(n) < 0.7),
                        np.datetime64("1940-01-01", "s") + rng.integers(0, 24_100, n) * DAY, _NAT)
    gender = _pool(("Female" if g == "F" else "Male" for _, _, g in _FIRST_NAMES))[first_idx]
    gender[rng.random(n) < 0.02] = "Non-binary"
    prefix = np.where(gender == "Male", _pick(rng, _PREFIXES["Male"], n),
                      np.where(gender == "Female", _pick(rng, _PREFIXES["Female"], n),
                               _pick(rng, _PREFIXES["Non-binary"], n)))
    gender = _masked(gender, person & (rng.random(n) < 0.95))
    types = _pool(("Company", "Non-Member", *_MEMBER_TYPES))
    contact_type = types[np.where(is_org, 0, np.where(is_member, 2 + rng.integers(len(_MEMBER_TYPES), size=n), 1))]

    return {
        ID: ids,
        "AlternativeContactId": _masked(_prefixed("LEG-", rng.integers(100_000, 999_999, n)), rng.random(n) < 0.3),
        "Birthday": birthday,
        "ContactType": contact_type,
        "Designation": _masked(_pick(rng, _DESIGNATIONS, n), person & (rng.random(n) < 0.3)),
        "DoNotEmail": rng.random(n) < 0.03,
        "ExcludeFromDirectory": rng.random(n) < 0.1,
        "FirstName": first,
        "Gender": gender,
        "InformalName": informal,
        "IsMember": is_member,
        "IsOrganization": is_org,
        "LastName": last,
        "MemberExpiresOn": expires_on,
        "MemberSince": member_since,
        "MiddleName": _masked(_pick(rng, ("J.", "A.", "Marie", "Lee", "Ann", "K.", "José"), n),
                              person & (rng.random(n) < 0.4)),
        "OrganizationName": organization_name.astype(object),
        "ParentContactId": parent_id,
        "Prefix": _masked(prefix, person & (rng.random(n) < 0.6)),
        "PrimaryEmailAddress": _emails(rng, first_idx, last_idx, is_org, company, parent_row),
        "Suffix": _masked(_pick(rng, _SUFFIXES, n), person & (rng.random(n) < 0.05)),
        "Title": _masked(_pick(rng, _TITLES, n), person & (rng.random(n) < 0.75)),
        "WebsiteURL": _masked(_COMPANY_URLS[company], is_org | (rng.random(n) < 0.02)),
        "PreferenceToken": _tokens(rng, n),
        STATUS: _status(rng, n),
    }


NEVER_EXPIRES = np.datetime64("9999-12-31T23:59:59", "s")  # .NET's DateTime.MaxValue, to the second
NO_DATE = np.datetime64("0001-01-01T00:00:00", "s")  # .NET's DateTime.MinValue


def _set_edge_dates(columns: dict[str, np.ndarray], count: int) -> None:
    """The first `count` members never expire; the last `count` contacts have the "no date" birthday."""
    members = np.flatnonzero(columns["IsMember"])[:count]
    columns["MemberExpiresOn"][members] = NEVER_EXPIRES
    columns["Birthday"][-count:] = NO_DATE


def _emails(rng: np.random.Generator, first_idx: np.ndarray, last_idx: np.ndarray, is_org: np.ndarray,
            company: np.ndarray, parent_row: np.ndarray) -> np.ndarray:
    """Emails from the name (accents and apostrophes folded), a few missing and a fixed share malformed."""
    n = len(first_idx)
    local = (_pool(_slug(name) for name, _, _ in _FIRST_NAMES)[first_idx] + "."
             + _pool(_slug(name) for name in _LAST_NAMES)[last_idx])
    numbered = rng.random(n) < 0.5
    local[numbered] = local[numbered] + rng.integers(1, 100, int(numbered.sum())).astype("U2").astype(object)
    work_domain = _COMPANY_DOMAINS[company[np.maximum(parent_row, 0)]]
    domain = np.where(parent_row >= 0, work_domain, _pick(rng, _WEBMAIL, n))
    local = np.where(is_org, "info", local)
    domain = np.where(is_org, _COMPANY_DOMAINS[company], domain)
    emails = (local + "@" + domain).astype(object)
    emails[rng.random(n) < 0.03] = None

    present = np.flatnonzero(emails != None)  # noqa: E711 (elementwise comparison on an object array)
    count = min(len(present), max(1, round(n * MALFORMED_EMAIL_RATE)))
    for kind, row in enumerate(np.sort(rng.choice(present, size=count, replace=False)).tolist()):
        local_part, _, domain_part = emails[row].partition("@")
        emails[row] = (f"{local_part}@{local_part}@{domain_part}", f"{local_part}@gmail.com.com",
                       f"{local_part}@")[kind % 3]
    return emails


def _status(rng: np.random.Generator, n: int) -> np.ndarray:
    status = _pool(("A", "I", "S"))[rng.choice(3, size=n, p=(0.9, 0.08, 0.02))]
    if not (status == ACTIVE).any():
        status[0] = ACTIVE
    return status


def _tokens(rng: np.random.Generator, n: int) -> np.ndarray:
    """Opaque url-safe preference tokens, built as one byte matrix rather than a string per draw."""
    letters = _TOKEN_ALPHABET[rng.integers(0, len(_TOKEN_ALPHABET), size=(n, TOKEN_LENGTH))]
    return np.ascontiguousarray(letters).view(f"S{TOKEN_LENGTH}").ravel().astype(f"U{TOKEN_LENGTH}").astype(object)


def _valid_lists(rng: np.random.Generator, columns: dict[str, np.ndarray]) -> dict[str, SeedList]:
    n = len(columns[ID])
    active = columns[STATUS] == ACTIVE
    person = ~columns["IsOrganization"]
    expired = ~columns["IsMember"] & ~np.isnat(columns["MemberExpiresOn"])
    rules = {
        "All Members": (columns["IsMember"] & active,
                        (ServedFilter("IsMember", "Equal", "No", ("true",)),
                         ServedFilter("Status", "Equal", "No", ("A",)))),
        "Newsletter": (person & (rng.random(n) < 0.6), ()),
        "Annual Conference 2026": (rng.random(n) < 0.1, ()),  # also returns a Byte[] column, see below
        "Lapsed Members": (expired, (ServedFilter("MemberExpiresOn", "LessThan", "No", ("2026-01-01",)),)),
    }
    lists = {}
    for name, (mask, filters) in rules.items():
        members = np.flatnonzero(mask)
        if not active[members].any():
            members = np.union1d(members, [int(np.argmax(active))])
        columns_served = (*LIST_COLUMNS, _ROW_VERSION_COLUMN) if name == "Annual Conference 2026" else LIST_COLUMNS
        lists[name] = SeedList(list_iqa(name, columns=columns_served, filters=filters), members)
    return lists


def _broken_lists(rng: np.random.Generator, columns: dict[str, np.ndarray]) -> dict[str, SeedList]:
    """One list per requirement, each failing exactly that one, so the errors can be shown and tested."""
    n = len(columns[ID])
    active = columns[STATUS] == ACTIVE
    no_id = (ServedColumn("ContactKey"), *LIST_COLUMNS[1:])
    prompt = (ServedFilter(STATUS, "Equal", "Required"),)
    broken = (
        SeedList(list_iqa("Broken - Prompted", filters=prompt), np.flatnonzero(rng.random(n) < 0.2),
                 breaks=ListBreak.NO_PROMPTS),
        SeedList(list_iqa("Broken - No ID Alias", columns=no_id), np.flatnonzero(rng.random(n) < 0.15),
                 breaks=ListBreak.ID_ALIAS),
        SeedList(list_iqa("Broken - Not Shared"), np.flatnonzero(rng.random(n) < 0.15),
                 shared_with_everyone=False, breaks=ListBreak.SHARED_WITH_EVERYONE),
        SeedList(list_iqa("Broken - No Active Records"), np.flatnonzero(~active),
                 breaks=ListBreak.ACTIVE_RECORD),
    )
    for seed_list in broken[:3]:
        if not active[seed_list.members].any():
            seed_list.members = np.union1d(seed_list.members, [int(np.argmax(active))])
    return {seed_list.name: seed_list for seed_list in broken}


def _panel_values(data_type: WireType, n: int, rng: np.random.Generator) -> np.ndarray:
    if data_type is WireType.STRING:
        return _with_nulls(_pick(rng, _PANEL_WORDS, n), rng, 0.1)
    if data_type is WireType.INT32:
        return rng.integers(0, 100, size=n).astype(np.int64)
    if data_type is WireType.DECIMAL:
        return np.round(rng.random(n) * 500, 2)
    if data_type is WireType.BOOLEAN:
        return rng.random(n) < 0.5
    return np.where(rng.random(n) < 0.1, _NAT, AS_OF - rng.integers(0, 3650, n) * DAY)


_Cell = TypeVar("_Cell")


def _cell(kind: type[_Cell], value: object) -> _Cell:
    """One cell of a NumPy column, as the type its column holds: NumPy types cells as Any, and a changed value is
    computed from the old one."""
    if not isinstance(value, kind):
        raise TypeError(f"a {kind.__name__} column holds {value!r}")
    return value


def _changed_value(name: str, old: object, rng: np.random.Generator, row: int) -> object:
    """A new value for one field that is guaranteed to differ from the old one."""
    if isinstance(old, (bool, np.bool_)):
        return not old
    if name == "MemberExpiresOn":
        expires = _cell(np.datetime64, old)
        return (AS_OF if np.isnat(expires) else expires) + 365 * DAY
    if name == "PrimaryEmailAddress":
        return f"updated.{row}.{int(rng.integers(1_000_000))}@{_WEBMAIL[int(rng.integers(len(_WEBMAIL)))]}"
    if name == "WebsiteURL":
        return f"https://www.updated-{row}-{int(rng.integers(1_000_000))}.org"
    pool = {"FirstName": [n for n, _, _ in _FIRST_NAMES], "InformalName": [n for _, n, _ in _FIRST_NAMES],
            "LastName": _LAST_NAMES, "Title": _TITLES, "Designation": _DESIGNATIONS}[name]
    choices = [value for value in pool if value != old]
    return choices[int(rng.integers(len(choices)))]


def _changed_panel_value(column: ServedColumn, old: object, rng: np.random.Generator) -> object:
    """A new panel value of the column's type that is guaranteed to differ from the old one (null included)."""
    if column.data_type is WireType.STRING:
        pool = _CHAPTERS if column.alias == "ChapterName" else _PANEL_WORDS
        choices = [value for value in pool if value != old]
        return choices[int(rng.integers(len(choices)))]
    if column.data_type is WireType.INT32:
        return _cell(np.int64, old) + 1
    if column.data_type is WireType.DECIMAL:
        amount = _cell(np.float64, old)
        return 1.0 if np.isnan(amount) else round(float(amount) + 1.5, 2)
    if column.data_type is WireType.BOOLEAN:
        return not old
    day = _cell(np.datetime64, old)
    return AS_OF if np.isnat(day) else day + DAY


def _full_names(contacts: dict[str, np.ndarray], rows: np.ndarray | slice) -> np.ndarray:
    first, last = contacts["FirstName"][rows], contacts["LastName"][rows]
    organization = contacts["OrganizationName"][rows]
    is_org = contacts["IsOrganization"][rows]
    return np.array([org if is_org_row else f"{first_name} {last_name}" for first_name, last_name, org, is_org_row
                     in zip(first.tolist(), last.tolist(), organization.tolist(), is_org.tolist(), strict=True)],
                    dtype=object)


def _row_versions(id_numbers: np.ndarray) -> np.ndarray:
    """A SQL `timestamp` (rowversion) per contact, base64 as Json.NET writes a `System.Byte[]`."""
    return np.array([base64.b64encode(int(number * 7919).to_bytes(8, "big")).decode()
                     for number in id_numbers.tolist()], dtype=object)


def _pool(values: Iterable[str]) -> np.ndarray:
    return np.array(list(values), dtype=object)


def _pick(rng: np.random.Generator, values: tuple[str, ...], n: int) -> np.ndarray:
    """`n` draws from a small pool; the result shares the pool's string objects (cheap at 1M rows)."""
    return _pool(values)[rng.integers(len(values), size=n)]


def _masked(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Object array with None where `keep` is false (iMIS nulls)."""
    out = np.asarray(values, dtype=object).copy()
    out[~keep] = None
    return out


def _with_nulls(values: np.ndarray, rng: np.random.Generator, rate: float) -> np.ndarray:
    return _masked(values, rng.random(len(values)) >= rate)


def _prefixed(prefix: str, numbers: np.ndarray) -> np.ndarray:
    return (prefix + numbers.astype("U6").astype(object)).astype(object)


def _slug(text: str) -> str:
    """Lower-case ASCII letters and digits only, for email local parts and web domains."""
    folded = unicodedata.normalize("NFKD", text.replace("ø", "o").replace("Ø", "O").replace("ł", "l").replace("Ł", "L"))
    return "".join(ch for ch in folded.lower() if ch.isascii() and ch.isalnum())


# Every organisation name, web domain and URL the seed can draw, built once so that a million rows share
# a few hundred string objects instead of holding a million copies.
_COMPANY_NAMES = _pool(f"{head} {tail}" for head in _ORG_HEADS for tail in _ORG_TAILS)
_COMPANY_DOMAINS = _pool(f"{_slug(head)}{_slug(tail)}.org" for head in _ORG_HEADS for tail in _ORG_TAILS)
_COMPANY_URLS = _pool(f"https://www.{domain}" for domain in _COMPANY_DOMAINS)
