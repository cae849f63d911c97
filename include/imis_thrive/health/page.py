"""The Sync health page and a run's readable report, as self-contained HTML (the machine may have no internet).

Airflow shows both inside its UI in an iframe (the plugin's external views), so each page carries its own small
stylesheet and inline SVG charts, and links that leave the plugin (a run's page in Airflow) ask the surrounding UI
to navigate rather than opening Airflow inside the frame. Everything shown is escaped: Jinja's autoescape for the
page, markdown-it with raw HTML off for the report. Every link is under `base_path`, where the api-server is
served (empty at the host's root; `/airflow` behind a proxy that serves Airflow under a sub-path).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jinja2 import Environment, FileSystemLoader
from markdown_it import MarkdownIt
from markupsafe import Markup

from include.imis_thrive.health.addresses import URL_PREFIX, run_path
from include.imis_thrive.health.summary import FieldsPoint, GroupPoint, Held, HourPoint, RunLink, SyncHealth

CHART_HEIGHT = 36
BAR_WIDTH = 9

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1a202c; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 24px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border-bottom: 1px solid #e2e8f0; padding: 4px 8px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.state { border-radius: 4px; padding: 1px 6px; font-size: 12px; }
.synced, .written { background: #c6f6d5; } .dry-run { background: #bee3f8; }
.skipped, .incomplete { background: #feebc8; } .blocked, .failed { background: #fed7d7; }
.muted { color: #718096; font-size: 12px; } .banner { background: #fefcbf; padding: 4px 8px; }
"""

# A link to a page of the Airflow UI: inside the UI's frame, the surrounding single-page app navigates (its router
# follows history.pushState + popstate); opened on its own, the plain href does.
NAVIGATE = """
document.addEventListener("click", (event) => {
  const link = event.target.closest("a.airflow");
  if (!link || window.parent === window) return;
  try {
    window.parent.history.pushState({}, "", link.getAttribute("href"));
    window.parent.dispatchEvent(new PopStateEvent("popstate"));
    event.preventDefault();
  } catch (crossOrigin) { /* not Airflow's frame: follow the link */ }
});
"""

_environment = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)
_page = _environment.get_template("page.html")
_report = _environment.get_template("report.html")
_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


def render_page(health: SyncHealth, base_path: str = "") -> str:
    def links(run: RunLink) -> Markup:
        return Markup('<a class="airflow" href="{}">run</a> · <a href="{}">report</a>').format(
            base_path + run.airflow, base_path + run.report)

    return _page.render(health=health, style=Markup(STYLE), navigate=Markup(NAVIGATE), prefix=base_path + URL_PREFIX,
                        state=_state, dash=_dash, held=_held, drift=_drift, links=links,
                        group_chart=group_chart, fields_chart=fields_chart, hour_chart=hour_chart)


def render_report(dag_id: str, run_id: str, markdown: str | None, known: bool, base_path: str = "") -> str:
    """A run's Markdown report as HTML; raw HTML in it is shown as text, never interpreted."""
    body = Markup(_markdown.render(markdown)) if markdown else None
    return _report.render(dag_id=dag_id, run_id=run_id, body=body, known=known,
                          airflow=base_path + run_path(dag_id, run_id), prefix=base_path + URL_PREFIX,
                          style=Markup(STYLE), navigate=Markup(NAVIGATE))


def _state(state: str) -> Markup:
    return Markup('<span class="state {}">{}</span>').format(state.replace(" ", "-"), state)


def _dash(value: object) -> str:
    return "—" if value is None else str(value)


def _held(held: Held) -> Markup:
    if not held.count:
        return Markup("0")
    reasons = ", ".join(f"{reason} ({count})" for reason, count in sorted(held.by_reason.items()))
    ids = Markup('<div class="muted">IDs: {}</div>').format(", ".join(held.ids)) if held.ids else ""
    return Markup("{} <span class=\"muted\">{}</span>{}").format(held.count, reasons, ids)


def _drift(drift: dict | None) -> str:
    """The report's drift sentence ("drift: 3 missing in Thrive, 0 extra, repaired (…)", or "none (…)");
    "—" for a run that had nothing committed to check or a report written before drift was checked."""
    return str(drift["note"]).removeprefix("drift: ") if drift else "—"


def _bars(points: Sequence[tuple[str, int, int]], two_way: bool = False) -> Markup:
    """Bars up (first figure) and, when `two_way`, down (second) from a middle line, one per run, scaled to the
    largest; a title on each says its run and figures."""
    if not points:
        return Markup("")
    largest = max(1, *(max(up, down) for _, up, down in points))
    half = CHART_HEIGHT / 2 if two_way else CHART_HEIGHT
    width = BAR_WIDTH * len(points)
    parts = [Markup('<svg class="chart" width="{}" height="{}" viewBox="0 0 {} {}" role="img">').format(
        width, CHART_HEIGHT, width, CHART_HEIGHT),
        Markup('<line x1="0" y1="{}" x2="{}" y2="{}" stroke="#cbd5e0"/>').format(half, width, half)]
    for index, (label, up, down) in enumerate(points):
        x = index * BAR_WIDTH + 1
        up_h, down_h = half * up / largest, half * down / largest
        bar = Markup('<rect x="{}" y="{:.1f}" width="{}" height="{:.1f}" fill="{}"/>')
        bars = bar.format(x, half - up_h, BAR_WIDTH - 2, up_h, "#38a169")
        if two_way:
            bars += bar.format(x, half, BAR_WIDTH - 2, down_h, "#e53e3e")
        parts.append(Markup("<g><title>{}</title>{}</g>").format(label, bars))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def group_chart(history: Sequence[GroupPoint]) -> Markup:
    return _bars([(f"{p.finished_at} {p.state}: {p.added} added, {p.removed} removed", p.added, p.removed)
                  for p in history], two_way=True)


def fields_chart(history: Sequence[FieldsPoint]) -> Markup:
    return _bars([(f"{p.finished_at} {p.state}: {p.changed} changed, {p.added} new", p.changed + p.added, 0)
                  for p in history])


def hour_chart(per_hour: Sequence[HourPoint]) -> Markup:
    return _bars([(f"{p.start}: {p.written} written", p.written, 0) for p in per_hour])

