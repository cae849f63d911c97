from __future__ import annotations

import logging

import pandas as pd
import pytest

from include.imis_thrive.sync.diff import diff_contacts, diff_membership
from include.imis_thrive.sync.guard import (
    DriftBlocked,
    MassChangeBlocked,
    MassChangeLimits,
    check_contact_changes,
    check_drift,
    check_membership_removals,
)

CONTACTS_IQA = "$/HigherLogic/Contacts/Contacts"


def _ids(count: int, start: int = 1000) -> list[str]:
    return [str(start + number) for number in range(count)]


def _contacts(ids: list[str], first_names: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {"ID": pd.Series(ids, dtype="str"), "FirstName": pd.Series(first_names or ["x"] * len(ids), dtype="str")}
    )


def test_an_iqa_that_suddenly_returns_nothing_is_blocked_with_group_counts_and_share() -> None:
    diff = diff_membership("Board Members", _ids(50), [])

    with pytest.raises(MassChangeBlocked) as blocked:
        check_membership_removals(diff)

    message = str(blocked.value)
    assert "target group 'Board Members'" in message
    assert "50 of 50 removed members (100.0%)" in message
    assert "above the 20% limit" in message and "mass-change override" in message
    assert blocked.value.check.blocked is True


def test_removals_up_to_the_limit_pass() -> None:
    diff = diff_membership("Board Members", _ids(10), _ids(8))

    check = check_membership_removals(diff)

    assert (check.count, check.base, check.share, check.blocked) == (2, 10, 0.2, False)


def test_one_removal_over_the_limit_blocks() -> None:
    diff = diff_membership("Board Members", _ids(10), _ids(7))

    with pytest.raises(MassChangeBlocked, match="3 of 10 removed members"):
        check_membership_removals(diff)


def test_additions_alone_never_block_a_group() -> None:
    diff = diff_membership("Board Members", _ids(2), _ids(100))

    assert check_membership_removals(diff).blocked is False


def test_an_explicit_override_lets_the_run_through_and_says_so(caplog) -> None:
    diff = diff_membership("Board Members", _ids(10), [])

    with caplog.at_level(logging.WARNING, logger="include.imis_thrive.sync.guard"):
        check = check_membership_removals(diff, override=True)

    assert check.overridden is True and check.blocked is False
    assert check.as_dict()["share"] == 1.0
    assert "mass-change guard overridden for target group 'Board Members'" in caplog.text


def test_the_first_run_is_never_blocked() -> None:
    assert check_membership_removals(diff_membership("New Group", None, [])).blocked is False
    assert check_contact_changes(diff_contacts(None, _contacts(_ids(5))), CONTACTS_IQA).blocked is False


def test_contact_changes_count_added_changed_and_removed_against_the_previous_snapshot() -> None:
    previous = _contacts(_ids(10))
    current = _contacts(_ids(10, start=1001), ["changed", *["x"] * 9])  # 1000 removed, 1001 changed, 1010 added

    with pytest.raises(MassChangeBlocked) as blocked:
        check_contact_changes(diff_contacts(previous, current), CONTACTS_IQA)

    assert f"IQA {CONTACTS_IQA!r}" in str(blocked.value)
    assert "3 of 10 changed contacts (30.0%)" in str(blocked.value)


def test_limits_are_configurable() -> None:
    diff = diff_membership("Board Members", _ids(10), _ids(5))
    limits = MassChangeLimits(max_removed_share=0.5)

    assert check_membership_removals(diff, limits).blocked is False
    with pytest.raises(MassChangeBlocked, match="above the 10% limit"):
        check_contact_changes(
            diff_contacts(_contacts(_ids(10)), _contacts(_ids(8))),
            CONTACTS_IQA,
            MassChangeLimits(max_changed_share=0.1),
        )


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_limit_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="max_removed_share must be a share between 0 and 1"):
        MassChangeLimits(max_removed_share=share)


def test_drift_counts_missing_and_extra_members_against_the_guard_share() -> None:
    assert not check_drift("Newsletter", missing=15, extra=5, base=100).blocked  # 20% is still within the limit
    with pytest.raises(DriftBlocked, match=r"Newsletter'.*21 member\(s\) missing and 0 extra against the 100 .*"
                                           r"21\.0%.*re-run with the mass-change override") as stopped:
        check_drift("Newsletter", missing=21, extra=0, base=100)
    assert isinstance(stopped.value, MassChangeBlocked) and stopped.value.check.measure == "members drifted in Thrive"
    assert check_drift("Newsletter", missing=100, extra=0, base=100, override=True).overridden


def test_the_contacts_guard_measured_on_the_upsert_diff_without_its_added_rows_is_the_guard_of_a_second_diff() -> None:
    previous = _contacts(_ids(100), ["a"] * 100)
    current = _contacts(_ids(90, start=1010), ["a"] * 60 + ["b"] * 30)  # 10 gone, 30 changed, 10 new
    known = current[current["ID"].isin(previous["ID"])]

    limits = MassChangeLimits(max_changed_share=0.5)

    reused = check_contact_changes(diff_contacts(previous, current).without_added(), CONTACTS_IQA, limits)
    second = check_contact_changes(diff_contacts(previous, known), CONTACTS_IQA, limits)

    assert reused == second and reused.count == 10 + 30 and reused.base == 100
