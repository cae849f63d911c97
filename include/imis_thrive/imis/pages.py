"""The iMIS paging envelope (`PagedResult`: `Items`, `Offset`, `Limit`, `Count`, `TotalCount`, `HasNext`,
`NextOffset`, reference §2.4) and the walk over every page of one paged call, checked by the shared `Pager`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from include.imis_thrive.imis.errors import ImisPagingError
from include.imis_thrive.paging import Pager, Stop, prefetched


@dataclass(frozen=True)
class Page:
    """One page of a paged iMIS result, with the envelope's own account of where it sits."""

    rows: list[dict[str, Any]]
    offset: int
    limit: int
    count: int
    total_count: int | None
    has_next: bool
    next_offset: int

    @classmethod
    def from_envelope(cls, body: Mapping[str, Any], requested_offset: int) -> Page:
        items = body.get("Items")
        rows = list(items.get("$values") or []) if isinstance(items, Mapping) else list(items or [])
        count = int(body.get("Count", len(rows)))
        next_offset = int(body.get("NextOffset") or 0)
        has_next = bool(body.get("HasNext", next_offset > 0))
        total = body.get("TotalCount")
        return cls(rows=rows, offset=int(body.get("Offset", requested_offset)), limit=int(body.get("Limit") or 0),
                   count=count, total_count=int(total) if total is not None else None,
                   has_next=has_next, next_offset=next_offset)


def _add(pager: Pager, page: Page) -> bool:
    return pager.add(len(page.rows), page.offset, count=page.count, total=page.total_count,
                     has_next=page.has_next, next_offset=page.next_offset)


def paged(fetch: Callable[[int], Page], what: str, workers: int = 1) -> Iterator[Page]:
    """Every page of one call, in order, each checked against the ones before; `fetch(offset)` reads one.

    After the first page gives `TotalCount`, the remaining offsets are fetched `workers` at a time (see
    `Pager.offsets_ahead`). Without a total (or with one worker) it follows `NextOffset`. Rows read must add up
    to `TotalCount`, page after page without a gap or an overlap; anything else raises `ImisPagingError`
    naming the call, never a short result."""
    pager = Pager(what, Stop.NO_NEXT, error=ImisPagingError)
    first = fetch(0)
    _add(pager, first)
    yield first
    if pager.more:
        if pager.total is not None and workers > 1:
            pages = prefetched(fetch, pager.offsets_ahead(), workers, name="imis-page")
        else:
            pages = _following(fetch, pager)
        for page in pages:
            _add(pager, page)
            yield page
    pager.finish()


def _following(fetch: Callable[[int], Page], pager: Pager) -> Iterator[Page]:
    """Page after page at the offset the last one ended at (which the pager checked its `NextOffset` names)."""
    while pager.more:
        yield fetch(pager.next_offset)
