"""The HTML: every group's row carries its figures, charts are inline SVG, nothing from a report is interpreted as
markup (a group name or a Markdown report holding `<script>` is shown as text), no address leaves the machine."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from include.imis_thrive.health import summary
from include.imis_thrive.health.page import render_page, render_report
from include.imis_thrive.health.runs import RecentReports
from tests.unit.health.report_builders import activities_report, group, panel_fields_report, target_groups_report

T1, T2 = "2026-03-02T08:05:00+00:00", "2026-03-02T09:05:00+00:00"


def page(target_groups=(), panels=(), writebacks=()) -> str:
    return render_page(summary.build(RecentReports(list(target_groups)), RecentReports(list(panels)),
                                     RecentReports(list(writebacks)), now=datetime(2026, 3, 2, 11, tzinfo=UTC)))


def row(html: str, group_name: str) -> str:
    return re.search(rf'<tr data-group="{re.escape(group_name)}">(.*?)</tr>', html, flags=re.S).group(1)


def test_each_group_row_shows_the_last_runs_figures_a_chart_and_the_links():
    html = page([target_groups_report("scheduled__1", T1, [group("Newsletter", added=12, removed=3, members=1058)]),
                 target_groups_report("scheduled__2", T2, [group("Newsletter", added=5, removed=1, members=1062)])])
    newsletter = row(html, "Newsletter")
    assert '<td class="n" data-figure="members">1062</td>' in newsletter
    assert 'data-figure="added">5' in newsletter and 'data-figure="removed">1' in newsletter
    assert '<td data-figure="drift">—</td>' in newsletter
    assert newsletter.count("<rect") == 4  # two runs, a bar up and a bar down each
    assert '<a class="airflow" href="/dags/imis_to_thrive_target_groups/runs/scheduled__2">run</a>' in newsletter
    assert '<a href="/sync-health/runs/imis_to_thrive_target_groups/scheduled__2">report</a>' in newsletter


def test_links_go_under_the_path_airflow_is_served_at():
    health = summary.build(RecentReports([target_groups_report("scheduled__1", T1, [group("Newsletter")])]),
                           RecentReports([]), RecentReports([]), now=datetime(2026, 3, 2, 11, tzinfo=UTC))
    newsletter = row(render_page(health, base_path="/airflow"), "Newsletter")
    assert 'href="/airflow/dags/imis_to_thrive_target_groups/runs/scheduled__1">run</a>' in newsletter
    assert 'href="/airflow/sync-health/runs/imis_to_thrive_target_groups/scheduled__1">report</a>' in newsletter
    report = render_report("imis_to_thrive_target_groups", "scheduled__1", "# r", known=True, base_path="/airflow")
    assert 'href="/airflow/dags/imis_to_thrive_target_groups/runs/scheduled__1"' in report
    assert 'href="/airflow/sync-health/"' in report


def test_a_dry_run_says_what_it_would_do():
    html = page([target_groups_report("manual__1", T1, [group("Trial", added=7, removed=2, dry_run=True)],
                                      dry_run=True)])
    trial = row(html, "Trial")
    assert "dry run" in trial and "(would add 7)" in trial and "(would remove 2)" in trial


def test_names_from_reports_are_escaped():
    html = page([target_groups_report("manual__<b>", T1, [group("<script>alert(1)</script>", members=3)])])
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "manual__<b>" not in html


def test_panel_fields_and_every_activity_kind_have_their_section():
    html = page(panels=[panel_fields_report("scheduled__1", T1, changed=30, sent=30)],
                writebacks=[activities_report("scheduled__9", "2026-03-02T09:00:00+00:00",
                                              "2026-03-02T10:00:00+00:00", {"Mail Open": 25})])
    panel = re.search(r'<table id="panel-fields">(.*?)</table>', html, flags=re.S).group(1)
    assert 'data-figure="changed">30' in panel and 'data-figure="sent">30' in panel
    mail_open = re.search(r'<tr data-kind="Mail Open">(.*?)</tr>', html, flags=re.S).group(1)
    assert 'data-figure="written">25' in mail_open
    assert mail_open.count("<rect") == 1  # one run, written only: bars up
    assert html.count("<tr data-kind=") == 8
    assert "No target-group run has written a report yet." in html


def test_the_page_loads_nothing_from_elsewhere():
    html = page([target_groups_report("scheduled__1", T1, [group("Newsletter")])])
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_the_report_view_renders_markdown_and_shows_raw_html_as_text():
    markdown = "# Target-group sync r1\n\n| group | added |\n|---|---|\n| News | 3 |\n\n<img src=x onerror=alert(1)>\n"
    html = render_report("imis_to_thrive_target_groups", "r1", markdown, known=True)
    assert "<h1>Target-group sync r1</h1>" in html
    assert "<td>News</td>" in html and "<td>3</td>" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '<a class="airflow" href="/dags/imis_to_thrive_target_groups/runs/r1">' in html


def test_the_report_view_says_why_there_is_none():
    assert "writes none" in render_report("example_dag", "r1", None, known=False)
    assert "finish_run task ends" in render_report("imis_to_thrive_target_groups", "r1", None, known=True)
