"""The IQA package as data, and the check that compares a real instance's IQA with it."""

from __future__ import annotations

from typing import Any

import pytest

from include.imis_thrive.imis.iqa_package import (
    CONTACTS_IQA,
    MAILING_LISTS_FOLDER,
    PANEL_FIELDS_IQA,
    PERSONALIZATION_ALIASES,
    ImisDataType,
    IqaColumn,
    IqaDefinition,
    IqaFilter,
    list_iqa_definition,
    package_mismatches,
)


def _query_definition(path: str, *columns: tuple[str, str], prompts: tuple[str | None, ...] = ()) -> dict[str, Any]:
    """A minimal QueryDefinition FindByPath answer (20.x shape), columns given as (alias, DataTypeName)."""
    return {"Result": {
        "Path": path,
        "Properties": {"$values": [{"Name": f"CsContact.{alias}", "Alias": alias, "DataTypeName": data_type,
                                    "DisplayOrder": order} for order, (alias, data_type) in enumerate(columns)]},
        "Parameters": {"$values": [{"PropertyName": "Status", "Operation": "Equal", "Prompt": prompt,
                                    "Values": {"$values": ["A"]}} for prompt in prompts]},
    }}


def test_contacts_iqa_has_the_integration_columns_in_order() -> None:
    assert CONTACTS_IQA.aliases[:3] == ("ID", "AlternativeContactId", "Birthday")
    assert CONTACTS_IQA.aliases[-2:] == ("PreferenceToken", "Status")
    assert len(PERSONALIZATION_ALIASES) == 22 and "Prefix" in PERSONALIZATION_ALIASES
    assert CONTACTS_IQA.required_aliases == CONTACTS_IQA.aliases
    assert {c.alias for c in CONTACTS_IQA.columns if c.data_type is ImisDataType.BOOLEAN} == {
        "DoNotEmail", "ExcludeFromDirectory", "IsMember", "IsOrganization"}
    assert {c.alias for c in CONTACTS_IQA.columns if c.data_type is ImisDataType.DATETIME} == {
        "Birthday", "MemberSince", "MemberExpiresOn"}


def test_panel_template_mixes_every_type() -> None:
    assert {c.data_type for c in PANEL_FIELDS_IQA.columns} == {
        ImisDataType.STRING, ImisDataType.BOOLEAN, ImisDataType.DATETIME, ImisDataType.INT32, ImisDataType.DECIMAL}
    assert PANEL_FIELDS_IQA.required_aliases == ("ID",)


@pytest.mark.parametrize("name, expected", [("Int32", ImisDataType.INT32), ("System.Decimal", ImisDataType.DECIMAL)])
def test_data_type_accepts_both_spellings(name: str, expected: ImisDataType) -> None:
    assert ImisDataType.parse(name) is expected
    assert expected.short_name == expected.value.removeprefix("System.")


def test_unsupported_data_type_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unsupported iMIS data type 'Money'.*System\.String"):
        ImisDataType.parse("Money")


@pytest.mark.parametrize("prompt, is_prompt", [(None, False), ("No", False), ("", False), ("Required", True),
                                               ("Optional", True)])
def test_only_a_real_prompt_counts(prompt: str | None, is_prompt: bool) -> None:
    assert IqaFilter("Status", prompt=prompt).is_prompt is is_prompt


def test_list_iqa_lives_in_the_mailing_lists_folder() -> None:
    definition = list_iqa_definition("Newsletter")

    assert definition.folder == MAILING_LISTS_FOLDER and definition.name == "Newsletter"
    assert definition.required_aliases == ("ID",)
    with pytest.raises(ValueError, match="must not contain '/'"):
        list_iqa_definition("Lists/Newsletter")


def test_definition_rejects_bad_paths_and_duplicate_aliases() -> None:
    with pytest.raises(ValueError, match="must start with"):
        IqaDefinition("HigherLogic/Contacts", (IqaColumn("ID"),))
    with pytest.raises(ValueError, match="duplicate column aliases"):
        IqaDefinition("$/X", (IqaColumn("ID"), IqaColumn("ID")))


def test_with_column_extends_once() -> None:
    extended = PANEL_FIELDS_IQA.with_column(IqaColumn("MentorLevel", ImisDataType.INT32))

    assert extended.aliases[-1] == "MentorLevel" and PANEL_FIELDS_IQA.aliases[-1] != "MentorLevel"
    with pytest.raises(ValueError, match="already has a column 'MentorLevel'"):
        extended.with_column(IqaColumn("MentorLevel"))


def test_reads_a_query_definition_in_display_order_both_shapes() -> None:
    answer = _query_definition("$/HigherLogic/MailingLists/Newsletter", ("ID", "String"), ("Since", "DateTime"))
    legacy = answer["Result"]  # iMIS 2017 answers without the Result wrapper

    for payload in (answer, legacy):
        found = IqaDefinition.from_query_definition(payload)
        assert found.aliases == ("ID", "Since")
        assert found.column("Since").data_type is ImisDataType.DATETIME


def test_missing_definition_says_the_path_does_not_exist() -> None:
    with pytest.raises(ValueError, match="does not exist"):
        IqaDefinition.from_query_definition({"Result": None})


