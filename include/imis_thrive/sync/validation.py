"""Great Expectations suites per IQA kind, run in-process before anything reaches Thrive.

Two kinds of rule (each a GX expectation carrying its domain name in `meta`):

- **blocking**: the IQA itself is unusable (no `ID` column, null/duplicate/non-numeric IDs, a required
  column missing, no active record). `validate_iqa` raises `ValidationFailed` naming the IQA, the failed
  rules and their counts, and nothing is loaded.
- **quarantine**: single rows Thrive would reject or truncate (missing or malformed email, text longer than
  the Thrive field). Those rows are returned as a quarantine frame (`ID`, `column`, `reason`) and left out of
  the clean frame; the rest loads.

The summary is small and JSON-serialisable, and holds counts and IDs only, never a member's email or any
other raw value (GX puts sample values in its results; they are dropped here): it travels in XCom and run
reports.

Thrive field lengths are not published for personalization fields; the limits below are choices:
`PrimaryEmailAddress` 100 (Thrive's `<Email>` is String(100), confirmed), `PreferenceToken` 1000 (an opaque
iMIS token, not prose; sized generously), every other text column 255 (the common Thrive String(255)).
Email shape is a regular expression (RE2- and Python-compatible, so pandas runs it vectorised on Arrow
strings): ASCII local part and dot-separated domain labels ending in a TLD of two letters or more.

GX is imported lazily (it takes seconds) with its INFO logging silenced; one ephemeral context per process
is kept and each distinct suite is built once, so a repeat validation costs only the checks themselves.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pandas as pd

from include.imis_thrive.errors import BadData
from include.imis_thrive.sync.field_map import DEFAULT_PERSONALIZATION_MAP, ID_COLUMN, iqa_of

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult

logging.getLogger("great_expectations").setLevel(logging.WARNING)
log = logging.getLogger(__name__)

STATUS_COLUMN = "Status"
ACTIVE_STATUS = "A"
EMAIL_COLUMN = "PrimaryEmailAddress"
ID_PATTERN = r"^[0-9]+$"
EMAIL_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$"
)
DEFAULT_TEXT_LENGTH_LIMIT = 255
THRIVE_LENGTH_LIMITS: Mapping[str, int] = MappingProxyType({EMAIL_COLUMN: 100, "PreferenceToken": 1000})
SAMPLE_IDS_PER_RULE = 10



class IqaKind(StrEnum):
    """What an IQA feeds: the contact fields, a target group's membership, or panel fields."""

    CONTACTS = "contacts"
    LIST = "list"
    PANEL = "panel"


@dataclass(frozen=True)
class Rule:
    """One expectation in the domain's words; hashable so a suite is built once per distinct rule set."""

    name: str
    expectation: str
    kwargs: tuple[tuple[str, Any], ...]
    blocking: bool

    @property
    def column(self) -> str | None:
        return dict(self.kwargs).get("column")


class ValidationFailed(BadData):
    """A blocking expectation failed: the IQA must be fixed before this sync can load anything."""

    def __init__(self, iqa: str, summary: dict[str, Any]) -> None:
        self.iqa = iqa
        self.summary = summary
        blocking = [failure for failure in summary["failed"] if failure["blocking"]]
        details = "; ".join(_describe_failure(failure) for failure in blocking)
        super().__init__(
            f"IQA {iqa!r} failed {len(blocking)} blocking expectation(s) of {summary['evaluated']} "
            f"on {summary['rows']:,} rows, so nothing was loaded: {details}"
        )


@dataclass(frozen=True)
class ValidationOutcome:
    """What passed: the rows to load, the quarantined rows and a summary safe for XCom and reports."""

    clean: pd.DataFrame
    quarantine: pd.DataFrame
    summary: dict[str, Any] = field(repr=False)


