"""What the activity writeback should write, given the grids the Thrive emulator serves.

The emulator serves only the grids vendor pages name (`grids=documented`) or also the third-party ones
(`extended`), so the same generated engagement reaches iMIS differently: a kind whose per-event grid is
served lands event by event; Mail Open / Link Click whose grid is refused come from the documented per-mailing
flags (one event per contact and mailing, dated at the mailing); any other refused kind is written not at all
and must be reported as failed. The sources are asked of the emulator, never of the writeback under test.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from enum import StrEnum

import pandas as pd

from include.imis_thrive.thrive.engagement import FLAG_LOOKBACK, FLAG_OF_KIND, grids_for_window
from include.imis_thrive.thrive.grids import DERIVED_KINDS, Grid
from include.imis_thrive.thrive.kinds import EngagementKind
from sandbox.thrive_app import ThriveSandbox
from sandbox.thrive_engagement import GeneratedEngagement

GRID_KINDS = tuple(kind for kind in EngagementKind if kind not in DERIVED_KINDS)


class Source(StrEnum):
    """Where the writeback can read one grid kind from on a given emulator."""

    GRID = "per-event grid"
    FLAGS = "per-mailing flags"
    UNSERVED = "not served"


def engagement_sources(thrive: ThriveSandbox, start: datetime) -> dict[EngagementKind, Source]:
    """The source of each grid kind for a window from `start` on, by the grids this emulator serves."""
    served = thrive.config.served_grids()
    sources = {}
    for kind in GRID_KINDS:
        if set(grids_for_window(kind, start, datetime.now(UTC))) <= served:
            sources[kind] = Source.GRID
        elif kind in FLAG_OF_KIND and Grid.MAILING_ACTIVITY_SUBSCRIBER_ACTIONS in served:
            sources[kind] = Source.FLAGS
        else:
            sources[kind] = Source.UNSERVED
    return sources


def unserved(sources: Mapping[EngagementKind, Source]) -> list[str]:
    """The kinds a run must report under `failed_kinds`, sorted by name."""
    return sorted(kind.value for kind, source in sources.items() if source is Source.UNSERVED)


def expected_events(generated: GeneratedEngagement, known: Collection[str], start: datetime, end: datetime,
                    sources: Mapping[EngagementKind, Source], kinds: Collection[EngagementKind] = GRID_KINDS,
                    ) -> dict[EngagementKind, pd.DataFrame]:
    """Per kind, the events of `known` contacts that contiguous runs over `[start, end)` write.

    Columns as the generator's (`user_id`, `occurred_at`, `mailing_instance_id`, `mailing_id`, `url`, `page`).
    From the flags: each contact with at least one such event for a mailing dated in `[end - lookback, end)`,
    once, at the mailing's date but no earlier than `start` (the first window that sees the flag)."""
    expected = {}
    for kind in kinds:
        frame = generated.events[kind]
        frame = frame[frame["user_id"].isin(list(known))]
        if sources[kind] is Source.GRID:
            expected[kind] = frame[(frame["occurred_at"] >= start) & (frame["occurred_at"] < end)]
        elif sources[kind] is Source.FLAGS:
            expected[kind] = _flagged(frame, generated.mailings, start, end)
    return expected


def _flagged(events: pd.DataFrame, mailings: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    dates = mailings.set_index("mailing_instance_id")["mailing_date"]
    once = events.drop_duplicates(["mailing_instance_id", "user_id"])
    mailed = once["mailing_instance_id"].map(dates)
    once = once[(mailed >= end - FLAG_LOOKBACK) & (mailed < end)]
    return once.assign(occurred_at=mailed[once.index].clip(lower=pd.Timestamp(start)), url=None, page=None)
