"""PostgreSQL (Debian's server, started by scripts/services.sh) read through ADBC."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from statsig_airflow_provider.engine.readers import AdbcReader, WarehouseReader
from tests.benchmarks.bench_warehouses import sample_table


def load(workdir: Path, rows: int) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(os.environ["STATSIG_TEST_PG_DSN"]) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_events")
        cur.adbc_ingest("bench_events", sample_table(rows), mode="create")
        conn.commit()


@contextlib.contextmanager
def open(workdir: Path) -> Iterator[tuple[WarehouseReader, str]]:
    import adbc_driver_postgresql.dbapi as adbc

    dsn = os.environ["STATSIG_TEST_PG_DSN"]
    reader = AdbcReader(lambda: adbc.connect(dsn), dialect="postgres", description="postgres")
    yield reader, "SELECT * FROM bench_events"