def test_a_conforming_iqa_has_no_mismatches() -> None:
    found = IqaDefinition.from_query_definition(_query_definition(
        PANEL_FIELDS_IQA.path, *((c.alias, c.data_type.short_name) for c in PANEL_FIELDS_IQA.columns),
        ("ExtraColumn", "String"), prompts=("No",)))

    assert package_mismatches(PANEL_FIELDS_IQA, found) == []


def test_mismatches_name_the_iqa_column_and_fix() -> None:
    found = IqaDefinition.from_query_definition(_query_definition(
        CONTACTS_IQA.path, ("ContactKey", "String"), ("IsMember", "String"), prompts=("Required",)))

    problems = [str(m) for m in package_mismatches(CONTACTS_IQA, found)]

    assert "IQA $/HigherLogic/Contacts/Contacts, column ID: required column missing (add a display column " \
           "aliased 'ID')" in problems
    assert "IQA $/HigherLogic/Contacts/Contacts, column IsMember: has type System.String, expected " \
           "System.Boolean" in problems
    assert "IQA $/HigherLogic/Contacts/Contacts: filter on Status is a prompt (Required); set Prompt to No" in problems


def test_a_definition_with_a_column_type_the_package_never_uses_is_still_read() -> None:
    properties = [{"Alias": "ID", "DataTypeName": "String"}, {"Alias": "Dues", "DataTypeName": "Money"},
                  {"Alias": "Key", "DataTypeName": "Guid"}]
    definition = IqaDefinition.from_query_definition(
        {"Result": {"Path": "$/HigherLogic/MailingLists/Board", "Properties": {"$values": properties}}})
    assert definition.aliases == ("ID", "Dues", "Key")
    assert definition.column("Key").data_type is ImisDataType.GUID
    assert definition.column("Dues").data_type is ImisDataType.STRING


def test_columns_are_keyed_by_alias_else_property_name_never_by_name() -> None:
    """EMS: `Alias` is empty on some properties; `Name` is the source-qualified id, not what rows carry."""
    definition = IqaDefinition.from_query_definition({"Result": {"Path": "$/L", "Properties": {"$values": [
        {"Name": "CsContact.ID", "PropertyName": "ID", "Alias": "", "DataTypeName": "String", "DisplayOrder": 1},
        {"Name": "CsContact.Email", "PropertyName": "Email", "Alias": "PrimaryEmailAddress", "DisplayOrder": 2},
        {"Name": "CsContact.Status", "PropertyName": "Status", "DisplayOrder": 3},
    ]}}})
    assert definition.aliases == ("ID", "PrimaryEmailAddress", "Status")
    assert definition.missing_aliases(definition.aliases) == ()


def test_an_imis_2017_definition_is_keyed_by_the_caption_tail() -> None:
    """2017: the definition at the top level, `Name` like `{GUID}.CL3`, the source property in `Caption`."""
    definition = IqaDefinition.from_query_definition({
        "Path": "$/HigherLogic/MailingLists/Board",
        "Properties": {"$values": [
            {"Name": "{6A1E2F3C-0000-4000-8000-000000000001}.CL1", "Caption": "CsContact.ID", "Alias": "",
             "DataTypeName": "String", "DisplayOrder": 1},
            {"Name": "{6A1E2F3C-0000-4000-8000-000000000001}.CL2", "Caption": "CsContact.Email",
             "Alias": "PrimaryEmailAddress", "DisplayOrder": 2},
            {"Name": "{6A1E2F3C-0000-4000-8000-000000000001}.CL3", "Caption": "JoinDate", "DataTypeName": "DateTime",
             "DisplayOrder": 3}]},
        "Parameters": {"$values": [{"PropertyName": "Status", "Operation": 3, "Prompt": "No",
                                    "Values": {"$values": ["A"]}}]},
    })
    assert definition.aliases == ("ID", "PrimaryEmailAddress", "JoinDate")
    assert definition.column("JoinDate").data_type is ImisDataType.DATETIME
    assert definition.filters == (IqaFilter("Status", "Equal", "No", ("A",)),)


@pytest.mark.parametrize("operation, name", [(3, "Equal"), ("3", "Equal"), ("Equal", "Equal"), (17, "17"),
                                             ("LessThan", "LessThan")])
def test_criteria_operation_is_read_as_a_number_or_a_name(operation: Any, name: str) -> None:
    definition = IqaDefinition.from_query_definition({"Result": {"Path": "$/L", "Properties": {"$values": [
        {"Alias": "ID"}]}, "Parameters": {"$values": [{"PropertyName": "Status", "Operation": operation,
                                                        "Prompt": "Required"}]}}})
    assert definition.filters[0].operation == name and definition.prompts


@pytest.mark.parametrize("answer, problem", [
    ({"Result": {"Path": "$/L", "Rows": []}}, r"IQA \$/L: expected Properties\.\$values to be a list"),
    ({"Result": {"Path": "$/L", "Properties": {"$values": [{"Name": "CsContact.ID"}]}}},
     r"IQA \$/L: display property 'CsContact\.ID' has no Alias, PropertyName or Caption"),
])
def test_a_definition_of_unknown_shape_is_a_typed_error_naming_the_iqa(answer: dict[str, Any], problem: str) -> None:
    from include.imis_thrive.imis.errors import ImisUnexpectedAnswer

    with pytest.raises(ImisUnexpectedAnswer, match=problem):
        IqaDefinition.from_query_definition(answer)
