"""Athena's small-day read: a query's CSV result file (Athena's format: header, every value quoted)
in moto S3, streamed by the Athena reader's CSV path with types from Athena's column metadata.

moto's Athena cannot produce a result file of a chosen size at a known key, so the file is written
directly and the reader's CSV stage is measured (the query itself costs nothing on moto). Big days
go through UNLOAD, whose Parquet read is the `s3` stand-in's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from statsig_airflow_provider.engine.readers import DEFAULT_BATCH_ROWS, WarehouseReader
from tests.benchmarks.bench_warehouses import sample_table

KEY = "results/bench.csv"
# (name, Athena type, precision, scale) of sample_table's columns, as Athena describes them.
DESCRIPTION = [("ds", "date"), ("ts", "bigint"), ("event_name", "varchar"), ("user_id", "bigint"),
               ("stable_id", "varchar"), ("value", "double"), ("page", "varchar"), ("plan", "varchar"),
               ("props", "varchar")]


def _bucket(workdir: Path) -> str:
    return "bench-athena-" + hashlib.sha1(str(workdir).encode()).hexdigest()[:12]


def _connect() -> str:
    import json

    os.environ["AIRFLOW_CONN_BENCH_ATHENA"] = json.dumps({
        "conn_type": "athena", "login": "testing", "password": "testing", "schema": "default",
        "extra": {"region_name": "us-east-1", "endpoint_url": os.environ["STATSIG_TEST_MOTO_URL"],
                  "work_group": "primary"}})
    return "bench_athena"


def load(workdir: Path, rows: int) -> None:
    import pyarrow.csv as pcsv
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    _connect()
    hook = S3Hook(aws_conn_id="bench_athena")
    hook.create_bucket(_bucket(workdir))
    buf = io.BytesIO()
    pcsv.write_csv(sample_table(rows), buf, pcsv.WriteOptions(quoting_style="all_valid"))
    hook.load_bytes(buf.getvalue(), key=KEY, bucket_name=_bucket(workdir), replace=True)


class _ResultFileReader(WarehouseReader):
    """The Athena reader's CSV stage over a result file already in S3 (the SQL is not run)."""

    dialect = "athena"

    def __init__(self, reader: object, location: str) -> None:
        self.reader = reader
        self.location = location

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        description = [(name, kind, None, None, 0, 0, "UNKNOWN") for name, kind in DESCRIPTION]
        yield from self.reader._csv_batches(self.location, description, batch_rows)  # type: ignore[attr-defined]


@contextlib.contextmanager
def open(workdir: Path) -> Iterator[tuple[WarehouseReader, str]]:
    from statsig_airflow_provider.hooks.athena import StatsigAthenaHook

    reader = StatsigAthenaHook(athena_conn_id=_connect()).warehouse_reader({})
    yield _ResultFileReader(reader, f"s3://{_bucket(workdir)}/{KEY}"), "SELECT * FROM bench_events"
