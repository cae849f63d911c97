"""Committed snapshots of what Thrive was last sent, shared by every worker through object storage.

Layout under the base (a local folder by default, or any fsspec URL: `s3://bucket/prefix`, `memory://x`):

    <name>/CURRENT.json                            the pointer: which snapshot is committed, and its history
    <name>/snapshots/<staged-at>-<run>-<token>.parquet
    <key>.json                                     small documents (run reports, quarantine state)

A run *stages* its new snapshot under a name of its own, loads Thrive, and only then *commits*: one whole
write of the pointer (one PUT on S3, temp file + `os.replace` locally), so a reader sees either the old
snapshot or the new one, never a mix. A staged snapshot that is never committed (the load failed, the
worker was killed) is invisible and the next run diffs against the previous one and resends what was missed.
After a commit, snapshots outside the last `keep` committed ones are deleted once they are older than
`open_stage_grace`: a younger one may belong to a run that is still loading (a refresh beside the hourly run).

Two runs may commit at once. The pointer and the shared ledgers are written *conditionally* (S3: `If-Match` on
the ETag read, `If-None-Match: *` for a first write; a local folder: an exclusive lock around read-compare-write),
so a writer that lost the race re-reads and decides again instead of overwriting the winner.

fsspec is used directly rather than `airflow.sdk.ObjectStoragePath`: without the Amazon provider and an
Airflow connection, ObjectStoragePath has no filesystem for `s3://` ("No filesystem registered for scheme
s3"), and these modules must run and be tested without Airflow. Credentials come from `storage_options`
(a hook can build them from a connection) or the environment, never from this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import posixpath
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from include.imis_thrive.errors import BadConfiguration, TransientTrouble
from include.imis_thrive.sync.diff import SnapshotRows, is_row_hash_column
from include.imis_thrive.sync.field_map import ID_COLUMN

log = logging.getLogger(__name__)

POINTER_OBJECT = "CURRENT.json"
SNAPSHOT_FOLDER = "snapshots"
DEFAULT_KEEP = 3
# Longer than any run stays between staging and committing (tasks retry at most ~30 minutes apart).
DEFAULT_OPEN_STAGE_GRACE = timedelta(hours=6)
CONDITIONAL_WRITE_ATTEMPTS = 20
STAGED_AT_FORMAT = "%Y%m%dT%H%M%S%fZ"
_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9]+")


class SnapshotError(BadConfiguration):
    """The snapshot store is not in the state this operation needs; the message says what to do.

    Bad configuration: a task retry finds the store as it left it; a person restores an object or re-runs the sync."""


class StoreConflict(TransientTrouble):
    """Another writer changed a document between this writer's read and its conditional write (again and again,
    when it escapes: a retry of the task reads afresh)."""


# Memory filesystems live in this process: a lock per path stands in for a conditional write.
_MEMORY_LOCKS: dict[str, threading.Lock] = {}
_MEMORY_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class SnapshotHandle:
    """A staged snapshot: small and JSON-friendly, so it can travel in XCom from the stage to the commit."""

    name: str
    key: str  # object path relative to the store's base
    run_id: str
    rows: int
    staged_at: str  # UTC, sortable: %Y%m%dT%H%M%S%fZ

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> SnapshotHandle:
        return cls(**{name: document[name] for name in cls.__dataclass_fields__})


def snapshot_name(subject: str) -> str:
    """A storage-safe, readable and collision-free name for an IQA path or target group.

    `$/HigherLogic/MailingLists/Board Members` → `higherlogic-mailinglists-board-members-<8 hex>`; the hash
    of the exact text keeps `Board Members` and `Board_Members` apart.
    """
    slug = _UNSAFE_CHARACTERS.sub("-", subject).strip("-").lower()[:80]
    digest = hashlib.sha256(subject.encode()).hexdigest()[:8]
    return f"{slug}-{digest}" if slug else digest


class SnapshotStore:
    """Stage, commit and read Parquet snapshots and small JSON documents under one base URL or folder."""

    def __init__(self, base: str, keep: int = DEFAULT_KEEP, storage_options: Mapping[str, Any] | None = None,
                 open_stage_grace: timedelta = DEFAULT_OPEN_STAGE_GRACE):
        if keep < 1:
            raise ValueError(f"SnapshotStore keep must be at least 1 (the committed snapshot), got {keep}")
        self.base = base
        self.keep = keep
        self.open_stage_grace = open_stage_grace
        self.fs, self._root = fsspec.core.url_to_fs(base, **dict(storage_options or {}))
        self._local = isinstance(self.fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"SnapshotStore({self.base!r}, keep={self.keep})"

    def stage(self, name: str, frame: pd.DataFrame, run_id: str) -> SnapshotHandle:
        """Write `frame` as a new, not yet visible snapshot of `name`; commit the handle after loading."""
        staged_at = datetime.now(UTC).strftime(STAGED_AT_FORMAT)
        run_part = _UNSAFE_CHARACTERS.sub("_", run_id).strip("_")[:80]
        key = f"{_checked(name)}/{SNAPSHOT_FOLDER}/{staged_at}-{run_part}-{uuid.uuid4().hex[:8]}.parquet"
        path = self._path(key)
        self._make_parent(path)
        with self.fs.open(path, "wb") as sink:
            frame.to_parquet(sink, engine="pyarrow", index=False)
        handle = SnapshotHandle(name=name, key=key, run_id=run_id, rows=len(frame), staged_at=staged_at)
        log.info("staged snapshot %s: %d rows at %s", name, len(frame), key)
        return handle

    def commit(self, handle: SnapshotHandle) -> None:
        """Make the staged snapshot the committed one (one conditional pointer write), then prune old ones.

        Committing the already-committed handle again is a no-op, so the commit task is safe to retry. When
        another run's commit lands between this one's read and write, this one reads again and decides again.
        """
        for attempt in range(CONDITIONAL_WRITE_ATTEMPTS):
            pointer, version = self._read_versioned(self._pointer_path(handle.name))
            current = pointer["current"] if pointer else None
            if current and current["key"] == handle.key:
                return
            self._check_committable(handle, current)
            history = [handle.key, *(pointer["history"] if pointer else [])][: self.keep]
            committed = handle.as_dict() | {"committed_at": datetime.now(UTC).isoformat()}
            try:
                self._write_if_unchanged(self._pointer_path(handle.name),
                                         _json_bytes({"current": committed, "history": history}), version)
            except StoreConflict:
                log.info("another run committed %s meanwhile; reading its pointer again", handle.name)
                _back_off(attempt)
                continue
            log.info("committed snapshot %s: %d rows at %s", handle.name, handle.rows, handle.key)
            self._prune(handle, history)
            return
        raise StoreConflict(f"the pointer of {handle.name!r} in {self.base!r} changed under every one of "
                            f"{CONDITIONAL_WRITE_ATTEMPTS} commit attempts; re-run the sync")

    def _check_committable(self, handle: SnapshotHandle, current: Mapping[str, Any] | None) -> None:
        if current and current["staged_at"] > handle.staged_at:
            raise SnapshotError(
                f"snapshot {handle.key!r} of {handle.name!r} was staged before the committed "
                f"{current['key']!r}; committing it would roll the baseline back, so it was not committed"
            )
        if not self.fs.exists(self._path(handle.key)):
            raise SnapshotError(
                f"staged snapshot {handle.key!r} of {handle.name!r} no longer exists in {self.base!r} "
                "(pruned after a newer commit, or never written); re-run the sync to stage it again"
            )

    def commit_over(self, name: str, run_id: str, based_on: SnapshotHandle | None,
                    build: Callable[[pd.DataFrame | None, pd.DataFrame | None], pd.DataFrame]) -> SnapshotHandle:
        """Stage and commit `build(latest, base)`: the committed frame now and the one this run diffed against
        (`based_on`; the same frame when nobody committed since). If another run commits between this one's read
        and its pointer write, the frame is built again over theirs, so neither run's record is lost."""
        for attempt in range(CONDITIONAL_WRITE_ATTEMPTS):
            pointer, version = self._read_versioned(self._pointer_path(name))
            current = SnapshotHandle.from_dict(pointer["current"]) if pointer else None
            latest = self.load(current) if current else None
            if based_on is None or (current is not None and current.key == based_on.key):
                base = latest if based_on is not None else None
            else:
                base = self.load(based_on)
            handle = self.stage(name, build(latest, base).reset_index(drop=True), run_id)
            history = [handle.key, *(pointer["history"] if pointer else [])][: self.keep]
            committed = handle.as_dict() | {"committed_at": datetime.now(UTC).isoformat()}
            try:
                self._write_if_unchanged(self._pointer_path(name),
                                         _json_bytes({"current": committed, "history": history}), version)
            except StoreConflict:  # the stage that lost is left to prune: it is invisible and costs nothing
                log.info("another run committed %s meanwhile; merging over its snapshot", name)
                _back_off(attempt)
                continue
            log.info("committed snapshot %s: %d rows at %s", name, handle.rows, handle.key)
            self._prune(handle, history)
            return handle
        raise StoreConflict(f"the pointer of {name!r} in {self.base!r} changed under every one of "
                            f"{CONDITIONAL_WRITE_ATTEMPTS} commit attempts; re-run the sync")

    def update_json(self, key: str, change: Callable[[dict[str, Any] | None], Mapping[str, Any]]) -> str:
        """Read-modify-write of `<key>.json` that loses no concurrent update: `change` gets the stored document
        (None when absent) and returns the new one; if another writer got in between, it runs again on theirs."""
        path = self._path(f"{_checked(key)}.json")
        for attempt in range(CONDITIONAL_WRITE_ATTEMPTS):
            document, version = self._read_versioned(path)
            try:
                self._write_if_unchanged(path, _json_bytes(change(document)), version)
            except StoreConflict:
                _back_off(attempt)
                continue
            return self.fs.unstrip_protocol(path)
        raise StoreConflict(f"{key}.json in {self.base!r} changed under every one of {CONDITIONAL_WRITE_ATTEMPTS} "
                            "update attempts; re-run the task")

    def read(self, name: str) -> pd.DataFrame | None:
        """The committed snapshot of `name`, with its dtypes, or None when nothing was committed yet."""
        handle = self.current(name)
        if handle is None:
            return None
        return self._read_frame(handle, f"the pointer of {name!r} in {self.base!r} names {handle.key!r}, which is "
                                        f"missing; restore that object, or delete {name}/{POINTER_OBJECT} to start "
                                        "again from a first run")

    def load(self, handle: SnapshotHandle) -> pd.DataFrame:
        """A staged (or committed) snapshot by its handle: how later tasks of the same run read a stage."""
        return self._read_frame(handle, self._gone(handle))

    def _gone(self, handle: SnapshotHandle) -> str:
        return (f"staged snapshot {handle.key!r} of {handle.name!r} is gone from {self.base!r} (staged on another "
                "machine, with a store local to it? or pruned after a newer commit?); re-run the sync to stage it "
                "again")

    def load_keys(self, handle: SnapshotHandle, columns: Sequence[str] = ()) -> SnapshotRows:
        """A snapshot's ID, row-hash and `columns` columns, its other columns read later for the rows a diff
        asks for: what a diff's previous side needs, without a million rows' text in memory."""
        with self._opened(handle, self._gone(handle)) as source:
            names = pq.read_schema(source).names
            wanted = [ID_COLUMN, *(name for name in columns if name != ID_COLUMN),
                      *(name for name in names if is_row_hash_column(name))]
            source.seek(0)
            keys = pd.read_parquet(source, engine="pyarrow", columns=wanted)
        return SnapshotRows(keys=keys, columns=tuple(names), read=lambda rows: self._read_rows(handle, rows))

    def _read_rows(self, handle: SnapshotHandle, rows: np.ndarray) -> pd.DataFrame:
        """Every column of a snapshot's rows at these positions, one column read (and dropped) at a time, with
        the dtypes `load` gives (the schema's pandas metadata)."""
        with self._opened(handle, self._gone(handle)) as source:
            parquet = pq.ParquetFile(source)
            schema = parquet.schema_arrow
            if not len(rows):  # nothing differs: no column need be read
                return schema.empty_table().to_pandas()
            taken = {name: parquet.read(columns=[name]).column(0).take(pa.array(rows, type=pa.int64()))
                     for name in schema.names}
        return pa.table(taken).replace_schema_metadata(schema.metadata).to_pandas()

    def _read_frame(self, handle: SnapshotHandle, when_missing: str) -> pd.DataFrame:
        with self._opened(handle, when_missing) as source:
            return pd.read_parquet(source, engine="pyarrow")

    @contextmanager
    def _opened(self, handle: SnapshotHandle, when_missing: str) -> Iterator[Any]:
        """The snapshot's Parquet object, open for reading; `SnapshotError(when_missing)` when it is gone."""
        path = self._path(handle.key)
        # s3fs answers "not found" from a folder listing it cached (a prune lists the folder) for an object another
        # process wrote since: the listing is dropped first, so only an object really gone is missing.
        self.fs.invalidate_cache(posixpath.dirname(path))
        try:
            with self.fs.open(path, "rb") as source:
                yield source
        except FileNotFoundError as missing:
            raise SnapshotError(when_missing) from missing

    def current(self, name: str) -> SnapshotHandle | None:
        """The handle of the committed snapshot of `name`, or None."""
        pointer = self._read_pointer(name)
        return SnapshotHandle.from_dict(pointer["current"]) if pointer else None

    def write_json(self, key: str, document: Mapping[str, Any]) -> str:
        """Store a small JSON document whole at `<key>.json` (atomically, like the pointer); returns its URL."""
        path = self._path(f"{_checked(key)}.json")
        self._write_whole(path, _json_bytes(document))
        return self.fs.unstrip_protocol(path)

    def write_text(self, key: str, text: str, suffix: str = ".md") -> str:
        """Store a small text document (a readable run report) whole at `<key><suffix>`; returns its URL."""
        path = self._path(f"{_checked(key)}{suffix}")
        self._write_whole(path, text.encode())
        return self.fs.unstrip_protocol(path)

    def read_text(self, key: str, suffix: str = ".md") -> str | None:
        """The text document stored at `<key><suffix>` (`write_text`), or None."""
        try:
            return self.fs.cat_file(self._path(f"{_checked(key)}{suffix}")).decode()
        except FileNotFoundError:
            return None

    def json_names(self, folder: str) -> list[str]:
        """The JSON documents directly under `folder`, by name without `.json`, sorted (none: empty list)."""
        return sorted(name.removesuffix(".json") for name in self._listing(folder) if name.endswith(".json"))

    def newest_name(self, folder: str, suffix: str = ".json") -> str | None:
        """The document under `folder` written last (e.g. the latest run report), by name without `suffix`."""
        newest = self.newest_names(folder, 1, suffix)
        return newest[0] if newest else None

    def newest_names(self, folder: str, count: int, suffix: str = ".json") -> list[str]:
        """The `count` documents under `folder` written last, newest first, by name without `suffix`: the
        recent run reports without reading a year of hourly ones."""
        listing = {name: info for name, info in self._listing(folder).items() if name.endswith(suffix)}
        newest = sorted(listing, key=lambda name: (_modified(listing[name]), name), reverse=True)[:count]
        return [name.removesuffix(suffix) for name in newest]

    def snapshot_keys(self, name: str) -> list[str]:
        """Keys of every snapshot object of `name` still stored, staged or committed, sorted (oldest first)."""
        folder = f"{_checked(name)}/{SNAPSHOT_FOLDER}"
        return sorted(f"{folder}/{item}" for item in self._listing(folder))

    def stage_horizon(self) -> str:
        """Stages named (they begin with their `staged_at`) below this string are older than `open_stage_grace`."""
        return (datetime.now(UTC) - self.open_stage_grace).strftime(STAGED_AT_FORMAT)

    def size(self, handle: SnapshotHandle) -> int:
        """Bytes of a snapshot's Parquet object."""
        return int(self.fs.size(self._path(handle.key)))

    def discard(self, handle: SnapshotHandle) -> None:
        """Delete a snapshot object that will never be committed; one already gone is not an error."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._path(handle.key))

    def _listing(self, folder: str) -> dict[str, dict[str, Any]]:
        """The objects directly under `folder`, by base name, with their fsspec info (none: empty)."""
        path = self._path(_checked(folder))
        self.fs.invalidate_cache(path)
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return {}
        return {posixpath.basename(entry["name"].rstrip("/")): entry for entry in entries}

    def delete_json(self, key: str) -> None:
        """Remove the document at `<key>.json`; one already gone is not an error (a concurrent delete won)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._path(f"{_checked(key)}.json"))

    def read_json(self, key: str) -> dict[str, Any] | None:
        """The document stored at `<key>.json`, or None."""
        try:
            return json.loads(self.fs.cat_file(self._path(f"{_checked(key)}.json")))
        except FileNotFoundError:
            return None

    def _read_pointer(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(self._pointer_path(name)))
        except FileNotFoundError:
            return None

    def _prune(self, committed: SnapshotHandle, history: list[str]) -> None:
        """Delete snapshots outside the kept history staged before the committed one, but only those staged
        `open_stage_grace` ago or more: a younger one may be the stage of a run still loading."""
        folder = self._path(f"{committed.name}/{SNAPSHOT_FOLDER}")
        self.fs.invalidate_cache(folder)
        kept = {self._path(key) for key in history}
        settled_before = min(self.stage_horizon(), posixpath.basename(committed.key))
        stale = [path for path in self.fs.ls(folder, detail=False)
                 if path not in kept and posixpath.basename(path) < settled_before]
        if stale:
            self.fs.rm(stale)
            log.info("pruned %d old snapshot(s) of %s", len(stale), committed.name)

    def _read_versioned(self, path: str) -> tuple[dict[str, Any] | None, str | None]:
        """A JSON document and the version a conditional write compares against (S3: its ETag; elsewhere: a
        digest of its bytes), or (None, None) when it does not exist."""
        if self._is_s3():
            for _ in range(CONDITIONAL_WRITE_ATTEMPTS):
                try:
                    before = self.fs.info(path, refresh=True)["ETag"]
                    data = self.fs.cat_file(path)
                    if self.fs.info(path, refresh=True)["ETag"] == before:  # the bytes belong to that ETag
                        return json.loads(data), before
                except FileNotFoundError:
                    return None, None
            raise StoreConflict(f"{path} kept changing while it was read")
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return None, None
        return json.loads(data), _digest(data)

    def _write_if_unchanged(self, path: str, data: bytes, version: str | None) -> None:
        """Write `data` only if the object is still at `version` (None: still absent); else StoreConflict."""
        if self._is_s3():
            condition = {"IfMatch": version} if version else {"mode": "create"}
            try:
                self.fs.pipe_file(path, data, **condition)
            except OSError as refused:  # 412 PreconditionFailed: FileExistsError or EINVAL, by s3fs's mapping
                landed, stored_version = self._read_versioned(path)
                if landed == json.loads(data):
                    return  # our PUT landed and its retry (botocore's, after a lost answer) met our own ETag
                if stored_version == version:
                    raise
                raise StoreConflict(f"{path} was changed by another writer") from refused
            return
        with self._exclusive(path):
            try:
                stored: str | None = _digest(self.fs.cat_file(path))
            except FileNotFoundError:
                stored = None
            if stored != version:
                raise StoreConflict(f"{path} was changed by another writer")
            self._write_whole(path, data)

    @contextmanager
    def _exclusive(self, path: str) -> Iterator[None]:
        """Mutual exclusion for read-compare-write: a lock on the document's folder locally (every process on
        this machine), a process lock for `memory://`. Other filesystems offer no conditional write fsspec can reach."""
        if self._local:
            self._make_parent(path)
            folder = os.open(posixpath.dirname(path), os.O_RDONLY)  # the folder itself: no lock file to leave
            try:
                fcntl.flock(folder, fcntl.LOCK_EX)
                yield
            finally:
                os.close(folder)  # releases the lock
            return
        with _MEMORY_LOCKS_GUARD:
            lock_for_path = _MEMORY_LOCKS.setdefault(f"{self.fs.protocol}:{path}", threading.Lock())
        with lock_for_path:
            yield

    def _is_s3(self) -> bool:
        return "s3" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def _write_whole(self, path: str, data: bytes) -> None:
        """Replace an object in one step: a single PUT remotely, temp file + fsync + rename locally."""
        self._make_parent(path)
        if not self._local:
            self.fs.pipe_file(path, data)
            return
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(temporary, "wb") as sink:
            sink.write(data)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temporary, path)

    def _make_parent(self, path: str) -> None:
        if self._local:
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)

    def _pointer_path(self, name: str) -> str:
        return self._path(f"{_checked(name)}/{POINTER_OBJECT}")

    def _path(self, key: str) -> str:
        return posixpath.join(self._root, key) if self._root else key


def _checked(key: str) -> str:
    """Keys are relative, slash-separated and plain (no `..`, no spaces): safe on every filesystem."""
    if not _SAFE_KEY.fullmatch(key):
        raise ValueError(
            f"snapshot store key {key!r} must be letters, digits, '.', '_' or '-' segments separated by '/'; "
            "use snapshot_name() to derive one from an IQA path"
        )
    return key


def _back_off(attempt: int) -> None:
    """A random pause that grows with each lost race, so writers that keep colliding spread out (at most ~2 s)."""
    time.sleep(random.uniform(0, min(2.0, 0.01 * 2**attempt)))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _modified(info: Mapping[str, Any]) -> float:
    """When an object was last written, whatever the filesystem calls it (local `mtime`, S3 `LastModified`)."""
    moment = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    return moment.timestamp() if isinstance(moment, datetime) else float(moment)


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
