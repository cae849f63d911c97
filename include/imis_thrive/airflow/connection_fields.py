"""The extras of the `imis` and `thrive` connections, defined once.

The connection forms (provider metadata), the hooks' reading of `extra` and the README's connection table all
come from these tables, and tests hold each of them to it. Import-free on purpose: the providers manager loads
it with the provider metadata, before any hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

JsonType = Literal["string", "integer", "number", "boolean"]


@dataclass(frozen=True)
class ConnectionExtra:
    """One key of a connection's `extra`: what the form shows and how the hook treats it.

    `to_config` says the hook hands the value to the client's config under the same name, unchanged (pydantic
    checks it there); the others the hook reads itself (e.g. a list to split, a folder for the token store).
    """

    name: str
    label: str
    description: str
    type: JsonType = "string"
    default: Any = None
    required: bool = False
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    to_config: bool = True

    def form_field(self) -> dict[str, Any]:
        """The `conn-fields` entry Airflow 3.2+ builds the connection form from (a JSON schema per field)."""
        schema: dict[str, Any] = {"type": self.type if self.required else [self.type, "null"]}
        optional = {"default": self.default, "minimum": self.minimum, "maximum": self.maximum}
        schema |= {key: value for key, value in optional.items() if value is not None}
        if self.choices:
            schema["enum"] = [*self.choices] if self.required else [*self.choices, None]
        return {"label": self.label, "description": self.description, "schema": schema}


def form_fields(extras: Sequence[ConnectionExtra]) -> dict[str, dict[str, Any]]:
    return {extra.name: extra.form_field() for extra in extras}


def config_names(extras: Sequence[ConnectionExtra]) -> tuple[str, ...]:
    """The extras a hook passes to the client's config as they are."""
    return tuple(extra.name for extra in extras if extra.to_config)


IMIS_EXTRAS: tuple[ConnectionExtra, ...] = (
    ConnectionExtra("timezone", "Instance time zone",
                    "IANA zone of the iMIS server: iMIS reads and writes naive local times", default="UTC"),
    ConnectionExtra("endpoint", "Query endpoint", "query = /api/query (iMIS 20.3.77+); iqa = the older /api/IQA",
                    default="query", choices=("query", "iqa")),
    ConnectionExtra("page_size", "Page size", "Rows per page; iMIS caps pages at 500", type="integer",
                    default=500, minimum=1, maximum=500),
    ConnectionExtra("max_concurrency", "Concurrent requests", "Pages fetched at once within one task",
                    type="integer", default=4, minimum=1, maximum=16),
    ConnectionExtra("verify", "Verify TLS certificate",
                    "Check the site's TLS certificate (default on); turn off only for a test host",
                    type="boolean", default=True),
    ConnectionExtra("ca_bundle", "CA bundle",
                    "Path on every worker to the PEM file of the CA that signed the site's certificate (a "
                    "private CA); verification stays on"),
    ConnectionExtra("token_store", "Token store",
                    "file = workers on one machine share the bearer token through a folder; redis = every worker "
                    "of the deployment shares one (needed on Celery or Kubernetes: iMIS keeps one token per user)",
                    default="file", choices=("file", "redis"), to_config=False),
    ConnectionExtra("token_store_dir", "Token store folder",
                    "token_store = file: the folder (default $AIRFLOW_HOME/imis_tokens)", to_config=False),
    ConnectionExtra("token_store_url", "Token store Redis URL",
                    "token_store = redis: e.g. redis://redis:6379/2 (the Celery broker's Redis will do)",
                    to_config=False),
)

THRIVE_EXTRAS: tuple[ConnectionExtra, ...] = (
    ConnectionExtra("brand_id", "Brand ID", "The Thrive brand (account) id carried in every document",
                    required=True, to_config=False),
    ConnectionExtra("brand_name", "Brand name", "The brand's name, as Thrive shows it", required=True,
                    to_config=False),
    ConnectionExtra("status_email_recipients", "BulkUpload status e-mail recipients",
                    "Comma-separated addresses that receive Thrive's upload reports; Thrive requires at least one "
                    "for every BulkUpload (every large upsert and every membership removal)", to_config=False),
    ConnectionExtra("bulk_threshold", "BulkUpload threshold",
                    "Above this many subscribers, upsert with BulkUpload instead of Subscribe calls of 1,000",
                    type="integer", default=5000, minimum=0, maximum=10_000_000),
    ConnectionExtra("bulk_chunk_size", "BulkUpload chunk size", "Rows per BulkUpload", type="integer",
                    default=50_000, minimum=1),
    ConnectionExtra("poll_interval_s", "BulkUpload poll interval (s)",
                    "Seconds between checks of a BulkUpload's status", type="number", default=5.0, minimum=0),
    ConnectionExtra("poll_timeout_s", "BulkUpload poll timeout (s)",
                    "How long to wait for a BulkUpload to finish", type="number", default=3600.0, minimum=1),
    ConnectionExtra("timeout_s", "Request timeout (s)", "Seconds one AAPI call may take", type="number",
                    default=120.0, minimum=0),
    ConnectionExtra("verify", "Verify TLS certificate",
                    "Check the endpoint's TLS certificate (default on); turn off only for a test host",
                    type="boolean", default=True),
    ConnectionExtra("ca_bundle", "CA bundle",
                    "Path on every worker to the PEM file of the CA that signed the endpoint's certificate (a "
                    "private CA); verification stays on"),
    ConnectionExtra("compress_grids", "Compress grid requests",
                    "Send grid requests compressed and read compressed replies (vendor page \"Making the Call\")",
                    type="boolean", default=False),
    ConnectionExtra("startrow_base", "First StartRow",
                    "0 or 1: the tenant's first StartRow (no vendor page says which); empty = detected once per "
                    "task; bin/check-thrive tells", type="integer", choices=(0, 1)),
)
