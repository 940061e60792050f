"""Snowflake: fakesnow's server (started by scripts/services.sh) read through StatsigSnowflakeHook.

fakesnow answers every query with one inline result chunk, so the reader's memory grows with the
day here; real Snowflake serves big results as many chunks and `prefetch_threads` bounds them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from statsig_airflow_provider.engine.readers import WarehouseReader
from tests.benchmarks.bench_warehouses import sample_table

PASSWORD = "bench-password-0123"


def _port() -> int:
    return int(os.environ["STATSIG_TEST_FAKESNOW_PORT"])


def load(workdir: Path, rows: int) -> None:
    import pyarrow.parquet as pq
    import snowflake.connector

    parquet = workdir / "events.parquet"
    pq.write_table(sample_table(rows), parquet)
    conn = snowflake.connector.connect(user="bench", password=PASSWORD, account="fakesnow", host="127.0.0.1",
                                       port=_port(), protocol="http", network_timeout=60)
    try:
        cur = conn.cursor()
        cur.execute("CREATE DATABASE IF NOT EXISTS bench")
        cur.execute("CREATE SCHEMA IF NOT EXISTS bench.public")
        # fakesnow passes DuckDB's read_parquet through: loading only, not the path being measured
        cur.execute(f"CREATE OR REPLACE TABLE bench.public.events AS SELECT * FROM read_parquet('{parquet}')")
    finally:
        conn.close()


@contextlib.contextmanager
def open(workdir: Path) -> Iterator[tuple[WarehouseReader, str]]:
    from statsig_airflow_provider.hooks.warehouse import warehouse_reader

    os.environ["AIRFLOW_CONN_BENCH_SNOWFLAKE"] = json.dumps({
        "conn_type": "snowflake", "login": "bench", "password": PASSWORD, "schema": "public",
        "extra": {"account": "fakesnow", "database": "bench", "warehouse": "bench_wh", "host": "127.0.0.1",
                  "port": _port(), "protocol": "http", "network_timeout": 60}})
    import snowflake.connector  # noqa: F401 - the driver's import (about a second, once per process) is not the read

    yield warehouse_reader("bench_snowflake"), "SELECT * FROM bench.public.events"
