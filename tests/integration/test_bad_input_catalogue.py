"""The bad-input catalogue (issue 13): every kind of bad value or answer a real iMIS gives, against both sandboxes.

Two halves. **Refused**: input that makes a run unusable fails it at once (a kind in `FAILS_AT_ONCE`, so Airflow
does not retry), with a message naming the IQA, column, row or action to fix, before anything reaches Thrive
and without moving any snapshot (the last good one stays). **Quarantined or synced**: a single bad row is left
out with its reason (IDs and reasons in the run report, never values) while the rest loads, and values Thrive
can take (emoji, right-to-left text, XML specials, .NET's date bounds) arrive exactly as iMIS holds them.

The sync steps run in DAG order as `test_target_group_sync.py` drives them (no scheduler), against one world
per half: a committed baseline first, then each case, then the sandbox is put back. README.md's
"Troubleshooting: bad input" table lists the same cases with what the user sees and does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr

from include.imis_thrive.errors import FAILS_AT_ONCE
from include.imis_thrive.imis.client import ImisClient
from include.imis_thrive.imis.errors import (
    ImisAnswerNotJson,
    ImisAuthError,
    ImisNotFound,
    ImisPagingError,
)
from include.imis_thrive.imis.iqa_package import CONTACTS_IQA, CONTACTS_IQA_PATH, MAILING_LISTS_FOLDER
from include.imis_thrive.imis.tokens import MemoryTokenStore
from include.imis_thrive.sync import panel_fields
from include.imis_thrive.sync import target_groups as sync
from include.imis_thrive.sync.bad_emails import BAD_EMAILS_KEY, bad_email_reason
from include.imis_thrive.sync.diff import SchemaDrift
from include.imis_thrive.sync.guard import MassChangeLimits
from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.sync.validation import IqaKind, ValidationFailed, validate_iqa
from include.imis_thrive.thrive.client import ThriveClient
from include.imis_thrive.thrive.errors import ThriveCredentialsError
from tests.integration.sandbox_pair import SandboxPair, serve_pair

pytestmark = pytest.mark.integration

VALID_LISTS = ["All Members", "Annual Conference 2026", "Lapsed Members", "Newsletter"]
CONTACTS = re.escape(CONTACTS_IQA_PATH)
NEWSLETTER_IQA = f"{MAILING_LISTS_FOLDER}/Newsletter"
PAGE_SIZE = 100  # small pages, so a 300-contact IQA has a page in the middle that can lie


@dataclass
class World(SandboxPair):
    """Both sandboxes, their clients and the snapshot store; one run of the DAG's steps at a time."""

    store: SnapshotStore
    runs: int = 0

    def sync(self, only: str | None = None, imis: ImisClient | None = None, thrive: ThriveClient | None = None,
             lists: list[str] | None = None) -> dict:
        """One target-group run (only `lists` of all groups found, or the one group `only`); the run report."""
        self.runs += 1
        run_id = f"catalogue-run-{self.runs}"
        imis, thrive = imis or self.imis, thrive or self.thrive
        groups = sync.discover_target_groups(imis, thrive, only=only)
        if lists is not None:
            groups = [group for group in groups if group.name in lists]
        contacts = sync.extract_contacts(imis, self.store, run_id)
        plans = [sync.plan_target_group(imis, thrive, self.store, group, contacts, run_id) for group in groups]
        upsert = sync.upsert_contacts(thrive, self.store, contacts, plans, run_id)
        loads = [sync.load_target_group(thrive, self.store, plan, run_id) for plan in plans if plan.ready]
        sync.finish_run(self.store, run_id, plans, contacts, upsert, loads)
        return self.store.read_json(f"reports/target_groups/{snapshot_name(run_id)}")

    def sync_panel(self, imis: ImisClient | None = None) -> None:
        self.runs += 1
        run_id = f"catalogue-run-{self.runs}"
        extracted = panel_fields.extract_panel_fields(imis or self.imis, self.store, run_id)
        upserted = panel_fields.upsert_panel_fields(self.thrive, self.store, extracted, run_id,
                                                    limits=MassChangeLimits())
        panel_fields.finish_run(self.store, run_id, extracted, upserted)

    def imis_client(self, **settings: Any) -> ImisClient:
        """Another client of the same sandbox (its own login), e.g. with small pages or a wrong password."""
        return ImisClient(self.imis.config.model_copy(update=_secret(settings)), token_store=MemoryTokenStore())

    def thrive_client(self, **settings: Any) -> ThriveClient:
        return ThriveClient(self.thrive.config.model_copy(update=_secret(settings)))

    def retried(self) -> dict[str, Any]:
        """The rejection ledger: contacts Thrive (or its client) refused, sent again once their row changes."""
        return (self.store.read_json("quarantine/contacts") or {}).get("entries", {})


    def state(self) -> dict[str, Any]:
        """What must not move when a run is refused: Thrive's writes and every committed snapshot."""
        names = [sync.CONTACTS_SNAPSHOT, panel_fields.PANEL_FIELDS_SNAPSHOT,
                 *(sync.group_snapshot(name) for name in VALID_LISTS)]
        return {"thrive_writes": self.thrive_sandbox.counters().get("records_written", {}),
                "snapshots": {name: self.store.current(name) for name in names},
                "panel_columns": self.store.read_json(panel_fields.SCHEMA_KEY)}


