"""The iMIS paging envelope and the walk over every page of a call (`paged`), with a scripted fetch."""

import threading

import pytest

from include.imis_thrive.imis.errors import ImisPagingError
from include.imis_thrive.imis.pages import Page, paged


def test_an_envelope_reads_items_in_either_shape_and_defaults_what_it_omits():
    page = Page.from_envelope({"Items": {"$values": [{"ID": "1"}]}, "TotalCount": 3, "HasNext": True,
                               "NextOffset": 1}, 0)
    assert (page.rows, page.offset, page.count, page.total_count, page.has_next, page.next_offset) == \
        ([{"ID": "1"}], 0, 1, 3, True, 1)
    bare = Page.from_envelope({"Items": [{"ID": "2"}], "Offset": 5}, 5)
    assert (bare.count, bare.total_count, bare.has_next) == (1, None, False)


def _pages(total: int, size: int, announce_total: bool = True):
    calls: list[int] = []
    lock = threading.Lock()

    def fetch(offset: int) -> Page:
        with lock:
            calls.append(offset)
        rows = [{"ID": str(n)} for n in range(offset, min(offset + size, total))]
        more = offset + len(rows) < total
        return Page(rows, offset, size, len(rows), total if announce_total else None, more,
                    offset + len(rows) if more else 0)

    return fetch, calls


@pytest.mark.parametrize("workers", [1, 4])
def test_every_page_comes_once_in_order_whatever_the_concurrency(workers):
    fetch, calls = _pages(total=23, size=5)
    rows = [row["ID"] for page in paged(fetch, "IQA $/X", workers) for row in page.rows]
    assert rows == [str(n) for n in range(23)]
    assert sorted(calls) == [0, 5, 10, 15, 20]


def test_without_a_total_the_next_offsets_are_followed():
    fetch, calls = _pages(total=7, size=3, announce_total=False)
    assert sum(len(page.rows) for page in paged(fetch, "IQA $/X", workers=4)) == 7
    assert calls == [0, 3, 6]


def test_a_total_the_rows_never_reach_is_an_error_naming_the_call():
    def fetch(offset: int) -> Page:
        return Page([{"ID": "1"}], 0, 500, 1, 2, False, 0)

    with pytest.raises(ImisPagingError, match=r"activities \{\}: the page at offset 0 says HasNext false, yet only 1 "
                                              r"of TotalCount 2 rows end there"):
        list(paged(fetch, "activities {}"))
