"""Run reports a person reads (Markdown next to the JSON) and the figures each Asset event carries.

Counts, names and contact IDs only: member emails and tokens never reach a report, an XCom or a log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _quarantine_lines(title: str, quarantine: Mapping[str, Any] | None) -> list[str]:
    if not quarantine or not (quarantine.get("rows") or quarantine.get("open")):
        return []
    reasons = quarantine.get("by_reason", {})
    lines = [f"**{title}**", "", table(["reason", "contacts"], sorted(reasons.items()))]
    ids = quarantine.get("sample_ids") or quarantine.get("flagged_ids") or []
    if ids:
        lines += ["", "Contact IDs (first ones): " + ", ".join(map(str, ids))]
    if quarantine.get("flagged_count"):
        lines += ["", f"{quarantine['flagged_count']} contact(s) rejected {quarantine['flag_after_runs']} runs in a "
                      "row need a fix in iMIS: " + ", ".join(quarantine.get("flagged_ids", []))]
    return lines + [""]


def _validation_lines(validation: Mapping[str, Any] | None) -> list[str]:
    if not validation:
        return []
    failed = validation.get("failed", [])
    lines = [f"**Great Expectations** ({validation.get('iqa')}): {validation.get('evaluated')} expectations on "
             f"{validation.get('rows')} rows, {len(failed)} with unexpected values", ""]
    if failed:
        lines += [table(["rule", "column", "blocking", "rows"],
                        [(f["rule"], f.get("column"), f["blocking"], f.get("unexpected_count")) for f in failed]), ""]
    return lines


def target_group_figures(plan: Mapping[str, Any], load: Mapping[str, Any]) -> dict[str, Any]:
    """The `extra` of one target group's Asset event."""
    membership = plan.get("membership", {})
    return {"rows": membership.get("current", 0), "added": load.get("added", 0), "removed": load.get("removed", 0),
            "quarantined": load.get("not_in_thrive", 0) + load.get("rejected", 0),
            "members": load.get("members"), "api_calls": load.get("calls", 0), "seconds": load.get("seconds"),
            "dry_run": load.get("dry_run", False)}


def contacts_figures(contacts: Mapping[str, Any], upsert: Mapping[str, Any]) -> dict[str, Any]:
    """The `extra` of the contacts Asset event (default fields and the preference token)."""
    diff = upsert.get("diff", {})
    return {"rows": contacts.get("rows", 0), "added": diff.get("added", 0), "changed": diff.get("changed", 0),
            "removed": 0, "quarantined": contacts.get("quarantined", {}).get("rows", 0) + upsert.get("rejected", 0),
            "sent": upsert.get("sent", 0), "api_calls": upsert.get("calls", 0),
            "seconds": round(contacts.get("seconds", 0) + upsert.get("seconds", 0), 2),
            "dry_run": upsert.get("dry_run", False)}


def render_target_groups(report: Mapping[str, Any]) -> str:
    contacts, upsert = report.get("contacts") or {}, report.get("upsert") or {}
    diff = upsert.get("diff", {})
    groups = report.get("target_groups", [])
    lines = [f"# Target-group sync {report['run_id']}", "", f"Finished {report['finished_at']}.", "",
             "## Contacts (default fields and `iMISv2 - Token`)", "",
             table(["read", "staged", "new to Thrive", "changed", "sent", "rejected by Thrive", "API calls"],
                   [(contacts.get("rows"), contacts.get("staged"), diff.get("added"), diff.get("changed"),
                     upsert.get("sent"), upsert.get("rejected"), upsert.get("calls"))]), ""]
    if diff.get("changed_by_column"):
        lines += ["Changed fields: " + ", ".join(f"{k} ({v})" for k, v in sorted(diff["changed_by_column"].items())),
                  ""]
    lines += _validation_lines(contacts.get("validation"))
    lines += _quarantine_lines("Quarantined by validation (not sent)", contacts.get("quarantined"))
    lines += _quarantine_lines("Rejected by Thrive (retried every run)", upsert.get("quarantine"))
    lines += ["## Target groups", "",
              table(["group", "status", "members", "added", "removed", "not added", "note"],
                    [(g["group"], g["status"], (g.get("load") or {}).get("members"),
                      (g.get("load") or {}).get("added"), (g.get("load") or {}).get("removed"),
                      (g.get("load") or {}).get("not_in_thrive"), g.get("reason") or "") for g in groups]), ""]
    return "\n".join(lines)


