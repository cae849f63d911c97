"""Check a real Thrive (Informz AAPI) tenant, read-only, before the first sync.

Higher Logic's pages leave some details of the AAPI open (`thrive/documents.py`, `envelope.py` and `grids.py`
mark them OPEN); a tenant answers each of them one way. This check asks the tenant and prints which alternative it
shows:

* the StartRow base (0 or 1), by `ThriveClient.startrow_base`'s two one-row probes;
* the fault XML shape, from one request for a grid type that does not exist: an `InformzAAPIFault` detail, an
  `InformzServiceFault` detail, or only a prefixed `faultcode` (`a:InvalidGridCategoryException`);
* compression: one grid request sent compressed (the `compress_grids` extra), and whether the reply came back
  compressed, plain, or refused;
* every grid the pipeline reads (target-group sync, campaign signals, upload history and the engagement grids
  of `ENGAGEMENT_GRIDS`): a Count request and one page with the pipeline's own return fields and sort key.

Then one `FIX` line per problem a person must fix: credentials refused or this machine's IP not allow-listed,
a grid the pipeline needs refused, a list IQA of iMIS without a Thrive target group of the same name (when iMIS
can be reached), a missing `status_email_recipients` extra, a `startrow_base` extra that contradicts the tenant.
`TIP` lines suggest settings that are not problems (pin `startrow_base` to the detected value). Nothing is
written: every call is a GridRequest.

Usage (`bin/check-thrive` runs this module in the project environment):

    bin/check-thrive                             # the Airflow connection thrive_default (and imis_default)
    bin/check-thrive --conn-id thrive_prod --imis-conn-id imis_prod
    THRIVE_PASSWORD=... bin/check-thrive --url https://partner.informz.net/aapi/InformzService.svc \\
        --brand-id 1234 --brand-name "Our Association" --user hl_api_user \\
        --status-email-recipients data-team@example.org
    bin/check-thrive --kinds "Mail Sent,Mail Open,Link Click"    # only the engagement kinds you write back

The password comes from the connection or from the environment variable THRIVE_PASSWORD, never from the
command line, where `ps` would show it; it is never printed. With `--url`, list IQAs are compared with Thrive's
target groups only when `--imis-url` and `--imis-user` are given too (password from IMIS_PASSWORD).
Exit status: 0 the pipeline can run, 1 something must be fixed (or the check could not run), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import httpx

from include.imis_thrive.errors import BadConfiguration
from include.imis_thrive.http_retry import TransientHTTPError
from include.imis_thrive.thrive import envelope, parsing
from include.imis_thrive.thrive.client import (
    GROUP_USE_FIELDS,
    INTEREST_FIELDS,
    MAILED_GROUP_FIELDS,
    MEMBER_FIELDS,
    ThriveClient,
    ThriveConfig,
)
from include.imis_thrive.thrive.documents import GridQuery
from include.imis_thrive.thrive.engagement import FLAG_FIELDS, FLAG_OF_KIND, SUBSCRIBER_STATE_FIELDS
from include.imis_thrive.thrive.envelope import FaultCode
from include.imis_thrive.thrive.errors import ThriveCredentialsError, ThriveError, ThriveFault
from include.imis_thrive.thrive.grids import DERIVED_KINDS, ENGAGEMENT_GRIDS, GRID_ELEMENTS, Grid
from include.imis_thrive.thrive.kinds import EngagementKind
from include.imis_thrive.thrive.models import Interest

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2  # argparse's own status for a bad command line
PASSWORD_ENV = "THRIVE_PASSWORD"
IMIS_PASSWORD_ENV = "IMIS_PASSWORD"
PAGE_ROWS = 10  # one small page per grid: enough to prove the read works, cheap on a large tenant
# A grid type no tenant has: the request that shows the tenant's fault shape.
NO_SUCH_GRID = "check_thrive_no_such_grid"
# Grids whose tokens only third-party metadata shows (grids.py); a tenant that serves them is "extended".
THIRD_PARTY_GRIDS = frozenset({
    Grid.SUBSCRIBER_MAILING_HISTORY_ALL, Grid.MAILING_ACTIVITY_OPENS, Grid.MAILING_ACTIVITY_CLICKS,
    Grid.SUBSCRIBER_FORM_USAGE, Grid.SUBSCRIBER_WEB_TRACKING_PAGES,
})


class Role(StrEnum):
    """Why the pipeline reads a grid, which decides what a refusal costs."""

    REQUIRED = "required"  # the target-group sync fails without it
    CAMPAIGN_SIGNAL = "campaign signal"  # the hourly sync needs one of the two
    ENGAGEMENT = "engagement"  # the writeback of one or more kinds fails without it


@dataclass(frozen=True)
class GridUse:
    """One grid as the pipeline reads it: the return fields and sort key of its real request, and what for."""

    grid: str
    sort_field: str
    return_fields: tuple[str, ...]
    role: Role
    purpose: str
    kinds: tuple[EngagementKind, ...] = ()
    fallback: str | None = None  # a documented grid the pipeline reads instead when this one is refused


# The reads of `ThriveClient` (interests, interest_members, upload_status, campaign_interests), then one per
# engagement grid, with the very fields `iter_engagement` asks for.
CLIENT_GRIDS: tuple[GridUse, ...] = (
    GridUse(Grid.INTEREST_TARGET_GROUP, "target_group_id", INTEREST_FIELDS, Role.REQUIRED,
            "target groups (ThriveClient.interests)"),
    GridUse(Grid.SUBSCRIBER_INTERESTS, "subscriber_id", MEMBER_FIELDS, Role.REQUIRED,
            "target group members (ThriveClient.interest_members)"),
    GridUse(Grid.UPLOAD_HISTORY, "upload_id", GRID_ELEMENTS[Grid.UPLOAD_HISTORY], Role.REQUIRED,
            "BulkUpload status (ThriveClient.upload_status)"),
    GridUse(Grid.MAILING_INSTANCE, "mailing_instance_id", MAILED_GROUP_FIELDS,
            Role.CAMPAIGN_SIGNAL, "campaign groups (mailing_instance.target_group_id)"),
    GridUse(Grid.TARGET_GROUP_COUNTS, "id", GROUP_USE_FIELDS, Role.CAMPAIGN_SIGNAL,
            "campaign groups (target_group_counts.last_used_date)"),
)


def pipeline_grids(kinds: Sequence[EngagementKind] = tuple(EngagementKind)) -> list[GridUse]:
    """Every grid the pipeline reads when it writes back `kinds`, each once, in the order they are checked."""
    uses = list(CLIENT_GRIDS)
    engagement: dict[str, GridUse] = {}
    if EngagementKind.RESUBSCRIBE in kinds:  # derived: the recorded unsubscribers read back from `subscriber`
        engagement[Grid.SUBSCRIBER] = GridUse(Grid.SUBSCRIBER, "subscriber_id", SUBSCRIBER_STATE_FIELDS,
                                              Role.ENGAGEMENT, f"{EngagementKind.RESUBSCRIBE} writeback",
                                              (EngagementKind.RESUBSCRIBE,))
    for kind in EngagementKind:
        if kind not in kinds or kind in DERIVED_KINDS:
            continue
        spec = ENGAGEMENT_GRIDS[kind]
        fallback = Grid.MAILING_ACTIVITY_SUBSCRIBER_ACTIONS if kind in FLAG_OF_KIND else None
        for grid in spec.grids:
            known = engagement.get(grid)
            engagement[grid] = GridUse(grid, spec.date_element, spec.return_fields(), Role.ENGAGEMENT,
                                       f"{kind} writeback", (*known.kinds, kind) if known else (kind,), fallback)
    flag_kinds = tuple(kind for kind in FLAG_OF_KIND if kind in kinds)
    if flag_kinds:  # what Mail Open / Link Click are read from where the per-event grids are refused
        engagement[Grid.MAILING_ACTIVITY_SUBSCRIBER_ACTIONS] = GridUse(
            Grid.MAILING_ACTIVITY_SUBSCRIBER_ACTIONS, "user_id",
            (*FLAG_FIELDS, *FLAG_OF_KIND.values()), Role.ENGAGEMENT,
            f"{', '.join(flag_kinds)} writeback where the per-event grids are refused", flag_kinds)
    return uses + list(engagement.values())


@dataclass(frozen=True)
class GridCheck:
    """What the tenant answered for one grid: its Count and first page, or the fault that refused it."""

    use: GridUse
    count: int | None = None
    rows_read: int | None = None
    refused_code: str | None = None  # the fault code of a refused Count or page
    refused_reason: str | None = None
    refused_on: str = "Count"  # "Count" or "page": which request was refused
    error: str | None = None  # not a fault: a reply the client could not read

    @property
    def available(self) -> bool:
        return self.refused_code is None and self.error is None

    @property
    def empty_page_of_rows(self) -> bool:
        """The Count says there are rows, but the first page at the detected StartRow holds none."""
        return bool(self.available and self.count and self.rows_read == 0)


class FaultShape(StrEnum):
    """The three fault XML shapes the vendor's pages leave open (the emulator's `fault_shape`), or none seen."""

    AAPI = "aapi"  # <detail><InformzAAPIFault><Code>
    SERVICE = "service"  # <detail><InformzServiceFault><Code>
    FAULTCODE = "faultcode"  # only <faultcode>a:CodeException</faultcode>
    NO_FAULT = "none"  # the fault-provoking request was answered without a fault
    UNREADABLE = "unreadable"  # a fault this check cannot place


FAULT_SHAPE_TEXT = {
    FaultShape.AAPI: "InformzAAPIFault detail (<detail><InformzAAPIFault><Code>)",
    FaultShape.SERVICE: "InformzServiceFault detail (<detail><InformzServiceFault><Code>)",
    FaultShape.FAULTCODE: "only a prefixed faultcode (<faultcode>a:…Exception</faultcode>, no detail)",
    FaultShape.NO_FAULT: "no fault: a request for a grid that does not exist was answered without one",
    FaultShape.UNREADABLE: "a fault in a shape this check does not know",
}


def fault_shape_of(body: bytes) -> FaultShape:
    """Which of the open fault shapes a SOAP reply body shows (`envelope.fault_from` reads all three)."""
    try:
        soap_body = envelope.parse_envelope(body, "fault probe")
    except ThriveError:
        return FaultShape.UNREADABLE
    fault = parsing.child(soap_body, "Fault")
    if fault is None:
        return FaultShape.NO_FAULT
    detail = parsing.child(fault, "detail")
    names = {parsing.local_name(item.tag).lower() for item in (detail if detail is not None else [])}
    if "informzaapifault" in names:
        return FaultShape.AAPI
    if "informzservicefault" in names:
        return FaultShape.SERVICE
    if ":" in (parsing.child_text(fault, "faultcode") or ""):
        return FaultShape.FAULTCODE
    return FaultShape.UNREADABLE


class Compression(StrEnum):
    """How the tenant answered a grid request whose `<Grids>` was sent compressed ("Making the Call")."""

    SUPPORTED = "supported"  # compressed reply
    PLAIN_REPLY = "plain reply"  # accepted, answered plain (the emulator's `compression=never`)
    REFUSED = "refused"
    UNREADABLE = "unreadable"


def reply_is_compressed(body: bytes) -> bool:
    """Whether a GridResponse carries its `<Grids>` as a compressed payload (text, no child elements)."""
    soap_body = envelope.parse_envelope(body, "compression probe")
    argument = envelope.soap_argument(soap_body, envelope.RESPONSE_WRAPPER, envelope.RESULT, "compression probe")
    document = parsing.parse_document(argument, "compression probe")
    grids = parsing.child(document, "Grids")
    return grids is not None and len(grids) == 0 and bool((grids.text or "").strip())


@dataclass(frozen=True)
class StartRowCheck:
    """The tenant's StartRow base and on which grid it was seen; `base` None when no grid had a row to probe."""

    base: int | None
    grid: str | None = None
    configured: int | None = None  # the connection's `startrow_base` extra
    error: str | None = None


