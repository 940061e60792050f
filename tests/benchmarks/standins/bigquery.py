"""BigQuery: bqemulator (started by scripts/services.sh), read the way a big day is read.

The day is staged into a table (CTAS) and read through the Storage Read API, four streams in
parallel, each page an Arrow record batch. (On the emulator a query job's own result table cannot
be read by Storage Read, so staging is the path that exercises it; on BigQuery both work.)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

from statsig_airflow_provider.engine.readers import WarehouseReader
from tests.benchmarks.bench_warehouses import sample_table

DATASET = "bench"


def _endpoints() -> tuple[str, str, str]:
    return (os.environ["STATSIG_TEST_BQ_REST"], os.environ["STATSIG_TEST_BQ_GRPC"],
            os.environ["STATSIG_TEST_BQ_PROJECT"])


def load(workdir: Path, rows: int) -> None:
    import pyarrow.parquet as pq
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    rest, _, project = _endpoints()
    client = bigquery.Client(project=project, credentials=AnonymousCredentials(),
                             client_options={"api_endpoint": rest})
    table = sample_table(rows).drop_columns(["ds"])
    client.create_dataset(DATASET, exists_ok=True)
    client.create_dataset(f"{DATASET}_staging", exists_ok=True)
    table_id = f"{project}.{DATASET}.events"
    client.delete_table(table_id, not_found_ok=True)
    types = {"ts": "INT64", "user_id": "INT64", "value": "FLOAT64"}
    client.create_table(bigquery.Table(table_id, schema=[bigquery.SchemaField(n, types.get(n, "STRING"))
                                                         for n in table.column_names]))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    buf.seek(0)
    client.load_table_from_file(buf, table_id, job_config=bigquery.LoadJobConfig(source_format="PARQUET")).result()


@contextlib.contextmanager
def open(workdir: Path) -> Iterator[tuple[WarehouseReader, str]]:
    from statsig_airflow_provider.hooks.warehouse import warehouse_reader

    rest, grpc, project = _endpoints()
    os.environ["AIRFLOW_CONN_STATSIG_BENCH_BQ"] = json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"project": project, "is_anonymous": True}})
    reader = warehouse_reader("statsig_bench_bq", {"endpoint": rest, "storage_endpoint": grpc,
                                                   "staging_dataset": f"{DATASET}_staging", "max_stream_count": 4})
    try:
        yield reader, f"SELECT * FROM `{project}.{DATASET}.events`"
    finally:
        reader.close()
