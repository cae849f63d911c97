"""The target-group sync steps, in DAG order, against both sandboxes on loopback (no scheduler)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest

from include.imis_thrive.sync import target_groups as sync
from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.thrive.models import InterestMember, Subscriber
from tests.integration.sandbox_pair import SandboxPair, serve_pair

pytestmark = pytest.mark.integration
VALID_LISTS = ["All Members", "Annual Conference 2026", "Lapsed Members", "Newsletter"]


@dataclass
class World(SandboxPair):
    """Both sandboxes and their clients, plus the snapshot store the sync steps share across runs."""

    store: SnapshotStore
    runs: int = 0

    def sync(self, only: str | None = None, campaign_only: sync.CampaignOnly | None = None, **options) -> dict:
        """One run of the DAG's steps; returns the run report it wrote."""
        self.runs += 1
        run_id = f"test-run-{self.runs}"
        groups = sync.discover_target_groups(self.imis, self.thrive, only=only, campaign_only=campaign_only)
        contacts = sync.extract_contacts(self.imis, self.store, run_id)
        plans = [sync.plan_target_group(self.imis, self.thrive, self.store, group, contacts, run_id,
                                        full_resync=options.get("full_resync", False),
                                        override=options.get("override", False),
                                        reconcile=options.get("reconcile", False)) for group in groups]
        upsert = sync.upsert_contacts(self.thrive, self.store, contacts, plans, run_id,
                                      dry_run=options.get("dry_run", False),
                                      full_resync=options.get("full_resync", False),
                                      override=options.get("override", False))
        loads = [sync.load_target_group(self.thrive, self.store, plan, run_id, dry_run=options.get("dry_run", False))
                 for plan in plans if plan.ready]
        sync.finish_run(self.store, run_id, plans, contacts, upsert, loads)
        return self.store.read_json(f"reports/target_groups/{snapshot_name(run_id)}")

    def written(self) -> dict[str, int]:
        return dict(self.thrive_sandbox.counters().get("records_written", {}))


@contextmanager
def served_world(tmp_path, contacts: int) -> Iterator[World]:
    """Both sandboxes on loopback with `contacts` members, and a snapshot store under `tmp_path`."""
    with serve_pair(contacts=contacts) as pair:
        yield World(**vars(pair), store=SnapshotStore(str(tmp_path / "store")))


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of the sync's catches it."""


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    with served_world(tmp_path, contacts=400) as world:
        yield world


def members_in_iqa(world: World, name: str) -> set[str]:
    return set(world.imis.run_iqa(f"$/HigherLogic/MailingLists/{name}")["ID"])


def quarantined(world: World) -> set[str]:
    """Contacts Thrive rejected in an earlier run: held back until they change in iMIS."""
    return set((world.store.read_json("quarantine/contacts") or {}).get("entries", {}))


def synced_members(world: World) -> set[str]:
    return set().union(*(members_in_iqa(world, name) for name in VALID_LISTS))


def group_load(report: dict, name: str) -> dict:
    return next(g["load"] for g in report["target_groups"] if g["group"] == name)


def test_first_run_loads_every_group_and_its_members_fields(world):
    report = world.sync()
    sent_to_thrive = {s["contact_id"] for s in world.thrive_sandbox.subscribers()}
    for name in VALID_LISTS:
        in_thrive = set(world.thrive_sandbox.interest_members(name))
        assert in_thrive == members_in_iqa(world, name) & sent_to_thrive - quarantined(world)
        assert group_load(report, name)["members"] == len(in_thrive) > 0
    someone = sorted(world.thrive_sandbox.interest_members("Newsletter"))[0]
    fields = world.thrive_sandbox.subscriber(someone)["fields"]
    assert {"iMISv2 - Token", "PrefixCode", "SuffixCode", "FirstName", "MemberExpiresOn"} <= fields.keys()
    assert report["contacts"]["quarantined"]["rows"] > 0  # the seed's malformed emails never reach Thrive
    # every record that reached Thrive is in the reports: the upsert's and the group additions' (re-sends that
    # located a refusal included); contacts refused before sending never reach it
    assert world.written()["Subscribe"] == report["upsert"]["records_sent"] + sum(
        group_load(report, name)["records_sent"] for name in VALID_LISTS)
    assert report["upsert"]["records_sent"] >= report["upsert"]["sent"] - report["upsert"]["rejected"]


