"""Airflow hook: the `imis_default` connection -> an `ImisClient`.

Connection fields: host = the iMIS site URL (a path prefix such as `/Asi.Scheduler_X` is allowed), login and
password = the integration user (a RemoteService application user). The extras, the connection form's fields
and what this hook reads, are defined once in `include/imis_thrive/airflow/connection_fields.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from include.imis_thrive.airflow.connection_fields import IMIS_EXTRAS, config_names
from include.imis_thrive.airflow.runtime import quiet_request_logs

if TYPE_CHECKING:
    from include.imis_thrive.imis.client import ImisClient, ImisConfig


class ImisHook(BaseHook):
    """Builds the iMIS client; all the HTTP behaviour lives in `include/imis_thrive/imis/client.py`."""

    conn_name_attr = "imis_conn_id"
    default_conn_name = "imis_default"
    conn_type = "imis"
    hook_name = "iMIS (ASI)"

    def __init__(self, imis_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.imis_conn_id = imis_conn_id

    def get_config(self) -> "ImisConfig":
        from include.imis_thrive.imis.client import ImisConfig

        connection = self.get_connection(self.imis_conn_id)
        extra = connection.extra_dejson
        if not connection.host:
            raise ValueError(f"connection {self.imis_conn_id}: host (the iMIS site URL) is empty")
        base_url = connection.host if "://" in connection.host else f"https://{connection.host}"
        settings = {key: extra[key] for key in config_names(IMIS_EXTRAS) if extra.get(key) not in (None, "")}
        return ImisConfig(base_url=base_url, username=connection.login or "", password=connection.password or "",
                          **settings)

    def get_client(self) -> "ImisClient":
        from airflow.sdk.log import mask_secret

        from include.imis_thrive.imis.client import ImisClient
        from include.imis_thrive.imis.tokens import FileTokenStore

        config = self.get_config()
        mask_secret(config.password.get_secret_value())
        quiet_request_logs()
        extra = self.get_connection(self.imis_conn_id).extra_dejson
        store_dir = extra.get("token_store_dir") or Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "imis_tokens"
        return ImisClient(config, token_store=FileTokenStore(store_dir), on_token=mask_secret)
