"""The iMIS seed: deterministic, realistic, and its lists meet (or, on purpose, break) the list requirements."""

from __future__ import annotations

import re

import numpy as np
import pytest

from sandbox.imis_package import ACTIVE as ACTIVE_STATUS
from sandbox.imis_package import CONTACTS as CONTACTS_IQA
from sandbox.imis_package import ID as ID_ALIAS
from sandbox.imis_package import PANEL_FIELDS as PANEL_FIELDS_IQA
from sandbox.imis_package import ListBreak as ListRequirement
from sandbox.imis_package import WireType as ImisDataType
from sandbox.imis_seed import (
    MALFORMED_EMAIL_RATE,
    TOKEN_LENGTH,
    ImisSeed,
    SeedError,
    build_seed,
)

WELL_FORMED = re.compile(r"^[a-z0-9.]+@(?!.*\.com\.com$)[a-z0-9]+(\.[a-z0-9]+)*\.(com|org|fr|de|co\.uk)$")
VALID_LISTS = ("All Members", "Newsletter", "Annual Conference 2026", "Lapsed Members")


@pytest.fixture(scope="module")
def large() -> ImisSeed:
    return build_seed(20_000, seed=7, broken_lists=True)


def _column_equal(left: np.ndarray, right: np.ndarray) -> bool:
    if left.dtype.kind in "fM":
        return bool(np.array_equal(left, right, equal_nan=True))
    return left.tolist() == right.tolist()


def test_same_seed_same_instance_and_other_seed_differs() -> None:
    first, again, other = build_seed(500, seed=3), build_seed(500, seed=3), build_seed(500, seed=4)

    assert all(_column_equal(first.contacts[a], again.contacts[a]) for a in CONTACTS_IQA.aliases)
    assert all(_column_equal(first.panel[a], again.panel[a]) for a in first.panel)
    assert all(first.lists[name].members.tolist() == again.lists[name].members.tolist() for name in first.lists)
    assert first.contacts["PreferenceToken"].tolist() != other.contacts["PreferenceToken"].tolist()


@pytest.mark.parametrize("size", [10, 20_000])
def test_every_contacts_column_is_present_and_sized(size: int) -> None:
    seed = build_seed(size, seed=1)

    frame = seed.contacts_frame()
    assert list(frame.columns) == list(CONTACTS_IQA.aliases)
    assert len(frame) == size
    assert frame[ID_ALIAS].str.fullmatch(r"\d{7}").all()
    assert frame[ID_ALIAS].is_unique and frame[ID_ALIAS].is_monotonic_increasing
    assert set(seed.panel) == set(PANEL_FIELDS_IQA.aliases) - {ID_ALIAS}
    assert all(len(values) == size for values in seed.panel.values())


@pytest.mark.parametrize("size", [9, 1_000_001])
def test_size_outside_range_is_refused(size: int) -> None:
    with pytest.raises(SeedError, match="between 10 and 1,000,000"):
        build_seed(size)


def test_column_types_follow_the_package(large: ImisSeed) -> None:
    for column in CONTACTS_IQA.columns:
        values = large.contacts[column.alias]
        if column.data_type is ImisDataType.BOOLEAN:
            assert values.dtype == np.bool_, column.alias
        elif column.data_type is ImisDataType.DATETIME:
            assert values.dtype == np.dtype("datetime64[s]"), column.alias
        else:
            assert all(v is None or isinstance(v, str) for v in values[:500].tolist()), column.alias


def test_names_carry_accents_and_apostrophes(large: ImisSeed) -> None:
    names = set(large.contacts["FirstName"].tolist()) | set(large.contacts["LastName"].tolist())

    assert {"Zoë", "O'Brien", "Núñez", "D'Angelo"} <= names


def test_prefixes_agree_with_gender(large: ImisSeed) -> None:
    frame = large.contacts_frame()

    assert set(frame.loc[frame["Prefix"] == "Mr.", "Gender"].dropna()) == {"Male"}
    assert set(frame.loc[frame["Prefix"].isin(["Ms.", "Mrs."]), "Gender"].dropna()) == {"Female"}
    assert frame.loc[frame["IsOrganization"], ["Gender", "Prefix"]].isna().all().all()


