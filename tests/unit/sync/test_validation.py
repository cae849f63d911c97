from __future__ import annotations

import json

import pandas as pd
import pytest

from include.imis_thrive.sync import validation
from include.imis_thrive.sync.field_map import CONTACTS_IQA
from include.imis_thrive.sync.validation import (
    THRIVE_LENGTH_LIMITS,
    IqaKind,
    ValidationFailed,
    rules_for,
    validate_iqa,
)

BOARD_IQA = "$/HigherLogic/MailingLists/Board Members"
PANEL_IQA = "$/HigherLogic/Panels/Demographics"


def _blocked(frame: pd.DataFrame, kind: IqaKind) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as failure:
        validate_iqa(frame, kind)
    return failure.value


def _set(frame: pd.DataFrame, column: str, *values: str | None) -> pd.DataFrame:
    frame[column] = pd.Series(list(values), dtype="str", index=frame.index)
    return frame


def test_clean_contacts_pass_with_nothing_quarantined(frames) -> None:
    contacts = frames.contacts(3)

    outcome = validate_iqa(contacts, IqaKind.CONTACTS)

    assert outcome.summary["success"] is True
    assert outcome.summary["failed"] == []
    assert (outcome.summary["rows"], outcome.summary["clean_rows"], outcome.summary["quarantined_rows"]) == (3, 3, 0)
    assert outcome.quarantine.empty
    pd.testing.assert_frame_equal(outcome.clean, contacts)


def test_a_missing_id_column_blocks_and_names_the_iqa_and_rule(frames) -> None:
    board = frames.iqa(BOARD_IQA, PartyID=frames.text("1", "2"), Status=frames.text("A", "A"))

    failure = _blocked(board, IqaKind.LIST)

    assert BOARD_IQA in str(failure)
    assert "required_column: the IQA does not return column 'ID'" in str(failure)


def test_a_null_id_blocks(frames) -> None:
    board = frames.iqa(BOARD_IQA, ID=frames.text("1", None, "3"), Status=frames.text("A", "A", "A"))

    failure = _blocked(board, IqaKind.LIST)

    assert BOARD_IQA in str(failure)
    assert "id_not_null: expect_column_values_to_not_be_null on 'ID' found 1 unexpected value(s)" in str(failure)


def test_duplicate_ids_block_and_the_message_names_them(frames) -> None:
    board = frames.iqa(BOARD_IQA, ID=frames.text("7", "8", "7"), Status=frames.text("A", "A", "A"))

    failure = _blocked(board, IqaKind.LIST)

    assert BOARD_IQA in str(failure)
    expected = "id_unique: expect_column_values_to_be_unique on 'ID' found 2 unexpected value(s) (e.g. ID 7)"
    assert expected in str(failure)


def test_a_non_numeric_id_blocks(frames) -> None:
    board = frames.iqa(BOARD_IQA, ID=frames.text("101", "ABC-1", " 102"), Status=frames.text("A", "A", "A"))

    failure = _blocked(board, IqaKind.LIST)

    assert BOARD_IQA in str(failure)
    assert "id_numeric: expect_column_values_to_match_regex on 'ID' found 2 unexpected value(s)" in str(failure)
    assert failure.summary["failed"][0]["sample_ids"] == ["ABC-1", " 102"]


def test_a_missing_required_contacts_column_blocks(frames) -> None:
    contacts = frames.contacts(2).drop(columns=["Suffix"])

    failure = _blocked(contacts, IqaKind.CONTACTS)

    assert CONTACTS_IQA in str(failure)
    assert "required_column: the IQA does not return column 'Suffix'" in str(failure)


@pytest.mark.parametrize("kind", [IqaKind.CONTACTS, IqaKind.LIST])
def test_no_active_record_blocks(frames, kind: IqaKind) -> None:
    frame = _set(frames.contacts(3), "Status", "I", "I", None)

    failure = _blocked(frame, kind)

    assert CONTACTS_IQA in str(failure)
    assert "active_record: no record has Status 'A'" in str(failure)


def test_a_list_without_status_and_without_records_blocks(frames) -> None:
    empty = frames.iqa(BOARD_IQA, ID=frames.text())

    failure = _blocked(empty, IqaKind.LIST)

    assert BOARD_IQA in str(failure)
    assert "has_records: the IQA returned no records" in str(failure)


def test_the_failure_message_carries_the_statistics(frames) -> None:
    board = frames.iqa(BOARD_IQA, ID=frames.text("1", "1"), Status=frames.text("I", "I"))

    failure = _blocked(board, IqaKind.LIST)

    assert "failed 2 blocking expectation(s) of 5 on 2 rows" in str(failure)
    assert failure.summary["success"] is False
    assert {entry["rule"] for entry in failure.summary["failed"]} == {"id_unique", "active_record"}


