"""The end of a load, shared by both syncs: Thrive's rejections are ledgered and left out of the committed
snapshot (so the next run sends them again), the accepted rows replace what was there, and the run report is
stored as JSON and Markdown."""

from __future__ import annotations

import pandas as pd
import pytest

from include.imis_thrive.sync.load_cycle import settle_upsert, write_report
from include.imis_thrive.sync.results import TargetGroupsRun
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.thrive.models import OutcomeStatus, SubscriberOutcome, UpsertResult


@pytest.fixture
def store(tmp_path) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / "store"))


def rows(values: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"ID": pd.Series(list(values), dtype="str"), "City": pd.Series(list(values.values()),
                                                                                       dtype="str")})


def answer(accepted: list[str], rejected: list[str]) -> UpsertResult:
    return UpsertResult(outcomes=[SubscriberOutcome(cid, f"{cid}@example.org", OutcomeStatus.UPDATED, None)
                                  for cid in accepted]
                        + [SubscriberOutcome(cid, f"{cid}@example.org", OutcomeStatus.REJECTED, "malformed")
                           for cid in rejected], calls=1, records_sent=len(accepted) + len(rejected))


def test_accepted_rows_replace_theirs_and_rejected_ones_keep_what_thrive_held(store):
    store.commit(store.stage("contacts", rows({"1": "Boston", "2": "Denver", "3": "Austin"}), "run-1"))
    sent = rows({"2": "Dallas", "3": "Tulsa", "4": "Reno"})

    figures = settle_upsert(store, "contacts", "run-2", answer(["2", "4"], ["3"]), sent, store.current("contacts"))

    committed = store.read("contacts").set_index("ID")["City"].to_dict()
    assert committed == {"1": "Boston", "2": "Dallas", "3": "Austin", "4": "Reno"}
    assert (figures.sent, figures.rejected, figures.calls, figures.records_sent) == (3, 1, 1, 3)
    assert figures.outcomes == {"updated": 2, "rejected": 1}
    assert figures.quarantine.open == 1 and figures.quarantine.by_reason == {"malformed": 1}
    assert list(store.read_json("quarantine/contacts")["entries"]) == ["3"]


def test_uncertain_contacts_not_accepted_now_are_left_out_of_the_commit(store):
    """An attempt that died sent 1 and 3 (Thrive may hold its values or the old ones); 1 is sent again now."""
    store.commit(store.stage("contacts", rows({"1": "Boston", "2": "Denver", "3": "Austin"}), "run-1"))
    uncertain = pd.Index(["1", "3"], dtype="str")

    settle_upsert(store, "contacts", "run-3", answer(["1"], []), rows({"1": "Salem"}), store.current("contacts"),
                  uncertain)

    assert store.read("contacts").set_index("ID")["City"].to_dict() == {"1": "Salem", "2": "Denver"}


def test_a_first_load_commits_only_what_thrive_accepted(store):
    settle_upsert(store, "panel_fields", "run-1", answer(["1"], ["2"]), rows({"1": "Boston", "2": "Denver"}), None)
    assert store.read("panel_fields")["ID"].tolist() == ["1"]


def test_the_report_is_stored_as_json_and_markdown(store):
    run = TargetGroupsRun(report="-", target_groups=2, sent=3, added=1, removed=0)
    location = write_report(store, "reports/target_groups/run-1", run, "# Target-group sync run-1")
    assert location.endswith("reports/target_groups/run-1.json")
    assert TargetGroupsRun.from_xcom(store.read_json("reports/target_groups/run-1")) == run
    assert store.read_text("reports/target_groups/run-1") == "# Target-group sync run-1"
