"""A re-run after a killed attempt: measured by the guard against that attempt, and re-sending what it touched
(issue 13, defect 1), against both sandboxes in process."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.sync.target_groups import SyncIncomplete, group_snapshot
from tests.integration.test_target_group_sync import Killed, World, served_world

pytestmark = pytest.mark.integration
GROUP = "Annual Conference 2026"


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    with served_world(tmp_path, contacts=300) as world:
        yield world


def _members_in_thrive_leave(world: World, count: int) -> set[str]:
    """`count` members of GROUP that Thrive holds leave the list in iMIS; their IDs."""
    seed_list = world.imis_sandbox.seed.find_list(GROUP)
    ids = world.imis_sandbox.seed.contacts["ID"]
    in_thrive = set(world.thrive_sandbox.interest_members(GROUP))
    leaving = [row for row in seed_list.members.tolist() if str(ids[row]) in in_thrive][:count]
    seed_list.members = np.setdiff1d(seed_list.members, leaving)
    return {str(ids[row]) for row in leaving}


def _killed_before_the_groups_commit(world: World, monkeypatch) -> None:
    """A run that sent GROUP's changes and died before committing it."""
    commit_over = SnapshotStore.commit_over

    def die_at_a_group(store, name, *args, **kwargs):
        if name == group_snapshot(GROUP):
            raise Killed(f"killed before committing {name}")
        return commit_over(store, name, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(SnapshotStore, "commit_over", die_at_a_group)
        with pytest.raises(Killed):
            world.sync()


def test_a_re_run_after_a_kill_counts_only_what_changed_since_the_killed_attempt(world, monkeypatch):
    world.sync()
    members = len(world.thrive_sandbox.interest_members(GROUP))
    first = max(1, int(members * 0.15))
    gone = _members_in_thrive_leave(world, first)  # 15%: under the guard's 20%
    _killed_before_the_groups_commit(world, monkeypatch)
    gone |= _members_in_thrive_leave(world, first)  # another 15% before the re-run: 30% since the last commit

    report = world.sync()  # no override

    plan = next(g for g in report["target_groups"] if g["group"] == GROUP)
    assert plan["status"] == "ready", plan.get("reason")
    in_thrive = set(world.thrive_sandbox.interest_members(GROUP))
    assert not gone & in_thrive and len(in_thrive) == members - len(gone)
    assert set(world.store.read(group_snapshot(GROUP))["ID"]) == in_thrive


def test_a_dry_run_with_the_override_approves_nothing_for_the_next_run(world):
    world.sync()
    members = len(world.thrive_sandbox.interest_members(GROUP))
    _members_in_thrive_leave(world, int(members * 0.5))
    world.sync(dry_run=True, override=True)

    with pytest.raises(SyncIncomplete, match=f"mass-change guard stopped target group '{GROUP}'"):
        world.sync()
    assert len(world.thrive_sandbox.interest_members(GROUP)) == members


def test_a_member_a_killed_run_added_is_taken_out_again_once_they_left(world, monkeypatch):
    world.sync()
    seed_list = world.imis_sandbox.seed.find_list(GROUP)
    before = seed_list.members.copy()
    ids = world.imis_sandbox.seed.contacts["ID"]
    in_thrive = set(world.thrive_sandbox.interest_members(GROUP))
    joining = [row for row in range(len(ids)) if row not in set(before.tolist())
               and str(ids[row]) in set(world.thrive_sandbox.interest_members("All Members"))][:2]
    seed_list.members = np.union1d(before, joining)
    _killed_before_the_groups_commit(world, monkeypatch)  # added by Subscribe, then killed before the commit
    assert {str(ids[row]) for row in joining} <= set(world.thrive_sandbox.interest_members(GROUP))
    seed_list.members = before  # they leave again before the re-run

    world.sync()

    assert set(world.thrive_sandbox.interest_members(GROUP)) == in_thrive
    assert set(world.store.read(group_snapshot(GROUP))["ID"]) == in_thrive