def test_second_run_sends_exactly_the_changes_and_a_third_sends_nothing_new(world):
    world.sync()
    members_before = {name: set(world.thrive_sandbox.interest_members(name)) for name in VALID_LISTS}
    in_thrive_before = set().union(*members_before.values())
    retried = quarantined(world)
    written_before = world.written()
    mutated = set(world.imis_sandbox.mutate_contacts(25, seed=11))
    moved = world.imis_sandbox.move_list_members("Newsletter", 7, seed=5)

    report = world.sync()
    written = {k: v - written_before.get(k, 0) for k, v in world.written().items()}
    newsletter = set(world.thrive_sandbox.interest_members("Newsletter"))
    joined = newsletter - members_before["Newsletter"]
    assert members_before["Newsletter"] - newsletter == set(moved["removed"]) & members_before["Newsletter"]
    assert joined <= set(moved["added"]) and len(joined) >= len(moved["added"]) - 2  # minus bad emails
    assert report["upsert"]["sent"] == (len(mutated & in_thrive_before) + len(joined - in_thrive_before)
                                        + len(retried & mutated))  # a refused row is sent again once it changed
    assert report["upsert"]["refused_unchanged"] == len((retried - mutated) & synced_members(world))
    assert written["Subscribe"] == report["upsert"]["records_sent"] + group_load(report, "Newsletter")["records_sent"]
    assert group_load(report, "Newsletter")["added"] == len(joined)
    assert written["BulkUpload"] == len(members_before["Newsletter"] - newsletter)  # the removals
    assert all(members_before[name] == set(world.thrive_sandbox.interest_members(name))
               for name in VALID_LISTS if name != "Newsletter")

    before_third = world.written()
    report = world.sync()
    assert report["upsert"]["sent"] == 0  # the refused are not sent again while unchanged
    assert report["upsert"]["refused_unchanged"] == len(quarantined(world) & synced_members(world)) > 0
    assert world.written() == before_third
    assert all(group_load(report, name)["added"] + group_load(report, name)["removed"] == 0 for name in VALID_LISTS)


def test_contacts_rejected_three_runs_in_a_row_are_flagged(world):
    for _ in range(3):
        report = world.sync()
    flagged = report["upsert"]["quarantine"]["flagged_ids"]
    assert flagged and set(flagged) == quarantined(world)
    assert "repeats its suffix" in next(iter(report["upsert"]["quarantine"]["by_reason"]))


def test_dry_run_loads_nothing(world):
    report = world.sync(dry_run=True)
    assert world.written() == {}
    assert report["upsert"]["to_send"] > 0


def test_an_emptied_list_is_stopped_by_the_mass_change_guard(world):
    world.sync()
    seed_list = world.imis_sandbox.seed.find_list("Newsletter")
    keep = seed_list.members[:1]
    seed_list.members = keep  # the IQA suddenly returns (almost) nobody
    with pytest.raises(sync.SyncIncomplete, match="mass-change guard stopped target group 'Newsletter'"):
        world.sync()
    assert len(world.thrive_sandbox.interest_members("Newsletter")) > 1  # nothing removed
    report = world.sync(override=True)
    assert len(world.thrive_sandbox.interest_members("Newsletter")) <= 1
    assert report["target_groups"]


def test_manual_run_for_one_group_touches_only_that_group(world):
    world.sync(only="annual conference 2026")
    assert world.thrive_sandbox.interest_members("Annual Conference 2026")
    assert not world.thrive_sandbox.interest_members("Newsletter")
    with pytest.raises(sync.UnknownTargetGroup, match=r"no list IQA named 'Nope'.*available: All Members"):
        world.sync(only="Nope")


