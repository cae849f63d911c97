"""Hooks: an Airflow connection in, a plain client of `include/imis_thrive` out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from include.imis_thrive.errors import BadConnectionSetting
from include.imis_thrive.http_retry import RetryPolicy

# The connection test tries each call once: a person at the *Test* button wants the answer in seconds, and a
# wrong host or password does not get better with retries.
TEST_RETRY = RetryPolicy(max_attempts=1)

if TYPE_CHECKING:
    from pydantic import ValidationError


def endpoint_url(conn_id: str, host: str, port: int | None) -> str:
    """The connection's URL: `host` (https:// when it names no scheme) with the form's *Port* when the host names
    none. The port is optional, but a connection that has one is testable from Airflow 3.3.2's connection list:
    its *Test* button sends an empty port as 0, which the API takes for another destination and refuses (400,
    apache/airflow#73298). A port that contradicts the host's is a setting error, not a guess."""
    url = host if "://" in host else f"https://{host}"
    if not port:
        return url
    parts = urlsplit(url)
    if parts.port is not None and parts.port != port:
        raise BadConnectionSetting(conn_id, "port", f"is {port} but the host {host!r} names port {parts.port}: "
                                   "clear one of them")
    if parts.port is None:
        parts = parts._replace(netloc=f"{parts.netloc}:{port}")
    return urlunsplit(parts)


def invalid_setting(conn_id: str, invalid: ValidationError, field_of: Mapping[str, str]) -> BadConnectionSetting:
    """The first setting the client's config refused, named as the connection form names it (`host`,
    `extra page_size`): a plain pydantic error would be retried by Airflow and name a config attribute."""
    first = invalid.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "?"
    field = field_of.get(name, f"extra {name}")
    shown = "" if name == "password" else f" (got {first.get('input')!r})"
    return BadConnectionSetting(conn_id, field, f"is invalid: {first['msg']}{shown}")


def failed_test(conn_id: str, error: Exception) -> tuple[bool, str]:
    """What the UI's *Test* button shows for an error: its type and first line, secrets masked (the hook masked
    the password before any call); never the traceback, which could carry a request's body."""
    from airflow.sdk.log import redact

    lines = str(error).strip().splitlines()
    return False, f"connection {conn_id}: {type(error).__name__}: {redact(lines[0] if lines else '')}"
