"""The IQA package check on small definitions: every problem named once, OK lines for the rest, exit codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from include.imis_thrive.imis.entities import DocumentSummary
from include.imis_thrive.imis.errors import ImisAuthError, ImisError, ImisNotFound, ImisRequestError
from include.imis_thrive.imis.iqa_package import (
    CONTACTS_IQA,
    MAILING_LISTS_FOLDER,
    PANEL_FIELDS_IQA,
    ROOT_FOLDER,
    ImisDataType,
    IqaColumn,
    IqaDefinition,
    IqaFilter,
    list_iqa_definition,
)
from include.imis_thrive.imis.package_check import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    CheckStatus,
    IqaRole,
    check_package,
    main,
)

URL = "https://members.example.org"


@dataclass
class FakeImis:
    """Answers like `ImisClient` from a few definitions; failures are listed by path."""

    definitions: list[IqaDefinition]
    folders: set[str] = field(default_factory=lambda: {ROOT_FOLDER, MAILING_LISTS_FOLDER})
    folder_failures: dict[str, Exception] = field(default_factory=dict)  # on reading a folder
    failures: dict[str, Exception] = field(default_factory=dict)  # on reading the definition
    run_failures: dict[str, Exception] = field(default_factory=dict)  # on running the IQA
    runs: list[str] = field(default_factory=list)
    config: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(
        base_url=URL, max_concurrency=2, endpoint="query"))

    def find_document(self, path: str) -> DocumentSummary:
        if path in self.folder_failures:
            raise self.folder_failures[path]
        if path not in self.folders:
            raise ImisNotFound(f"iMIS document {path} does not exist")
        return DocumentSummary(path, "FOL", path, path.rsplit("/", 1)[1])

    def list_folder(self, folder: str) -> list[DocumentSummary]:
        self.find_document(folder)
        return [DocumentSummary(d.path, "IQD", d.path, d.name) for d in self.definitions if d.folder == folder]

    def query_definition(self, path: str) -> IqaDefinition:
        if path in self.failures:
            raise self.failures[path]
        for definition in self.definitions:
            if definition.path == path:
                return definition
        raise ImisNotFound(f"IQA {path} does not exist")

    def fetch_page(self, path: str, offset: int = 0, parameters: tuple[str, ...] = (),
                   limit: int | None = None) -> None:
        assert (offset, limit) == (0, 1), "the check reads one row, never member data in bulk"
        self.runs.append(path)
        if path in self.run_failures:
            raise self.run_failures[path]


def _package(*lists: IqaDefinition) -> list[IqaDefinition]:
    return [CONTACTS_IQA, PANEL_FIELDS_IQA, *(lists or (list_iqa_definition("Newsletter"),))]


def _without(definition: IqaDefinition, alias: str) -> IqaDefinition:
    return IqaDefinition(definition.path, tuple(c for c in definition.columns if c.alias != alias))


def _retyped(definition: IqaDefinition, alias: str, data_type: ImisDataType) -> IqaDefinition:
    columns = tuple(IqaColumn(c.alias, data_type) if c.alias == alias else c for c in definition.columns)
    return IqaDefinition(definition.path, columns)


def _fix_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("FIX ")]


def test_a_complete_package_is_ok_line_by_line_and_each_iqa_is_run_once() -> None:
    imis = FakeImis(_package(list_iqa_definition("Newsletter"), list_iqa_definition("All Members")))
    report = check_package(imis)
    assert report.ok and report.exit_code == EXIT_OK and report.problems == []
    assert [c.role for c in report.checks] == [IqaRole.CONTACTS, IqaRole.PANEL_FIELDS, IqaRole.LIST, IqaRole.LIST]
    lines = report.render().splitlines()
    assert lines[0] == f"iMIS IQA package check of {URL}"
    assert lines[1] == f"OK   IQA {CONTACTS_IQA.path} (contacts IQA, 25 columns)"
    assert f"OK   IQA {MAILING_LISTS_FOLDER}/All Members (list IQA, 3 columns)" in lines  # lists sorted by name
    assert lines.index(f"OK   IQA {MAILING_LISTS_FOLDER}/All Members (list IQA, 3 columns)") == 3
    assert lines[-1] == "4 IQAs checked, 4 OK: the package is complete"
    assert sorted(imis.runs) == sorted(c.path for c in report.checks)


def test_a_missing_contacts_column_is_one_line_naming_the_iqa_and_alias() -> None:
    report = check_package(FakeImis([_without(CONTACTS_IQA, "PreferenceToken"), *_package()[1:]]))
    assert report.exit_code == EXIT_PROBLEMS
    assert report.check(CONTACTS_IQA.path).status is CheckStatus.MISMATCH
    assert _fix_lines(report.render()) == [
        f"FIX  IQA {CONTACTS_IQA.path}, column PreferenceToken: required column missing "
        "(add a display column aliased 'PreferenceToken')"]
    assert report.render().splitlines()[-1] == "3 IQAs checked, 2 OK: 1 problem to fix"


def test_a_column_of_the_wrong_type_names_both_types() -> None:
    contacts = _retyped(CONTACTS_IQA, "Birthday", ImisDataType.STRING)
    report = check_package(FakeImis([contacts, *_package()[1:]]))
    assert report.problems == [f"IQA {CONTACTS_IQA.path}, column Birthday: has type System.String, "
                               "expected System.DateTime"]


def test_a_customer_column_added_to_the_panel_template_is_fine() -> None:
    panel = PANEL_FIELDS_IQA.with_column(IqaColumn("MentorProgram", ImisDataType.BOOLEAN))
    report = check_package(FakeImis([CONTACTS_IQA, panel, list_iqa_definition("Newsletter")]))
    assert report.ok and report.check(PANEL_FIELDS_IQA.path).columns == 7


def test_a_missing_iqa_says_where_it_must_be_and_what_it_returns() -> None:
    report = check_package(FakeImis([CONTACTS_IQA, list_iqa_definition("Newsletter")]))
    panel = report.check(PANEL_FIELDS_IQA.path)
    assert panel.status is CheckStatus.MISSING
    assert report.problems == [f"IQA {PANEL_FIELDS_IQA.path}: missing (or not visible to the integration user); "
                               "the panel fields IQA must exist here with the display columns ID"]


def test_a_definition_the_user_may_not_read_is_reported_as_such_not_as_missing() -> None:
    path = f"{MAILING_LISTS_FOLDER}/Board"
    imis = FakeImis(_package(list_iqa_definition("Board")), failures={path: ImisAuthError("401")})
    check = check_package(imis).check(path)
    assert check.status is CheckStatus.UNREADABLE
    assert "may not read its definition" in str(check.problems[0])
    assert "shared with Everyone" in str(check.problems[0]) and path not in imis.runs


def test_a_definition_that_cannot_be_parsed_is_named_with_the_reason() -> None:
    imis = FakeImis(_package(), failures={CONTACTS_IQA.path: ValueError("unsupported iMIS data type 'Guid'")})
    assert check_package(imis).problems == [
        f"IQA {CONTACTS_IQA.path}: its definition cannot be read: unsupported iMIS data type 'Guid'"]


def test_each_broken_list_is_named_with_its_own_problem() -> None:
    no_id = list_iqa_definition("No ID", columns=(IqaColumn("ContactKey"), IqaColumn("Status")))
    prompted = list_iqa_definition("Prompted", filters=(IqaFilter("Status", "Equal", "Required"),))
    private = list_iqa_definition("Private")
    imis = FakeImis(_package(no_id, prompted, private, list_iqa_definition("Newsletter")),
                    run_failures={private.path: ImisAuthError("401 after a fresh login")})
    report = check_package(imis)
    assert _fix_lines(report.render()) == [
        f"FIX  IQA {no_id.path}, column ID: required column missing (add a display column aliased 'ID')",
        f"FIX  IQA {private.path}: the integration user may not run it (HTTP 401/403); "
        "it must be an IQA that is shared with Everyone",
        f"FIX  IQA {prompted.path}: filter on Status is a prompt (Required); set Prompt to No",
    ]
    assert report.check(f"{MAILING_LISTS_FOLDER}/Newsletter").ok
    assert no_id.path not in imis.runs and prompted.path not in imis.runs  # a prompted IQA is not run bare


def test_a_filter_that_is_not_a_prompt_is_fine() -> None:
    members = list_iqa_definition("All Members", filters=(IqaFilter("IsMember", "Equal", "No", ("true",)),))
    assert check_package(FakeImis(_package(members))).ok


@pytest.mark.parametrize("failure, expected", [
    (ImisNotFound("404"), "answers 404; on iMIS before 20.3.77 use endpoint iqa"),
    (ImisRequestError("IQA x: rejected with HTTP 400: bad Limit", 400), "running it is rejected (HTTP 400)"),
])
def test_a_definition_that_reads_but_does_not_run_says_why(failure: Exception, expected: str) -> None:
    report = check_package(FakeImis(_package(), run_failures={CONTACTS_IQA.path: failure}))
    assert expected in report.problems[0] and len(report.problems) == 1


def test_a_missing_mailing_lists_folder_is_one_problem_and_the_rest_is_still_checked() -> None:
    report = check_package(FakeImis(_package(), folders={ROOT_FOLDER}))
    assert report.problems == [f"folder {MAILING_LISTS_FOLDER}: missing; create it and put one IQA per Thrive "
                               "target group in it"]
    assert [c.path for c in report.checks] == [CONTACTS_IQA.path, PANEL_FIELDS_IQA.path]
    assert report.render().splitlines()[1].startswith(f"FIX  folder {MAILING_LISTS_FOLDER}")


def test_an_empty_mailing_lists_folder_means_nothing_would_sync() -> None:
    report = check_package(FakeImis([CONTACTS_IQA, PANEL_FIELDS_IQA]))
    assert report.exit_code == EXIT_PROBLEMS
    assert report.problems == [f"folder {MAILING_LISTS_FOLDER}: holds no IQA, so no target group will sync; "
                               "add one IQA per Thrive target group"]


def test_an_unreadable_mailing_lists_folder_names_the_role_to_grant() -> None:
    imis = FakeImis(_package(), folder_failures={MAILING_LISTS_FOLDER: ImisAuthError("403")})
    assert "RemoteService role" in check_package(imis).problems[0]


def test_no_package_at_all_names_the_root_folder_first() -> None:
    report = check_package(FakeImis([], folders=set()))
    problems = report.problems
    assert problems[0] == f"folder {ROOT_FOLDER}: missing; import the Higher Logic IQA package into iMIS"
    assert [c.status for c in report.checks] == [CheckStatus.MISSING, CheckStatus.MISSING]


def test_a_failure_to_check_at_all_is_raised_not_reported_as_missing_iqas() -> None:
    imis = FakeImis(_package(), folder_failures={
        ROOT_FOLDER: ImisAuthError("iMIS refused the login of user 'hl_integration'")})
    with pytest.raises(ImisError, match="refused the login"):
        check_package(imis)


@pytest.mark.parametrize("argv, message", [
    (["--url", URL], "--url needs --user"),
    (["--url", URL, "--user", "hl_integration"], "IMIS_PASSWORD"),
])
def test_the_command_line_refuses_a_direct_check_without_user_or_password(
        argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("IMIS_PASSWORD", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == EXIT_USAGE and message in capsys.readouterr().err


def test_the_command_line_has_no_password_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--password" not in capsys.readouterr().out