def test_full_resync_reconciles_membership_with_what_thrive_really_holds(world):
    world.sync()
    stray = sorted(world.thrive_sandbox.interest_members("All Members"))[:3]
    world.thrive.remove_interest_members(
        "All Members", [InterestMember(contact_id, "") for contact_id in stray])  # someone edited Thrive by hand
    assert not set(stray) & set(world.thrive_sandbox.interest_members("All Members"))

    report = world.sync(full_resync=True)
    assert set(stray) <= set(world.thrive_sandbox.interest_members("All Members"))
    assert group_load(report, "All Members")["added"] == len(stray)
    upsert = report["upsert"]
    assert upsert["sent"] == upsert["members"] - upsert["missing_from_contacts_iqa"]  # every member's fields again


def test_an_hourly_run_syncs_the_groups_thrive_shows_a_campaign_used(world):
    world.thrive_sandbox.set_campaign_interests(["Newsletter"])

    groups = sync.discover_target_groups(world.imis, world.thrive, campaign_only=sync.CampaignOnly())

    assert [group.name for group in groups] == ["Newsletter"]


def test_the_campaign_groups_variable_wins_over_thrive_signals(world, caplog):
    world.thrive_sandbox.set_campaign_interests(["Newsletter"])
    caplog.set_level("INFO", logger=sync.__name__)

    groups = sync.discover_target_groups(world.imis, world.thrive,
                                         campaign_only=sync.CampaignOnly(("all members", "Lapsed Members")))

    assert [group.name for group in groups] == ["All Members", "Lapsed Members"]
    assert "by the Airflow Variable imis_thrive_campaign_groups" in caplog.text


def test_an_hourly_run_that_selects_no_group_says_why_and_which_signal(world, caplog):
    world.thrive_sandbox.set_campaign_interests([])
    caplog.set_level("INFO", logger=sync.__name__)

    assert sync.discover_target_groups(world.imis, world.thrive, campaign_only=sync.CampaignOnly()) == []
    warning = next(r for r in caplog.records if r.levelname == "WARNING").getMessage()
    assert "campaign-only run selects no target group: mailing_instance.target_group_id" in warning
    assert "imis_thrive_campaign_groups" in warning


def test_a_list_whose_definition_is_gone_is_skipped_and_the_others_sync(world):
    world.imis_sandbox.config.unreadable_lists = ["Newsletter"]
    with pytest.raises(sync.SyncIncomplete, match=r"Newsletter: .* could not be read"):  # the alert still fires
        world.sync()
    report = world.store.read_json(f"reports/target_groups/{snapshot_name('test-run-1')}")
    newsletter = next(group for group in report["target_groups"] if group["group"] == "Newsletter")
    assert newsletter["status"] == "skipped"
    assert "$/HigherLogic/MailingLists/Newsletter" in newsletter["reason"]
    assert "could not be read" in newsletter["reason"]
    synced = {group["group"] for group in report["target_groups"] if group["status"] != "skipped"}
    assert synced == set(VALID_LISTS) - {"Newsletter"}
    assert all(world.thrive.interest_members(name) for name in synced)


def actions_during(world: World, run) -> tuple[dict[str, int], dict[str, int], dict]:
    """The Thrive actions and grid reads the sandbox answered while `run()` ran, and `run()`'s result."""
    before = world.thrive_sandbox.counters()
    result = run()
    after = world.thrive_sandbox.counters()

    def grew(kind: str) -> dict[str, int]:
        return {name: count - before[kind].get(name, 0) for name, count in after[kind].items()
                if count != before[kind].get(name, 0)}

    return grew("actions"), grew("grids"), result