def validate_iqa(
    frame: pd.DataFrame, kind: IqaKind | str, length_limits: Mapping[str, int] = THRIVE_LENGTH_LIMITS
) -> ValidationOutcome:
    """Run the kind's suite; raise `ValidationFailed` on a blocking rule, else split clean from quarantined."""
    kind = IqaKind(kind)
    iqa = iqa_of(frame)
    rules = rules_for(kind, frame, length_limits)
    results = _run_suite(kind, rules, frame)
    failed = [_failure(check, frame.get(ID_COLUMN)) for check in results if not check.success]
    summary = {
        "iqa": iqa,
        "kind": kind.value,
        "rows": len(frame),
        "evaluated": len(results),
        "failed": [{key: value for key, value in failure.items() if key != "ids"} for failure in failed],
    }
    if any(failure["blocking"] for failure in failed):
        raise ValidationFailed(iqa, summary | {"success": False})
    quarantine = _quarantine_frame([failure for failure in failed if not failure["blocking"]])
    # with nothing quarantined a shallow copy, not a 0.15 s one of 1M rows: copy-on-write keeps the caller's
    # frame apart all the same
    clean = frame[~frame[ID_COLUMN].isin(quarantine[ID_COLUMN])] if len(quarantine) else frame.copy(deep=False)
    if len(quarantine):
        examples = ", ".join(f"ID {row_id} ({column}: {reason})" for row_id, column, reason in
                             quarantine.head(SAMPLE_IDS_PER_RULE).itertuples(index=False, name=None))
        log.warning("IQA %s: %d row(s) quarantined by validation and left out of this load, e.g. %s",
                    iqa, quarantine[ID_COLUMN].nunique(), examples)
    summary |= {
        "success": True,
        "clean_rows": len(clean),
        "quarantined_rows": len(frame) - len(clean),
    }
    return ValidationOutcome(clean=clean, quarantine=quarantine, summary=summary)


def rules_for(kind: IqaKind, frame: pd.DataFrame, length_limits: Mapping[str, int]) -> tuple[Rule, ...]:
    """The rules this frame must meet; value rules only for columns it has (a missing one blocks anyway)."""
    columns = set(frame.columns)
    required = _required_columns(kind)
    rules = [_rule("required_column", "ExpectColumnToExist", blocking=True, column=name) for name in required]
    if ID_COLUMN not in columns:
        return tuple(rules)
    rules += [
        _rule("id_not_null", "ExpectColumnValuesToNotBeNull", blocking=True, column=ID_COLUMN),
        _rule("id_unique", "ExpectColumnValuesToBeUnique", blocking=True, column=ID_COLUMN),
        _rule("id_numeric", "ExpectColumnValuesToMatchRegex", blocking=True, column=ID_COLUMN, regex=ID_PATTERN),
    ]
    rules += _active_record_rules(kind, columns)
    if kind is IqaKind.CONTACTS and EMAIL_COLUMN in columns:
        rules += [
            _rule("email_missing", "ExpectColumnValuesToNotBeNull", blocking=False, column=EMAIL_COLUMN),
            _rule(
                "email_invalid", "ExpectColumnValuesToMatchRegex", blocking=False,
                column=EMAIL_COLUMN, regex=EMAIL_PATTERN,
            ),
        ]
    for name in _thrive_text_columns(kind, frame):
        limit = length_limits.get(name, DEFAULT_TEXT_LENGTH_LIMIT)
        rules.append(
            _rule(
                f"longer_than_{limit}", "ExpectColumnValueLengthsToBeBetween", blocking=False,
                column=name, max_value=limit,
            )
        )
    return tuple(rules)


def _required_columns(kind: IqaKind) -> list[str]:
    if kind is IqaKind.CONTACTS:
        return [ID_COLUMN, STATUS_COLUMN, *DEFAULT_PERSONALIZATION_MAP.values()]
    return [ID_COLUMN]


def _active_record_rules(kind: IqaKind, columns: set[str]) -> list[Rule]:
    """A list IQA is usable only with an active record (DESIGN §1); without a Status column, any record."""
    if STATUS_COLUMN in columns and kind is not IqaKind.PANEL:
        return [
            _rule(
                "active_record", "ExpectColumnDistinctValuesToContainSet", blocking=True,
                column=STATUS_COLUMN, value_set=[ACTIVE_STATUS],
            )
        ]
    if kind is IqaKind.LIST:
        return [_rule("has_records", "ExpectTableRowCountToBeBetween", blocking=True, min_value=1)]
    return []


