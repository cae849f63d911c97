"""Check a real iMIS instance against the IQA package this integration expects.

Before the first sync (and after anyone edits an IQA), this reads every IQA of the package through
`QueryDefinition` and says, one line each, what a person must fix: an IQA that is missing, a required
display alias that is absent or has the wrong type, a prompt, a list IQA without the alias `ID`, the
mailing-lists folder itself missing, or a definition the integration user may not read. Each IQA whose
definition is fine is also run for one row, because "shared with Everyone" cannot be read from the
definition (reference/imis-api.md §9): iMIS answers 401/403 only when the IQA is run. Whether a list has an
active record is data, not package shape, so the target-group sync checks that on every run instead.

Usage (`bin/check-iqa-package` runs this module in the project environment):

    bin/check-iqa-package                       # the Airflow connection imis_default
    bin/check-iqa-package --conn-id imis_prod   # another Airflow connection of type imis
    IMIS_PASSWORD=... bin/check-iqa-package --url https://members.example.org --user hl_integration
    IMIS_PASSWORD=... bin/check-iqa-package --url https://host/Asi.Scheduler_Prod --user hl_integration --endpoint iqa

The password comes from the connection or from the environment variable IMIS_PASSWORD, never from the
command line, where `ps` would show it. The report prints one `OK` line per good IQA and one `FIX` line per
problem. Exit status: 0 the package is complete, 1 something must be fixed, 2 wrong usage, 3 the check
could not run (login refused, iMIS unreachable, connection not defined).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

import httpx

from include.imis_thrive.errors import BadConfiguration
from include.imis_thrive.http_retry import TransientHTTPError
from include.imis_thrive.imis.client import ImisClient, ImisConfig
from include.imis_thrive.imis.entities import DocumentSummary
from include.imis_thrive.imis.errors import ImisAuthError, ImisError, ImisNotFound, ImisRequestError
from include.imis_thrive.imis.iqa_package import (
    CONTACTS_IQA,
    ID_ALIAS,
    LIST_IQA_COLUMNS,
    MAILING_LISTS_FOLDER,
    PANEL_FIELDS_IQA,
    ROOT_FOLDER,
    IqaDefinition,
    ListRequirement,
    PackageMismatch,
    package_mismatches,
)

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2  # argparse's own status for a bad command line
EXIT_CANNOT_CHECK = 3
PASSWORD_ENV = "IMIS_PASSWORD"

_SHARE_WITH_EVERYONE = f"it must be an IQA that {ListRequirement.SHARED_WITH_EVERYONE.value}"


class ConnectionUnusable(BadConfiguration):
    """The command line or the Airflow connection does not describe an iMIS instance to check."""


class IqaRole(StrEnum):
    """What the integration uses an IQA for, so a report line says why it matters."""

    CONTACTS = "contacts"
    PANEL_FIELDS = "panel fields"
    LIST = "list"


class CheckStatus(StrEnum):
    """The verdict on one IQA, so a caller can count missing IQAs apart from IQAs that need an edit."""

    OK = "ok"
    MISMATCH = "mismatch"  # the definition was read and differs from the package
    MISSING = "missing"
    UNREADABLE = "unreadable"  # 401/403 on the definition: the integration user may not see it


@dataclass(frozen=True)
class IqaCheck:
    """The verdict on one IQA of the package; `problems` is empty exactly when `status` is OK."""

    path: str
    role: IqaRole
    status: CheckStatus
    problems: tuple[PackageMismatch, ...] = ()
    columns: int = 0

    @property
    def ok(self) -> bool:
        return self.status is CheckStatus.OK


@dataclass(frozen=True)
class FolderProblem:
    """A package folder that is missing or unusable; `str()` is the sentence a person acts on."""

    folder: str
    problem: str

    def __str__(self) -> str:
        return f"folder {self.folder}: {self.problem}"


@dataclass(frozen=True)
class PackageReport:
    """Everything the check found on one instance, in the order a person would fix it."""

    base_url: str
    checks: tuple[IqaCheck, ...]
    folder_problems: tuple[FolderProblem, ...] = ()

    @property
    def problems(self) -> list[str]:
        """One sentence per thing to fix."""
        return [str(p) for p in self.folder_problems] + [str(m) for c in self.checks for m in c.problems]

    @property
    def ok(self) -> bool:
        return not self.folder_problems and all(check.ok for check in self.checks)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_PROBLEMS

    def check(self, path: str) -> IqaCheck:
        for check in self.checks:
            if check.path.casefold() == path.casefold():
                return check
        raise KeyError(f"the report has no IQA {path}")

    def render(self) -> str:
        """The report as text: a FIX line per problem, an OK line per good IQA, then a count."""
        lines = [f"iMIS IQA package check of {self.base_url}"]
        lines += [f"FIX  {problem}" for problem in self.folder_problems]
        for check in self.checks:
            if check.ok:
                lines.append(f"OK   IQA {check.path} ({check.role} IQA, {check.columns} columns)")
            lines += [f"FIX  {problem}" for problem in check.problems]
        good = sum(check.ok for check in self.checks)
        verdict = "the package is complete" if self.ok else f"{_count(len(self.problems), 'problem')} to fix"
        lines.append(f"{_count(len(self.checks), 'IQA')} checked, {good} OK: {verdict}")
        return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def check_package(client: ImisClient) -> PackageReport:
    """Compare the instance behind `client` with the package: contacts, panel fields and every list IQA.

    Problems with the package come back in the report; a failure to check at all (login refused, iMIS
    unreachable or failing) is raised as the client's error, so it is never mistaken for a missing IQA.
    """
    folder_problems = _root_problems(client)
    list_documents, list_problem = _list_documents(client)
    if list_problem:
        folder_problems.append(list_problem)
    expected = [(CONTACTS_IQA, IqaRole.CONTACTS), (PANEL_FIELDS_IQA, IqaRole.PANEL_FIELDS)]
    expected += [(_list_expectation(document), IqaRole.LIST)
                 for document in sorted(list_documents, key=lambda d: d.name.casefold())]
    with ThreadPoolExecutor(max_workers=client.config.max_concurrency, thread_name_prefix="iqa-check") as pool:
        checks = tuple(pool.map(lambda item: check_iqa(client, *item), expected))
    report = PackageReport(client.config.base_url, checks, tuple(folder_problems))
    log.info("IQA package check of %s: %d IQAs, %d problems", client.config.base_url, len(checks),
             len(report.problems))
    return report


def check_iqa(client: ImisClient, expected: IqaDefinition, role: IqaRole) -> IqaCheck:
    """One IQA: read its definition, compare it with `expected`, and run it for one row if it looks right."""
    try:
        found = client.query_definition(expected.path)
    except ImisNotFound:
        return IqaCheck(expected.path, role, CheckStatus.MISSING, (_missing(expected, role),))
    except ImisAuthError:
        return IqaCheck(expected.path, role, CheckStatus.UNREADABLE, (PackageMismatch(
            expected.path, "the integration user may not read its definition (HTTP 401/403); "
                           f"{_SHARE_WITH_EVERYONE}, and the user needs the RemoteService role"),))
    except ValueError as unreadable:  # a definition the package's reader cannot parse, e.g. an unknown type
        return IqaCheck(expected.path, role, CheckStatus.MISMATCH, (PackageMismatch(
            expected.path, f"its definition cannot be read: {unreadable}"),))
    mismatches = package_mismatches(expected, found)
    if not mismatches:
        mismatches = _run_problems(client, expected.path)
    status = CheckStatus.MISMATCH if mismatches else CheckStatus.OK
    return IqaCheck(expected.path, role, status, tuple(mismatches), len(found.columns))


def _root_problems(client: ImisClient) -> list[FolderProblem]:
    """The package's root folder; reading it first also proves the login works before any IQA is judged."""
    try:
        client.find_document(ROOT_FOLDER)
    except ImisNotFound:
        return [FolderProblem(ROOT_FOLDER, "missing; import the Higher Logic IQA package into iMIS")]
    return []


