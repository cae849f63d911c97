"""Three-way merges when another run's commit overtook this one's."""

from __future__ import annotations

import pandas as pd

from include.imis_thrive.sync.merge import merge_members, merge_sent_rows


def _ids(*ids: str) -> pd.Series:
    return pd.Series(list(ids), dtype="str")


def _rows(**emails: str) -> pd.DataFrame:
    return pd.DataFrame({"ID": pd.Series(list(emails), dtype="str"),
                         "Email": pd.Series(list(emails.values()), dtype="str")})


def test_membership_keeps_both_runs_changes_whatever_order_they_reached_thrive() -> None:
    base = _ids("1", "2", "3")
    theirs = _ids("1", "3", "5")   # they removed 2, added 5
    mine = _ids("2", "3", "4")     # I removed 1, added 4

    assert sorted(merge_members(mine, theirs, base)) == ["3", "4", "5"]


def test_membership_without_a_concurrent_commit_is_mine() -> None:
    base = _ids("1", "2")
    assert sorted(merge_members(_ids("2", "7"), base, base)) == ["2", "7"]
    assert sorted(merge_members(_ids("2", "7"), None, None)) == ["2", "7"]


def test_a_member_i_could_not_add_stays_as_theirs() -> None:
    """A rejected addition is no change of mine: if their run added the member, Thrive holds them."""
    assert sorted(merge_members(_ids("1"), _ids("1", "9"), _ids("1"))) == ["1", "9"]


def test_sent_rows_go_over_theirs_and_keep_what_only_they_sent() -> None:
    base = _rows(**{"1": "a@x.org", "2": "b@x.org"})
    theirs = _rows(**{"1": "a@x.org", "2": "b2@x.org", "3": "c@x.org"})
    sent = _rows(**{"1": "a1@x.org"})

    merged = merge_sent_rows(sent, theirs, base).set_index("ID")["Email"].to_dict()

    assert merged == {"1": "a1@x.org", "2": "b2@x.org", "3": "c@x.org"}


def test_a_contact_both_runs_sent_differently_is_left_for_the_next_run_to_resend() -> None:
    base = _rows(**{"1": "a@x.org"})
    theirs = _rows(**{"1": "theirs@x.org"})

    assert merge_sent_rows(_rows(**{"1": "mine@x.org"}), theirs, base).empty
    agreed = merge_sent_rows(_rows(**{"1": "theirs@x.org"}), theirs, base)
    assert agreed["Email"].tolist() == ["theirs@x.org"]


def test_sent_rows_without_a_concurrent_commit_replace_the_base_rows() -> None:
    base = _rows(**{"1": "a@x.org", "2": "b@x.org"})
    merged = merge_sent_rows(_rows(**{"2": "b2@x.org"}), base, base).set_index("ID")["Email"].to_dict()
    assert merged == {"1": "a@x.org", "2": "b2@x.org"}
