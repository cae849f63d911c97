"""The one pager: stop rules, the checks on each page, the reconciliation with the announced total, prefetching."""

import threading
import time

import pytest

from include.imis_thrive.errors import FAILS_AT_ONCE
from include.imis_thrive.paging import Pager, PagingError, Stop, prefetched


class CallFailed(Exception):
    """A caller's own error type, to show the pager raises it."""


def _read(pager: Pager, pages: list[int]) -> list[int]:
    """Feed the pager pages of these sizes at the offsets it asks for; the offsets it asked for."""
    asked = []
    for rows in pages:
        asked.append(pager.next_offset)
        if not pager.add(rows):
            break
    return asked


@pytest.mark.parametrize("base", [0, 1])
def test_a_short_page_ends_the_read_and_offsets_start_at_the_base(base):
    pager = Pager("grid upload_history", Stop.SHORT_PAGE, limit=3, start=base)
    assert _read(pager, [3, 3, 1, 3]) == [base, base + 3, base + 6]
    assert (pager.rows_seen, pager.more) == (7, False)


@pytest.mark.parametrize("base", [0, 1])
def test_a_full_last_page_takes_one_empty_page_to_end(base):
    pager = Pager("grid g", Stop.SHORT_PAGE, limit=3, start=base)
    assert _read(pager, [3, 3, 0]) == [base, base + 3, base + 6]
    assert pager.rows_seen == 6
    pager.finish()  # no total announced: nothing to reconcile


def test_the_read_ends_when_the_page_says_no_next_and_the_total_is_reached():
    pager = Pager("IQA $/X", Stop.NO_NEXT)
    assert pager.add(5, 0, count=5, total=8, has_next=True, next_offset=5)
    assert not pager.add(3, 5, count=3, total=8, has_next=False, next_offset=0)
    pager.finish()


def test_a_count_that_lies_about_the_rows_held_is_an_error_naming_the_call():
    pager = Pager("IQA $/X", Stop.NO_NEXT, error=CallFailed)
    with pytest.raises(CallFailed, match=r"IQA \$/X: the page at offset 0 says Count 9 but holds 10 rows"):
        pager.add(10, 0, count=9, total=10)


def test_a_total_never_reached_is_an_error_not_a_short_result():
    pager = Pager("activities {}", Stop.NO_NEXT)
    pager.add(4, 0, count=4, total=10)  # the page says nothing of a next one, so the read stops here
    with pytest.raises(PagingError, match=r"activities \{\}: read 4 rows but TotalCount is 10"):
        pager.finish()


@pytest.mark.parametrize(("has_next", "next_offset", "said"), [
    (False, 0, "HasNext false"),
    (True, 0, "HasNext true but NextOffset 0"),
])
def test_a_page_that_ends_the_read_before_the_total_fails_at_that_page(has_next, next_offset, said):
    """Issue 13, defect 5: a lying envelope mid-read stopped the read short and members were removed."""
    pager = Pager("IQA $/X", Stop.NO_NEXT)
    pager.add(100, 0, count=100, total=300, has_next=True, next_offset=100)
    with pytest.raises(PagingError, match=rf"IQA \$/X: the page at offset 100 says {said}, yet only 200 of "
                                          r"TotalCount 300 rows end there.*run it again"):
        pager.add(100, 100, count=100, total=300, has_next=has_next, next_offset=next_offset)


def test_the_last_page_may_say_no_next_page_either_way():
    for has_next in (False, True):
        pager = Pager("IQA $/X", Stop.NO_NEXT)
        pager.add(100, 0, count=100, total=150, has_next=True, next_offset=100)
        assert not pager.add(50, 100, count=50, total=150, has_next=has_next, next_offset=0)
        pager.finish()


def test_paging_errors_fail_at_once():
    """A lying envelope lies again on a retry minutes later; the alert should not wait for it (issue 13)."""
    assert issubclass(PagingError, FAILS_AT_ONCE)


def test_a_page_at_the_wrong_offset_is_a_skip_or_a_repeat():
    pager = Pager("IQA $/X", Stop.NO_NEXT)
    pager.add(100, 0, total=300, has_next=True, next_offset=100)
    with pytest.raises(PagingError, match="the page at offset 200 skips rows: after 100 rows"):
        pager.add(100, 200, total=300)
    with pytest.raises(PagingError, match="the page at offset 0 repeats rows"):
        pager.add(100, 0, total=300)


def test_a_total_that_changes_and_a_next_offset_that_disagrees_are_errors():
    pager = Pager("IQA $/X", Stop.NO_NEXT)
    pager.add(100, 0, total=300, has_next=True, next_offset=100)
    with pytest.raises(PagingError, match="says TotalCount 301, the first page said 300"):
        pager.add(100, 100, total=301)
    with pytest.raises(PagingError, match="holds 100 rows but says NextOffset 100, not 200"):
        pager.add(100, 100, total=300, has_next=True, next_offset=100)


def test_offsets_ahead_step_by_the_rows_the_first_page_held():
    pager = Pager("IQA $/X", Stop.NO_NEXT)
    pager.add(100, 0, count=100, total=450, has_next=True, next_offset=100)
    assert list(pager.offsets_ahead()) == [100, 200, 300, 400]


def test_a_short_page_pager_needs_its_limit():
    with pytest.raises(ValueError, match="needs the page limit"):
        Pager("grid g", Stop.SHORT_PAGE)


def test_prefetched_pages_come_in_offset_order_however_they_finish():
    lock = threading.Lock()
    running = {"now": 0, "most": 0}

    def fetch(offset: int) -> int:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        time.sleep(0.01 if offset % 20 else 0.03)
        with lock:
            running["now"] -= 1
        return offset

    assert list(prefetched(fetch, range(0, 100, 10), workers=3)) == list(range(0, 100, 10))
    assert 1 < running["most"] <= 3
