"""Read `airflow_settings.yaml` (astro CLI schema) and write it into plain Airflow's metadata DB.

Airflow itself never reads that file (reference/airflow.md §2.7), and its keys (`conn_host`, …) differ from
what `airflow connections import` takes, so this module is the translator. It is also how the sandbox
runner learns its ports and credentials, keeping the settings file the one place that says them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SETTINGS_FILE = PROJECT_ROOT / "airflow_settings.yaml"


class ConnectionSetting(BaseModel):
    conn_id: str
    conn_type: str
    conn_host: str | None = None
    conn_schema: str | None = None
    conn_login: str | None = None
    conn_password: str | None = None
    conn_port: int | None = None
    conn_extra: dict[str, Any] = Field(default_factory=dict)

    def loopback_port(self) -> int:
        """The port a sandbox for this connection listens on (from the host URL, or `conn_port`)."""
        if self.conn_port:
            return self.conn_port
        port = urlsplit(self.conn_host or "").port
        if port is None:
            raise ValueError(f"connection {self.conn_id}: host {self.conn_host!r} names no port")
        return port

    def url_path(self) -> str:
        return urlsplit(self.conn_host or "").path


class PoolSetting(BaseModel):
    pool_name: str
    pool_slot: int
    pool_description: str = ""


class VariableSetting(BaseModel):
    variable_name: str
    variable_value: str


class AirflowSettings(BaseModel):
    connections: list[ConnectionSetting] = Field(default_factory=list)
    pools: list[PoolSetting] = Field(default_factory=list)
    variables: list[VariableSetting] = Field(default_factory=list)

    def connection(self, conn_id: str) -> ConnectionSetting:
        for connection in self.connections:
            if connection.conn_id == conn_id:
                return connection
        raise KeyError(f"{conn_id} is not declared in airflow_settings.yaml")


def load_settings(path: Path = SETTINGS_FILE) -> AirflowSettings:
    document = yaml.safe_load(path.read_text()) or {}
    return AirflowSettings.model_validate(document.get("airflow") or {})


def apply_settings(settings: AirflowSettings) -> list[str]:
    """Upsert every connection, pool and variable; returns one line per item for the operator to read."""
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    done: list[str] = []
    with create_session() as session:
        for item in settings.connections:
            connection = session.query(Connection).filter(Connection.conn_id == item.conn_id).one_or_none()
            if connection is None:
                connection = Connection(conn_id=item.conn_id)
                session.add(connection)
            connection.conn_type = item.conn_type
            connection.host = item.conn_host
            connection.schema = item.conn_schema
            connection.login = item.conn_login
            connection.password = item.conn_password
            connection.port = item.conn_port
            connection.extra = json.dumps(item.conn_extra) if item.conn_extra else None
            done.append(f"connection {item.conn_id} ({item.conn_type}) -> {item.conn_host}")
        for pool in settings.pools:
            Pool.create_or_update_pool(
                name=pool.pool_name, slots=pool.pool_slot, description=pool.pool_description,
                include_deferred=False, session=session,
            )
            done.append(f"pool {pool.pool_name} ({pool.pool_slot} slots)")
        for variable in settings.variables:
            Variable.set(variable.variable_name, variable.variable_value, session=session)
            done.append(f"variable {variable.variable_name}")
    return done


def main() -> None:
    for line in apply_settings(load_settings()):
        print(f"applied {line}")


if __name__ == "__main__":
    main()
