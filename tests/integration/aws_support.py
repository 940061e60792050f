"""Test support for the AWS warehouses (Redshift, S3, Athena): moto, Airflow connections, sample rows.

moto_server (scripts/services.d/moto.sh) serves S3 and Athena on one loopback port; the Redshift
stand-in is the PostgreSQL server behind the start-up proxy (scripts/services.d/redshift.sh).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from statsig_airflow_provider.engine.days import DayWindow, resolve_timezone
from statsig_airflow_provider.engine.pipeline import DayReport
from statsig_airflow_provider.engine.readers import WarehouseReader
from statsig_airflow_provider.engine.spec import SourceSpec
from tests.conftest import DAY, EmulatorProcess, ingest_with, require_service
from tests.integration.test_pipeline import SPEC_DICT

REGION = "us-east-1"


def moto_url() -> str:
    url = os.environ.get("STATSIG_TEST_MOTO_URL", "")
    if not url:
        require_service("moto server", "STATSIG_TEST_MOTO_URL is not set")
    return url


def aws_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, *, conn_type: str = "aws",
                   **extra: Any) -> None:
    """An Airflow connection (env var) on moto with moto's dummy keys."""
    body = {"conn_type": conn_type, "login": "testing", "password": "testing",
            "extra": {"region_name": REGION, "endpoint_url": moto_url(), **extra}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))


def new_bucket(conn_id: str, stem: str) -> str:
    """A fresh bucket (tests share one moto server, so each gets its own)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    name = f"{stem}-{uuid.uuid4().hex[:10]}"
    S3Hook(aws_conn_id=conn_id).create_bucket(name)
    return name


def put_table(conn_id: str, bucket: str, key: str, table: pa.Table, fmt: str = "parquet") -> None:
    """Write `table` to s3://bucket/key as Parquet, CSV or newline-delimited JSON."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    if fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        pcsv.write_csv(table, buf)
        data = buf.getvalue()
    else:
        data = b"".join(json.dumps(row, default=str).encode() + b"\n" for row in table.to_pylist())
    S3Hook(aws_conn_id=conn_id).load_bytes(data, key=key, bucket_name=bucket, replace=True)


def keys_under(conn_id: str, bucket: str, prefix: str) -> list[str]:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id).list_keys(bucket_name=bucket, prefix=prefix) or []


def demo_table(db: Path, where: str = "TRUE") -> pa.Table:
    """The sample events (conftest's demo_warehouse) as an Arrow table."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(f"SELECT * FROM events WHERE {where}").to_arrow_table()  # insertion order: bad rows last
    finally:
        con.close()


def ingest(spec_dict: dict[str, Any], reader: WarehouseReader, statsig: EmulatorProcess, tmp_path: Path,
           ledger_name: str = "ledger", day: dt.date | str = DAY) -> DayReport:
    """One day of a source spec through the engine into the emulator."""
    return ingest_with(SourceSpec.from_dict(spec_dict), reader, statsig, tmp_path, ledger_name=ledger_name, day=day)


def spec_with(sql: str, conn_id: str, options: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """SPEC_DICT (the demo source) reading from another table/view, on another connection."""
    return {**SPEC_DICT, "sql": sql, "warehouse": {"conn_id": conn_id, "options": options or {}}, **top}


# --------------------------------------------------------------------------------------------
# Day-boundary rows for the dialect rendering tests

RENDER_TIMEZONES = ("statsig", "America/New_York")
NAIVE_TIMEZONE = "Asia/Tokyo"  # TIMESTAMP columns without a zone hold Tokyo wall-clock time


def boundary_rows(tz: str) -> pa.Table:
    """Six events around the edges of DAY in `tz`; exactly three fall inside the day.

    Every row carries the instant four ways: epoch seconds, TIMESTAMP (Tokyo wall clock),
    TIMESTAMP WITH TIME ZONE, and the DATE of the instant in `tz`.
    """
    window = DayWindow.of(DAY, tz)
    instants = [window.start + dt.timedelta(seconds=-1), window.start, window.start + dt.timedelta(hours=1),
                window.end - dt.timedelta(seconds=1), window.end, window.end + dt.timedelta(hours=1)]
    tokyo = resolve_timezone(NAIVE_TIMEZONE)
    local = resolve_timezone(tz)
    return pa.table({
        "event_name": [f"e{i}" for i in range(len(instants))],
        "user_id": list(range(1, len(instants) + 1)),
        "ts_epoch": pa.array([int(i.timestamp()) for i in instants], pa.int64()),
        "ts_naive": pa.array([i.astimezone(tokyo).replace(tzinfo=None) for i in instants], pa.timestamp("us")),
        "ts_tz": pa.array(instants, pa.timestamp("us", tz="UTC")),
        "ds": pa.array([i.astimezone(local).date() for i in instants], pa.date32()),
    })


BOUNDARY_INSIDE = 3

# (day column, day.column_type) → what the rendering test filters on; plus macro forms.
RENDER_COLUMNS = (("ts_epoch", "epoch_seconds"), ("ts_naive", "timestamp"), ("ts_tz", "timestamp"),
                  ("ds", "date"))
RENDER_MACROS = (
    "SELECT * FROM {table} WHERE ts_epoch >= {day_start_epoch} AND ts_epoch < {day_end_epoch}",
    "SELECT * FROM {table} WHERE ts_tz >= {day_start} AND ts_tz < {day_end}",
    "SELECT * FROM {table} WHERE ds = {day}",
)


def render_spec(sql: str, column: str | None, column_type: str, tz: str) -> SourceSpec:
    day: dict[str, Any] = {"timezone": tz, "naive_timezone": NAIVE_TIMEZONE, "column_type": column_type}
    if column:
        day["column"] = column
    return SourceSpec.from_dict({
        "name": "render", "warehouse": {"conn_id": "unused"}, "sql": sql, "day": day,
        "mapping": {"timestamp": "ts_epoch", "event_name": "event_name", "ids": {"userID": "user_id"}},
    })
