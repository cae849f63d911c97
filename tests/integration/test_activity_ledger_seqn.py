"""The ledger records the SEQN iMIS gave each activity, also for activities found after a lost answer.

Real Activity rows carry the SEQN only in `Identity.IdentityElements` (the sandbox answers the same way), so
the look-up after an ambiguous post must read it from there, not from a property.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from include.imis_thrive.writeback.activity_map import EVENT_KEY
from include.imis_thrive.writeback.ledger import ActivityLedger, hours_between
from tests.integration.test_activity_writeback import DST_DAY, World, world  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration


def test_every_ledger_entry_holds_the_seqn_imis_assigned(world: World) -> None:  # noqa: F811
    end = DST_DAY + timedelta(hours=1)
    world.engage(DST_DAY, end, volume=300)
    world.lose_answers.every = 7  # some posts land but their answer is lost: found again by look-up
    report = world.write(DST_DAY, end)

    assert sum(report.found_in_imis.values()) == world.lose_answers.lost > 0
    in_imis = {a["Properties"][EVENT_KEY.name]: str(a["SEQN"]) for a in world.imis_sandbox.activities()}
    ledger = ActivityLedger.load(world.store, hours_between(DST_DAY, end))
    assert {key: ledger.seqn(key) for key in in_imis} == in_imis