@dataclass(frozen=True)
class TargetGroupCheck:
    """List IQAs of iMIS without a live Thrive target group of the same name; `not_checked` says why not."""

    lists: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()  # missing, but a deleted target group has the name
    not_checked: str | None = None


def missing_target_groups(list_names: Sequence[str], interests: Sequence[Interest]) -> TargetGroupCheck:
    """Each list IQA needs a live interest of the same name, compared case-insensitively as the sync compares."""
    live = {interest.name.casefold() for interest in interests if not interest.is_deleted}
    deleted = {interest.name.casefold() for interest in interests if interest.is_deleted}
    names = sorted(list_names, key=str.casefold)
    missing = tuple(name for name in names if name.casefold() not in live)
    return TargetGroupCheck(tuple(names), missing, tuple(name for name in missing if name.casefold() in deleted))


@dataclass(frozen=True)
class TenantReport:
    """Everything the check found on one brand, in the order a person reads it."""

    endpoint: str
    brand_id: str
    brand_name: str
    user: str
    status_email_recipients: tuple[str, ...] = ()
    compress_grids: bool = False
    credentials: str | None = None  # why the tenant refused the credentials; nothing else was checked then
    credentials_code: str | None = None
    unreachable: str | None = None  # the endpoint could not be used at all
    startrow: StartRowCheck | None = None
    fault_shape: FaultShape | None = None
    fault_code: str | None = None
    compression: Compression | None = None
    compression_detail: str | None = None
    grids: tuple[GridCheck, ...] = ()
    target_groups: TargetGroupCheck = field(default_factory=lambda: TargetGroupCheck(not_checked="not asked"))

    def grid(self, name: str) -> GridCheck:
        for check in self.grids:
            if check.use.grid == name:
                return check
        raise KeyError(f"the report has no grid {name}")

    @property
    def grids_alternative(self) -> str | None:
        """`extended` when the tenant serves the third-party grid tokens, `documented` when it refuses them all."""
        third_party = [check for check in self.grids if check.use.grid in THIRD_PARTY_GRIDS and
                       (check.available or check.refused_code == FaultCode.INVALID_GRID)]
        if not third_party:
            return None
        served = sum(check.available for check in third_party)
        if served == len(third_party):
            return "extended"
        return "documented" if served == 0 else "mixed"

    @property
    def grid_problems(self) -> list[tuple[GridCheck, str]]:
        """Each grid whose refusal stops part of the pipeline, with its sentence (one campaign signal may fail)."""
        signal_ok = self._campaign_signal_ok()
        served = {check.use.grid for check in self.grids if check.available}
        return [(check, _grid_problem(check)) for check in self.grids
                if check.empty_page_of_rows or (not check.available and check.use.fallback not in served and
                                                (check.use.role is not Role.CAMPAIGN_SIGNAL or not signal_ok))]

    def _campaign_signal_ok(self) -> bool:
        signals = [check for check in self.grids if check.use.role is Role.CAMPAIGN_SIGNAL]
        return not signals or any(check.available for check in signals)

    @property
    def problems(self) -> list[str]:
        """One sentence per thing to fix before the pipeline can run."""
        if self.credentials:
            return [self.credentials]
        if self.unreachable:
            return [self.unreachable]
        return [problem for _, problem in self.grid_problems] + self.other_problems

    @property
    def other_problems(self) -> list[str]:
        """The problems that are not one grid's: settings, StartRow, compression, target groups."""
        problems = []
        if self.startrow and self.startrow.error:
            problems.append(f"StartRow probe: {self.startrow.error}")
        if self.startrow and self.startrow.base is not None and self.startrow.configured is not None \
                and self.startrow.configured != self.startrow.base:
            problems.append(f"the thrive connection's extra startrow_base is {self.startrow.configured} but this "
                            f"tenant counts rows from {self.startrow.base}: paging would skip or repeat rows; set "
                            f"it to {self.startrow.base} (or remove it, to detect it on each run)")
        if self.compress_grids and self.compression in (Compression.REFUSED, Compression.UNREADABLE):
            problems.append(f"the thrive connection's extra compress_grids is true but this tenant's answer to a "
                            f"compressed grid request is {self.compression.value} ({self.compression_detail}); "
                            "set compress_grids to false")
        tg = self.target_groups
        for name in tg.missing:
            deleted = " (a deleted one has that name: restore it)" if name in tg.deleted else ""
            problems.append(f"list IQA {name!r} ($/HigherLogic/MailingLists) has no Thrive target group of that "
                            f"name{deleted}; create the target group in Thrive (the AAPI cannot create one) or "
                            "rename the IQA, else every sync skips this list")
        if not self.status_email_recipients:
            problems.append("the thrive connection has no status_email_recipients extra: every BulkUpload (upserts "
                            "above bulk_threshold and every target-group removal) is refused without it; set it to "
                            "the comma-separated address(es) that should receive Thrive's upload reports")
        return problems

    @property
    def tips(self) -> list[str]:
        """Suggestions that are not problems: the pipeline runs without them."""
        tips = []
        if self.startrow and self.startrow.base is not None and self.startrow.configured is None:
            tips.append(f"set the thrive connection's extra startrow_base to {self.startrow.base} (detected here), "
                        "so no run has to probe it")
        return tips

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_PROBLEMS

    def _base(self) -> int:
        if self.startrow and self.startrow.base is not None:
            return self.startrow.base
        return self.startrow.configured if self.startrow and self.startrow.configured is not None else 0

    def alternatives(self) -> dict[str, str]:
        """The open details as the emulator names them (`THRIVE_SANDBOX_ALTERNATIVES`); only those seen."""
        seen: dict[str, str] = {}
        if self.startrow and self.startrow.base is not None:
            seen["startrow_base"] = str(self.startrow.base)
        if self.fault_shape in (FaultShape.AAPI, FaultShape.SERVICE, FaultShape.FAULTCODE):
            seen["fault_shape"] = self.fault_shape.value
        if self.grids_alternative in ("documented", "extended"):
            seen["grids"] = self.grids_alternative
        if self.compression is Compression.SUPPORTED:
            seen["compression"] = "on-request"
        elif self.compression is Compression.PLAIN_REPLY:
            seen["compression"] = "never"
        return seen

    def render(self) -> str:
        """The report: the open details, an OK or FIX line per grid, FIX and TIP lines, then a verdict."""
        lines = [f"Thrive tenant check of {self.endpoint}, brand {self.brand_id} ({self.brand_name}), "
                 f"user {self.user}"]
        if self.credentials or self.unreachable:
            lines.append(f"FIX  {self.problems[0]}")
            lines.append("nothing else was checked: the pipeline cannot run until this is fixed")
            return "\n".join(lines)
        lines.append("OK   credentials accepted")
        lines += self._open_details()
        failed = dict((id(check), problem) for check, problem in self.grid_problems)
        for check in self.grids:
            lines.append(f"FIX  {failed[id(check)]}" if id(check) in failed else _grid_line(check))
        lines += self._target_group_lines()
        lines += [f"FIX  {problem}" for problem in self.other_problems]
        lines += [f"TIP  {tip}" for tip in self.tips]
        readable = sum(check.available for check in self.grids)
        verdict = "the pipeline can run" if self.ok else f"{_count(len(self.problems), 'problem')} to fix"
        lines.append(f"{_count(len(self.grids), 'grid')} checked, {readable} readable: {verdict}")
        return "\n".join(lines)

    def _open_details(self) -> list[str]:
        lines = []
        start = self.startrow
        if start is not None and start.base is not None:
            lines.append(f"OPEN StartRow base: {start.base} (startrow_base={start.base}; probed on grid {start.grid})")
        elif start is not None:
            lines.append("OPEN StartRow base: not determined (" + (start.error or "no grid has a row to probe")
                         + "); the pipeline detects it on its first paged read")
        if self.fault_shape is not None:
            name = f" (fault_shape={self.fault_shape.value})" if self.fault_shape in (
                FaultShape.AAPI, FaultShape.SERVICE, FaultShape.FAULTCODE) else ""
            code = f", code {self.fault_code}" if self.fault_code else ""
            lines.append(f"OPEN fault shape: {FAULT_SHAPE_TEXT[self.fault_shape]}{name}{code}")
        if self.compression is not None:
            alternative = self.alternatives().get("compression")
            name = f" (compression={alternative})" if alternative else ""
            lines.append(f"OPEN compression: {self.compression.value}{name}; {self.compression_detail}")
        grids = self.grids_alternative
        if grids is not None:
            third = [c for c in self.grids if c.use.grid in THIRD_PARTY_GRIDS]
            served = sum(c.available for c in third)
            name = f" (grids={grids})" if grids != "mixed" else ""
            lines.append(f"OPEN grids: {grids}{name}; {served} of {len(third)} third-party grid tokens served")
        return lines

    def _target_group_lines(self) -> list[str]:
        tg = self.target_groups
        if tg.not_checked:
            return [f"NOTE target groups: not checked against iMIS ({tg.not_checked})"]
        if not tg.missing:
            return [f"OK   target groups: each of the {_count(len(tg.lists), 'list IQA')} has a Thrive target group"]
        return []


