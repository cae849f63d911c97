import pandas as pd

from include.imis_thrive.sync.quarantine import FLAG_AFTER_RUNS, RejectionLedger
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.thrive.models import OutcomeStatus, SubscriberOutcome


def rejected(contact_id: str, reason: str) -> SubscriberOutcome:
    return SubscriberOutcome(contact_id, "", OutcomeStatus.REJECTED, reason)


def test_a_contact_rejected_in_consecutive_runs_is_flagged_and_leaves_once_accepted(tmp_path):
    store = SnapshotStore(str(tmp_path))
    for run in range(FLAG_AFTER_RUNS):
        ledger = RejectionLedger.load(store, "contacts")
        ledger.record(f"run-{run}", accepted=[], rejected=[rejected("1001", "email is malformed")])
        ledger.record(f"run-{run}", accepted=[], rejected=[rejected("1001", "email is malformed")])  # same run
        ledger.save(store)
    assert RejectionLedger.load(store, "contacts").flagged() == ["1001"]

    ledger = RejectionLedger.load(store, "contacts")
    ledger.record("run-9", accepted=["1001"], rejected=[])
    assert ledger.entries == {} and ledger.summary()["flagged_count"] == 0


def test_the_summary_counts_kinds_of_reasons_not_one_line_per_quoted_id():
    ledger = RejectionLedger("contacts")
    ledger.record("run-1", accepted=[], rejected=[
        rejected("1001", "email already belongs to subscriber with ID 1000041"),
        rejected("1002", "email already belongs to subscriber with ID 1000086"),
        rejected("1003", "email is malformed")])
    summary = ledger.summary()
    assert summary["by_reason"] == {"email already belongs to subscriber with ID #": 2, "email is malformed": 1}
    assert ledger.entries["1001"]["reason"].endswith("1000041")  # the ledger keeps the whole reason


def test_only_quoted_ids_are_grouped_not_other_numbers_in_a_reason():
    ledger = RejectionLedger("panel_fields")
    ledger.record("run-1", accepted=[], rejected=[
        rejected("1001", "personalization field 'ChapterName' contains character U+0001, which XML cannot carry")])
    assert list(ledger.summary()["by_reason"]) == [
        "personalization field 'ChapterName' contains character U+0001, which XML cannot carry"]


def test_a_refused_row_is_held_back_while_its_hash_is_the_one_refused_and_each_held_run_counts(tmp_path):
    store = SnapshotStore(str(tmp_path))
    big = 2**64 - 5  # row hashes are unsigned 64-bit: kept exactly, as text
    ledger = RejectionLedger.load(store, "contacts")
    ledger.record("run-1", accepted=["9"], rejected=[rejected("1001", "email is malformed"),
                                                    rejected("1002", "email is malformed")],
                  hashes={"1001": big, "1002": 7})
    ledger.save(store)

    ledger = RejectionLedger.load(store, "contacts")
    ids = pd.Series(["1001", "1002", "1003"], dtype="str")
    assert ledger.refused_unchanged(ids, [big, 8, big]).tolist() == [True, False, False]  # 1002 changed: resent

    for run in (2, 3):
        ledger = RejectionLedger.load(store, "contacts")
        ledger.record(f"run-{run}", accepted=[], rejected=[], held=["1001", "1001"])
        ledger.save(store)
    assert RejectionLedger.load(store, "contacts").flagged() == ["1001"]  # refused in run 1, held back unchanged since


def test_an_entry_without_a_hash_holds_nothing_back():
    ledger = RejectionLedger("contacts", {"1001": {"runs": 4, "first_run": "old", "last_run": "old", "reason": "x"}})

    assert ledger.refused_unchanged(pd.Series(["1001"], dtype="str"), [0]).tolist() == [False]


def test_the_contact_holding_a_refused_rows_email_is_kept_until_the_row_is_accepted(tmp_path):
    store = SnapshotStore(str(tmp_path))
    ledger = RejectionLedger.load(store, "contacts")
    ledger.record("run-1", accepted=[], rejected=[rejected("1001", "refused"), rejected("1002", "refused")],
                  hashes={"1001": 1, "1002": 2}, email_holders={"1001": "1005"})
    ledger.save(store)

    ledger = RejectionLedger.load(store, "contacts")
    assert ledger.email_holders(pd.Series(["1001", "1002"], dtype="str")).tolist()[0] == "1005"
    assert ledger.email_holders(pd.Series(["1002"], dtype="str")).isna().all()
    ledger.record("run-2", accepted=["1001"], rejected=[])
    assert "1001" not in ledger.entries