def test_a_run_with_nothing_changed_only_reads_thrive_and_a_refused_row_is_resent_once_fixed(world):
    world.sync()
    in_thrive = {s["contact_id"]: s["email"] for s in world.thrive_sandbox.subscribers()}
    refused = sorted(members_in_iqa(world, "Newsletter") & in_thrive.keys())[0]
    owner = next(cid for cid in sorted(in_thrive) if cid != refused)
    world.imis_sandbox.edit_contacts({refused: {"PrimaryEmailAddress": in_thrive[owner]}})  # taken in Thrive
    report = world.sync()
    assert report["upsert"]["rejected"] >= 1 and refused in quarantined(world)
    assert in_thrive[refused] == world.thrive_sandbox.subscriber(refused)["email"]  # Thrive kept the old row
    assert any("repeats its suffix" in reason for reason in report["upsert"]["quarantine"]["by_reason"])

    actions, grids, report = actions_during(world, world.sync)  # nothing changed in iMIS since

    assert actions == {}  # no Subscribe, no BulkUpload: no upsert and no interest addition or removal
    # reads only: the interests, and the drift check's one Count of each synced group
    assert grids and set(grids) <= {"interest_target_group", "target_group_counts", "subscriber_interests"}
    assert report["upsert"]["sent"] == 0 and report["upsert"]["calls"] == 0
    assert report["upsert"]["refused_unchanged"] == len(quarantined(world) & synced_members(world)) > 1
    assert all(group_load(report, name)["calls"] == 0 for name in VALID_LISTS)
    flagged_after_3 = report["upsert"]["quarantine"]["flagged_ids"]
    assert flagged_after_3 and refused not in flagged_after_3  # refused in 2 runs so far, the seed's in 3

    world.imis_sandbox.edit_contacts({refused: {"PrimaryEmailAddress": f"fixed.{refused}@example.org"}})
    written_before = world.written()
    actions, _, report = actions_during(world, world.sync)

    assert report["upsert"]["sent"] == 1 and report["upsert"]["rejected"] == 0  # exactly the fixed row
    assert world.written()["Subscribe"] - written_before["Subscribe"] == 1 + group_load(report, "Newsletter")[
        "records_sent"]
    assert world.thrive_sandbox.subscriber(refused)["email"] == f"fixed.{refused}@example.org"
    assert refused not in quarantined(world)


def test_a_run_after_a_small_change_makes_only_the_calls_the_change_needs(world):
    """The 1% case of bench/bench_steady_state.py, pinned: one upsert of the changed contacts, one of those
    Thrive is expected to refuse (their new email is another contact's there), per group one addition and one
    removal where it has any, and the reads every run makes; nothing is located by halving or sent twice."""
    world.sync()
    in_thrive = {s["contact_id"]: s["email"] for s in world.thrive_sandbox.subscribers()}
    edited = set(world.imis_sandbox.mutate_contacts(4, seed=17))
    assert edited & in_thrive.keys()  # some of the edits reach Thrive
    members = sorted((synced_members(world) & in_thrive.keys()) - edited)
    taken = dict(zip(members[:3], members[3:6], strict=True))  # each takes the email another holds in Thrive
    world.imis_sandbox.edit_contacts({cid: {"PrimaryEmailAddress": in_thrive[owner]} for cid, owner in taken.items()})
    world.imis_sandbox.move_list_members("Newsletter", 3, seed=19)
    before = {name: set(world.thrive_sandbox.interest_members(name)) for name in VALID_LISTS}

    actions, grids, report = actions_during(world, world.sync)

    held = {s["contact_id"] for s in world.thrive_sandbox.subscribers()}
    lists = {name: members_in_iqa(world, name) for name in VALID_LISTS}
    additions = [name for name in VALID_LISTS if (lists[name] & held) - before[name]]
    removals = [name for name in VALID_LISTS if before[name] - lists[name]]
    assert "Newsletter" in additions and removals == ["Newsletter"]
    assert set(taken) <= quarantined(world)  # Thrive refused them and kept their old emails
    assert all(world.thrive_sandbox.subscriber(cid)["email"] == in_thrive[cid] for cid in taken)
    assert actions == {"Subscribe": 2 + len(additions), "BulkUpload": len(removals)}
    assert report["upsert"]["calls"] == 2 and report["upsert"]["records_sent"] <= report["upsert"]["sent"]
    status_polls = len(removals) * (1 + world.thrive_sandbox.config.upload_polls)
    assert grids.get("interest_target_group") == 1  # read once for the run's additions and removals
    assert sum(grids.values()) == 1 + len(VALID_LISTS) + status_polls  # interests, a drift Count per group, polls


