"""Every description of the `imis` and `thrive` connections agrees with `connection_fields`: the form Airflow
shows, what the hooks read, the client configs' defaults, the README's table and `airflow_settings.yaml`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from include.imis_thrive.airflow.connection_fields import IMIS_EXTRAS, THRIVE_EXTRAS, ConnectionExtra, config_names
from include.imis_thrive.airflow.hooks.imis import ImisHook
from include.imis_thrive.airflow.hooks.thrive import ThriveHook
from include.imis_thrive.imis.client import ImisConfig
from include.imis_thrive.thrive.client import ThriveConfig

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONNECTIONS = {"imis": ("imis_default", IMIS_EXTRAS, ImisConfig),
               "thrive": ("thrive_default", THRIVE_EXTRAS, ThriveConfig)}
BASE = {"imis": {"host": "https://members.example.org", "login": "HL_INTEGRATION", "password": "p", "extra": {}},
        "thrive": {"host": "https://partner.informz.net/aapi/InformzService.svc", "login": "api", "password": "p",
                   "extra": {"brand_id": "7001", "brand_name": "My Association"}}}
# A value other than the default for each extra a hook passes to its config: a new extra needs one here.
NOT_DEFAULT = {"imis": {"timezone": "America/Chicago", "endpoint": "iqa", "page_size": 250, "max_concurrency": 8,
                        "verify": False, "ca_bundle": "/etc/ssl/private-ca.pem"},
               "thrive": {"bulk_threshold": 2500, "bulk_chunk_size": 1000, "poll_interval_s": 0.5,
                          "poll_timeout_s": 60.0, "timeout_s": 30.0, "compress_grids": True, "startrow_base": 1,
                          "verify": False, "ca_bundle": "/etc/ssl/private-ca.pem"}}


def _names(extras: tuple[ConnectionExtra, ...]) -> set[str]:
    return {extra.name for extra in extras}


def _set_connection(monkeypatch, conn_type: str, extra: dict) -> None:
    conn_id = CONNECTIONS[conn_type][0]
    document = BASE[conn_type] | {"conn_type": conn_type, "extra": BASE[conn_type]["extra"] | extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(document))


@pytest.mark.parametrize("conn_type", CONNECTIONS)
def test_the_connection_form_shows_exactly_the_defined_extras(conn_type):
    from airflow.providers_manager import ProvidersManager

    prefix = f"extra__{conn_type}__"
    widgets = {name.removeprefix(prefix): widget for name, widget in ProvidersManager().connection_form_widgets.items()
               if name.startswith(prefix)}
    extras = CONNECTIONS[conn_type][1]
    assert set(widgets) == _names(extras)
    for extra in extras:
        field = widgets[extra.name].field
        assert (field["schema"]["title"], field["description"], field["value"]) == (
            extra.label, extra.description, extra.default), extra.name


@pytest.mark.parametrize("conn_type", CONNECTIONS)
def test_the_hook_passes_every_config_extra_to_the_client(monkeypatch, conn_type):
    extras, config_class = CONNECTIONS[conn_type][1:]
    assert set(NOT_DEFAULT[conn_type]) == set(config_names(extras))
    _set_connection(monkeypatch, conn_type, NOT_DEFAULT[conn_type])
    config = (ImisHook() if conn_type == "imis" else ThriveHook()).get_config()

    assert isinstance(config, config_class)
    assert {name: getattr(config, name) for name in NOT_DEFAULT[conn_type]} == NOT_DEFAULT[conn_type]


@pytest.mark.parametrize("conn_type", CONNECTIONS)
def test_the_form_defaults_are_the_client_config_defaults(conn_type):
    extras, config_class = CONNECTIONS[conn_type][1:]
    for extra in extras:
        if extra.to_config:
            assert config_class.model_fields[extra.name].default == extra.default, extra.name


@pytest.mark.parametrize("name", [extra.name for extra in THRIVE_EXTRAS if extra.required])
def test_a_missing_required_extra_is_named(monkeypatch, name):
    _set_connection(monkeypatch, "thrive", {name: None})
    with pytest.raises(Exception, match=f"extra {name}"):
        ThriveHook().get_config()


def _readme_extras(conn_id: str) -> set[str]:
    """The backticked names in the `extra …` rows of the README's connection table, under `conn_id`'s rows."""
    names: set[str] = set()
    current = None
    for line in (PROJECT_ROOT / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 3:
            current = None if not line.startswith("|") else current
            continue
        if cells[0]:
            current = cells[0].split()[0].strip("`")
        if current == conn_id and cells[1].startswith("extra "):
            names |= set(re.findall(r"`([^`]+)`", cells[1]))
    return names


@pytest.mark.parametrize("conn_type", CONNECTIONS)
def test_the_readme_table_lists_exactly_the_defined_extras(conn_type):
    conn_id, extras, _ = CONNECTIONS[conn_type]
    assert _readme_extras(conn_id) == _names(extras)


@pytest.mark.parametrize("conn_type", CONNECTIONS)
def test_airflow_settings_use_only_defined_extras_and_set_the_required_ones(conn_type):
    settings = yaml.safe_load((PROJECT_ROOT / "airflow_settings.yaml").read_text())["airflow"]["connections"]
    [connection] = [item for item in settings if item["conn_type"] == conn_type]
    extras = CONNECTIONS[conn_type][1]
    assert set(connection.get("conn_extra") or {}) <= _names(extras)
    assert {extra.name for extra in extras if extra.required} <= set(connection.get("conn_extra") or {})


class _ReadKeys(dict):
    """An `extra_dejson` that notes every key read from it."""

    read: ClassVar[set[str]] = set()

    def get(self, key, default=None):
        _ReadKeys.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        _ReadKeys.read.add(key)
        return super().__getitem__(key)


@pytest.mark.parametrize("conn_type", CONNECTIONS)
def test_every_extra_a_hook_reads_is_on_the_form(monkeypatch, conn_type):
    from airflow.sdk import Connection

    _set_connection(monkeypatch, conn_type, {"token_store": "redis", "token_store_url": "redis://localhost:1/2"}
                    if conn_type == "imis" else {})
    monkeypatch.setattr(Connection, "extra_dejson", property(lambda self: _ReadKeys(json.loads(self.extra or "{}"))))
    _ReadKeys.read = set()

    hook = ImisHook() if conn_type == "imis" else ThriveHook()
    hook.get_config()
    if conn_type == "imis":
        hook.token_store()
        monkeypatch.setenv("AIRFLOW_CONN_IMIS_DEFAULT", json.dumps(BASE["imis"] | {"conn_type": "imis"}))
        hook.token_store()  # the file store reads its folder

    assert _ReadKeys.read and _ReadKeys.read <= _names(CONNECTIONS[conn_type][1])
    if conn_type == "imis":
        assert {"token_store", "token_store_url", "token_store_dir"} <= _ReadKeys.read
