"""Airflow hook: the `imis_default` connection -> an `ImisClient`.

Connection fields: host = the iMIS site URL (a path prefix such as `/Asi.Scheduler_X` is allowed), login and
password = the integration user (a RemoteService application user). Extras: `timezone` (the instance's IANA
zone, default UTC), `endpoint` (`query` for /api/query on 20.3.77+, `iqa` for /api/IQA), `page_size` (<= 500),
`max_concurrency`, `token_store_dir` (where workers on one machine share the bearer token; default
`$AIRFLOW_HOME/imis_tokens`). The connection form for these fields is declared in
`include/imis_thrive/provider.py` (Airflow 3.2+ reads forms from provider metadata, not from hook methods).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from pydantic import ValidationError

from include.imis_thrive.airflow.hooks import invalid_setting
from include.imis_thrive.airflow.runtime import quiet_request_logs
from include.imis_thrive.errors import BadConnectionSetting

if TYPE_CHECKING:
    from include.imis_thrive.imis.client import ImisClient, ImisConfig

# ImisConfig's names for the connection's own fields; every other setting is an extra of the same name.
CONNECTION_FIELDS = {"base_url": "host", "username": "login", "password": "password"}


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
            raise BadConnectionSetting(self.imis_conn_id, "host", "(the iMIS site URL) is empty")
        base_url = connection.host if "://" in connection.host else f"https://{connection.host}"
        settings = {key: extra[key] for key in ("timezone", "endpoint", "page_size", "max_concurrency")
                    if extra.get(key) not in (None, "")}
        try:
            return ImisConfig(base_url=base_url, username=connection.login or "",
                              password=connection.password or "", **settings)
        except ValidationError as invalid:
            raise invalid_setting(self.imis_conn_id, invalid, CONNECTION_FIELDS) from invalid

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
