"""Offset/limit paging, written once for every paged read of both clients.

A `Pager` follows one paged call: it knows where the next page must start, checks what each page says about
itself (where it starts, how many rows it holds, the total and next offset the server announced), decides by
its stop rule whether another page follows, and at the end reconciles the rows seen with the announced total.
Any contradiction raises the caller's error type naming the call: a paged read returns every row once or
fails, never a silently short result. `prefetched` fetches pages ahead on a thread pool, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from itertools import islice
from typing import TypeVar

from include.imis_thrive.errors import BadData

P = TypeVar("P")


class PagingError(BadData):
    """A paged answer contradicts itself; the default error of a `Pager` that is given none.

    Bad data, like `ImisPagingError`: an envelope that lies about its own rows lies the same way on a retry a few
    minutes later, so the task fails at once naming the call and offset (issue 13). Where the cause may be a
    result that changed while it was read, the message says to run it again."""


class Stop(Enum):
    """When a paged read is over (an empty page always ends it)."""

    SHORT_PAGE = "short page"  # a page holding fewer rows than the limit (Thrive grids announce no total)
    NO_NEXT = "no next page"  # the page says `HasNext` false or `NextOffset` 0 (the iMIS envelope)


class Pager:
    """The account of one paged call; `what` names the call in every error (e.g. "IQA $/X").

    `start` is the offset of the first row on the wire (Thrive's StartRow base, 0 or 1); offsets passed to
    `add` are wire offsets. `next_offset` is where the next page must start."""

    def __init__(self, what: str, stop: Stop, *, limit: int | None = None, start: int = 0,
                 error: Callable[[str], Exception] = PagingError) -> None:
        if stop is Stop.SHORT_PAGE and not limit:
            raise ValueError(f"{what}: a pager that stops on a short page needs the page limit")
        self.what = what
        self.limit = limit
        self.stop = stop
        self.start = start
        self.error = error
        self.rows_seen = 0
        self.total: int | None = None
        self.first_rows: int | None = None
        self.more = True

    @property
    def next_offset(self) -> int:
        return self.start + self.rows_seen

    def add(self, rows: int, offset: int | None = None, *, count: int | None = None, total: int | None = None,
            has_next: bool | None = None, next_offset: int | None = None) -> bool:
        """Check one page and count its rows; True when another page follows. `None` = the page does not say."""
        offset = self.next_offset if offset is None else offset
        where = f"{self.what}: the page at offset {offset}"
        if count is not None and count != rows:
            raise self.error(f"{where} says Count {count} but holds {rows} rows")
        if offset != self.next_offset:
            kind = "repeats" if offset < self.next_offset else "skips"
            raise self.error(
                f"{where} {kind} rows: after {self.rows_seen:,} rows the next page should start at offset "
                f"{self.next_offset:,} (a page held fewer rows than the first one, or the result changed while "
                "it was read); no rows are returned rather than a result with rows missing or doubled")
        self._check_total(total, where)
        if has_next and next_offset not in (None, 0, offset + rows):
            raise self.error(f"{where} holds {rows} rows but says NextOffset {next_offset}, not {offset + rows}")
        self._check_stop_against_total(offset, rows, has_next, next_offset, where)
        if self.first_rows is None:
            self.first_rows = rows
        self.rows_seen += rows
        self.more = rows > 0 and self._continues(rows, has_next, next_offset)
        return self.more

    def _check_total(self, total: int | None, where: str) -> None:
        if total is None:
            return
        if self.first_rows is None:
            self.total = total
        elif self.total is not None and total != self.total:
            raise self.error(f"{where} says TotalCount {total:,}, the first page said {self.total:,}: the result "
                             "changed while it was read; run it again")

    def _check_stop_against_total(self, offset: int, rows: int, has_next: bool | None, next_offset: int | None,
                                  where: str) -> None:
        """A page that says "no next page" (`HasNext` false, or `HasNext` true with `NextOffset` 0) before the rows
        reach the announced total would end the read short: rows silently missing, members silently removed."""
        if self.stop is not Stop.NO_NEXT or self.total is None or rows == 0:
            return
        ends_at = offset + rows - self.start
        if ends_at >= self.total:
            return
        if has_next is False or (has_next and next_offset == 0):
            said = "HasNext false" if has_next is False else "HasNext true but NextOffset 0"
            raise self.error(f"{where} says {said}, yet only {ends_at:,} of TotalCount {self.total:,} rows end "
                             "there; no rows are returned rather than a result with rows missing (run it again; "
                             "if it persists, the instance's paging is broken for this query)")

    def _continues(self, rows: int, has_next: bool | None, next_offset: int | None) -> bool:
        if self.stop is Stop.SHORT_PAGE:
            return rows >= (self.limit or 0)
        return bool(has_next) and next_offset != 0

    def offsets_ahead(self) -> range:
        """After the first page, with a total announced: the offsets of every page still to come, stepping by
        the rows the first page *held* (a server may echo a larger limit than it serves)."""
        if self.first_rows is None or self.total is None:
            raise ValueError(f"{self.what}: the offsets ahead are known only after a first page with a total")
        if not self.more:
            return range(0)
        return range(self.next_offset, self.start + self.total, self.first_rows)

    def finish(self) -> None:
        """Reconcile: the rows seen must add up to the total the server announced."""
        if self.total is not None and self.rows_seen != self.total:
            raise self.error(f"{self.what}: read {self.rows_seen:,} rows but TotalCount is {self.total:,}; no rows "
                             "are returned rather than a partial result")


def prefetched(fetch: Callable[[int], P], offsets: Iterable[int], workers: int, name: str = "page") -> Iterator[P]:
    """`fetch(offset)` for every offset, `workers` at a time, yielded in offset order.

    A bounded window (two pages per worker) keeps pages coming while the caller digests one, and a slow caller
    never has the whole result fetched and waiting in memory."""
    pending = iter(offsets)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        window = deque(pool.submit(fetch, offset) for offset in islice(pending, 2 * workers))
        try:
            while window:
                page = window.popleft().result()
                for offset in islice(pending, 1):
                    window.append(pool.submit(fetch, offset))
                yield page
        finally:
            for future in window:
                future.cancel()