def _thrive_text_columns(kind: IqaKind, frame: pd.DataFrame) -> list[str]:
    """Text columns whose values reach a Thrive field (the email has its own limit among them)."""
    if kind is IqaKind.CONTACTS:
        candidates = list(DEFAULT_PERSONALIZATION_MAP.values())
    elif kind is IqaKind.PANEL:
        candidates = [name for name in frame.columns if name != ID_COLUMN]
    else:
        return []
    return [
        name for name in candidates
        if name in frame.columns and isinstance(frame[name].dtype, pd.StringDtype)
    ]


def _rule(name: str, expectation: str, blocking: bool, **kwargs: Any) -> Rule:
    frozen = tuple((key, tuple(value) if isinstance(value, list) else value) for key, value in kwargs.items())
    return Rule(name=name, expectation=expectation, kwargs=frozen, blocking=blocking)


def _failure(check: Any, row_ids: pd.Series | None) -> dict[str, Any]:
    """One failed expectation as counts and IDs: GX names the offending rows by position (`RESULT_FORMAT`), and
    positions become IDs in one step; raw values stay behind (GX leaves them out of the result)."""
    config = check.expectation_config
    result = check.result or {}
    positions = result.get("unexpected_index_list") or []
    ids = [] if row_ids is None or not positions else row_ids.iloc[positions].dropna().astype(str).tolist()
    errors = _evaluation_errors(check.exception_info)
    for message in errors:
        log.warning("GX could not evaluate rule %s (%s): %s", config.meta["rule"], config.type, message)
    return {
        "rule": config.meta["rule"],
        "expectation": config.type,
        "column": config.kwargs.get("column"),
        # a rule GX could not evaluate vouches for no row: fail closed
        "blocking": config.meta["blocking"] or bool(errors),
        "unexpected_count": result.get("unexpected_count"),
        "sample_ids": list(dict.fromkeys(ids))[:SAMPLE_IDS_PER_RULE],
        "evaluation_error": bool(errors),
        "ids": ids,
    }


def _evaluation_errors(exception_info: Mapping[str, Any] | None) -> list[str]:
    """GX reports a raised metric either flat or keyed by metric id; collect the messages of both shapes."""
    info = exception_info or {}
    entries = [info] if "raised_exception" in info else list(info.values())
    return [
        str(entry.get("exception_message"))
        for entry in entries
        if isinstance(entry, Mapping) and entry.get("raised_exception")
    ]


def _describe_failure(failure: Mapping[str, Any]) -> str:
    rule, column = failure["rule"], failure["column"]
    if failure["evaluation_error"]:
        return f"{rule}: GX could not evaluate {failure['expectation']} on {column!r} (the task log has the error)"
    if rule == "required_column":
        return f"required_column: the IQA does not return column {column!r}"
    if rule == "active_record":
        return f"active_record: no record has {STATUS_COLUMN} {ACTIVE_STATUS!r}"
    if rule == "has_records":
        return "has_records: the IQA returned no records"
    examples = f" (e.g. ID {', '.join(failure['sample_ids'])})" if failure["sample_ids"] else ""
    return (
        f"{rule}: {failure['expectation']} on {column!r} found {failure['unexpected_count']:,} "
        f"unexpected value(s){examples}"
    )


def _quarantine_frame(failures: list[dict[str, Any]]) -> pd.DataFrame:
    parts = [
        pd.DataFrame({ID_COLUMN: failure["ids"], "column": failure["column"], "reason": failure["rule"]})
        for failure in failures
    ]
    empty = pd.DataFrame({ID_COLUMN: [], "column": [], "reason": []})
    return pd.concat([empty, *parts], ignore_index=True).astype("str")


_gx_lock = threading.Lock()

RESULT_FORMAT: Mapping[str, Any] = MappingProxyType({
    "result_format": "COMPLETE",
    "partial_unexpected_count": 0,
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
})
"""COMPLETE for every offending row (to quarantine it), as a position and without its value: `_run_suite` hands
GX the frame on a RangeIndex and `_failure` turns positions into IDs in one vectorised step. Naming the ID column
instead (`unexpected_index_column_names`) makes GX look up each offending row's ID and value one `.at` at a time:
5.1 s of CPU instead of 0.95 s for 1M contacts with 100k malformed emails (`bench/bench_validation.py`)."""


