"""The panel-field sync steps, in DAG order, against both sandboxes on loopback (no scheduler)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from include.imis_thrive.imis.iqa_package import PANEL_FIELDS_IQA
from include.imis_thrive.sync import panel_fields as sync
from include.imis_thrive.sync import target_groups
from include.imis_thrive.sync.field_map import to_thrive_panel_fields
from include.imis_thrive.sync.guard import MassChangeBlocked, MassChangeLimits
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.sync.validation import ValidationFailed
from tests.integration.sandbox_pair import SandboxPair, serve_pair

pytestmark = pytest.mark.integration
TEMPLATE_FIELDS = [alias for alias in PANEL_FIELDS_IQA.aliases if alias != "ID"]


@dataclass
class World(SandboxPair):
    """Both sandboxes and their clients, plus the snapshot store the sync steps share across runs."""

    store: SnapshotStore
    runs: int = 0

    def run_id(self) -> str:
        self.runs += 1
        return f"test-run-{self.runs}"

    def sync_target_groups(self) -> None:
        """What puts contacts into Thrive (and writes the contacts snapshot panel fields rely on)."""
        run_id = self.run_id()
        groups = target_groups.discover_target_groups(self.imis, self.thrive)
        contacts = target_groups.extract_contacts(self.imis, self.store, run_id)
        plans = [target_groups.plan_target_group(self.imis, self.thrive, self.store, group, contacts, run_id)
                 for group in groups]
        target_groups.upsert_contacts(self.thrive, self.store, contacts, plans, run_id)

    def sync(self, dry_run: bool = False, override: bool = False) -> dict:
        """One run of the panel DAG's steps; returns the run report as stored."""
        run_id = self.run_id()
        extracted = sync.extract_panel_fields(self.imis, self.store, run_id)
        upserted = sync.upsert_panel_fields(self.thrive, self.store, extracted, run_id, dry_run=dry_run,
                                            override=override, limits=MassChangeLimits())
        summary = sync.finish_run(self.store, run_id, extracted, upserted)
        report = self.store.read_json(sync.report_key(run_id))
        assert summary.report.endswith(f"{sync.report_key(run_id)}.json") and summary.sent == upserted.sent
        return report

    def subscribe_writes(self) -> int:
        return self.thrive_sandbox.counters().get("records_written", {}).get("Subscribe", 0)

    def in_thrive(self) -> set[str]:
        return set(self.store.read(target_groups.CONTACTS_SNAPSHOT)["ID"])

    def fields_in_thrive(self, contact_id: str) -> dict[str, str | None]:
        return self.thrive_sandbox.subscriber(contact_id)["fields"]

    def panel_in_imis(self):
        """The panel IQA as the text Thrive should hold, by ID."""
        return to_thrive_panel_fields(self.imis.run_iqa(PANEL_FIELDS_IQA.path)).set_index("ID")


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    with serve_pair(contacts=300) as pair:
        yield World(**vars(pair), store=SnapshotStore(str(tmp_path / "store")))


@pytest.fixture
def synced(world: World) -> World:
    """Contacts in Thrive and their panel fields sent once: the baseline a nightly run starts from."""
    world.sync_target_groups()
    world.sync()
    return world


def thrive_text(value: str | None) -> str:
    return value or ""


def test_first_run_sends_every_panel_field_to_the_contacts_thrive_holds_and_creates_none(world):
    world.sync_target_groups()
    subscribers_before = len(world.thrive_sandbox.subscribers())
    writes_before = world.subscribe_writes()

    report = world.sync()

    in_thrive = world.in_thrive()
    panel = world.panel_in_imis()
    assert report["upsert"]["status"] == "synced"
    assert report["upsert"]["sent"] == len(in_thrive) == world.subscribe_writes() - writes_before
    assert report["upsert"]["field_sets"]["count"] == 1
    assert report["extract"]["validation"]["success"] and report["extract"]["custom_fields"] == []
    assert len(world.thrive_sandbox.subscribers()) == subscribers_before
    for contact_id in sorted(in_thrive)[:25]:
        fields = world.fields_in_thrive(contact_id)
        assert {name: thrive_text(fields.get(name)) for name in TEMPLATE_FIELDS} == panel.loc[contact_id].to_dict()


def test_without_contacts_in_thrive_nothing_is_sent(world):
    report = world.sync()
    assert report["upsert"]["in_thrive"] == 0 and report["upsert"]["sent"] == 0
    assert world.subscribe_writes() == 0


