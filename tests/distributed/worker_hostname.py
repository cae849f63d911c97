"""`[core] hostname_callable` for the distributed test: two workers on one machine record distinct hostnames.

On real machines each worker's own name is what Airflow records; here both run on one, so each worker's
environment names it (IMIS_THRIVE_WORKER_NAME) and task instances say which of the two ran them."""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    return os.environ.get("IMIS_THRIVE_WORKER_NAME") or socket.getfqdn()