def _list_documents(client: ImisClient) -> tuple[list[DocumentSummary], FolderProblem | None]:
    """The list IQAs of the mailing-lists folder, or why there are none to check."""
    try:
        documents = client.list_folder(MAILING_LISTS_FOLDER)
    except ImisNotFound:
        return [], FolderProblem(MAILING_LISTS_FOLDER, "missing; create it and put one IQA per Thrive target "
                                                       "group in it")
    except ImisAuthError:
        return [], FolderProblem(MAILING_LISTS_FOLDER, "the integration user may not read it (HTTP 401/403); "
                                                       "give the user the RemoteService role")
    if not documents:
        return [], FolderProblem(MAILING_LISTS_FOLDER, "holds no IQA, so no target group will sync; add one "
                                                       "IQA per Thrive target group")
    return documents, None


def _list_expectation(document: DocumentSummary) -> IqaDefinition:
    """What any list IQA must look like: the list columns, of which only `ID` is required."""
    path = document.path or f"{MAILING_LISTS_FOLDER}/{document.name}"
    return IqaDefinition(path, LIST_IQA_COLUMNS, required_aliases=(ID_ALIAS,))


def _missing(expected: IqaDefinition, role: IqaRole) -> PackageMismatch:
    aliases = ", ".join(expected.required_aliases)
    return PackageMismatch(expected.path, f"missing (or not visible to the integration user); the {role} IQA "
                                          f"must exist here with the display columns {aliases}")