def _secret(settings: dict[str, Any]) -> dict[str, Any]:
    return {name: SecretStr(value) if name == "password" else value for name, value in settings.items()}


def members_with_good_addresses(world: World, list_name: str, count: int) -> list[str]:
    """Active members of a list whose address is well formed: rows the baseline sends, so an edit is visible."""
    seed = world.imis_sandbox.seed
    picked = []
    for row in seed.find_list(list_name).members.tolist():
        email = seed.contacts["PrimaryEmailAddress"][row]
        if seed.contacts["Status"][row] == "A" and email and bad_email_reason(email) is None:
            picked.append(str(seed.contacts["ID"][row]))
    assert len(picked) >= count
    return picked[:count]


# -- refused: fails at once, names what to fix, changes nothing ------------------------------------------------

@pytest.fixture(scope="module")
def committed(tmp_path_factory) -> Iterator[World]:
    """A world whose valid lists and panel fields were synced and committed once."""
    with serve_pair(contacts=300, broken_lists=True) as pair:
        world = World(**vars(pair), store=SnapshotStore(str(tmp_path_factory.mktemp("catalogue") / "store")))
        world.sync(lists=VALID_LISTS)
        world.sync_panel()
        yield world


@pytest.fixture
def world(committed: World) -> Iterator[World]:
    """The committed world; each case's change to the iMIS sandbox is undone after it."""
    yield committed
    sandbox = committed.imis_sandbox
    sandbox.reset()
    sandbox.lie_in_pages(None)
    sandbox.config.not_shared_status = 401
    sandbox.config.unreadable_lists = []


def _edit_ids(change: Callable[[list[str]], dict[str, dict[str, Any]]]) -> Callable[[World], Any]:
    def arrange(world: World) -> Any:
        return world.imis_sandbox.edit_contacts(change(members_with_good_addresses(world, "Newsletter", 2)))
    return arrange


def _lie(lie: str, offset: int, iqa: str = CONTACTS_IQA_PATH) -> Callable[[World], Any]:
    return lambda world: world.imis_sandbox.lie_in_pages(lie, offset, iqa)  # type: ignore[arg-type]


def _set(**config: Any) -> Callable[[World], None]:
    def arrange(world: World) -> None:
        for name, value in config.items():
            setattr(world.imis_sandbox.config, name, value)
    return arrange


def _nothing(world: World) -> None:
    return None


def _small_pages(workers: int = 1) -> Callable[[World], dict]:
    def act(world: World) -> dict:
        with world.imis_client(page_size=PAGE_SIZE, max_concurrency=workers) as imis:
            return world.sync(imis=imis, lists=VALID_LISTS)
    return act


def _wrong_imis_password(world: World) -> dict:
    with world.imis_client(password="not-the-password") as imis:
        return world.sync(imis=imis, lists=VALID_LISTS)


def _wrong_thrive_password(world: World) -> dict:
    with world.thrive_client(password="not-the-password") as thrive:
        return world.sync(thrive=thrive, lists=VALID_LISTS)


def _skipped(name: str, requirement: str) -> str:
    return (rf"the run did not sync everything \(report: .*\):\n{re.escape(name)}: list IQA "
            rf"{re.escape(MAILING_LISTS_FOLDER)}/{re.escape(name)} is skipped: it must be an IQA that {requirement}")


@dataclass(frozen=True)
class Refusal:
    """One catalogue case: how the bad input is made, how the run meets it, and what it must say."""

    arrange: Callable[[World], Any]
    act: Callable[[World], Any]
    error: type[Exception]
    message: str  # a regular expression the message must match from its start