def _grid_line(check: GridCheck) -> str:
    """The line of a grid that is no problem: read, or a refused campaign signal whose twin is read."""
    use = check.use
    if check.available:
        return f"OK   grid {use.grid}: {_count(check.count or 0, 'row')}, first page read ({use.purpose})"
    instead = (f"the documented {use.fallback} flags are read instead (one event per contact and mailing)"
               if use.fallback else "the other campaign signal is used")
    return (f"NOTE grid {use.grid}: refused with {check.refused_code or check.error} on the {check.refused_on} "
            f"({use.purpose}); {instead}")


def _grid_problem(check: GridCheck) -> str:
    use = check.use
    if check.empty_page_of_rows:
        return (f"grid {use.grid}: the Count says {check.count} rows but the first page holds none; "
                "set the startrow_base extra to the tenant's real base")
    what = (f"refused with {check.refused_code} on the {check.refused_on}: {check.refused_reason}"
            if check.refused_code else f"unreadable: {check.error}")
    if use.role is Role.ENGAGEMENT:
        kinds = ", ".join(use.kinds)
        cost = (f"the {kinds} writeback fails on every run of thrive_to_imis_activities; ask Higher Logic to enable "
                f"this grid for the brand, or leave {kinds} out of that DAG's `kinds` param")
    elif use.role is Role.CAMPAIGN_SIGNAL:
        cost = ("the other campaign signal is refused too, so every hourly campaign-only run of "
                "imis_to_thrive_target_groups fails; ask Higher Logic to enable one of the two grids, or list the "
                "campaign groups in the Airflow Variable imis_thrive_campaign_groups")
    else:
        cost = (f"imis_to_thrive_target_groups cannot read {use.purpose}; ask Higher Logic to give the API user "
                "access to this grid")
    return f"grid {use.grid} ({use.purpose}) {what}; {cost}"