def test_a_contact_taking_the_email_another_gives_up_in_the_same_run_is_sent_after_it(world):
    world.sync()
    in_thrive = {s["contact_id"]: s["email"] for s in world.thrive_sandbox.subscribers()}
    taker, giver = sorted(synced_members(world) & in_thrive.keys())[:2]  # the taker comes first in ID order
    world.imis_sandbox.edit_contacts({giver: {"PrimaryEmailAddress": f"moved.{giver}@example.org"},
                                      taker: {"PrimaryEmailAddress": in_thrive[giver]}})

    report = world.sync()

    assert report["upsert"]["rejected"] == 0 and report["upsert"]["calls"] == 1
    assert world.thrive_sandbox.subscriber(taker)["email"] == in_thrive[giver]
    assert world.thrive_sandbox.subscriber(giver)["email"] == f"moved.{giver}@example.org"


def test_an_interest_addition_thrive_refused_waits_until_the_contact_changes(world):
    world.sync()
    in_thrive = {s["contact_id"]: s["email"] for s in world.thrive_sandbox.subscribers()}
    joiner = sorted(in_thrive.keys() - members_in_iqa(world, "Newsletter"))[0]
    email = in_thrive[joiner]
    # someone edits Thrive by hand: the joiner's subscriber gets another email, and a new subscriber takes theirs
    world.thrive.upsert_subscribers([Subscriber(joiner, f"elsewhere.{joiner}@example.org")])
    world.thrive.upsert_subscribers([Subscriber("99999999", email)])
    seed = world.imis_sandbox.seed
    newsletter = seed.find_list("Newsletter")  # the joiner joins the list in iMIS
    newsletter.members = np.union1d(newsletter.members, np.flatnonzero(seed.contacts["ID"] == joiner))

    report = world.sync()
    assert group_load(report, "Newsletter")["rejected"] == 1 and report["upsert"]["sent"] == 0
    assert joiner not in world.thrive_sandbox.interest_members("Newsletter")

    actions, _, report = actions_during(world, world.sync)
    assert actions == {}  # planned again (the group's snapshot lacks it) but not sent: the contact is unchanged
    assert group_load(report, "Newsletter")["refused_unchanged"] == 1

    world.imis_sandbox.edit_contacts({joiner: {"PrimaryEmailAddress": f"new.{joiner}@example.org"}})
    report = world.sync()
    assert report["upsert"]["sent"] == 1 and group_load(report, "Newsletter")["added"] == 1
    assert joiner in world.thrive_sandbox.interest_members("Newsletter")


def test_the_contacts_upsert_diffs_once(world, monkeypatch):
    world.sync()
    world.imis_sandbox.mutate_contacts(5, seed=3)
    calls = []
    real = sync.diff_contacts
    monkeypatch.setattr(sync, "diff_contacts", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))

    report = world.sync()

    assert len(calls) == 1 and report["upsert"]["guard"]["base"] > 0  # the guard measured the same diff


def test_a_row_refused_for_an_email_another_contact_holds_is_resent_once_that_contact_lets_go(world):
    world.sync()
    in_thrive = {s["contact_id"]: s["email"] for s in world.thrive_sandbox.subscribers()}
    refused, owner = sorted(members_in_iqa(world, "Newsletter") & in_thrive.keys())[:2]
    world.imis_sandbox.edit_contacts({refused: {"PrimaryEmailAddress": in_thrive[owner]}})
    world.sync()
    assert refused in quarantined(world)
    assert world.sync()["upsert"]["sent"] == 0  # held back: unchanged, and the owner still holds the email

    world.imis_sandbox.edit_contacts({owner: {"PrimaryEmailAddress": f"moved.{owner}@example.org"}})
    assert world.sync()["upsert"]["sent"] == 1  # the owner's new email; Thrive lets go of the old one
    report = world.sync()

    assert report["upsert"]["sent"] == 1 and report["upsert"]["rejected"] == 0  # the refused row, unchanged
    assert world.thrive_sandbox.subscriber(refused)["email"] == in_thrive[owner]
    assert refused not in quarantined(world)
