"""Reading Thrive's XML safely and case-insensitively, and its timestamps."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from include.imis_thrive.thrive import envelope, parsing
from include.imis_thrive.thrive.errors import (
    ThriveProtocolError,
)
from tests.unit.thrive import replies

HOSTILE_DOCUMENTS = {
    "entity expansion": '<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><GridResponse>&b;</GridResponse>',
    "external entity": '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><GridResponse>&x;</GridResponse>',
    "a DTD": '<!DOCTYPE GridResponse SYSTEM "http://evil.invalid/x.dtd"><GridResponse/>',
}


@pytest.mark.parametrize("kind", HOSTILE_DOCUMENTS)
def test_hostile_xml_in_the_reply_document_is_a_thrive_error_naming_the_call(kind):
    with pytest.raises(ThriveProtocolError, match=r"^grid subscriber: the reply document was refused as unsafe XML"):
        envelope.document_from_reply(replies.response_envelope(HOSTILE_DOCUMENTS[kind]), "grid subscriber")


@pytest.mark.parametrize("kind", HOSTILE_DOCUMENTS)
def test_hostile_xml_as_the_envelope_itself_is_a_thrive_error_naming_the_call(kind):
    body = HOSTILE_DOCUMENTS[kind].replace("GridResponse", "Envelope").encode()

    with pytest.raises(ThriveProtocolError, match=r"^Subscribe 3: the reply was refused as unsafe XML"):
        envelope.document_from_reply(body, "Subscribe 3")


@pytest.mark.parametrize(("text", "expected"), [
    ("2017-06-19T15:46:18.8130000Z", datetime(2017, 6, 19, 15, 46, 18, 813000, tzinfo=UTC)),
    ("2017-06-19T15:46:18.1234567z", datetime(2017, 6, 19, 15, 46, 18, 123456, tzinfo=UTC)),
    ("2017-06-19T15:46:18", datetime(2017, 6, 19, 15, 46, 18, tzinfo=UTC)),
    ("2009-09-01", datetime(2009, 9, 1, tzinfo=UTC)),
    ("2020-01-01T00:00:00-05:00", datetime(2020, 1, 1, 5, tzinfo=UTC)),
])
def test_timestamps_parse_to_aware_utc(text, expected):
    assert parsing.parse_timestamp(text) == expected


def test_timestamps_format_with_seven_fraction_digits_in_utc_and_refuse_naive_datetimes():
    eastern = timezone(timedelta(hours=-5))

    morning = datetime(2017, 6, 19, 10, 46, 18, 813000, tzinfo=eastern)
    assert parsing.format_timestamp(morning) == "2017-06-19T15:46:18.8130000Z"
    with pytest.raises(ValueError, match="naive"):
        parsing.format_timestamp(datetime(2017, 6, 19))
    with pytest.raises(ValueError, match="not a Thrive timestamp"):
        parsing.parse_timestamp("yesterday")


def test_lookups_ignore_namespace_and_case_and_flags_read_every_spelling():
    root = parsing.parse_document(
        '<R xmlns="urn:x"><Status>ok</Status><Deep><NewSubscriberCount>3</NewSubscriberCount></Deep></R>', "t")

    assert parsing.child_text(root, "STATUS") == "ok"
    assert parsing.child(root, "missing") is None
    assert parsing.descendant_text(root, "newsubscribercount") == "3"
    assert [parsing.flag(v) for v in ("1", "True", "y", "0", "", None)] == [True, True, True, False, False, False]