def credentials_problem(fault: ThriveFault) -> str:
    """The FIX sentence for a refused login, by fault code."""
    if fault.code == FaultCode.NO_AVAILABLE_IP:
        return (f"Thrive refused this machine's IP address ({fault.code}: {fault.reason}); ask Higher Logic to "
                "allow-list the public IP address the Airflow workers connect from")
    if fault.code == FaultCode.BRAND_NOT_FOUND:
        return (f"Thrive knows no brand with this id ({fault.code}: {fault.reason}); set the thrive connection's "
                "extra brand_id (and brand_name) to the brand of the API user")
    return (f"Thrive refused the credentials ({fault.code}: {fault.reason}); check the thrive connection's login, "
            "password and brand_id extra (a RemoteService API user of this brand)")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


# -- the check ------------------------------------------------------------------------------------------------

class _Recorder(httpx.BaseTransport):
    """Keeps the last reply, so the fault and compression probes can look at the XML the client parsed."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.last: httpx.Response | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.last = self.inner.handle_request(request)
        return self.last

    def body(self) -> bytes:
        return self.last.read() if self.last is not None else b""

    def close(self) -> None:
        self.inner.close()


def check_tenant(config: ThriveConfig, list_names: Sequence[str] | None = None, lists_not_checked: str | None = None,
                 kinds: Sequence[EngagementKind] = tuple(EngagementKind),
                 transport: httpx.BaseTransport | None = None) -> TenantReport:
    """Ask the tenant behind `config` everything the pipeline relies on; only GridRequests are sent.

    `list_names` are the list IQAs of iMIS (None when iMIS was not reached, `lists_not_checked` saying why).
    """
    report = TenantReport(config.endpoint, config.brand_id, config.brand_name, config.user,
                          tuple(config.status_email_recipients), config.compress_grids)
    probing = config.model_copy(update={"startrow_base": None, "compress_grids": False})
    uses = pipeline_grids(kinds)
    with ThriveClient(probing, transport=transport) as client:
        try:
            first = _count_grid(client, uses[0])
        except ThriveCredentialsError as refused:
            return replace(report, credentials=credentials_problem(refused), credentials_code=refused.code)
        except (ThriveError, TransientHTTPError, httpx.TransportError) as failure:
            return replace(report, unreachable=f"the endpoint {config.endpoint} cannot be used: {failure}; check "
                                                "the thrive connection's host (the full AAPI URL)")
        counted = [first] + [_count_grid(client, use) for use in uses[1:]]
        startrow = _startrow(client, counted, config.startrow_base)
        base = startrow.base if startrow.base is not None else (config.startrow_base or 0)
        checks = tuple(_read_page(client, check, base) for check in counted)
        interests = _interests(client) if list_names is not None else None
    shape, code = _fault_probe(probing, transport)
    compression, detail = _compression_probe(probing, transport, base)
    if list_names is None:
        target_groups = TargetGroupCheck(not_checked=lists_not_checked or "no iMIS connection")
    elif isinstance(interests, str):
        target_groups = TargetGroupCheck(not_checked=f"Thrive's target groups could not be read: {interests}")
    else:
        target_groups = missing_target_groups(list_names, interests or [])
    report = replace(report, startrow=startrow, fault_shape=shape, fault_code=code, compression=compression,
                     compression_detail=detail, grids=checks, target_groups=target_groups)
    log.info("Thrive tenant check of %s: %d grids, %d problems", config.endpoint, len(checks), len(report.problems))
    return report


def _count_grid(client: ThriveClient, use: GridUse) -> GridCheck:
    """The grid's Count; a fault is the grid's verdict, except refused credentials, which end the check."""
    try:
        return GridCheck(use, count=client.count(use.grid))
    except ThriveCredentialsError:
        raise
    except ThriveFault as fault:
        return GridCheck(use, refused_code=fault.code, refused_reason=fault.reason)
    except ThriveError as error:
        if use is CLIENT_GRIDS[0]:
            raise
        return GridCheck(use, error=str(error))


def _startrow(client: ThriveClient, counted: Sequence[GridCheck], configured: int | None) -> StartRowCheck:
    """`ThriveClient.startrow_base` on the first grid with a row (with no row the probe proves nothing)."""
    for check in counted:
        if check.available and check.count:
            use = check.use
            query = GridQuery(use.grid, (), use.return_fields, use.sort_field, number_of_rows=1)
            try:
                return StartRowCheck(client.startrow_base(query), use.grid, configured)
            except ThriveError as error:
                return StartRowCheck(None, use.grid, configured, error=str(error))
    return StartRowCheck(None, None, configured)


def _read_page(client: ThriveClient, check: GridCheck, base: int) -> GridCheck:
    """One page of the pipeline's own request for the grid, at the tenant's first row."""
    if not check.available:
        return check
    use = check.use
    try:
        rows = client.grid_page(GridQuery(use.grid, (), use.return_fields, use.sort_field, start_row=base,
                                          number_of_rows=PAGE_ROWS))
    except ThriveFault as fault:
        return GridCheck(use, check.count, refused_code=fault.code, refused_reason=fault.reason, refused_on="page")
    except ThriveError as error:
        return GridCheck(use, check.count, error=str(error))
    return GridCheck(use, check.count, rows_read=len(rows))


def _interests(client: ThriveClient) -> list[Interest] | str:
    try:
        return client.interests()
    except ThriveError as error:
        return str(error)


def _fault_probe(config: ThriveConfig, transport: httpx.BaseTransport | None) -> tuple[FaultShape, str | None]:
    """Ask for a grid type that does not exist and look at the fault's XML."""
    recorder = _Recorder(transport)
    with ThriveClient(config, transport=recorder) as client:
        try:
            client.grid_page(GridQuery(NO_SUCH_GRID, (), ("id",), number_of_rows=1))
        except ThriveFault as fault:
            return fault_shape_of(recorder.body()), fault.code
        except ThriveError:
            return FaultShape.UNREADABLE, None
    return FaultShape.NO_FAULT, None