def test_malformed_and_missing_emails_are_quarantined_not_loaded(frames) -> None:
    contacts = _set(
        frames.contacts(6), "PrimaryEmailAddress",
        "ok@example.org", "two@@example.org", "no-at-sign.example.org", "nodomain@localhost", None,
        "dotted.name+tag@mail.example.co.uk",
    )

    outcome = validate_iqa(contacts, IqaKind.CONTACTS)

    assert sorted(outcome.quarantine.itertuples(index=False, name=None)) == [
        ("363594", "PrimaryEmailAddress", "email_invalid"),
        ("363595", "PrimaryEmailAddress", "email_invalid"),
        ("363596", "PrimaryEmailAddress", "email_invalid"),
        ("363597", "PrimaryEmailAddress", "email_missing"),
    ]
    assert outcome.clean["ID"].tolist() == ["363593", "363598"]
    assert (outcome.summary["clean_rows"], outcome.summary["quarantined_rows"]) == (2, 4)


def test_the_summary_holds_counts_and_ids_but_no_email_or_other_raw_value(frames) -> None:
    bad_emails = ["jane..doe@example.org", "bob@@example.org"]
    contacts = _set(frames.contacts(3), "PrimaryEmailAddress", "ok@example.org", *bad_emails)
    long_name = "Bartholomew" * 30
    contacts = _set(contacts, "FirstName", long_name, "Ann", "Bo")

    outcome = validate_iqa(contacts, IqaKind.CONTACTS)

    serialised = json.dumps(outcome.summary)
    assert all(value not in serialised for value in [*bad_emails, long_name, "ok@example.org"])
    failures = {entry["rule"]: entry for entry in outcome.summary["failed"]}
    assert failures["email_invalid"]["unexpected_count"] == 2
    assert failures["email_invalid"]["sample_ids"] == ["363594", "363595"]
    assert failures["longer_than_255"]["column"] == "FirstName"


def test_a_blocking_failure_summary_holds_no_raw_value_either(frames) -> None:
    contacts = _set(frames.contacts(2), "Status", "I", "I")
    contacts = _set(contacts, "PrimaryEmailAddress", "secret.person@example.org", "bad@@example.org")

    failure = _blocked(contacts, IqaKind.CONTACTS)

    serialised = json.dumps(failure.summary)
    assert "secret.person@example.org" not in serialised and "bad@@example.org" not in serialised
    assert "secret.person@example.org" not in str(failure)


def test_text_longer_than_the_thrive_field_is_quarantined(frames) -> None:
    contacts = _set(frames.contacts(3), "FirstName", "A" * 255, "B" * 256, "Cy")
    contacts = _set(contacts, "PrimaryEmailAddress", "a@example.org", "b@example.org", "c" * 90 + "@example.org")

    outcome = validate_iqa(contacts, IqaKind.CONTACTS)

    assert sorted(outcome.quarantine.itertuples(index=False, name=None)) == [
        ("363594", "FirstName", "longer_than_255"),
        ("363595", "PrimaryEmailAddress", "longer_than_100"),
    ]
    assert outcome.clean["ID"].tolist() == ["363593"]


def test_panel_custom_text_columns_get_length_checks_and_limits_can_be_chosen(frames) -> None:
    panel = frames.iqa(
        PANEL_IQA,
        ID=frames.text("1", "2"),
        Chapter=frames.text("North", "Southern Region"),
        Dues=pd.Series([120.5, None], dtype="Float64"),
    )

    assert validate_iqa(panel, IqaKind.PANEL).quarantine.empty
    outcome = validate_iqa(panel, IqaKind.PANEL, length_limits={"Chapter": 10})
    assert outcome.quarantine.to_dict("records") == [{"ID": "2", "column": "Chapter", "reason": "longer_than_10"}]


def test_a_panel_iqa_needs_no_status_or_email(frames) -> None:
    panel = frames.iqa(PANEL_IQA, ID=frames.text("1"), Chapter=frames.text("North"))

    outcome = validate_iqa(panel, "panel")

    assert outcome.summary["success"] is True and outcome.summary["kind"] == "panel"


def test_rules_per_kind_are_plain_data(frames) -> None:
    contacts = frames.contacts(1)
    names = [rule.name for rule in rules_for(IqaKind.CONTACTS, contacts, THRIVE_LENGTH_LIMITS)]

    assert {"id_not_null", "id_unique", "id_numeric", "active_record", "email_missing", "email_invalid"} <= set(names)
    assert "longer_than_100" in names and "longer_than_1000" in names and "longer_than_255" in names
    no_id = frames.iqa(BOARD_IQA, Name=frames.text("x"))
    assert [rule.name for rule in rules_for(IqaKind.LIST, no_id, THRIVE_LENGTH_LIMITS)] == ["required_column"]
    blocking = {rule.name for rule in rules_for(IqaKind.CONTACTS, contacts, THRIVE_LENGTH_LIMITS) if rule.blocking}
    assert blocking == {"required_column", "id_not_null", "id_unique", "id_numeric", "active_record"}


