"""Fetching an IQA, apart from what is done with it: the only part of an iMIS → Thrive step that talks to iMIS.

The `imis_api` pool holds a slot for a task's whole life (process start, imports, Great Expectations start-up,
validation, diff, snapshot writes). So each sync step is two tasks: a *fetch* task in the pool pages the IQA and
stages the raw frame in the store (`fetched/<iqa>/snapshots/…`, never committed), and the task after it, outside
the pool, reads it back and validates, maps and diffs it. A fetched frame is read by the same run only; stages of
an IQA older than the store's `open_stage_grace` are deleted when it is fetched again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import pandas as pd

from include.imis_thrive.imis.client import ImisClient
from include.imis_thrive.imis.errors import ImisAuthError
from include.imis_thrive.imis.iqa_package import (
    CONTACTS_IQA,
    CONTACTS_IQA_PATH,
    LIST_IQA_COLUMNS,
    PANEL_FIELDS_IQA,
    PANEL_FIELDS_IQA_PATH,
)
from include.imis_thrive.progress import page_progress
from include.imis_thrive.step_result import StepResult
from include.imis_thrive.sync.results import TargetGroup
from include.imis_thrive.sync.snapshots import SnapshotHandle, SnapshotStore, snapshot_name

log = logging.getLogger(__name__)

FETCH_PREFIX = "fetched"


class FetchedIqa(StepResult):
    """An IQA's rows as iMIS returned them, staged for the next task of the run; or why iMIS refused them."""

    iqa: str
    handle: SnapshotHandle | None = None
    rows: int = 0
    denied: str | None = None  # iMIS refused the IQA to this user (a list not shared with Everyone)
    seconds: float


def declared_types(columns: Iterable[Any]) -> dict[str, str]:
    """{alias: iMIS data type} of an IQA template's columns, as `run_iqa` types them."""
    return {column.alias: column.data_type.value for column in columns}


def fetch_iqa(imis: ImisClient, store: SnapshotStore, iqa: str, types: dict[str, str], run_id: str,
              denied_ok: bool = False) -> FetchedIqa:
    """Page `iqa` out of iMIS and stage it; with `denied_ok`, a refusal is returned (the list step reports it)
    instead of raised."""
    started = time.monotonic()
    try:
        frame = imis.run_iqa(iqa, declared_types=types, progress=page_progress(log, f"IQA {iqa}"))
    except ImisAuthError as denied:
        if not denied_ok:
            raise
        return FetchedIqa(iqa=iqa, denied=str(denied), seconds=round(time.monotonic() - started, 2))
    name = fetched_name(iqa)
    handle = store.stage(name, frame, run_id)
    _prune_old_fetches(store, name, keep=handle)
    return FetchedIqa(iqa=iqa, handle=handle, rows=len(frame), seconds=round(time.monotonic() - started, 2))


def fetch_contacts(imis: ImisClient, store: SnapshotStore, run_id: str) -> FetchedIqa:
    """The contacts IQA, for `target_groups.extract_contacts`."""
    return fetch_iqa(imis, store, CONTACTS_IQA_PATH, declared_types(CONTACTS_IQA.columns), run_id)


def fetch_target_group(imis: ImisClient, store: SnapshotStore, group: TargetGroup, run_id: str) -> FetchedIqa:
    """One list IQA, for `target_groups.plan_target_group`; a list discovery already skipped is not fetched, and a
    list iMIS refuses to run comes back `denied` (the plan reports it as not shared with Everyone)."""
    if group.problem:
        return FetchedIqa(iqa=group.iqa, seconds=0.0)
    return fetch_iqa(imis, store, group.iqa, declared_types(LIST_IQA_COLUMNS), run_id, denied_ok=True)


def fetch_panel_fields(imis: ImisClient, store: SnapshotStore, run_id: str) -> FetchedIqa:
    """The panel IQA, for `panel_fields.extract_panel_fields`."""
    return fetch_iqa(imis, store, PANEL_FIELDS_IQA_PATH, declared_types(PANEL_FIELDS_IQA.columns), run_id)


def fetched_frame(store: SnapshotStore, fetched: FetchedIqa) -> pd.DataFrame | None:
    """The frame a fetch task staged, with the `attrs` the next steps name the IQA by (None: nothing fetched)."""
    if fetched.handle is None:
        return None
    frame = store.load(fetched.handle)
    frame.attrs["iqa"] = fetched.iqa
    return frame


def fetched_name(iqa: str) -> str:
    return f"{FETCH_PREFIX}/{snapshot_name(iqa)}"


def _prune_old_fetches(store: SnapshotStore, name: str, keep: SnapshotHandle) -> None:
    """Fetched frames of earlier runs, staged longer than the store's grace ago (no run still reads them)."""
    horizon = store.stage_horizon()
    for key in store.snapshot_keys(name):
        if key != keep.key and key.rsplit("/", 1)[-1] < horizon:
            store.discard(SnapshotHandle(name=name, key=key, run_id="", rows=0, staged_at=""))