def _compression_probe(config: ThriveConfig, transport: httpx.BaseTransport | None,
                       base: int) -> tuple[Compression, str]:
    """The first page of target groups sent compressed, compared with the same page sent plain."""
    use = CLIENT_GRIDS[0]
    query = GridQuery(use.grid, (), use.return_fields, use.sort_field, start_row=base, number_of_rows=PAGE_ROWS)
    recorder = _Recorder(transport)
    with ThriveClient(config, transport=transport) as plain, \
            ThriveClient(config.model_copy(update={"compress_grids": True}), transport=recorder) as packed:
        try:
            expected = plain.grid_page(query)
        except ThriveError as error:
            return Compression.UNREADABLE, f"the plain request it is compared with failed: {error}"
        try:
            rows = packed.grid_page(query)
        except ThriveFault as fault:
            return Compression.REFUSED, f"a compressed request is refused with {fault.code}: {fault.reason}"
        except ThriveError as error:
            return Compression.UNREADABLE, f"the reply to a compressed request cannot be read: {error}"
    if rows != expected:
        return Compression.UNREADABLE, "the compressed request answered other rows than the plain one"
    try:
        compressed = reply_is_compressed(recorder.body())
    except ThriveError as error:
        return Compression.UNREADABLE, f"the reply to a compressed request cannot be read: {error}"
    if compressed:
        return Compression.SUPPORTED, "a compressed request gets a compressed reply, which the client reads"
    return Compression.PLAIN_REPLY, "a compressed request is accepted but answered plain, which the client reads"


