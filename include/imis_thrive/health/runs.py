"""Where each DAG's run reports live in the snapshot store, and reading the recent ones back.

The three DAGs' `finish_run` write a report per run (`sync/load_cycle.write_report`) at
`<folder>/<snapshot_name(run_id)>` as JSON and Markdown; the Sync health page reads them back here, by DAG and run,
and nothing else: no Airflow, no remote system.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import ValidationError

from include.imis_thrive.health.addresses import (
    ACTIVITIES_DAG,
    PANEL_FIELDS_DAG,
    REPORT_FOLDERS,
    TARGET_GROUPS_DAG,
)
from include.imis_thrive.step_result import StepResult
from include.imis_thrive.sync.results import PanelFieldsReport, TargetGroupsReport
from include.imis_thrive.sync.snapshots import SnapshotStore, snapshot_name
from include.imis_thrive.writeback.results import ActivitiesReport

log = logging.getLogger(__name__)

Report = TypeVar("Report", bound=StepResult)


def report_key(dag_id: str, run_id: str) -> str:
    """The store key of a run's report (without `.json` / `.md`); raises `KeyError` for a DAG without reports."""
    return f"{REPORT_FOLDERS[dag_id]}/{snapshot_name(run_id)}"


@dataclass(frozen=True)
class RecentReports(Generic[Report]):
    """A DAG's last reports, oldest first, and how many stored ones did not fit the report model (written by
    another version of the code): the page says so rather than failing."""

    reports: list[Report]
    unreadable: int = 0

    def __iter__(self) -> Iterator[Report]:
        return iter(self.reports)

    @property
    def last(self) -> Report | None:
        return self.reports[-1] if self.reports else None


def recent_reports(store: SnapshotStore, dag_id: str, model: type[Report], count: int) -> RecentReports[Report]:
    """The `count` reports of `dag_id` written last, oldest first (by their `finished_at`)."""
    folder = REPORT_FOLDERS[dag_id]
    reports: list[Report] = []
    unreadable = 0
    for name in store.newest_names(folder, count):
        document = store.read_json(f"{folder}/{name}")
        if document is None:  # pruned between the listing and the read
            continue
        try:
            reports.append(model.from_xcom(document))
        except ValidationError as misfit:
            unreadable += 1
            log.warning("run report %s/%s does not fit %s (%d errors); left out", folder, name, model.__name__,
                        misfit.error_count())
    reports.sort(key=lambda report: str(getattr(report, "finished_at", "")))
    return RecentReports(reports, unreadable)


def target_group_reports(store: SnapshotStore, count: int) -> RecentReports[TargetGroupsReport]:
    return recent_reports(store, TARGET_GROUPS_DAG, TargetGroupsReport, count)


def panel_field_reports(store: SnapshotStore, count: int) -> RecentReports[PanelFieldsReport]:
    return recent_reports(store, PANEL_FIELDS_DAG, PanelFieldsReport, count)


def activity_reports(store: SnapshotStore, count: int) -> RecentReports[ActivitiesReport]:
    return recent_reports(store, ACTIVITIES_DAG, ActivitiesReport, count)


def readable_report(store: SnapshotStore, dag_id: str, run_id: str) -> str | None:
    """The run's Markdown report, or None when the DAG writes none or the run wrote none (yet)."""
    if dag_id not in REPORT_FOLDERS:
        return None
    return store.read_text(report_key(dag_id, run_id))
