"""Progress lines for long steps ("page 12/40, 6,000 rows, 2,310 rows/s"), so a run can be followed live."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


def page_progress(log: logging.Logger, what: str, every_s: float = 5.0) -> Callable[[int, int | None, int], None]:
    """A callback for `ImisClient.run_iqa`: logs at most every `every_s` seconds, and always the last page."""
    started = time.monotonic()
    last = [0.0]

    def report(pages_done: int, pages_total: int | None, rows: int) -> None:
        now = time.monotonic()
        if pages_done != pages_total and now - last[0] < every_s and pages_done != 1:
            return
        last[0] = now
        elapsed = max(now - started, 1e-6)
        total = f"/{pages_total}" if pages_total else ""
        log.info("%s: page %d%s, %s rows, %s rows/s", what, pages_done, total, f"{rows:,}", f"{rows / elapsed:,.0f}")

    return report