# -- command line ---------------------------------------------------------------------------------------------

class ConnectionUnusable(BadConfiguration):
    """The command line or the Airflow connection does not describe a Thrive brand to check."""


def main(argv: Sequence[str] | None = None) -> int:
    """Check the brand of an Airflow connection (default) or of `--url`, print the report, return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.url and not (args.brand_id and args.brand_name and args.user):
        parser.error("--url needs --brand-id, --brand-name and --user")
    if args.url and not os.environ.get(PASSWORD_ENV):
        parser.error(f"--url reads the password from the environment variable {PASSWORD_ENV}; set it")
    if args.imis_url and not (args.imis_user and os.environ.get(IMIS_PASSWORD_ENV)):
        parser.error(f"--imis-url needs --imis-user and the password in the environment variable {IMIS_PASSWORD_ENV}")
    try:
        kinds = _kinds(args.kinds)
    except ValueError as unknown:
        parser.error(str(unknown))
    try:
        config = _direct_config(args) if args.url else _connection_config(args.conn_id)
    except ConnectionUnusable as unusable:
        print(f"cannot check the Thrive tenant: {unusable}", file=sys.stderr)
        return EXIT_PROBLEMS
    list_names, not_checked = _list_iqas(args)
    report = check_tenant(config, list_names, not_checked, kinds)
    print(_scrub(report.render(), config.password.get_secret_value()))
    return report.exit_code


SCRUB_MIN_LENGTH = 6  # a shorter "password" would mask ordinary words of the report


def _scrub(text: str, secret: str) -> str:
    """The report never carries the password, whatever a tenant's fault text echoes."""
    return text.replace(secret, "********") if len(secret) >= SCRUB_MIN_LENGTH else text


