"""Airflow hook: the `thrive_default` connection -> a `ThriveClient`.

Connection fields: host = the full AAPI endpoint URL (e.g. https://partner.informz.net/aapi/InformzService.svc),
login and password = the API user. The extras (`brand_id`, `brand_name` and `status_email_recipients` read here,
the others passed to `ThriveConfig`), the connection form's fields included, are defined once in
`include/imis_thrive/airflow/connection_fields.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseHook
from pydantic import ValidationError

from include.imis_thrive.airflow.connection_fields import THRIVE_EXTRAS, config_names
from include.imis_thrive.airflow.hooks import TEST_RETRY, endpoint_url, failed_test, invalid_setting
from include.imis_thrive.airflow.runtime import quiet_request_logs
from include.imis_thrive.errors import BadConnectionSetting

if TYPE_CHECKING:
    from include.imis_thrive.http_retry import RetryPolicy
    from include.imis_thrive.thrive.client import ThriveClient, ThriveConfig

# ThriveConfig's names for the connection's own fields; every other setting is an extra of the same name.
CONNECTION_FIELDS = {"endpoint": "host", "user": "login", "password": "password"}
OPTIONAL_EXTRAS = config_names(THRIVE_EXTRAS)


def recipients_of(value: str | list[str] | None) -> list[str]:
    """`status_email_recipients` as a list, whether the extra holds a JSON list or a comma-separated string."""
    items = value if isinstance(value, list) else (value or "").split(",")
    return [str(item).strip() for item in items if str(item).strip()]


class ThriveHook(BaseHook):
    """Builds the Thrive client; all the SOAP behaviour lives in `include/imis_thrive/thrive/client.py`."""

    conn_name_attr = "thrive_conn_id"
    default_conn_name = "thrive_default"
    conn_type = "thrive"
    hook_name = "Higher Logic Thrive Marketing Professional (Informz AAPI)"

    def __init__(self, thrive_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.thrive_conn_id = thrive_conn_id

    def get_config(self) -> ThriveConfig:
        from include.imis_thrive.thrive.client import ThriveConfig

        connection = self.get_connection(self.thrive_conn_id)
        extra = connection.extra_dejson
        required = (("host", connection.host), ("login", connection.login), ("password", connection.password),
                    ("extra brand_id", extra.get("brand_id")), ("extra brand_name", extra.get("brand_name")))
        missing = [name for name, value in required if not value]
        if missing or not connection.host:
            raise BadConnectionSetting(self.thrive_conn_id, ", ".join(missing), "must be set")
        endpoint = endpoint_url(self.thrive_conn_id, connection.host, connection.port)
        settings = {key: extra[key] for key in OPTIONAL_EXTRAS if extra.get(key) not in (None, "")}
        try:
            return ThriveConfig(endpoint=endpoint, brand_id=str(extra["brand_id"]),
                                brand_name=str(extra["brand_name"]), user=connection.login,
                                password=connection.password,
                                status_email_recipients=recipients_of(extra.get("status_email_recipients")),
                                **settings)
        except ValidationError as invalid:
            raise invalid_setting(self.thrive_conn_id, invalid, CONNECTION_FIELDS) from invalid

    def get_client(self, retry: RetryPolicy | None = None) -> ThriveClient:
        """The client; `retry` replaces the config's retry policy (the connection test tries once)."""
        from airflow.sdk.log import mask_secret

        from include.imis_thrive.thrive.client import ThriveClient

        config = self.get_config()
        if retry is not None:
            config = config.model_copy(update={"retry": retry})
        mask_secret(config.password.get_secret_value())
        quiet_request_logs()
        return ThriveClient(config)

    def test_connection(self) -> tuple[bool, str]:
        """The connection form's *Test*: one grid request (the Count row of the target-group grid), which Thrive
        answers only for a valid brand, user and password from an allowed IP. Never raises; the message never
        holds the password."""
        from include.imis_thrive.thrive.grids import Grid

        try:
            with self.get_client(retry=TEST_RETRY) as thrive:
                groups = thrive.count(Grid.INTEREST_TARGET_GROUP)
                config = thrive.config
        except Exception as error:  # the UI shows any failure as the message, not as a server error
            return failed_test(self.thrive_conn_id, error)
        return True, (f"logged in as {config.user!r} to brand {config.brand_name!r} ({config.brand_id}) and read "
                      f"the target-group grid: {groups} target groups")
