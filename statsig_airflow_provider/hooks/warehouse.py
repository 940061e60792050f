"""From an Airflow connection id to the engine's warehouse read interface.

Each warehouse keeps its official hook for connections and auth; what the engine gets is a
`WarehouseReader` streaming Arrow from the fastest path underneath. Drivers are imported only
when a reader is built, never at DAG-parse time.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseHook

from statsig_airflow_provider.engine.readers import AdbcReader, DbApiReader, WarehouseReader

# Airflow connection type → sqlglot dialect of its SQL.
DIALECTS = {
    "duckdb": "duckdb", "sqlite": "sqlite", "postgres": "postgres", "mysql": "mysql",
    "snowflake": "snowflake", "gcpbigquery": "bigquery", "google_cloud_platform": "bigquery",
    "redshift": "redshift", "databricks": "databricks", "mssql": "tsql", "odbc": "tsql", "athena": "athena",
}

# Connection types whose reader comes from a hook of this provider (module, class). Each hook has a
# `warehouse_reader()` returning the engine's read interface over the warehouse's fastest Arrow path.
PROVIDER_HOOKS = {
    "duckdb": ("statsig_airflow_provider.hooks.duckdb", "DuckDBHook"),
    "snowflake": ("statsig_airflow_provider.hooks.snowflake", "StatsigSnowflakeHook"),
    "gcpbigquery": ("statsig_airflow_provider.hooks.bigquery", "StatsigBigQueryHook"),
    "google_cloud_platform": ("statsig_airflow_provider.hooks.bigquery", "StatsigBigQueryHook"),
    "redshift": ("statsig_airflow_provider.hooks.redshift", "StatsigRedshiftHook"),
    "databricks": ("statsig_airflow_provider.hooks.databricks", "StatsigDatabricksHook"),
    "odbc": ("statsig_airflow_provider.hooks.synapse", "StatsigSynapseHook"),
    "mssql": ("statsig_airflow_provider.hooks.synapse", "StatsigSynapseHook"),
    "aws": ("statsig_airflow_provider.hooks.s3", "StatsigS3Hook"),
    "athena": ("statsig_airflow_provider.hooks.athena", "StatsigAthenaHook"),
}


def warehouse_reader(conn_id: str, options: Mapping[str, Any] | None = None) -> WarehouseReader:
    """The reader for a warehouse connection; raises ValueError for connections it cannot read.

    `options` are the source's `warehouse.options`, which the warehouse's hook checks and uses.
    """
    conn = BaseHook.get_connection(conn_id)
    conn_type = conn.conn_type or ""
    if conn_type in PROVIDER_HOOKS:
        module, name = PROVIDER_HOOKS[conn_type]
        hook_class = getattr(importlib.import_module(module), name)
        return hook_class(**{hook_class.conn_name_attr: conn_id}).warehouse_reader(dict(options or {}))
    if options:
        raise ValueError(f"connection {conn_id!r} (type {conn_type!r}) takes no warehouse options; "
                         f"got {sorted(options)}")
    if conn_type == "postgres":
        return _postgres_reader(conn_id)
    if conn_type == "sqlite":
        return _sqlite_reader(conn_id, conn)
    hook = conn.get_hook()
    if not hasattr(hook, "get_conn") or not hasattr(hook, "get_records"):
        raise ValueError(f"connection {conn_id!r} (type {conn_type!r}) is not a SQL warehouse this provider can read")
    return DbApiReader(hook.get_conn, dialect=DIALECTS.get(conn_type, conn_type),
                       description=f"{conn_type} connection {conn_id!r}")


def _postgres_reader(conn_id: str) -> WarehouseReader:
    """PostgreSQL: ADBC (binary COPY straight into Arrow) when installed, else a server-side cursor."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=conn_id)
    description = f"postgres connection {conn_id!r}"
    adbc = _optional("adbc_driver_postgresql.dbapi")
    if adbc is not None:
        uri = hook.sqlalchemy_url.set(drivername="postgresql").render_as_string(hide_password=False)
        return AdbcReader(lambda: adbc.connect(uri), dialect="postgres", description=description)
    return DbApiReader(hook.get_conn, dialect="postgres", description=description, server_side=True)


def _sqlite_reader(conn_id: str, conn: Any) -> WarehouseReader:
    """SQLite: ADBC when installed (Arrow batches), else the stdlib driver's rows."""
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    hook = SqliteHook(sqlite_conn_id=conn_id)
    description = f"sqlite connection {conn_id!r}"
    adbc = _optional("adbc_driver_sqlite.dbapi")
    path = conn.host or ""
    if adbc is not None and path and "://" not in path:
        return AdbcReader(lambda: adbc.connect(path), dialect="sqlite", description=description)
    return DbApiReader(hook.get_conn, dialect="sqlite", description=description)


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
