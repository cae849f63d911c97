"""Bad Email detection: what the integration's description calls a malformed address, recorded once."""

import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from include.imis_thrive.sync.bad_emails import bad_email_events, bad_email_reason, record_bad_emails
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.sync.validation import EMAIL_PATTERN

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(("email", "reason"), [
    ("jo@@example.org", "more than one @"),
    ("jo@example.org@example.org", "more than one @"),
    ("jo.example.org", "no @"),
    ("jo@", "no @"),
    ("@example.org", "no @"),
    ("jo@localhost", "not a valid host name"),
    ("jo@example..org", "not a valid host name"),
    ("jo@example.com.com", "doubled .com"),
    ("jo@example.ORG.org", "doubled .org"),
    ("jo smith@example.org", "validation refuses"),
    ("jöran@example.org", "validation refuses"),
    ("jo@-example.org", "validation refuses"),
])
def test_malformed_addresses_are_named_with_their_reason(email, reason):
    assert reason in bad_email_reason(email)


@pytest.mark.parametrize("email", ["jo@example.org", "jo.smith+news@mail.example.co.uk", "", "  "])
def test_good_and_missing_addresses_are_not_bad(email):
    assert bad_email_reason(email) is None


@pytest.mark.parametrize("email", ["jo@@example.org", "jo@", "jo.example.org", "jo smith@example.org",
                                   "jo@exa mple.org", "jöran@example.org", "jo@example.c", "jo@localhost",
                                   "<jo>@example.org", "jo@example.org.", "jo@example..org", "jo@-example.org",
                                   "jo@example.org@x.org"])
def test_every_address_validation_refuses_as_malformed_is_a_bad_email(email):
    assert not re.fullmatch(EMAIL_PATTERN, email)  # validation quarantines it as email_invalid ...
    assert bad_email_reason(email) is not None  # ... so the sync records its Bad Email


def test_each_contact_and_address_is_recorded_once_and_read_back_in_its_window(tmp_path):
    store = SnapshotStore(str(tmp_path))
    frame = pd.DataFrame({"ID": ["1", "2", "3"], "Email": ["a@x.com.com", "b@example.org", None]})

    assert record_bad_emails(store, frame, "ID", "Email", now=NOW) == 1
    assert record_bad_emails(store, frame, "ID", "Email", now=NOW + timedelta(hours=5)) == 0
    frame.loc[0, "Email"] = "a@@x.com"  # a new malformed address of the same contact is a new record
    assert record_bad_emails(store, frame, "ID", "Email", now=NOW + timedelta(hours=6)) == 1

    first_hour = list(bad_email_events(store, NOW, NOW + timedelta(hours=1)))
    assert [(e.contact_id, e.email, e.occurred_at) for e in first_hour] == [("1", "a@x.com.com", NOW)]
    assert len(list(bad_email_events(store, NOW, NOW + timedelta(days=1)))) == 2
