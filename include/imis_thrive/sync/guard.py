"""The mass-change guard: stop a run that would rewrite a large share of Thrive, unless a person said so.

The classic case is an IQA that suddenly returns nothing (a filter edited, a permission lost): the diff
then says "remove everyone", and loading it would empty a target group minutes before a mailing. A run
that would remove more than `max_removed_share` of a group's members, or touch (add + change + remove) more
than `max_changed_share` of the contacts, raises `MassChangeBlocked` before anything is loaded. The
snapshot is not committed, so after the IQA is fixed the next run diffs against the same baseline. When
the change is intended (a new list, a yearly renewal), the run is repeated with the override.

The first run (no previous snapshot, or an empty one) has no baseline to compare with and is never blocked.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from include.imis_thrive.errors import BadData
from include.imis_thrive.sync.diff import ContactDiff, MembershipDiff

log = logging.getLogger(__name__)

DEFAULT_MAX_SHARE = 0.20


@dataclass(frozen=True)
class MassChangeLimits:
    """Shares (0..1) of the previous snapshot above which a run is blocked."""

    max_removed_share: float = DEFAULT_MAX_SHARE
    max_changed_share: float = DEFAULT_MAX_SHARE

    def __post_init__(self) -> None:
        for name in ("max_removed_share", "max_changed_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"mass-change limit {name} must be a share between 0 and 1, got {share!r}")


@dataclass(frozen=True)
class GuardCheck:
    """The guard's verdict on one group or IQA, for the run report (counts only)."""

    subject: str
    measure: str  # "removed members" or "changed contacts"
    count: int
    base: int
    share: float
    limit: float
    blocked: bool
    overridden: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class MassChangeBlocked(BadData):
    """The run would change too much at once; check the IQA, or re-run with the mass-change override."""

    def __init__(self, check: GuardCheck) -> None:
        self.check = check
        super().__init__(
            f"mass-change guard stopped {check.subject}: {check.count:,} of {check.base:,} {check.measure} "
            f"({check.share:.1%}) is above the {check.limit:.0%} limit. Check that the IQA still returns "
            "what it should; if this change is intended, re-run with the mass-change override. "
            "Nothing was loaded and the previous snapshot is kept."
        )


class DriftBlocked(MassChangeBlocked):
    """Thrive's membership of a group drifted too far from what the last sync left: someone rebuilt or emptied it."""

    def __init__(self, check: GuardCheck, missing: int, extra: int) -> None:
        self.check = check
        BadData.__init__(
            self,
            f"drift guard stopped {check.subject}: Thrive holds it with {missing:,} member(s) missing and {extra:,} "
            f"extra against the {check.base:,} the last sync left ({check.share:.1%}, above the {check.limit:.0%} "
            "limit). Someone may have rebuilt, emptied or edited the group in Thrive; if iMIS should win, re-run "
            "with the mass-change override and the group is repaired from iMIS. Nothing was loaded.",
        )


def check_drift(target_group: str, missing: int, extra: int, base: int,
                limits: MassChangeLimits = MassChangeLimits(), override: bool = False) -> GuardCheck:
    """Block when more than `max_removed_share` of the last sync's members are missing from or extra in Thrive:
    repairing that much at once is the same kind of mass change as removing it."""
    subject = f"target group {target_group!r}"
    try:
        return _check(subject, "members drifted in Thrive", missing + extra, base, limits.max_removed_share,
                      override)
    except MassChangeBlocked as blocked:
        raise DriftBlocked(blocked.check, missing, extra) from None


def check_membership_removals(
    diff: MembershipDiff, limits: MassChangeLimits = MassChangeLimits(), override: bool = False
) -> GuardCheck:
    """Block when more than `max_removed_share` of the group's previous members would be removed."""
    return _check(
        f"target group {diff.target_group!r}", "removed members", len(diff.removed), diff.previous_count,
        limits.max_removed_share, override,
    )


def check_contact_changes(
    diff: ContactDiff, iqa: str, limits: MassChangeLimits = MassChangeLimits(), override: bool = False
) -> GuardCheck:
    """Block when added + changed + removed exceeds `max_changed_share` of the previous contacts."""
    return _check(
        f"IQA {iqa!r}", "changed contacts", diff.change_count, diff.previous_count,
        limits.max_changed_share, override,
    )


def _check(subject: str, measure: str, count: int, base: int, limit: float, override: bool) -> GuardCheck:
    share = count / base if base else 0.0
    over_limit = base > 0 and share > limit
    check = GuardCheck(
        subject=subject, measure=measure, count=count, base=base, share=round(share, 6), limit=limit,
        blocked=over_limit and not override, overridden=over_limit and override,
    )
    if check.blocked:
        raise MassChangeBlocked(check)
    if check.overridden:
        log.warning(
            "mass-change guard overridden for %s: %d of %d %s (%.1f%%) above the %.0f%% limit",
            subject, count, base, measure, share * 100, limit * 100,
        )
    return check
