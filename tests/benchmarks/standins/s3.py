"""S3 files: a day of Parquet in moto server (Statsig's layout), read by the S3 hook's reader:
pyarrow.dataset over S3 with the connection's endpoint, DuckDB running the SQL over it.

A bigger day is more files, not bigger ones (writers cap file size: Redshift and Athena UNLOAD,
Spark), so the 2x day shows whether memory depends on the day; the reader buffers about one file's
column chunks at a time. The same Parquet read is what Redshift and Athena UNLOAD days cost once
the warehouse has written the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

from statsig_airflow_provider.engine.readers import WarehouseReader
from tests.benchmarks.bench_warehouses import sample_table

DAY = "2026-11-30"
ROWS_PER_FILE = 250_000


def _connect() -> str:
    os.environ["AIRFLOW_CONN_BENCH_S3"] = json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": "us-east-1", "endpoint_url": os.environ["STATSIG_TEST_MOTO_URL"]}})
    return "bench_s3"


def _bucket(workdir: Path) -> str:
    return "bench-s3-" + hashlib.sha1(str(workdir).encode()).hexdigest()[:12]


def load(workdir: Path, rows: int) -> None:
    import pyarrow.parquet as pq
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=_connect())
    bucket = _bucket(workdir)
    hook.create_bucket(bucket)
    table = sample_table(rows)
    for i, start in enumerate(range(0, table.num_rows, ROWS_PER_FILE)):
        buf = io.BytesIO()
        pq.write_table(table.slice(start, ROWS_PER_FILE), buf, row_group_size=128 * 1024)
        hook.load_bytes(buf.getvalue(), key=f"exports/events/{DAY}/part-{i:04d}.parquet", bucket_name=bucket,
                        replace=True)


@contextlib.contextmanager
def open(workdir: Path) -> Iterator[tuple[WarehouseReader, str]]:
    from statsig_airflow_provider.engine.days import DayWindow
    from statsig_airflow_provider.hooks.s3 import StatsigS3Hook

    reader = StatsigS3Hook(aws_conn_id=_connect()).warehouse_reader(
        {"prefix": f"s3://{_bucket(workdir)}/exports", "dataset": "events"})
    yield reader.for_day(DayWindow.of(DAY, "statsig")), "SELECT * FROM day_files"