REFUSALS = {
    "missing ID alias": Refusal(
        _nothing, lambda w: w.sync(only="Broken - No ID Alias"), sync.SyncIncomplete,
        _skipped("Broken - No ID Alias", r"returns the iMIS ID under the display alias ID \(its display columns "
                                         r"are: ContactKey, .*\)")),
    "null ID": Refusal(
        _edit_ids(lambda ids: {ids[0]: {"ID": None}}), World.sync, ValidationFailed,
        rf"IQA '{CONTACTS}' failed 1 blocking expectation\(s\) of \d+ on 300 rows, so nothing was loaded: "
        r"id_not_null: expect_column_values_to_not_be_null on 'ID' found 1 unexpected value\(s\)"),
    "duplicate IDs": Refusal(
        _edit_ids(lambda ids: {ids[1]: {"ID": ids[0]}}), World.sync, ValidationFailed,
        rf"IQA '{CONTACTS}' failed 1 blocking expectation\(s\) .* id_unique: expect_column_values_to_be_unique on 'ID' "
        r"found 2 unexpected value\(s\) \(e.g. ID \d{7}\)"),
    "non-numeric ID": Refusal(
        _edit_ids(lambda ids: {ids[0]: {"ID": "ABC-17"}}), World.sync, ValidationFailed,
        rf"IQA '{CONTACTS}' failed 1 blocking expectation\(s\) .* id_numeric: expect_column_values_to_match_regex on "
        r"'ID' found 1 unexpected value\(s\) \(e.g. ID ABC-17\)"),
    "zero active records": Refusal(
        _nothing, lambda w: w.sync(only="Broken - No Active Records"), sync.SyncIncomplete,
        _skipped("Broken - No Active Records", r"returns at least one active record \(Status A\) \(none of its "
                                               r"\d+ rows is an active contact\)")),
    "a prompt": Refusal(
        _nothing, lambda w: w.sync(only="Broken - Prompted"), sync.SyncIncomplete,
        _skipped("Broken - Prompted", r"has no prompts \(every filter's Prompt set to No\) \(prompted filters: "
                                      r"Status \(Required\)\)")),
    "not shared (401)": Refusal(
        _nothing, lambda w: w.sync(only="Broken - Not Shared"), sync.SyncIncomplete,
        _skipped("Broken - Not Shared", r"is shared with Everyone .*refused 3 fresh tokens in a row")),
    "not shared (403)": Refusal(
        _set(not_shared_status=403), lambda w: w.sync(only="Broken - Not Shared"), sync.SyncIncomplete,
        _skipped("Broken - Not Shared", r"is shared with Everyone .*forbidden for the integration user")),
    "unknown IQA (404 on its definition)": Refusal(
        _set(unreadable_lists=["Newsletter"]), lambda w: w.sync(only="Newsletter"), sync.SyncIncomplete,
        r"the run did not sync everything \(report: .*\):\nNewsletter: list IQA "
        rf"{re.escape(NEWSLETTER_IQA)} is skipped: its query definition could not be read \(.*does not exist"),
    "unknown IQA (404 when run)": Refusal(
        _nothing, lambda w: w.imis.run_iqa(f"{MAILING_LISTS_FOLDER}/No Such List"), ImisNotFound,
        rf"IQA {re.escape(MAILING_LISTS_FOLDER)}/No Such List \(offset 0\): not found \(The query "),
    "unknown target group": Refusal(
        _nothing, lambda w: w.sync(only="No Such List"), sync.UnknownTargetGroup,
        rf"no list IQA named 'No Such List' in {re.escape(MAILING_LISTS_FOLDER)} \(available: All Members, "),
    "bad iMIS credentials": Refusal(
        _nothing, _wrong_imis_password, ImisAuthError,
        r"iMIS refused the login of user 'hl_integration' at .*/token \(HTTP 400: The user name or password is "
        r"incorrect.\); check the imis_default connection's login and password"),
    "bad Thrive credentials": Refusal(
        _nothing, _wrong_thrive_password, ThriveCredentialsError,
        r"grid interest_target_group rows 0\+1: Thrive refused the credentials \(InvalidCredentialsException: .*\); "
        r"check the thrive connection's login, password and brand_id extra"),
    "malformed JSON page": Refusal(
        _lie("not_json", PAGE_SIZE), _small_pages(), ImisAnswerNotJson,
        rf"IQA {CONTACTS} \(offset 100\): the answer to GET \S*/api/query is not JSON \(\d[\d,]* bytes, "
        r"application/json; Input data was truncated\)"),
    "Count above the rows held": Refusal(
        _lie("count", PAGE_SIZE), _small_pages(), ImisPagingError,
        rf"IQA {CONTACTS}: the page at offset 100 says Count 100 but holds 99 rows"),
    "Count above the rows held, in a list IQA": Refusal(
        _lie("count", 0, NEWSLETTER_IQA), lambda w: w.sync(only="Newsletter"), ImisPagingError,
        rf"IQA {re.escape(NEWSLETTER_IQA)}: the page at offset 0 says Count \d+ but holds \d+ rows"),
    "HasNext with NextOffset 0 before the last page": Refusal(
        _lie("next_offset_zero", PAGE_SIZE), _small_pages(), ImisPagingError,
        rf"IQA {CONTACTS}: the page at offset 100 says HasNext true but NextOffset 0, yet only 200 of TotalCount "
        r"300 rows end there; no rows are returned rather than a result with rows missing \(run it again"),
    "HasNext with NextOffset 0, pages read concurrently": Refusal(
        _lie("next_offset_zero", PAGE_SIZE), _small_pages(workers=3), ImisPagingError,
        rf"IQA {CONTACTS}: the page at offset 100 says HasNext true but NextOffset 0"),
    "NextOffset not advancing": Refusal(
        _lie("next_offset_stuck", PAGE_SIZE), _small_pages(), ImisPagingError,
        rf"IQA {CONTACTS}: the page at offset 100 holds 100 rows but says NextOffset 100, not 200"),
    "contacts column removed": Refusal(
        lambda w: w.imis_sandbox.change_column("contacts", "MemberSince"), World.sync, ValidationFailed,
        rf"IQA '{CONTACTS}' failed 1 blocking expectation\(s\) .* required_column: the IQA does not return column "
        r"'MemberSince'"),
    "contacts column renamed": Refusal(
        lambda w: w.imis_sandbox.change_column("contacts", "MemberSince", "MemberStartDate"), World.sync,
        ValidationFailed, r".* required_column: the IQA does not return column 'MemberSince'"),
    "panel column removed (schema drift)": Refusal(
        lambda w: w.imis_sandbox.change_column("panel", "ChapterName"), World.sync_panel, SchemaDrift,
        r"schema drift: IQA '\$/HigherLogic/Panels/PanelFields' no longer returns the column\(s\) 'ChapterName' "
        r"that the last committed snapshot has \(removed or renamed in the IQA's Display tab\)\. Nothing was "
        r"loaded and the snapshot is kept"),
    "panel column renamed (schema drift)": Refusal(
        lambda w: w.imis_sandbox.change_column("panel", "ChapterName", "Chapter"), World.sync_panel, SchemaDrift,
        r"schema drift: IQA '\$/HigherLogic/Panels/PanelFields' no longer returns the column\(s\) 'ChapterName' .*"
        r"it now returns the new column\(s\) 'Chapter', so a rename is likely"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_input_fails_at_once_naming_what_to_fix_and_changes_nothing(world: World, case: str) -> None:
    refusal = REFUSALS[case]
    before = world.state()
    refusal.arrange(world)

    with pytest.raises(refusal.error) as refused:
        refusal.act(world)

    assert re.match(refusal.message, str(refused.value), re.DOTALL), str(refused.value)
    assert isinstance(refused.value, FAILS_AT_ONCE)  # no Airflow retry: a retry reads the same input
    assert world.state() == before  # nothing reached Thrive, and the last good snapshots stay


def test_the_sandbox_put_back_syncs_again(world: World) -> None:
    """The cases above leave the world as they found it: a normal run afterwards sends nothing (the refused rows
    are unchanged, so they are held back)."""
    retried = set(world.retried())
    report = world.sync(lists=VALID_LISTS)
    assert report["upsert"]["sent"] == 0 and report["upsert"]["diff"]["changed"] == 0
    assert report["upsert"]["refused_unchanged"] == len(retried)


# -- quarantined or synced: one bad row stays out with its reason, the rest loads ------------------------------

SPECIAL_TEXT = {
    "FirstName": "Zoë 😀🎉",  # emoji, outside the Basic Multilingual Plane
    "LastName": "כהן عبد الله",  # right to left
    "OrganizationName": "Smith & <Sons> \"Ltd\" 'Intl' ]]>",  # XML specials, a CDATA end
}
EDGE_DATES = {"MemberExpiresOn": "9999-12-31T23:59:59", "Birthday": "0001-01-01T00:00:00"}
MALFORMED_EMAILS = {"two @": "jane.doe@example@example.org", "no domain": "jane.doe@",
                    "doubled .com": "jane.doe@gmail.com.com"}


@dataclass
class Edited:
    """The world after one run over contacts edited case by case; `who[case]` is the contact edited."""

    world: World
    who: dict[str, str]
    report: dict
    quarantine: pd.DataFrame  # what validation of the contacts IQA quarantines: ID, column, reason

    def in_thrive(self, case: str) -> dict | None:
        return self.world.thrive_sandbox.subscriber(self.who[case])

    def quarantined_by_validation(self, case: str) -> list[str]:
        rows = self.quarantine[self.quarantine["ID"] == self.who[case]]
        return [f"{column}: {reason}" for column, reason in zip(rows["column"], rows["reason"], strict=True)]

    def refused_by_thrive_client(self, case: str) -> str | None:
        return self.world.retried().get(self.who[case], {}).get("reason")


@pytest.fixture(scope="module")
def edited(tmp_path_factory) -> Iterator[Edited]:
    with serve_pair(contacts=300) as pair:
        world = World(**vars(pair), store=SnapshotStore(str(tmp_path_factory.mktemp("edited") / "store")))
        cases = ["too long for Thrive", "email too long for Thrive", "special text", "control character",
                 "edge dates", *MALFORMED_EMAILS]
        who = dict(zip(cases, members_with_good_addresses(world, "Newsletter", len(cases)), strict=True))
        edits: dict[str, dict[str, Any]] = {
            who["too long for Thrive"]: {"FirstName": "A" * 256},
            who["email too long for Thrive"]: {"PrimaryEmailAddress": "a" * 90 + "@example.org"},
            who["special text"]: SPECIAL_TEXT,
            who["control character"]: {"Title": "Director\x0bof Membership"},  # a vertical tab pasted from Word
            who["edge dates"]: EDGE_DATES,
        }
        edits |= {who[case]: {"PrimaryEmailAddress": address} for case, address in MALFORMED_EMAILS.items()}
        world.imis_sandbox.edit_contacts(edits)
        report = world.sync()
        contacts = world.imis.run_iqa(CONTACTS_IQA_PATH, declared_types={
            column.alias: column.data_type.value for column in CONTACTS_IQA.columns})
        yield Edited(world, who, report, validate_iqa(contacts, IqaKind.CONTACTS).quarantine)


@pytest.mark.parametrize(("case", "reason"), [
    ("too long for Thrive", "FirstName: longer_than_255"),
    ("email too long for Thrive", "PrimaryEmailAddress: longer_than_100"),
    ("two @", "PrimaryEmailAddress: email_invalid"),
    ("no domain", "PrimaryEmailAddress: email_invalid"),
])
def test_a_value_thrive_cannot_take_is_quarantined_by_validation_with_its_column_and_rule(edited, case, reason):
    assert edited.quarantined_by_validation(case) == [reason]
    assert edited.in_thrive(case) is None


@pytest.mark.parametrize(("case", "reason"), [
    ("doubled .com", "email domain repeats its suffix (e.g. .com.com)"),
    ("control character", "personalization field 'Title' contains character U+000B, which XML cannot carry"),
])
def test_a_value_the_thrive_client_refuses_is_quarantined_in_the_ledger_with_its_reason(edited, case, reason):
    assert edited.refused_by_thrive_client(case) == reason
    assert edited.in_thrive(case) is None


def test_every_malformed_address_is_recorded_once_as_a_bad_email(edited):
    records = edited.world.store.read_json(BAD_EMAILS_KEY)["records"].values()
    recorded = {record["contact_id"]: record["email"] for record in records}
    assert {edited.who[case]: recorded.get(edited.who[case]) for case in MALFORMED_EMAILS} == {
        edited.who[case]: address for case, address in MALFORMED_EMAILS.items()}


def test_emoji_right_to_left_text_and_xml_specials_reach_thrive_exactly(edited):
    fields = edited.in_thrive("special text")["fields"]
    assert {name: fields[name] for name in SPECIAL_TEXT} == SPECIAL_TEXT


def test_dotnet_date_bounds_reach_thrive_as_the_text_imis_holds(edited):
    """Issue 13, defect 3: 9999-12-31T23:59:59 ("never expires") stopped the whole sync, three tries long."""
    fields = edited.in_thrive("edge dates")["fields"]
    assert (fields["MemberExpiresOn"], fields["Birthday"]) == ("9999-12-31T23:59:59-05:00", "0001-01-01")


def test_the_rest_of_the_list_loads(edited):
    world = edited.world
    held_back = {edited.who[case] for case in edited.who if case not in ("special text", "edge dates")}
    in_list = set(world.imis.run_iqa(NEWSLETTER_IQA)["ID"])
    newsletter = set(world.thrive_sandbox.interest_members("Newsletter"))
    assert held_back <= in_list and not held_back & newsletter
    quarantined = set(edited.quarantine["ID"]) | set(world.retried())
    assert edited.report["contacts"]["quarantined"]["rows"] == edited.quarantine["ID"].nunique()
    assert newsletter == in_list - quarantined