def test_organisations_are_contacts_and_persons_link_to_them(large: ImisSeed) -> None:
    frame = large.contacts_frame()
    organisations = frame[frame["IsOrganization"]]
    persons = frame[~frame["IsOrganization"]]

    assert 0.05 < len(organisations) / len(frame) < 0.12
    assert organisations["OrganizationName"].notna().all() and organisations["FirstName"].isna().all()
    linked = persons[persons["ParentContactId"].notna()]
    assert len(linked) > len(persons) * 0.3
    assert linked["ParentContactId"].isin(organisations[ID_ALIAS]).all()
    names_by_id = organisations.set_index(ID_ALIAS)["OrganizationName"]
    assert (linked["OrganizationName"].to_numpy() == names_by_id[linked["ParentContactId"]].to_numpy()).all()


def test_members_non_members_and_expired_memberships(large: ImisSeed) -> None:
    frame = large.contacts_frame()
    as_of = np.datetime64("2026-01-01")
    members, others = frame[frame["IsMember"]], frame[~frame["IsMember"]]
    lapsed = others[others["MemberExpiresOn"].notna()]

    assert 0.3 < len(members) / len(frame) < 0.7
    assert (members["MemberExpiresOn"] > as_of).all()
    assert len(lapsed) > 0 and (lapsed["MemberExpiresOn"] < as_of).all()
    dated = frame[frame["MemberSince"].notna()]
    assert (dated["MemberSince"] < dated["MemberExpiresOn"]).all()
    assert set(frame["Status"]) == {"A", "I", "S"}
    assert frame["Prefix"].notna().any() and frame["Suffix"].notna().any() and frame["Designation"].notna().any()


def test_malformed_emails_are_few_and_of_the_three_known_kinds(large: ImisSeed) -> None:
    emails = [e for e in large.contacts["PrimaryEmailAddress"].tolist() if e is not None]
    malformed = [e for e in emails if not WELL_FORMED.match(e)]

    assert len(malformed) == round(20_000 * MALFORMED_EMAIL_RATE)
    assert all(e.count("@") == 2 or e.endswith(".com.com") or e.endswith("@") for e in malformed)
    assert {e.count("@") == 2 for e in malformed} == {True, False}
    assert 0.9 < len(emails) / 20_000 < 1.0  # a few contacts have no email at all


