"""`make demo`: the three DAGs against the built-in sandboxes, twice around a sandbox mutation.

Starts the iMIS and Thrive sandboxes (and the alert-mail sink) on the ports airflow_settings.yaml names, runs
each DAG with `airflow dags test` (the Airflow home, connections and pool come from `bin/prepare-airflow-home`),
changes the sandbox as staff and members would (edited contacts, list moves, panel edits, new engagement),
runs everything again, and prints one table row per DAG run. Each run's Airflow log goes to a file; the
snapshots and run reports of this demo live in a fresh folder, printed at the end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.imis_thrive.step_result import StepResult
from include.imis_thrive.sync.results import PanelFieldsReport, TargetGroupsReport
from include.imis_thrive.sync.snapshots import SnapshotStore
from include.imis_thrive.writeback.results import ActivitiesReport
from sandbox.__main__ import RunningSandboxes, running_sandboxes
from sandbox.airflow_settings import PROJECT_ROOT, load_settings

CONTACTS = 3000
ENGAGEMENT_PER_HOUR = 1500
KIND_ABBREVIATIONS = {"Mail Sent": "sent", "Mail Open": "open", "Link Click": "click", "Bad Email": "bad",
                      "Unsubscribe": "unsub", "Resubscribe": "resub", "Landing Page Submit": "form",
                      "Web Tracking Page Visit": "web"}


@dataclass
class RunRow:
    round: int
    dag_id: str
    state: str
    seconds: float
    figures: dict[str, Any]


def main() -> int:
    settings = load_settings()
    busy = [name for name in ("imis_default", "thrive_default", "smtp_default")
            if _port_in_use(settings.connection(name).loopback_port())]
    if busy:
        print(f"The sandbox ports of {', '.join(busy)} are in use: stop `make sandbox` (or whatever holds them) "
              "and run `make demo` again.", file=sys.stderr)
        return 2
    workdir = PROJECT_ROOT / ".data" / "demo" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (workdir / "logs").mkdir(parents=True)
    store = SnapshotStore(str(workdir / "store"))
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    rows: list[RunRow] = []
    print(f"Starting the sandboxes ({CONTACTS:,} contacts) ...", flush=True)
    with running_sandboxes(settings, contacts=CONTACTS, seed=1) as sandboxes:
        for round_number in (1, 2):
            if round_number == 2:
                _mutate(sandboxes)
            rows += _run_round(round_number, sandboxes, store, workdir, hour + timedelta(hours=round_number - 1))
    _print_table(rows)
    print(f"\nRun reports (Markdown and JSON):  {workdir / 'store' / 'reports'}")
    print(f"Snapshots and ledgers:            {workdir / 'store'}")
    print(f"Airflow task logs of each run:    {workdir / 'logs'}")
    failed = [row for row in rows if row.state != "success"]
    if failed:
        print(f"{len(failed)} run(s) failed: see their logs above.", file=sys.stderr)
    return 1 if failed else 0


def _mutate(sandboxes: RunningSandboxes) -> None:
    changed = sandboxes.imis.mutate_contacts(60, seed=7)
    moved = sandboxes.imis.move_list_members("Newsletter", 15, seed=7)
    panel = sandboxes.imis.mutate_panel(40, seed=7)
    print(f"\nMutated the iMIS sandbox: {len(changed)} contacts edited, Newsletter +{len(moved['added'])} "
          f"-{len(moved['removed'])} members, {len(panel)} panel rows edited.\n", flush=True)


def _run_round(number: int, sandboxes: RunningSandboxes, store: SnapshotStore, workdir: Path,
               hour: datetime) -> list[RunRow]:
    print(f"Round {number}:", flush=True)
    rows = [
        _run_dag(number, "imis_to_thrive_target_groups", None, workdir, store, _target_group_figures),
        _run_dag(number, "imis_to_thrive_panel_fields", None, workdir, store, _panel_figures),
    ]
    generated = sandboxes.thrive.generate_engagement(hour, hour + timedelta(hours=1), volume=ENGAGEMENT_PER_HOUR,
                                                     seed=number)
    print(f"  Thrive sandbox: {sum(generated.values()):,} engagement events in [{hour:%H:%M}, "
          f"{hour + timedelta(hours=1):%H:%M}) UTC", flush=True)
    # `airflow dags test` with logical date L runs the hourly interval that ends at L.
    rows.append(_run_dag(number, "thrive_to_imis_activities", hour + timedelta(hours=1), workdir, store,
                         _activity_figures))
    return rows


def _run_dag(number: int, dag_id: str, logical_date: datetime | None, workdir: Path, store: SnapshotStore,
             figures) -> RunRow:
    log_file = workdir / "logs" / f"round{number}-{dag_id}.log"
    command = [str(PROJECT_ROOT / ".venv" / "bin" / "airflow"), "dags", "test", dag_id]
    if logical_date is not None:
        command.append(logical_date.isoformat())
    environment = os.environ | {"AIRFLOW_VAR_IMIS_THRIVE_STORE_URL": str(workdir / "store")}
    started = time.monotonic()
    with log_file.open("w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=environment, check=False)
    seconds = time.monotonic() - started
    state = "success" if completed.returncode == 0 and "state=success" in log_file.read_text() else "failed"
    report = _newest_report(store, dag_id)
    row = RunRow(number, dag_id, state, seconds, figures(report) if report else {})
    print(f"  {dag_id}: {state} in {seconds:.1f}s (log: {log_file.relative_to(PROJECT_ROOT)})", flush=True)
    return row


REPORTS: dict[str, tuple[str, type[StepResult]]] = {
    "imis_to_thrive_target_groups": ("reports/target_groups", TargetGroupsReport),
    "imis_to_thrive_panel_fields": ("reports/panel_fields", PanelFieldsReport),
    "thrive_to_imis_activities": ("reports/activities", ActivitiesReport),
}


def _newest_report(store: SnapshotStore, dag_id: str) -> Any:
    """The JSON report of the DAG's latest run, typed (each run also leaves a readable `.md` beside it)."""
    folder, model = REPORTS[dag_id]
    name = store.newest_name(folder)
    document = store.read_json(f"{folder}/{name}") if name else None
    return model.from_xcom(document) if document else None


