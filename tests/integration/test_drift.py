"""Drift: Thrive changed behind the pipeline's back (members removed or added by hand, a field edited, the whole
brand emptied), and the next run, or the weekly reconciliation, repairs exactly that, with the counts in its report.

The edits are made with the Thrive sandbox's own knobs, as a marketer would in Thrive's UI; the sync never hears
of them except by reading Thrive.
"""

from __future__ import annotations

import pytest

from include.imis_thrive.sync import target_groups as sync
from include.imis_thrive.sync.snapshots import snapshot_name
from tests.integration.test_target_group_sync import VALID_LISTS, World, group_load, members_in_iqa, served_world

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path):
    with served_world(tmp_path, contacts=400) as world:
        yield world


def group(report: dict, name: str) -> dict:
    return next(g for g in report["target_groups"] if g["group"] == name)


def markdown(world: World) -> str:
    return world.store.read_text(f"reports/target_groups/{snapshot_name(f'test-run-{world.runs}')}") or ""


def grid_calls(world: World, grid: str) -> int:
    return world.thrive_sandbox.counters()["grids"].get(grid, 0)


def members(world: World, name: str) -> set[str]:
    return set(world.thrive_sandbox.interest_members(name))


def test_a_run_without_drift_costs_one_count_call_per_group(world):
    world.sync()
    before = grid_calls(world, "subscriber_interests")

    report = world.sync()

    assert grid_calls(world, "subscriber_interests") - before == len(VALID_LISTS)  # the Count, nothing else
    for name in VALID_LISTS:
        drift = group(report, name)["drift"]
        assert drift == {**drift, "reconciled": False, "missing": 0, "extra": 0}
        assert drift["in_thrive"] == drift["snapshot"] == len(members(world, name))


def test_members_removed_in_thrive_by_hand_are_added_again_by_the_next_run(world):
    world.sync()
    kept = members(world, "Newsletter")
    removed = sorted(kept)[:4]
    assert world.thrive_sandbox.drop_members("Newsletter", removed) == 4

    report = world.sync()

    assert members(world, "Newsletter") == kept
    newsletter = group(report, "Newsletter")
    assert {key: value for key, value in newsletter["drift"].items() if key != "guard"} == {
        "snapshot": len(kept), "in_thrive": len(kept) - 4, "reconciled": True, "missing": 4, "extra": 0}
    assert newsletter["drift"]["guard"]["count"] == 4 and not newsletter["drift"]["guard"]["blocked"]
    load = newsletter["load"]
    assert (load["added"], load["drift_readded"], load["removed"]) == (4, 4, 0)
    assert all(not group(report, name)["drift"]["reconciled"] for name in VALID_LISTS if name != "Newsletter")
    assert "drift: 4 missing in Thrive, 0 extra, repaired (4 added again, 0 removed" in markdown(world)


def test_members_added_in_thrive_by_hand_are_removed_by_the_next_run(world):
    world.sync()
    kept = members(world, "Newsletter")
    listed = members_in_iqa(world, "Newsletter")
    strangers = sorted(s["contact_id"] for s in world.thrive_sandbox.subscribers()
                       if s["contact_id"] not in listed)[:3]
    assert world.thrive_sandbox.join_members("Newsletter", strangers) == 3

    report = world.sync()

    assert members(world, "Newsletter") == kept
    newsletter = group(report, "Newsletter")
    assert (newsletter["drift"]["missing"], newsletter["drift"]["extra"]) == (0, 3)
    load = newsletter["load"]
    assert (load["removed"], load["drift_removed"], load["added"]) == (3, 3, 0)
    assert "drift: 0 missing in Thrive, 3 extra, repaired (0 added again, 3 removed" in markdown(world)


def test_a_field_edited_in_thrive_is_found_and_resent_by_the_reconciliation(world):
    world.sync()
    edited = sorted(members(world, "Newsletter"))[0]
    original = world.thrive_sandbox.subscriber(edited)["fields"]["FirstName"]
    world.thrive_sandbox.edit_field(edited, "FirstName", "Edited by hand")
    hourly = world.sync()  # the count cannot see a field: the hourly run leaves it
    assert group(hourly, "Newsletter")["drift"]["reconciled"] is False
    written = world.written()

    report_only = world.sync(reconcile=True, dry_run=True)
    assert world.written() == written  # reported, not repaired
    assert group(report_only, "Newsletter")["drift"]["fields_differ"] == 1
    assert "1 with other field values, not repaired (dry run)" in markdown(world)

    report = world.sync(reconcile=True)

    assert world.thrive_sandbox.subscriber(edited)["fields"]["FirstName"] == original
    for name in VALID_LISTS:
        drift = group(report, name)["drift"]
        assert drift["reconciled"] and (drift["missing"], drift["extra"]) == (0, 0)
        assert drift["fields_checked"] == len(members(world, name))
        in_group = edited in members(world, name)
        assert drift["fields_differ"] == int(in_group)
        assert group_load(report, name)["drift_fields_resent"] == int(in_group)
    assert report["upsert"]["sent"] >= 1  # the edited member's fields, sent again


def test_an_emptied_thrive_stops_every_group_until_overridden_then_is_rebuilt(world):
    world.sync()
    before = {name: members(world, name) for name in VALID_LISTS}
    someone = sorted(before["Newsletter"])[0]
    first_name = world.thrive_sandbox.subscriber(someone)["fields"]["FirstName"]
    world.thrive_sandbox.reset()  # restarted empty, the snapshot store keeps its history (a rebuilt brand)
    assert not world.thrive_sandbox.subscribers()

    with pytest.raises(sync.SyncIncomplete, match="drift guard stopped target group 'All Members'"):
        world.sync()
    blocked = world.store.read_json(f"reports/target_groups/{snapshot_name(f'test-run-{world.runs}')}")
    assert world.written() == {}
    for name in VALID_LISTS:
        outcome = group(blocked, name)
        assert outcome["status"] == "blocked" and "re-run with the mass-change override" in outcome["reason"]
        assert (outcome["drift"]["missing"], outcome["drift"]["in_thrive"]) == (len(before[name]), 0)

    report = world.sync(override=True)

    assert {name: members(world, name) for name in VALID_LISTS} == before
    assert world.thrive_sandbox.subscriber(someone)["fields"]["FirstName"] == first_name  # fields sent again
    for name in VALID_LISTS:
        assert group_load(report, name)["drift_readded"] == len(before[name])
    assert world.sync()["upsert"]["sent"] <= report["upsert"]["quarantine"]["open"]  # and then it is quiet