def _run_suite(
    kind: IqaKind, rules: tuple[Rule, ...], frame: pd.DataFrame, result_format: Mapping[str, Any] = RESULT_FORMAT
) -> list[ExpectationValidationResult]:
    """The suite's results on the frame, by the same two Validator calls `ValidationDefinition.run` makes.

    `ValidationDefinition.run` (and `Batch.validate`, which rebuilds its Batch the same way) gets its Batch
    from `DataFrameAsset.get_batch`, whose execution engine fingerprints every frame under 1 GB with
    `pd.util.hash_pandas_object` for a batch marker nothing reads: 57% of a 1M-row run, and GX has no
    option to skip it. So the Batch is built here as `get_batch` builds it, without the fingerprint, and
    validated directly; the run also skips the in-memory results store, which would keep every run's
    results for the life of the process."""
    positional = frame if frame.index.equals(pd.RangeIndex(len(frame))) else frame.reset_index(drop=True)
    with _gx_lock:
        context, asset = _gx_context()
        validator = context.get_validator(batch=_batch_of(asset, positional))
        configurations = validator.process_expectations_for_validation(
            _suite(kind, rules).expectation_configurations
        )
        return validator.graph_validate(
            configurations=configurations, runtime_configuration={"result_format": dict(result_format)}
        )


def _batch_of(asset: Any, frame: pd.DataFrame) -> Any:
    """The Batch `DataFrameAsset.get_batch` returns for `{"dataframe": frame}`, minus the frame's hash."""
    from great_expectations.core.batch import BatchMarkers, LegacyBatchDefinition
    from great_expectations.core.batch_spec import RuntimeDataBatchSpec
    from great_expectations.datasource.fluent.batch_identifier_util import make_batch_identifier
    from great_expectations.datasource.fluent.interfaces import Batch
    from great_expectations.execution_engine.pandas_batch_data import PandasBatchData

    datasource = asset.datasource
    batch_request = asset.build_batch_request(options={"dataframe": frame})
    loaded_at = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return Batch(
        datasource=datasource,
        data_asset=asset,
        batch_request=batch_request,
        data=PandasBatchData(execution_engine=datasource.get_execution_engine(), dataframe=frame),
        batch_markers=BatchMarkers({"ge_load_time": loaded_at}),
        batch_spec=RuntimeDataBatchSpec(batch_data="PandasDataFrame"),
        batch_definition=LegacyBatchDefinition(
            datasource_name=datasource.name,
            data_connector_name="fluent",
            data_asset_name=asset.name,
            batch_identifiers=make_batch_identifier(batch_request.options),
        ),
    )


@functools.lru_cache(maxsize=64)
def _suite(kind: IqaKind, rules: tuple[Rule, ...]) -> Any:
    """The GX suite for one rule set, built once per process."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    _gx_context()  # a suite is built inside the process's context
    name = f"{kind.value}-{hashlib.sha256(repr(rules).encode()).hexdigest()[:16]}"
    expectations = [
        getattr(gxe, rule.expectation)(
            **{key: list(value) if isinstance(value, tuple) else value for key, value in rule.kwargs},
            meta={"rule": rule.name, "blocking": rule.blocking},
        )
        for rule in rules
    ]
    return gx.ExpectationSuite(name=name, expectations=expectations)


@functools.cache
def _gx_context() -> tuple[Any, Any]:
    """One ephemeral context per process and its pandas frame asset, progress bars off: tqdm output would flood
    the task logs. Its stores are in memory without the temporary Data Docs site `get_context(mode="ephemeral")`
    adds by default: nothing here builds Data Docs, and making one logs a "Created temporary directory ... for
    ephemeral docs site" line at INFO in every task that validates (its module sets its own logger to INFO, past
    the WARNING set above). GX 1.24 sends no usage statistics (it ships no analytics client)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                               progress_bars=ProgressBarsConfig(globally=False))
    context = gx.get_context(project_config=config, mode="ephemeral")
    return context, context.data_sources.add_pandas("imis").add_dataframe_asset("iqa_frame")
