"""Provider metadata: registers the `imis` and `thrive` connection types with their form fields.

Airflow 3.2+ reads connection forms declaratively from provider info (`conn-fields`, `ui-field-behaviour`);
the old hook methods `get_connection_form_widgets` / `get_ui_field_behaviour` are deprecated. The project is
installed into its virtualenv as a package whose `apache_airflow_provider` entry point (pyproject.toml) points
here, so the UI's connection form shows these fields. The extras come from `connection_fields.py`, as the
hooks' reading of them does. The hooks are named by their dotted paths in this package
(`include.imis_thrive.airflow.hooks`), importable like any module.
"""

from __future__ import annotations

from typing import Any

from include.imis_thrive.airflow.connection_fields import IMIS_EXTRAS, THRIVE_EXTRAS, form_fields

IMIS_CONNECTION = {
    "connection-type": "imis",
    "hook-class-name": "include.imis_thrive.airflow.hooks.imis.ImisHook",
    "hook-name": "iMIS (ASI)",
    "ui-field-behaviour": {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "iMIS site URL", "port": "Port", "login": "Integration user", "password": "Password"},
        "placeholders": {"host": "https://members.example.org or https://host/Asi.Scheduler_Prod_Imis",
                         "login": "HL_INTEGRATION"},
    },
    "conn-fields": form_fields(IMIS_EXTRAS),
}

THRIVE_CONNECTION = {
    "connection-type": "thrive",
    "hook-class-name": "include.imis_thrive.airflow.hooks.thrive.ThriveHook",
    "hook-name": "Higher Logic Thrive Marketing Professional (Informz)",
    "ui-field-behaviour": {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "AAPI endpoint URL", "port": "Port", "login": "API user", "password": "Password"},
        "placeholders": {"host": "https://<partner>.informz.net/aapi/InformzService.svc"},
    },
    "conn-fields": form_fields(THRIVE_EXTRAS),
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "imis-thrive-integration",
        "name": "iMIS <-> Higher Logic Thrive Marketing Professional",
        "description": "Connection types for the iMIS and Thrive integration DAGs",
        "connection-types": [IMIS_CONNECTION, THRIVE_CONNECTION],
    }
