"""The embedded default: a DuckDB file."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from statsig_airflow_provider.engine.readers import DuckDBReader, WarehouseReader
from tests.benchmarks.bench_warehouses import sample_table


def load(workdir: Path, rows: int) -> None:
    import duckdb

    con = duckdb.connect(str(workdir / "events.duckdb"))
    con.register("day", sample_table(rows))
    con.execute("CREATE TABLE events AS SELECT * FROM day")
    con.close()


@contextlib.contextmanager
def open(workdir: Path) -> Iterator[tuple[WarehouseReader, str]]:
    yield DuckDBReader(str(workdir / "events.duckdb")), "SELECT * FROM events"
