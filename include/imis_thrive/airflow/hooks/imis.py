"""Airflow hook: the `imis_default` connection -> an `ImisClient`.

Connection fields: host = the iMIS site URL (a path prefix such as `/Asi.Scheduler_X` is allowed), login and
password = the integration user (a RemoteService application user). The extras, the connection form's fields
and what this hook reads, are defined once in `include/imis_thrive/airflow/connection_fields.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook
from pydantic import ValidationError

from include.imis_thrive.airflow.connection_fields import IMIS_EXTRAS, config_names
from include.imis_thrive.airflow.hooks import TEST_RETRY, endpoint_url, failed_test, invalid_setting
from include.imis_thrive.airflow.runtime import quiet_request_logs
from include.imis_thrive.errors import BadConnectionSetting

if TYPE_CHECKING:
    from include.imis_thrive.http_retry import RetryPolicy
    from include.imis_thrive.imis.client import ImisClient, ImisConfig
    from include.imis_thrive.imis.tokens import TokenStore

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

    def get_config(self) -> ImisConfig:
        from include.imis_thrive.imis.client import ImisConfig

        connection = self.get_connection(self.imis_conn_id)
        extra = connection.extra_dejson
        if not connection.host:
            raise BadConnectionSetting(self.imis_conn_id, "host", "(the iMIS site URL) is empty")
        base_url = endpoint_url(self.imis_conn_id, connection.host, connection.port)
        settings = {key: extra[key] for key in config_names(IMIS_EXTRAS) if extra.get(key) not in (None, "")}
        try:
            return ImisConfig(base_url=base_url, username=connection.login or "",
                              password=connection.password or "", **settings)
        except ValidationError as invalid:
            raise invalid_setting(self.imis_conn_id, invalid, CONNECTION_FIELDS) from invalid

    def get_client(self, retry: RetryPolicy | None = None) -> ImisClient:
        """The client; `retry` replaces the config's retry policy (the connection test tries once)."""
        from airflow.sdk.log import mask_secret

        from include.imis_thrive.imis.client import ImisClient

        config = self.get_config()
        if retry is not None:
            config = config.model_copy(update={"retry": retry})
        mask_secret(config.password.get_secret_value())
        quiet_request_logs()
        return ImisClient(config, token_store=self.token_store(), on_token=mask_secret)

    def test_connection(self) -> tuple[bool, str]:
        """The connection form's *Test*: a login with the form's password (its token goes to the shared token
        store, so the workers' next renewal takes it instead of logging in again) and one row of the contacts IQA,
        the read every sync starts with. Never raises; the message never holds the password."""
        from include.imis_thrive.imis.iqa_package import CONTACTS_IQA_PATH

        try:
            with self.get_client(retry=TEST_RETRY) as imis:
                imis.login_and_share()  # a token in the store would let a wrong password pass the test
                page = imis.fetch_page(CONTACTS_IQA_PATH, limit=1)
                user = imis.config.username
        except Exception as error:  # the UI shows any failure as the message, not as a server error
            return failed_test(self.imis_conn_id, error)
        total = "" if page.total_count is None else f" of {page.total_count}"
        return True, (f"logged in as {user!r} and read {len(page.rows)} row{total} of the IQA {CONTACTS_IQA_PATH}")

    def token_store(self) -> TokenStore:
        """Where the bearer token lives: a folder on this machine, or Redis for every worker of a deployment."""
        from include.imis_thrive.imis.tokens import FileTokenStore, RedisTokenStore

        extra = self.get_connection(self.imis_conn_id).extra_dejson
        kind = extra.get("token_store") or "file"
        if kind == "redis":
            url = extra.get("token_store_url")
            if not url:
                raise BadConnectionSetting(self.imis_conn_id, "extra token_store_url", "is empty while token_store "
                                           "is redis: set it to the Redis every worker reaches, e.g. "
                                           "redis://redis:6379/2")
            from airflow.sdk.log import mask_secret

            mask_secret(url)  # a Redis URL may carry a password
            return RedisTokenStore(url)
        if kind != "file":
            raise BadConnectionSetting(self.imis_conn_id, "extra token_store", f"must be file or redis, not {kind!r}")
        default_dir = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "imis_tokens"
        return FileTokenStore(extra.get("token_store_dir") or default_dir)
