"""Run reports a person reads (Markdown next to the JSON) and the figures each Asset event carries.

Counts, names and contact IDs only: member emails and tokens never reach a report, an XCom or a log. Each
function reads the typed step results (`sync/results.py`, `writeback/results.py`), not nested dictionaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from include.imis_thrive.sync.results import (
    ContactsExtract,
    ContactsUpsert,
    PanelExtract,
    PanelFieldsReport,
    PanelUpsert,
    PanelUpsertStatus,
    RejectionSummary,
    TargetGroupLoad,
    TargetGroupPlan,
    TargetGroupsReport,
    ValidationQuarantine,
)
from include.imis_thrive.writeback.results import ActivitiesReport, ActivityWriteback, QuarantinedEvent


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _quarantine_lines(title: str, quarantine: ValidationQuarantine | RejectionSummary | None) -> list[str]:
    """Rows validation kept back (`ValidationQuarantine`) or contacts Thrive keeps refusing (`RejectionSummary`)."""
    if quarantine is None:
        return []
    if isinstance(quarantine, ValidationQuarantine):
        if not quarantine.rows:
            return []
        ids = quarantine.sample_ids
    else:
        if not quarantine.open:
            return []
        ids = quarantine.flagged_ids
    lines = [f"**{title}**", "", table(["reason", "contacts"], sorted(quarantine.by_reason.items()))]
    if ids:
        lines += ["", "Contact IDs (first ones): " + ", ".join(map(str, ids))]
    if isinstance(quarantine, RejectionSummary) and quarantine.flagged_count:
        lines += ["", f"{quarantine.flagged_count} contact(s) rejected {quarantine.flag_after_runs} runs in a "
                      "row need a fix in iMIS: " + ", ".join(quarantine.flagged_ids)]
    return [*lines, ""]


def _validation_lines(validation: Mapping[str, Any] | None) -> list[str]:
    """The GX summary `validate_iqa` made (a plain document: its shape is GX's, not ours)."""
    if not validation:
        return []
    failed = validation.get("failed", [])
    lines = [f"**Great Expectations** ({validation.get('iqa')}): {validation.get('evaluated')} expectations on "
             f"{validation.get('rows')} rows, {len(failed)} with unexpected values", ""]
    if failed:
        lines += [table(["rule", "column", "blocking", "rows"],
                        [(f["rule"], f.get("column"), f["blocking"], f.get("unexpected_count")) for f in failed]), ""]
    return lines


def announces_a_change(figures: Mapping[str, Any]) -> bool:
    """Whether a step's figures are worth an Asset event: it wrote something. A dry run, a load the mass-change
    guard stopped and an hour without engagement wrote nothing, and a DAG scheduled on the asset must not run."""
    if figures.get("dry_run") or figures.get("status") in {PanelUpsertStatus.DRY_RUN, PanelUpsertStatus.BLOCKED}:
        return False
    return any(figures.get(key) for key in ("added", "changed", "removed"))


def target_group_figures(plan: TargetGroupPlan, load: TargetGroupLoad) -> dict[str, Any]:
    """The `extra` of one target group's Asset event."""
    drift = plan.drift
    return {"rows": plan.membership.current if plan.membership else 0, "added": load.added, "removed": load.removed,
            "quarantined": load.not_in_thrive + load.rejected + load.refused_unchanged, "members": load.members,
            "api_calls": load.calls, "seconds": load.seconds, "dry_run": load.dry_run,
            "drift_missing": drift.missing if drift else 0, "drift_extra": drift.extra if drift else 0,
            "drift_fields": (drift.fields_differ or 0) if drift else 0}


def drift_note(plan: TargetGroupPlan, load: TargetGroupLoad | None) -> str:
    """One group's drift in Thrive, as a person reads it: "drift: 3 missing in Thrive, 2 extra, repaired"."""
    drift = plan.drift
    if drift is None:
        return ""
    if not drift.drifted:
        return f"none ({drift.in_thrive:,} in Thrive" + (
            f", fields of {drift.fields_checked:,} compared)" if drift.fields_checked is not None else ")")
    found = [f"{drift.missing:,} missing in Thrive", f"{drift.extra:,} extra"]
    if drift.fields_differ is not None:
        found.append(f"{drift.fields_differ:,} with other field values")
    if load is not None and not load.dry_run:
        outcome = (f"repaired ({load.drift_readded or 0:,} added again, {load.drift_removed or 0:,} removed, "
                   f"{load.drift_fields_resent or 0:,} fields re-sent)")
    elif load is not None:
        outcome = "not repaired (dry run)"
    elif not plan.ready:
        outcome = f"not repaired ({plan.status})"
    else:
        outcome = "not repaired (the load did not finish)"
    return "drift: " + ", ".join(found) + ", " + outcome


def contacts_figures(contacts: ContactsExtract, upsert: ContactsUpsert) -> dict[str, Any]:
    """The `extra` of the contacts Asset event (default fields and the preference token)."""
    return {"rows": contacts.rows, "added": upsert.diff.added, "changed": upsert.diff.changed, "removed": 0,
            "quarantined": contacts.quarantined.rows + upsert.rejected + upsert.refused_unchanged,
            "sent": upsert.sent, "api_calls": upsert.calls,
            "seconds": round(contacts.seconds + upsert.seconds, 2), "dry_run": upsert.dry_run}


def render_target_groups(report: TargetGroupsReport) -> str:
    contacts, upsert, dry_run = report.contacts, report.upsert, report.dry_run
    diff = upsert.diff if upsert else None
    lines = [f"# Target-group sync {report.run_id}", "", f"Finished {report.finished_at}.", ""]
    lines += _dry_run_banner(dry_run)
    lines += ["## Contacts (default fields and `iMISv2 - Token`)", "",
              table(["read", "staged", "new to Thrive", "changed", "would send" if dry_run else "sent",
                     "rejected by Thrive", "API calls"],
                    [(contacts and contacts.rows, contacts and contacts.staged, diff and diff.added,
                      diff and diff.changed, upsert and (upsert.to_send if dry_run else upsert.sent),
                      upsert and upsert.rejected, upsert and upsert.calls)]), ""]
    if diff and diff.changed_by_column:
        lines += ["Changed fields: " + ", ".join(f"{k} ({v})" for k, v in sorted(diff.changed_by_column.items())),
                  ""]
    lines += _validation_lines(contacts.validation if contacts else None)
    lines += _quarantine_lines("Quarantined by validation (not sent)", contacts.quarantined if contacts else None)
    lines += _quarantine_lines("Rejected by Thrive (sent again once changed in iMIS)",
                               upsert.quarantine if upsert else None)
    if dry_run:
        groups = table(["group", "status", "members", "would add", "would remove", "would not add", "drift in Thrive",
                        "note"],
                       [(g.group, g.status, g.membership and g.membership.current, g.load and g.load.to_add,
                         g.load and g.load.to_remove, g.load and g.load.not_in_thrive + g.load.refused_unchanged,
                         drift_note(g, g.load), g.reason or "")
                        for g in report.target_groups])
    else:
        groups = table(["group", "status", "members", "added", "removed", "not added", "drift in Thrive", "note"],
                       [(g.group, g.status, g.load and g.load.members, g.load and g.load.added,
                         g.load and g.load.removed, g.load and g.load.not_in_thrive + g.load.refused_unchanged,
                         drift_note(g, g.load), g.reason or "")
                        for g in report.target_groups])
    lines += ["## Target groups", "", groups, ""]
    return "\n".join(lines)


def _dry_run_banner(dry_run: bool) -> list[str]:
    if not dry_run:
        return []
    return ["> **DRY RUN**: nothing was sent to Thrive and no snapshot was committed; the figures say what a real "
            "run would add, remove and send.", ""]


def render_panel_fields(report: PanelFieldsReport) -> str:
    extract, upsert = report.extract, report.upsert
    lines = [f"# Panel-field sync {report.run_id}", "", f"Finished {report.finished_at}; IQA {report.iqa}.", "",
             *_dry_run_banner(upsert.dry_run),
             table(["read", "fields", "new contacts", "changed",
                    "would send" if upsert.dry_run else "field sets sent", "rejected", "status"],
                   [(extract.rows, len(extract.fields), upsert.diff.added, upsert.diff.changed,
                     upsert.to_send if upsert.dry_run else upsert.sent, upsert.rejected, upsert.status)]), ""]
    if extract.custom_fields:
        lines += ["Custom fields: " + ", ".join(extract.custom_fields), ""]
    if upsert.reason:
        lines += [f"**Stopped:** {upsert.reason}", ""]
    lines += _validation_lines(extract.validation)
    lines += _quarantine_lines("Quarantined by validation (not sent)", extract.quarantined)
    return "\n".join(lines)


def render_activities(report: ActivitiesReport) -> str:
    writeback = report.writeback
    lines = [f"# Activity writeback {report.run_id}", "",
             f"Interval [{report.interval.start}, {report.interval.end}), iMIS time zone "
             f"{writeback.timezone if writeback else None}.", ""]
    if writeback is None:
        return "\n".join([*lines, "The write step did not finish; see the log of `write_activities`.", ""])
    read, written, already = writeback.read, writeback.written, writeback.already_written
    lines += [table(["kind", "read", "written", "already written"],
                    [(kind, read.get(kind, 0), written.get(kind, 0), already.get(kind, 0)) for kind in read]), ""]
    unknown = writeback.unknown_contacts
    if unknown.events:
        lines += [f"**{unknown.events} event(s) of contacts unknown to iMIS were skipped:** "
                  + ", ".join(map(str, unknown.ids)), ""]
    rejected = writeback.rejected
    if rejected.events:
        lines += [f"**iMIS refused {rejected.events} event(s):**", "",
                  table(["reason", "events"], sorted(rejected.by_reason.items())), ""]
    lines += _activity_quarantine_lines(writeback)
    lines += [f"{writeback.imis_calls} iMIS calls, {writeback.thrive_calls} Thrive calls, {writeback.seconds} s.", ""]
    return "\n".join(lines)


def _activity_quarantine_lines(writeback: ActivityWriteback) -> list[str]:
    """Events iMIS failed every post of in this run, and stuck ones skipped: key, contact ID, kind, reason."""
    quarantine = writeback.quarantine
    header = ["event key", "contact", "kind", "iMIS said", "failed runs", "posts", "first seen", "stuck"]

    def rows(entries: Iterable[QuarantinedEvent]) -> list[tuple[Any, ...]]:
        return [(e.key, e.contact_id, e.kind, e.reason, f"{e.runs} of {quarantine.retry_runs}", e.attempts,
                 e.first_seen, "yes" if e.stuck else "no") for e in entries]

    lines: list[str] = []
    if quarantine.events:
        lines += [f"**{quarantine.events} event(s) quarantined: iMIS failed every post of them "
                  f"({quarantine.attempts_per_run} a run, each then looked up); the next run of this interval "
                  "tries them again, stuck ones only with the param `retry_stuck`:**", "",
                  table(header, rows(quarantine.entries)), ""]
    skipped = quarantine.stuck_skipped
    if skipped.events:
        lines += [f"**{skipped.events} stuck event(s) skipped, not tried until cleared (param `retry_stuck`, or "
                  "delete the entry from `quarantine/activities.json`):**", "",
                  table(header, rows(skipped.entries)), ""]
    if quarantine.released:
        lines += [f"{quarantine.released} event(s) quarantined earlier were written and left the quarantine.", ""]
    return lines


def activity_figures(writeback: ActivityWriteback | None) -> dict[str, Any]:
    """The `extra` of the activities Asset event (empty when the write step did not finish)."""
    if writeback is None:
        return {}
    return {"rows": sum(writeback.read.values()), "added": sum(writeback.written.values()),
            "written_by_kind": dict(writeback.written),
            "already_written": sum(writeback.already_written.values()),
            "quarantined": writeback.unknown_contacts.events + writeback.rejected.events + writeback.quarantine.events,
            "api_calls": writeback.imis_calls + writeback.thrive_calls, "seconds": writeback.seconds}


def panel_figures(extract: PanelExtract, upsert: PanelUpsert) -> dict[str, Any]:
    """The `extra` of the panel-fields Asset event."""
    return {"rows": extract.rows, "added": upsert.diff.added, "changed": upsert.diff.changed,
            "removed": upsert.diff.removed, "quarantined": extract.quarantined.rows + upsert.rejected,
            "fields": len(extract.fields), "api_calls": upsert.calls,
            "seconds": round(extract.seconds + upsert.seconds, 2), "status": upsert.status}
