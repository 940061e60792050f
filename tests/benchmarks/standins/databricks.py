"""Databricks: minilake (started by scripts/services.sh) read through StatsigDatabricksHook.

The Statement Execution API path: ARROW_STREAM chunks of 100,000 rows through external links,
downloaded four ahead of the reader. minilake builds each chunk from Python rows, so its own
speed, not the reader's, sets the pace here.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from statsig_airflow_provider.engine.readers import WarehouseReader
from tests.benchmarks.bench_warehouses import sample_table

TOKEN = "bench-token-0123456789"


def load(workdir: Path, rows: int) -> None:
    import pyarrow.parquet as pq

    parquet = workdir / "events.parquet"
    pq.write_table(sample_table(rows), parquet)
    # minilake's DuckDB reads the file itself: loading only, not the path being measured
    body = json.dumps({"warehouse_id": os.environ["STATSIG_TEST_MINILAKE_WAREHOUSE_ID"], "wait_timeout": "50s",
                       "statement": "CREATE OR REPLACE TABLE lake.statsig.bench_events AS "
                                    f"SELECT * FROM read_parquet('{parquet}')"}).encode()
    request = urllib.request.Request(f"{os.environ['STATSIG_TEST_MINILAKE_URL']}/api/2.0/sql/statements", data=body,
                                     method="POST", headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.loads(response.read())
    if answer["status"]["state"] != "SUCCEEDED":
        raise RuntimeError(f"loading minilake failed: {answer['status']}")


@contextlib.contextmanager
def open(workdir: Path) -> Iterator[tuple[WarehouseReader, str]]:
    from statsig_airflow_provider.hooks.warehouse import warehouse_reader

    host, port = os.environ["STATSIG_TEST_MINILAKE_URL"].removeprefix("http://").split(":")
    warehouse = os.environ["STATSIG_TEST_MINILAKE_WAREHOUSE_ID"]
    os.environ["AIRFLOW_CONN_BENCH_DATABRICKS"] = json.dumps({
        "conn_type": "databricks", "host": host, "port": int(port), "schema": "http", "password": TOKEN,
        "extra": {"http_path": f"/sql/1.0/warehouses/{warehouse}"}})
    yield warehouse_reader("bench_databricks", {"catalog": "lake", "schema": "statsig"}), "SELECT * FROM bench_events"
