"""Provider metadata: registers the `imis` and `thrive` connection types with their form fields.

Airflow 3.2+ reads connection forms declaratively from provider info (`conn-fields`, `ui-field-behaviour`);
the old hook methods `get_connection_form_widgets` / `get_ui_field_behaviour` are deprecated. The project is
installed into its virtualenv as a package whose `apache_airflow_provider` entry point (pyproject.toml) points
here, so the UI's connection form shows these fields. The hooks are named by their dotted paths in this
package (`include.imis_thrive.airflow.hooks`), importable like any module.
"""

from __future__ import annotations

from typing import Any


def _text(label: str, description: str, default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if default is not None:
        schema["default"] = default
    return {"label": label, "description": description, "schema": schema}


def _integer(label: str, description: str, default: int, minimum: int, maximum: int) -> dict[str, Any]:
    return {"label": label, "description": description,
            "schema": {"type": ["integer", "null"], "default": default, "minimum": minimum, "maximum": maximum}}


IMIS_CONNECTION = {
    "connection-type": "imis",
    "hook-class-name": "include.imis_thrive.airflow.hooks.imis.ImisHook",
    "hook-name": "iMIS (ASI)",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port"],
        "relabeling": {"host": "iMIS site URL", "login": "Integration user", "password": "Password"},
        "placeholders": {"host": "https://members.example.org or https://host/Asi.Scheduler_Prod_Imis",
                         "login": "HL_INTEGRATION"},
    },
    "conn-fields": {
        "timezone": _text("Instance time zone", "IANA zone of the iMIS server: its datetimes are naive local time",
                          "UTC"),
        "endpoint": {"label": "Query endpoint", "description": "query = /api/query (iMIS 20.3.77+); iqa = /api/IQA",
                     "schema": {"type": ["string", "null"], "enum": ["query", "iqa", None], "default": "query"}},
        "page_size": _integer("Page size", "Rows per page; iMIS caps pages at 500", 500, 1, 500),
        "max_concurrency": _integer("Concurrent requests", "Pages fetched at once within one task", 4, 1, 16),
        "token_store_dir": _text("Token store folder",
                                 "Where workers on one machine share the bearer token (default $AIRFLOW_HOME/imis_tokens)"),
    },
}

THRIVE_CONNECTION = {
    "connection-type": "thrive",
    "hook-class-name": "include.imis_thrive.airflow.hooks.thrive.ThriveHook",
    "hook-name": "Higher Logic Thrive Marketing Professional (Informz)",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port"],
        "relabeling": {"host": "AAPI endpoint URL", "login": "API user", "password": "Password"},
        "placeholders": {"host": "https://<partner>.informz.net/aapi/InformzService.svc"},
    },
    "conn-fields": {
        "brand_id": _text("Brand ID", "The Thrive brand (account) id carried in every document"),
        "brand_name": _text("Brand name", "The brand's name, as Thrive shows it"),
        "bulk_threshold": _integer("BulkUpload threshold", "Above this many subscribers, upsert with BulkUpload "
                                   "instead of Subscribe calls of 1,000", 5000, 0, 10_000_000),
        "status_email_recipients": _text("BulkUpload status e-mail recipients",
                                         "Comma-separated addresses; Thrive requires at least one for every BulkUpload"),
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "imis-thrive-integration",
        "name": "iMIS <-> Higher Logic Thrive Marketing Professional",
        "description": "Connection types for the iMIS and Thrive integration DAGs",
        "connection-types": [IMIS_CONNECTION, THRIVE_CONNECTION],
    }
