"""A BulkUpload still queued in Thrive when the run that sent it dies (issue 13, defect 6).

Thrive applies a queued upload on its own time. The run dies before its commit, so the group's snapshot still
lists the members whose removal is queued; when they rejoin the list, a run that trusts that snapshot adds no
one, and the late removal takes them out for good. Each upload is recorded before it is sent, and the next run
waits for it and re-sends the state of the contacts it named.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from include.imis_thrive.sync import pending_uploads
from include.imis_thrive.sync.target_groups import group_snapshot
from include.imis_thrive.thrive import client as thrive_client
from include.imis_thrive.thrive.client import ThriveClient
from tests.integration.test_target_group_sync import Killed, World, served_world

pytestmark = pytest.mark.integration
GROUP = "Newsletter"


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    with served_world(tmp_path, contacts=300) as world:
        yield world


def _thrive_applies_every_queued_upload(world: World) -> None:
    """Thrive gets to every queued upload eventually, whether or not anyone polls it."""
    for _ in range(5):
        world.thrive_sandbox.store.advance_uploads()


def _die_after_the_upload_is_queued(monkeypatch, upload_id_read: bool) -> None:
    if upload_id_read:  # the journal has the UploadID; the task dies while polling
        def die(self, upload_id, what="BulkUpload"):
            raise Killed(f"killed while waiting for upload {upload_id}")
        monkeypatch.setattr(ThriveClient, "wait_for_upload", die)
    else:  # Thrive queued it, but the answer with its UploadID never reached the task
        def die_reading(response, what):
            raise Killed(f"killed before reading {what}'s answer")
        monkeypatch.setattr(thrive_client.documents, "upload_id_of", die_reading)


@pytest.mark.parametrize("upload_id_read", [True, False], ids=["upload-id-recorded", "answer-lost"])
def test_members_whose_removal_was_queued_by_a_killed_run_are_in_thrive_when_they_rejoin(world, monkeypatch,
                                                                                       upload_id_read):
    world.sync()
    newsletter = world.imis_sandbox.seed.find_list(GROUP)
    everyone = newsletter.members.copy()
    in_thrive = set(world.thrive_sandbox.interest_members(GROUP))
    ids = world.imis_sandbox.seed.contacts["ID"]
    leaving = [row for row in everyone.tolist() if str(ids[row]) in in_thrive][:3]
    leaving_ids = {str(ids[row]) for row in leaving}
    newsletter.members = np.setdiff1d(everyone, leaving)

    with monkeypatch.context() as patched:
        _die_after_the_upload_is_queued(patched, upload_id_read)
        with pytest.raises(Killed):
            world.sync()
    assert pending_uploads.pending(world.store, group_snapshot(GROUP))  # recorded before it was sent

    newsletter.members = everyone  # they rejoin before the next run
    world.sync()
    _thrive_applies_every_queued_upload(world)

    members = set(world.thrive_sandbox.interest_members(GROUP))
    assert leaving_ids <= members
    assert members == in_thrive
    assert set(world.store.read(group_snapshot(GROUP))["ID"]) == members  # the snapshot claims what Thrive holds
    assert not pending_uploads.pending(world.store, group_snapshot(GROUP))  # settled, then cleared by the commit


def test_members_still_gone_are_removed_again_when_the_killed_runs_upload_failed(world, monkeypatch):
    """An uncertain member not in the list is removed again: the settled upload may never have applied."""
    world.sync()
    newsletter = world.imis_sandbox.seed.find_list(GROUP)
    in_thrive = set(world.thrive_sandbox.interest_members(GROUP))
    ids = world.imis_sandbox.seed.contacts["ID"]
    leaving = [row for row in newsletter.members.tolist() if str(ids[row]) in in_thrive][:2]
    newsletter.members = np.setdiff1d(newsletter.members, leaving)
    with monkeypatch.context() as patched:
        _die_after_the_upload_is_queued(patched, upload_id_read=True)
        with pytest.raises(Killed):
            world.sync()
    for upload in world.thrive_sandbox.store.uploads.values():  # Thrive dropped the queued upload
        upload.rows, upload.status = [], "Failed"

    world.sync()

    members = set(world.thrive_sandbox.interest_members(GROUP))
    assert members == in_thrive - {str(ids[row]) for row in leaving}
    assert set(world.store.read(group_snapshot(GROUP))["ID"]) == members