def render_panel_fields(report: Mapping[str, Any]) -> str:
    extract, upsert = report.get("extract") or {}, report.get("upsert") or {}
    diff = upsert.get("diff", {})
    lines = [f"# Panel-field sync {report['run_id']}", "", f"Finished {report['finished_at']}; IQA {report['iqa']}.",
             "", table(["read", "fields", "new contacts", "changed", "field sets sent", "rejected", "status"],
                       [(extract.get("rows"), len(extract.get("fields", [])), diff.get("added"), diff.get("changed"),
                         upsert.get("sent"), upsert.get("rejected"), upsert.get("status"))]), ""]
    if extract.get("custom_fields"):
        lines += ["Custom fields: " + ", ".join(extract["custom_fields"]), ""]
    if upsert.get("reason"):
        lines += [f"**Stopped:** {upsert['reason']}", ""]
    lines += _validation_lines(extract.get("validation"))
    lines += _quarantine_lines("Quarantined by validation (not sent)", extract.get("quarantined"))
    return "\n".join(lines)


def render_activities(report: Mapping[str, Any]) -> str:
    writeback = report.get("writeback") or {}
    interval = report.get("interval", {})
    lines = [f"# Activity writeback {report['run_id']}", "",
             f"Interval [{interval.get('start')}, {interval.get('end')}), iMIS time zone "
             f"{writeback.get('timezone')}.", ""]
    read, written = writeback.get("read", {}), writeback.get("written", {})
    already = writeback.get("already_written", {})
    lines += [table(["kind", "read", "written", "already written"],
                    [(kind, read.get(kind, 0), written.get(kind, 0), already.get(kind, 0)) for kind in read]), ""]
    unknown = writeback.get("unknown_contacts") or {}
    if unknown.get("events"):
        lines += [f"**{unknown['events']} event(s) of contacts unknown to iMIS were skipped:** "
                  + ", ".join(map(str, unknown.get("ids", []))), ""]
    rejected = writeback.get("rejected") or {}
    if rejected.get("events"):
        lines += [f"**iMIS refused {rejected['events']} event(s):**", "",
                  table(["reason", "events"], sorted(rejected.get("by_reason", {}).items())), ""]
    lines += _activity_quarantine_lines(writeback.get("quarantine") or {})
    lines += [f"{writeback.get('imis_calls', 0)} iMIS calls, {writeback.get('thrive_calls', 0)} Thrive calls, "
              f"{writeback.get('seconds', 0)} s.", ""]
    return "\n".join(lines)


def _activity_quarantine_lines(quarantine: Mapping[str, Any]) -> list[str]:
    """Events iMIS failed every post of in this run, and stuck ones skipped: key, contact ID, kind, reason."""
    header = ["event key", "contact", "kind", "iMIS said", "failed runs", "posts", "first seen", "stuck"]

    def rows(entries: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        return [(e["key"], e["contact_id"], e["kind"], e["reason"], f"{e['runs']} of {quarantine.get('retry_runs')}",
                 e["attempts"], e["first_seen"], "yes" if e["stuck"] else "no") for e in entries]

    lines: list[str] = []
    if quarantine.get("events"):
        lines += [f"**{quarantine['events']} event(s) quarantined: iMIS failed every post of them "
                  f"({quarantine.get('attempts_per_run')} a run, each then looked up); the next run of this interval "
                  "tries them again, stuck ones only with the param `retry_stuck`:**", "",
                  table(header, rows(quarantine.get("entries", []))), ""]
    skipped = quarantine.get("stuck_skipped") or {}
    if skipped.get("events"):
        lines += [f"**{skipped['events']} stuck event(s) skipped, not tried until cleared (param `retry_stuck`, or "
                  "delete the entry from `quarantine/activities.json`):**", "",
                  table(header, rows(skipped.get("entries", []))), ""]
    if quarantine.get("released"):
        lines += [f"{quarantine['released']} event(s) quarantined earlier were written and left the quarantine.", ""]
    return lines


def activity_figures(writeback: Mapping[str, Any]) -> dict[str, Any]:
    """The `extra` of the activities Asset event."""
    return {"rows": sum(writeback.get("read", {}).values()), "added": sum(writeback.get("written", {}).values()),
            "written_by_kind": dict(writeback.get("written", {})),
            "already_written": sum(writeback.get("already_written", {}).values()),
            "quarantined": (writeback.get("unknown_contacts") or {}).get("events", 0)
            + (writeback.get("rejected") or {}).get("events", 0) + (writeback.get("quarantine") or {}).get("events", 0),
            "api_calls": writeback.get("imis_calls", 0) + writeback.get("thrive_calls", 0),
            "seconds": writeback.get("seconds")}


def panel_figures(extract: Mapping[str, Any], upsert: Mapping[str, Any]) -> dict[str, Any]:
    """The `extra` of the panel-fields Asset event."""
    diff = upsert.get("diff", {})
    return {"rows": extract.get("rows", 0), "added": diff.get("added", 0), "changed": diff.get("changed", 0),
            "removed": diff.get("removed", 0),
            "quarantined": (extract.get("quarantined") or {}).get("rows", 0) + upsert.get("rejected", 0),
            "fields": len(extract.get("fields", [])), "api_calls": upsert.get("calls", 0),
            "seconds": round((extract.get("seconds") or 0) + (upsert.get("seconds") or 0), 2),
            "status": upsert.get("status")}
