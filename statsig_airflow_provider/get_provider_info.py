"""Provider metadata Airflow reads through the `apache_airflow_provider` entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "statsig-airflow-provider",
        "name": "Statsig",
        "description": "Warehouse data into Statsig (custom events and precomputed metrics), one day at a time, "
                       "never twice: Statsig Cloud's Data Warehouse Ingestion inside your own Airflow.",
        "connection-types": [
            {
                "connection-type": "statsig",
                "hook-class-name": "statsig_airflow_provider.hooks.statsig.StatsigHook",
                "hook-name": "Statsig",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Events API base URL", "password": "Server secret"},
                    "placeholders": {
                        "host": "https://events.statsigapi.net (empty: Statsig; set it for a proxy or the emulator)",
                        "password": "secret-...",
                    },
                },
                "conn-fields": {
                    "api_url": {
                        "label": "API base URL",
                        "description": "Base of mark_data_ready_dwh and the key check; default https://api.statsig.com/v1",
                        "schema": {"type": ["string", "null"]},
                    },
                    "timeout_seconds": {
                        "label": "Request timeout (s)",
                        "description": "How long to wait for Statsig's answer once a request is sent",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                },
            },
            {
                "connection-type": "duckdb",
                "hook-class-name": "statsig_airflow_provider.hooks.duckdb.DuckDBHook",
                "hook-name": "DuckDB (Statsig provider)",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "password"],
                    "relabeling": {"host": "Database file"},
                    "placeholders": {"host": "/data/warehouse.duckdb"},
                },
                "conn-fields": {
                    "memory_limit": {
                        "label": "Memory limit",
                        "description": "DuckDB memory_limit for reads (e.g. 512MB); keeps memory flat on big days",
                        "schema": {"type": ["string", "null"]},
                    },
                    "read_only": {
                        "label": "Read only",
                        "schema": {"type": ["boolean", "null"]},
                    },
                },
            },
        ],
        "config": {
            "statsig": {
                "description": "Statsig ingestion provider settings.",
                "options": {
                    "ledger_conn_id": {
                        "description": "Airflow connection of the SQL database that holds the ingestion ledger "
                                       "(use PostgreSQL when several workers run). Empty: ledger_url.",
                        "version_added": "0.1.0", "type": "string", "example": "statsig_ledger", "default": "",
                    },
                    "ledger_url": {
                        "description": "SQLAlchemy URL of the ledger when no ledger_conn_id is set. "
                                       "Empty: an SQLite file under $AIRFLOW_HOME/statsig/.",
                        "version_added": "0.1.0", "type": "string", "example": "sqlite:////data/ledger.sqlite",
                        "default": "",
                    },
                    "rejects_dir": {
                        "description": "Folder for rejected-row files. Empty: $AIRFLOW_HOME/statsig/rejects.",
                        "version_added": "0.1.0", "type": "string", "example": "/data/statsig/rejects",
                        "default": "",
                    },
                },
            },
        },
    }
