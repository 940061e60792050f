"""Redshift's in-band read: the real redshift_connector (via RedshiftSQLHook) through the start-up
proxy to PostgreSQL, server-side cursor, rows transposed to Arrow (scripts/services.d/redshift.sh).

Big days go through UNLOAD in production; reading UNLOAD's Parquet back is the `s3` stand-in's
read. This measures the small-day path, whose cost is the pure-Python driver.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from statsig_airflow_provider.engine.readers import WarehouseReader
from tests.benchmarks.bench_warehouses import sample_table


def _dsn() -> urllib.parse.SplitResult:
    return urllib.parse.urlsplit(os.environ["STATSIG_TEST_REDSHIFT_DSN"])


def load(workdir: Path, rows: int) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    rs, pg = _dsn(), urllib.parse.urlsplit(os.environ["STATSIG_TEST_PG_DSN"])
    with adbc.connect(f"postgresql://{rs.username}:{rs.password}@{pg.hostname}:{pg.port}{rs.path}") as conn, \
            conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_events")
        cur.adbc_ingest("bench_events", sample_table(rows), mode="create")
        conn.commit()


@contextlib.contextmanager
def open(workdir: Path) -> Iterator[tuple[WarehouseReader, str]]:
    from statsig_airflow_provider.hooks.redshift import StatsigRedshiftHook

    rs = _dsn()
    os.environ["AIRFLOW_CONN_BENCH_REDSHIFT"] = json.dumps({
        "conn_type": "redshift", "host": rs.hostname, "port": rs.port, "login": rs.username,
        "password": rs.password, "schema": rs.path.lstrip("/"), "extra": {"ssl": False, "timeout": 30}})
    reader = StatsigRedshiftHook(redshift_conn_id="bench_redshift").warehouse_reader({})
    yield reader, "SELECT * FROM bench_events"
