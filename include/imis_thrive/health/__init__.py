"""Sync health: the recent run reports read back (`runs.py`), their figures per target group, field set and
engagement kind (`summary.py`), and the HTML the Airflow plugin serves (`page.py`, `plugins/sync_health.py`)."""