def _run_problems(client: ImisClient, path: str) -> list[PackageMismatch]:
    """Run the IQA for one row: the only way to see that the integration user may not run it."""
    try:
        client.fetch_page(path, limit=1)
    except ImisAuthError:
        return [PackageMismatch(path, f"the integration user may not run it (HTTP 401/403); {_SHARE_WITH_EVERYONE}")]
    except ImisNotFound:
        return [PackageMismatch(path, f"its definition exists but running it through /api/{client.config.endpoint} "
                                      "answers 404; on iMIS before 20.3.77 use endpoint iqa "
                                      "(the connection's extra, or --endpoint iqa)")]
    except ImisRequestError as rejected:
        return [PackageMismatch(path, f"running it is rejected (HTTP {rejected.status_code}): {rejected}")]
    return []


# -- command line ---------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Check the instance of an Airflow connection (default) or of `--url`, print the report, return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.url and not args.user:
        parser.error("--url needs --user (the integration user)")
    if args.url and not os.environ.get(PASSWORD_ENV):
        parser.error(f"--url reads the password from the environment variable {PASSWORD_ENV}; set it")
    try:
        client = _direct_client(args) if args.url else _connection_client(args.conn_id)
    except ConnectionUnusable as unusable:
        print(f"cannot check the IQA package: {unusable}", file=sys.stderr)
        return EXIT_CANNOT_CHECK
    try:
        with client:
            report = check_package(client)
    except (ImisError, TransientHTTPError, httpx.TransportError) as failure:
        print(f"cannot check the IQA package at {client.config.base_url}: {failure}", file=sys.stderr)
        return EXIT_CANNOT_CHECK
    print(report.render())
    return report.exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="check-iqa-package", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conn-id", default="imis_default", help="Airflow connection to check (default imis_default)")
    parser.add_argument("--url", help=f"iMIS site URL, instead of a connection (password from ${PASSWORD_ENV})")
    parser.add_argument("--user", help="the integration user, with --url")
    parser.add_argument("--endpoint", choices=("query", "iqa"), default="query",
                        help="with --url: query = /api/query (20.3.77+), iqa = /api/IQA (older iMIS)")
    return parser


def _direct_client(args: argparse.Namespace) -> ImisClient:
    try:
        config = ImisConfig(base_url=args.url, username=args.user, password=os.environ[PASSWORD_ENV],
                            endpoint=args.endpoint)
    except ValueError as invalid:
        raise ConnectionUnusable(f"--url {args.url} / --user {args.user}: {invalid}") from invalid
    return ImisClient(config)


def _connection_client(conn_id: str) -> ImisClient:
    """The client a DAG task would get, from the connection in Airflow's metadata DB or secrets backend."""
    # Outside a task the SDK reads connections from env vars and secrets backends only; Airflow's own
    # `airflow connections get` declares the server context like this to read the metadata DB too.
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # the report, not Airflow's chatter
    from airflow.sdk.exceptions import AirflowNotFoundException

    from include.imis_thrive.airflow.hooks.imis import ImisHook

    try:
        return ImisHook(imis_conn_id=conn_id).get_client()
    except AirflowNotFoundException as absent:
        raise ConnectionUnusable(f"{absent}; define it (airflow_settings.yaml or the Airflow UI) or pass "
                                 f"--url and --user") from absent
    except ValueError as invalid:
        raise ConnectionUnusable(f"connection {conn_id}: {invalid}") from invalid


if __name__ == "__main__":
    sys.exit(main())