def test_preference_tokens_are_opaque_url_safe_and_unique(large: ImisSeed) -> None:
    tokens = large.contacts["PreferenceToken"].tolist()

    assert all(re.fullmatch(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}", t) for t in tokens)
    assert len(set(tokens)) == len(tokens)


def test_valid_lists_meet_the_requirements(large: ImisSeed) -> None:
    status = large.contacts["Status"]
    for name in VALID_LISTS:
        seed_list = large.lists[name]
        assert seed_list.breaks is None and seed_list.shared_with_everyone
        assert ID_ALIAS in seed_list.definition.aliases and not seed_list.definition.prompts
        assert (status[seed_list.members] == ACTIVE_STATUS).any(), name
    all_members = large.lists["All Members"].members
    assert large.contacts["IsMember"][all_members].all() and (status[all_members] == ACTIVE_STATUS).all()
    assert 0.5 < len(large.lists["Newsletter"].members) / 20_000 < 0.6
    assert 0.08 < len(large.lists["Annual Conference 2026"].members) / 20_000 < 0.12


def test_broken_lists_each_break_exactly_their_requirement(large: ImisSeed) -> None:
    status = large.contacts["Status"]
    broken = {seed_list.breaks: seed_list for seed_list in large.lists.values() if seed_list.breaks is not None}

    assert set(broken) == set(ListRequirement)
    assert broken[ListRequirement.NO_PROMPTS].definition.prompts
    assert ID_ALIAS not in broken[ListRequirement.ID_ALIAS].definition.aliases
    assert not broken[ListRequirement.SHARED_WITH_EVERYONE].shared_with_everyone
    assert not (status[broken[ListRequirement.ACTIVE_RECORD].members] == ACTIVE_STATUS).any()
    assert len(broken[ListRequirement.ACTIVE_RECORD].members) > 0


def test_broken_lists_only_on_request() -> None:
    assert set(build_seed(50).lists) == set(VALID_LISTS)


def test_tiny_instance_lists_still_have_an_active_record() -> None:
    for seed in range(20):
        tiny = build_seed(10, seed=seed)
        status = tiny.contacts["Status"]
        assert all((status[seed_list.members] == ACTIVE_STATUS).any() for seed_list in tiny.lists.values()), seed


def test_mutate_changes_mapped_fields_of_exactly_the_reported_contacts() -> None:
    seed = build_seed(1_000, seed=2)
    before = seed.contacts_frame()

    changed = seed.mutate_contacts(25, seed=9)

    after = seed.contacts_frame()
    differs = ~((before == after) | (before.isna() & after.isna())).all(axis=1)
    assert sorted(after.loc[differs, ID_ALIAS]) == changed and len(changed) == 25
    assert (before["PreferenceToken"] == after["PreferenceToken"]).all() and (before["Status"] == after["Status"]).all()


def test_move_list_members_adds_and_removes_and_keeps_an_active_member() -> None:
    seed = build_seed(400, seed=5)
    newsletter = seed.lists["Newsletter"]
    before = set(seed.contacts[ID_ALIAS][newsletter.members].tolist())

    moved = seed.move_list_members("newsletter", 10, seed=1)

    after = set(seed.contacts[ID_ALIAS][newsletter.members].tolist())
    assert len(moved["added"]) == len(moved["removed"]) == 10
    assert after == (before - set(moved["removed"])) | set(moved["added"])


def test_moving_everyone_out_still_leaves_one_active_member() -> None:
    seed = build_seed(400, seed=5)
    all_members = seed.lists["All Members"]
    size = len(all_members.members)

    moved = seed.move_list_members("All Members", 10_000, seed=2)

    assert len(moved["removed"]) == size - 1
    assert (seed.contacts["Status"][all_members.members] == ACTIVE_STATUS).any()


def test_move_list_members_names_the_unknown_list() -> None:
    with pytest.raises(SeedError, match="no list IQA named 'Gala'"):
        build_seed(20).move_list_members("Gala", 1, seed=1)


def test_add_panel_column_extends_the_template_deterministically() -> None:
    first, second = build_seed(100, seed=1), build_seed(100, seed=1)

    column = first.add_panel_column("MentorLevel", "Int32")
    second.add_panel_column("MentorLevel", ImisDataType.INT32)

    assert column.data_type is ImisDataType.INT32
    assert first.panel_definition.aliases[-1] == "MentorLevel"
    assert first.panel["MentorLevel"].tolist() == second.panel["MentorLevel"].tolist()
    with pytest.raises(SeedError, match="already has a column 'MentorLevel'"):
        first.add_panel_column("MentorLevel", "System.String")
    with pytest.raises(SeedError, match="unsupported iMIS data type 'Money'"):
        first.add_panel_column("Dues", "Money")


def test_row_of_finds_ids_and_rejects_unknown_ones() -> None:
    seed = build_seed(100, seed=1)
    last_id = seed.contacts[ID_ALIAS][-1]

    assert seed.row_of(last_id) == 99
    assert seed.row_of("999") is None and seed.row_of("abc") is None and seed.row_of(str(int(last_id) + 1)) is None


def test_edge_dates_give_members_dotnet_bounds_as_real_imis_data_has_them() -> None:
    seed = build_seed(100, seed=3, edge_dates=2)
    expires = seed.contacts["MemberExpiresOn"]
    never = np.flatnonzero(expires == np.datetime64("9999-12-31T23:59:59", "s"))
    assert len(never) == 2 and seed.contacts["IsMember"][never].all()
    assert (seed.contacts["Birthday"][-2:] == np.datetime64("0001-01-01", "s")).all()
    assert not (build_seed(100, seed=3).contacts["MemberExpiresOn"] == expires).all()


def test_single_values_can_be_edited_by_id_including_the_id_itself() -> None:
    seed = build_seed(20, seed=3)
    first, second = seed.contacts[ID_ALIAS][:2].tolist()
    seed.edit_contacts({first: {"FirstName": "Zoë 😀", "MemberExpiresOn": "9999-12-31T23:59:59", "DoNotEmail": 1},
                        second: {ID_ALIAS: first, "Birthday": None}})
    assert seed.contacts["FirstName"][0] == "Zoë 😀" and seed.contacts["DoNotEmail"][0]
    assert seed.contacts["MemberExpiresOn"][0] == np.datetime64("9999-12-31T23:59:59", "s")
    assert seed.contacts[ID_ALIAS][1] == first and np.isnat(seed.contacts["Birthday"][1])
    with pytest.raises(SeedError, match="no contact with ID '42'"):
        seed.edit_contacts({"42": {"FirstName": "x"}})


def test_a_display_column_can_be_removed_or_renamed_keeping_its_values() -> None:
    seed = build_seed(20, seed=3)
    renamed = seed.change_column("panel", "ChapterName", "Chapter")
    assert "ChapterName" not in renamed.aliases and "Chapter" in renamed.aliases
    assert (seed.column("Chapter", slice(None)) == seed.panel["ChapterName"]).all()
    assert "MemberSince" not in seed.change_column("contacts", "MemberSince").aliases
    with pytest.raises(SeedError, match="cannot change column 'Nope' of the contacts IQA"):
        seed.change_column("contacts", "Nope")
