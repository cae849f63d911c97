"""The sandbox describes the IQA package it serves on its own, and that description agrees with the client's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from include.imis_thrive.imis import iqa_package as client_package
from sandbox import imis_package as served

SANDBOX = Path(served.__file__).parent


@pytest.mark.parametrize("module", sorted(p.name for p in SANDBOX.glob("imis_*.py")))
def test_the_imis_sandbox_imports_nothing_of_the_client(module: str) -> None:
    tree = ast.parse((SANDBOX / module).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert [name for name in imported if name.startswith("include.imis_thrive.imis")] == []


@pytest.mark.parametrize("served_iqa, expected", [
    (served.CONTACTS, client_package.CONTACTS_IQA), (served.PANEL_FIELDS, client_package.PANEL_FIELDS_IQA)])
def test_served_iqas_match_what_the_client_expects(served_iqa: served.ServedIqa,
                                                  expected: client_package.IqaDefinition) -> None:
    assert served_iqa.path == expected.path
    assert [(c.alias, c.data_type.value) for c in served_iqa.columns] == \
           [(c.alias, c.data_type.value) for c in expected.columns]


def test_folders_and_list_columns_match() -> None:
    assert (served.ROOT_FOLDER, served.MAILING_LISTS_FOLDER) == \
           (client_package.ROOT_FOLDER, client_package.MAILING_LISTS_FOLDER)
    assert [c.alias for c in served.LIST_COLUMNS] == [c.alias for c in client_package.LIST_IQA_COLUMNS]
    assert (served.ID, served.STATUS, served.ACTIVE) == \
           (client_package.ID_ALIAS, client_package.STATUS_ALIAS, client_package.ACTIVE_STATUS)


def test_some_served_columns_come_from_a_differently_named_source_property() -> None:
    renamed = {c.alias: c.property_name for c in served.CONTACTS.columns if c.alias != c.property_name}
    assert renamed["PrimaryEmailAddress"] == "Email" and renamed["MemberSince"] == "JoinDate"
    assert served.WireType.parse("System.Byte[], mscorlib") is served.WireType.BYTES