def test_a_quarantine_rule_gx_cannot_evaluate_blocks_instead_of_passing_rows(frames, monkeypatch) -> None:
    panel = frames.iqa(PANEL_IQA, ID=frames.text("1"), Chapter=frames.text("North"))
    unevaluable = validation.Rule(
        name="email_invalid", expectation="ExpectColumnValuesToMatchRegex",
        kwargs=(("column", "NotReturned"), ("regex", "@")), blocking=False,
    )
    monkeypatch.setattr(validation, "rules_for", lambda kind, frame, limits: (unevaluable,))

    failure = _blocked(panel, IqaKind.PANEL)

    assert PANEL_IQA in str(failure)
    assert "email_invalid: GX could not evaluate expect_column_values_to_match_regex on 'NotReturned'" in str(failure)
    assert failure.summary["failed"][0]["evaluation_error"] is True


def test_validation_never_hashes_the_frame(frames, monkeypatch) -> None:
    from great_expectations.execution_engine import pandas_execution_engine

    def hash_the_frame(frame: pd.DataFrame) -> str:
        raise AssertionError("GX fingerprinted the whole frame")

    monkeypatch.setattr(pandas_execution_engine, "hash_pandas_dataframe", hash_the_frame)
    contacts = _set(frames.contacts(3), "PrimaryEmailAddress", "a@example.org", "b@@example.org", "c@example.org")

    outcome = validate_iqa(contacts, IqaKind.CONTACTS)

    assert outcome.quarantine.to_dict("records") == [
        {"ID": "363594", "column": "PrimaryEmailAddress", "reason": "email_invalid"}
    ]


def test_a_repeat_validation_of_the_same_shape_builds_no_new_suite(frames) -> None:
    validate_iqa(frames.contacts(2), IqaKind.CONTACTS)
    built = validation._suite.cache_info().misses

    validate_iqa(frames.contacts(4), IqaKind.CONTACTS)

    assert validation._suite.cache_info().misses == built


def test_rows_are_named_by_id_whatever_the_frame_index(frames) -> None:
    contacts = _set(frames.contacts(4), "PrimaryEmailAddress", "a@example.org", None, "c@example.org", "d@@x.org")
    contacts.index = pd.Index([40, 7, 7, 12])  # an extract filtered and re-concatenated: labels are not positions

    outcome = validate_iqa(contacts, IqaKind.CONTACTS)

    assert sorted(outcome.quarantine.itertuples(index=False, name=None)) == [
        ("363594", "PrimaryEmailAddress", "email_missing"),
        ("363596", "PrimaryEmailAddress", "email_invalid"),
    ]
    assert outcome.clean["ID"].tolist() == ["363593", "363595"]
    assert outcome.clean.index.tolist() == [40, 7]
    assert outcome.clean.attrs == contacts.attrs
    assert outcome.clean.dtypes.to_dict() == contacts.dtypes.to_dict()


def test_every_offending_row_is_quarantined_not_a_sample(frames) -> None:
    contacts = pd.concat([frames.contacts(30)] * 4, ignore_index=True)  # more rows than GX's partial lists hold
    contacts.attrs["iqa"] = CONTACTS_IQA
    contacts = _set(contacts, "ID", *(str(363593 + row) for row in range(120)))
    malformed = contacts.index % 2 == 1
    contacts.loc[malformed, "PrimaryEmailAddress"] = "broken@@example.org"

    outcome = validate_iqa(contacts, IqaKind.CONTACTS)

    assert sorted(outcome.quarantine["ID"]) == sorted(contacts.loc[malformed, "ID"])
    assert outcome.summary["quarantined_rows"] == 60
    assert outcome.summary["failed"][0]["sample_ids"] == contacts.loc[malformed, "ID"].head(10).tolist()


def test_duplicate_ids_block_even_with_rows_that_would_be_quarantined(frames) -> None:
    contacts = _set(frames.contacts(4), "ID", "363593", "363594", "363593", "363596")
    contacts = _set(contacts, "PrimaryEmailAddress", "a@example.org", None, "c@@example.org", "d@example.org")

    failure = _blocked(contacts, IqaKind.CONTACTS)

    assert [entry["rule"] for entry in failure.summary["failed"] if entry["blocking"]] == ["id_unique"]
    assert "id_unique: expect_column_values_to_be_unique on 'ID' found 2 unexpected value(s) (e.g. ID 363593)" in (
        str(failure)
    )
    assert not any(entry["evaluation_error"] for entry in failure.summary["failed"])


def test_the_clean_frame_is_the_callers_frame_only_by_value(frames) -> None:
    contacts = frames.contacts(2)

    outcome = validate_iqa(contacts, IqaKind.CONTACTS)
    outcome.clean["FirstName"] = "Changed"
    outcome.clean["Added"] = 1

    assert contacts["FirstName"].tolist() == ["FirstName 0", "FirstName 1"]
    assert "Added" not in contacts.columns