def _kinds(text: str | None) -> list[EngagementKind]:
    if not text:
        return list(EngagementKind)
    by_name = {kind.value.casefold(): kind for kind in EngagementKind}
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name.casefold() not in by_name]
    if unknown:
        raise ValueError(f"--kinds: unknown kind {', '.join(unknown)} (kinds: {', '.join(EngagementKind)})")
    return [by_name[name.casefold()] for name in names]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="check-thrive", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conn-id", default="thrive_default", help="Airflow connection to check (default "
                                                                    "thrive_default)")
    parser.add_argument("--imis-conn-id", default="imis_default",
                        help="Airflow connection of the iMIS whose list IQAs need target groups (default imis_default)")
    parser.add_argument("--url", help=f"the AAPI endpoint URL, instead of a connection (password from ${PASSWORD_ENV})")
    parser.add_argument("--brand-id", help="with --url: the brand id")
    parser.add_argument("--brand-name", help="with --url: the brand name")
    parser.add_argument("--user", help="with --url: the API user")
    parser.add_argument("--status-email-recipients", default="",
                        help="with --url: the value the status_email_recipients extra will hold")
    parser.add_argument("--startrow-base", type=int, choices=(0, 1),
                        help="with --url: the value the startrow_base extra will hold")
    parser.add_argument("--imis-url", help=f"with --url: the iMIS site whose list IQAs to compare "
                                           f"(password from ${IMIS_PASSWORD_ENV})")
    parser.add_argument("--imis-user", help="with --imis-url: the iMIS integration user")
    parser.add_argument("--kinds", help="the engagement kinds you write back, comma-separated (default: all eight)")
    return parser


