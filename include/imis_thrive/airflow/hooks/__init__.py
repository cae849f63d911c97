"""Hooks: an Airflow connection in, a plain client of `include/imis_thrive` out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from include.imis_thrive.errors import BadConnectionSetting

if TYPE_CHECKING:
    from pydantic import ValidationError


def invalid_setting(conn_id: str, invalid: ValidationError, field_of: Mapping[str, str]) -> BadConnectionSetting:
    """The first setting the client's config refused, named as the connection form names it (`host`,
    `extra page_size`): a plain pydantic error would be retried by Airflow and name a config attribute."""
    first = invalid.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "?"
    field = field_of.get(name, f"extra {name}")
    shown = "" if name == "password" else f" (got {first.get('input')!r})"
    return BadConnectionSetting(conn_id, field, f"is invalid: {first['msg']}{shown}")
