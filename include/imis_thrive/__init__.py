"""The integration's domain code: importable and testable without a running Airflow."""