def _direct_config(args: argparse.Namespace) -> ThriveConfig:
    try:
        return ThriveConfig(endpoint=args.url, brand_id=args.brand_id, brand_name=args.brand_name, user=args.user,
                            password=os.environ[PASSWORD_ENV], startrow_base=args.startrow_base,
                            status_email_recipients=[address.strip() for address in
                                                     args.status_email_recipients.split(",") if address.strip()])
    except ValueError as invalid:
        raise ConnectionUnusable(f"--url {args.url}: {invalid}") from invalid


def _airflow() -> None:
    # Outside a task the SDK reads connections from env vars and secrets backends only; Airflow's own
    # `airflow connections get` declares the server context like this to read the metadata DB too.
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # the report, not Airflow's chatter


def _connection_config(conn_id: str) -> ThriveConfig:
    """The settings a DAG task would get, from the connection in Airflow's metadata DB or secrets backend."""
    _airflow()
    from airflow.sdk.exceptions import AirflowNotFoundException

    from include.imis_thrive.airflow.hooks.thrive import ThriveHook

    try:
        return ThriveHook(thrive_conn_id=conn_id).get_config()
    except AirflowNotFoundException as absent:
        raise ConnectionUnusable(f"{absent}; define it (airflow_settings.yaml or the Airflow UI) or pass --url, "
                                 "--brand-id, --brand-name and --user") from absent
    except ValueError as invalid:
        raise ConnectionUnusable(f"connection {conn_id}: {invalid}") from invalid


def _list_iqas(args: argparse.Namespace) -> tuple[list[str] | None, str | None]:
    """The names of the list IQAs in iMIS, or (None, why they were not read): iMIS is optional here."""
    from include.imis_thrive.imis.client import ImisClient, ImisConfig
    from include.imis_thrive.imis.errors import ImisError
    from include.imis_thrive.imis.iqa_package import MAILING_LISTS_FOLDER

    if args.url and not args.imis_url:
        return None, "pass --imis-url and --imis-user to compare the list IQAs with Thrive's target groups"
    try:
        if args.imis_url:
            client = ImisClient(ImisConfig(base_url=args.imis_url, username=args.imis_user,
                                           password=os.environ[IMIS_PASSWORD_ENV]))
        else:
            _airflow()
            from airflow.sdk.exceptions import AirflowNotFoundException

            from include.imis_thrive.airflow.hooks.imis import ImisHook

            try:
                client = ImisHook(imis_conn_id=args.imis_conn_id).get_client()
            except AirflowNotFoundException:
                return None, f"no Airflow connection {args.imis_conn_id}"
        with client:
            documents = client.list_folder(MAILING_LISTS_FOLDER)
    except (ImisError, TransientHTTPError, httpx.TransportError, ValueError) as failure:
        return None, f"iMIS not reachable: {failure}; run bin/check-iqa-package for the iMIS side"
    return [document.name for document in documents], None


if __name__ == "__main__":
    sys.exit(main())