def test_changed_panel_values_send_only_those_fields_of_those_contacts(synced):
    world = synced
    in_thrive = world.in_thrive()
    changed = {cid: columns for cid, columns in world.imis_sandbox.mutate_panel(30, seed=4).items()
               if cid in in_thrive}
    untouched = {cid: next(name for name in TEMPLATE_FIELDS if name not in columns)
                 for cid, columns in changed.items()}
    for contact_id, name in untouched.items():  # a field sent again would overwrite the marker
        world.thrive_sandbox.store.find(contact_id, None).fields[name] = "marker"
    writes_before = world.subscribe_writes()

    report = world.sync()

    panel = world.panel_in_imis()
    assert report["upsert"]["sent"] == len(changed) == world.subscribe_writes() - writes_before
    assert report["upsert"]["diff"]["added"] == 0
    for contact_id, columns in changed.items():
        fields = world.fields_in_thrive(contact_id)
        assert {name: thrive_text(fields.get(name)) for name in columns} == panel.loc[contact_id, columns].to_dict()
        assert fields[untouched[contact_id]] == "marker"
    assert world.sync()["upsert"]["sent"] == 0
    assert world.subscribe_writes() == writes_before + len(changed)


def test_a_new_panel_column_becomes_a_thrive_field_without_tripping_the_guard(synced):
    world = synced
    world.imis_sandbox.add_panel_column("Region", "String")
    panel = world.panel_in_imis()
    with_region = {cid for cid in world.in_thrive() if panel.loc[cid, "Region"]}

    report = world.sync()

    assert report["extract"]["custom_fields"] == ["Region"]
    assert report["upsert"]["guard"]["blocked"] is False and len(with_region) > 0.8 * len(world.in_thrive())
    assert report["upsert"]["sent"] == len(with_region)
    assert report["upsert"]["field_sets"]["largest"] == [{"fields": ["Region"], "contacts": len(with_region)}]
    assert all(world.fields_in_thrive(cid)["Region"] == panel.loc[cid, "Region"] for cid in with_region)


def test_an_emptied_panel_iqa_is_blocked_and_loads_nothing(synced):
    world = synced
    committed = world.store.current(sync.PANEL_FIELDS_SNAPSHOT)
    writes_before = world.subscribe_writes()
    world.imis_sandbox.seed.all_rows = world.imis_sandbox.seed.all_rows[:0]  # a filter edited: no rows

    with pytest.raises(MassChangeBlocked, match=r"IQA '\$/HigherLogic/Panels/PanelFields'.*above the 20% limit"):
        world.sync()

    assert world.subscribe_writes() == writes_before
    assert world.store.current(sync.PANEL_FIELDS_SNAPSHOT) == committed
    report = world.sync(override=True)  # a contact the IQA stops returning keeps its fields in Thrive
    assert report["upsert"]["guard"]["overridden"] and report["upsert"]["sent"] == 0


def test_a_mass_change_is_blocked_until_overridden(synced):
    world = synced
    world.imis_sandbox.mutate_panel(200, seed=5)
    writes_before = world.subscribe_writes()

    with pytest.raises(MassChangeBlocked, match="changed contacts"):
        world.sync()
    assert world.subscribe_writes() == writes_before

    report = world.sync(override=True)
    assert report["upsert"]["sent"] > 0.2 * len(world.in_thrive())
    assert world.subscribe_writes() == writes_before + report["upsert"]["sent"]


def test_dry_run_reports_the_diff_and_sends_nothing(world):
    world.sync_target_groups()
    writes_before = world.subscribe_writes()

    report = world.sync(dry_run=True)

    assert report["upsert"]["status"] == "dry_run" and report["upsert"]["to_send"] == len(world.in_thrive())
    assert world.subscribe_writes() == writes_before
    assert world.store.current(sync.PANEL_FIELDS_SNAPSHOT) is None


def test_duplicate_ids_fail_a_blocking_expectation_naming_the_iqa_and_nothing_is_sent(world):
    world.sync_target_groups()
    writes_before = world.subscribe_writes()
    ids = world.imis_sandbox.seed.contacts["ID"]
    ids[1] = ids[0]

    with pytest.raises(ValidationFailed, match=r"IQA '\$/HigherLogic/Panels/PanelFields'.*id_unique"):
        world.sync()
    assert world.subscribe_writes() == writes_before


def test_a_value_thrive_cannot_take_is_quarantined_and_retried_next_run(synced):
    world = synced
    contact_id = sorted(world.in_thrive())[0]
    row = world.imis_sandbox.seed.row_of(contact_id)
    world.imis_sandbox.seed.panel["ChapterName"][row] = "North\x01east"

    report = world.sync()

    assert report["upsert"]["rejected"] == 1
    assert report["upsert"]["quarantine"]["open"] == 1
    assert "'ChapterName' contains character U+0001" in next(iter(report["upsert"]["quarantine"]["by_reason"]))
    assert world.sync()["upsert"]["to_send"] == 1  # not in the snapshot, so retried