def _target_group_figures(report: TargetGroupsReport) -> dict[str, Any]:
    contacts, upsert = report.contacts, report.upsert
    loads = [group.load for group in report.target_groups if group.load]
    return {"rows": contacts.rows if contacts else 0, "added": upsert.diff.added if upsert else 0,
            "changed": upsert.diff.changed if upsert else 0,
            "members +/-": f"+{sum(load.added for load in loads)}/-{sum(load.removed for load in loads)}",
            "quarantined": (contacts.quarantined.rows if contacts else 0) + (upsert.rejected if upsert else 0)}


def _panel_figures(report: PanelFieldsReport) -> dict[str, Any]:
    extract, upsert = report.extract, report.upsert
    return {"rows": extract.rows, "added": upsert.diff.added, "changed": upsert.diff.changed, "members +/-": "",
            "quarantined": extract.quarantined.rows + upsert.rejected}


def _activity_figures(report: ActivitiesReport) -> dict[str, Any]:
    if report.writeback is None:
        return {"rows": 0, "activities": "0"}
    written = report.writeback.written
    by_kind = " ".join(f"{KIND_ABBREVIATIONS.get(kind, kind)}={count}" for kind, count in written.items() if count)
    return {"rows": sum(report.writeback.read.values()),
            "activities": f"{sum(written.values())} ({by_kind})" if written else "0"}


def _print_table(rows: list[RunRow]) -> None:
    columns = ["round", "DAG", "state", "seconds", "rows", "added", "changed", "members +/-", "quarantined",
               "activities"]
    table = [[str(row.round), row.dag_id, row.state, f"{row.seconds:.1f}",
              *(str(row.figures.get(column, "")) for column in columns[4:])] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in table)) for i, column in enumerate(columns)]
    print()
    for line in (columns, ["-" * width for width in widths], *table):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    sys.exit(main())
