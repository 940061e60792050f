"""DuckDBHook: the embedded default warehouse, with an Arrow read path."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.sql.hooks.sql import DbApiHook

from statsig_airflow_provider.engine.readers import DuckDBReader


class DuckDBHook(DbApiHook):
    """A DuckDB database file as an Airflow connection (`host` = the file path).

    DbApiHook gives it `get_records`/`run` like any SQL hook; `warehouse_reader` streams Arrow.
    """

    conn_name_attr = "duckdb_conn_id"
    default_conn_name = "duckdb_default"
    conn_type = "duckdb"
    hook_name = "DuckDB (Statsig provider)"
    placeholder = "?"
    supports_autocommit = False

    def _settings(self) -> tuple[str, bool, str | None]:
        conn = self.get_connection(self.get_conn_id())
        extra = conn.extra_dejson
        read_only = extra.get("read_only")
        return (conn.host or ":memory:", True if read_only is None else bool(read_only),
                extra.get("memory_limit", "512MB"))

    def get_conn(self) -> Any:
        import duckdb

        database, read_only, memory_limit = self._settings()
        config = {"memory_limit": memory_limit} if memory_limit else {}
        return duckdb.connect(database, read_only=read_only and database != ":memory:", config=config)

    def get_uri(self) -> str:
        return f"duckdb:///{self._settings()[0]}"

    def warehouse_reader(self, options: dict[str, Any] | None = None) -> DuckDBReader:
        if options:
            raise ValueError(f"DuckDB connections take no warehouse options; got {sorted(options)}")
        database, read_only, memory_limit = self._settings()
        return DuckDBReader(database, read_only=read_only, memory_limit=memory_limit)
