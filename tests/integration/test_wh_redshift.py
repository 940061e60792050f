"""Redshift, against a real PostgreSQL server reached by the real redshift_connector.

The stand-in is Debian's PostgreSQL behind the loopback start-up proxy (scripts/services.d/
redshift.sh: md5 user, Redshift-only start-up keys dropped), so the unmodified RedshiftSQLHook,
the driver, the server-side cursor and the day SQL in the `redshift` dialect all run for real.
PostgreSQL cannot run UNLOAD: the UNLOAD test checks that the text sent is the expected UNLOAD
(the inner query is unescaped from it and run on PostgreSQL, proving the quoting round-trips),
writes that result as Parquet where Redshift would (moto S3), and checks the reader consumes and
deletes it. Not exercised: real Redshift (its SQL dialect beyond the PostgreSQL subset, UNLOAD
itself, IAM roles and IAM-token auth, WLM), which only string-level tests cover.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.options import OptionError
from statsig_airflow_provider.engine.pipeline import IngestionError
from statsig_airflow_provider.engine.spec import load_spec
from statsig_airflow_provider.engine.sql import day_query, render_macros
from statsig_airflow_provider.hooks.redshift import RedshiftOptions, RedshiftReader, unload_statement
from statsig_airflow_provider.hooks.warehouse import warehouse_reader
from tests.conftest import DAY, ROOT, EmulatorProcess, assert_exactly_once, require_service
from tests.integration.aws_support import (
    BOUNDARY_INSIDE,
    RENDER_COLUMNS,
    RENDER_MACROS,
    RENDER_TIMEZONES,
    aws_connection,
    boundary_rows,
    demo_table,
    ingest,
    keys_under,
    new_bucket,
    put_table,
    render_spec,
    spec_with,
)
from tests.integration.test_pipeline import SPEC_DICT

pytestmark = pytest.mark.postgres
ROLE = "arn:aws:iam::123456789012:role/statsig-unload"


def _redshift_dsn() -> urllib.parse.SplitResult:
    dsn = os.environ.get("STATSIG_TEST_REDSHIFT_DSN", "")
    if not dsn:
        require_service("Redshift stand-in", "STATSIG_TEST_REDSHIFT_DSN is not set")
    return urllib.parse.urlsplit(dsn)


def _direct_uri() -> str:
    """The same user and database straight on PostgreSQL (no proxy), for loading test data with ADBC."""
    rs = _redshift_dsn()
    pg = urllib.parse.urlsplit(os.environ.get("STATSIG_TEST_PG_DSN", ""))
    if not pg.port:
        require_service("PostgreSQL", "STATSIG_TEST_PG_DSN is not set")
    return f"postgresql://{rs.username}:{rs.password}@{pg.hostname}:{pg.port}{rs.path}"


def load(table: str, data: pa.Table) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(_direct_uri()) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.adbc_ingest(table, data, mode="create")
        conn.commit()


def query_arrow(sql: str) -> pa.Table:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(_direct_uri()) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def rs_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, *, password: str | None = None) -> None:
    rs = _redshift_dsn()
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
        "conn_type": "redshift", "host": rs.hostname, "port": rs.port, "login": rs.username,
        "password": password or rs.password, "schema": rs.path.lstrip("/"),
        "extra": {"ssl": False, "timeout": 10}}))


@pytest.fixture(scope="module")
def rs_events(demo_warehouse: Path) -> str:
    """The sample events in the stand-in, as table `events` (PostgreSQL types: DATE, BIGINT, ...)."""
    load("events", demo_table(demo_warehouse))
    return "events"


@pytest.fixture
def rs_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    rs_connection(monkeypatch, "wh_rs")
    return "wh_rs"


def test_day_streams_through_a_server_side_cursor_and_lands_exactly_once(
        rs_events: str, rs_conn: str, demo_warehouse: Path, statsig: EmulatorProcess, tmp_path: Path) -> None:
    options = {"fetch_rows": 3_000}
    reader = warehouse_reader(rs_conn, options)
    assert isinstance(reader, RedshiftReader) and reader.dialect == "redshift"
    expected = demo_table(demo_warehouse).num_rows
    day_sql = render_macros(SPEC_DICT["sql"], DayWindow.of(DAY, "statsig"), "redshift")  # type: ignore[arg-type]
    sizes = [b.num_rows for b in reader.read_batches(day_sql, 7_000)]
    assert sizes == [7_000, 7_000, expected - 14_000]  # FETCH FORWARD 3000 × n, re-cut to the batch size
    report = ingest(spec_with(SPEC_DICT["sql"], rs_conn, options), reader, statsig, tmp_path)  # type: ignore[arg-type]
    assert report.status == L.INGESTED and report.warehouse_count == report.rows_read == expected
    assert_exactly_once(demo_warehouse, statsig)


def test_connectorx_in_band_driver_streams_arrow_and_lands_exactly_once(
        rs_events: str, rs_conn: str, demo_warehouse: Path,
        statsig: EmulatorProcess, tmp_path: Path) -> None:
    """The optional connectorx driver (redshift:// protocol, through the same proxy and md5 login)."""
    try:
        import connectorx  # noqa: F401
    except ImportError:
        require_service("connectorx", "the optional connectorx package is not installed")
    options = {"in_band_driver": "connectorx"}
    reader = warehouse_reader(rs_conn, options)
    expected = demo_table(demo_warehouse).num_rows
    day_sql = render_macros(SPEC_DICT["sql"], DayWindow.of(DAY, "statsig"), "redshift")  # type: ignore[arg-type]
    assert [b.num_rows for b in reader.read_batches(day_sql, 7_000)] == [7_000, 7_000, expected - 14_000]
    report = ingest(spec_with(SPEC_DICT["sql"], rs_conn, options), reader, statsig, tmp_path)  # type: ignore[arg-type]
    assert report.status == L.INGESTED and report.rows_read == expected
    assert_exactly_once(demo_warehouse, statsig)

    # A bad password is caught by the engine's count (redshift_connector) before connectorx, whose
    # connection pool would retry it for 30 s; a query error comes straight back from connectorx.
    with pytest.raises(Exception) as err:
        list(reader.read_batches("SELECT * FROM events_missing"))
    assert reader.explain(err.value).startswith('table not found (relation "events_missing" does not exist)')
    password = _redshift_dsn().password
    leaked = RuntimeError(f"timed out waiting for connection to redshift://statsig_rs:{password}@host/db")
    assert password and password not in reader.explain(leaked)


class FakeUnload:
    """Stands in for Redshift's UNLOAD: records the statement, unescapes the query from it, runs that
    on PostgreSQL, and writes the result as two Parquet "slices" under the TO location in moto."""

    STATEMENT = re.compile(r"^UNLOAD \('(?P<query>.*)'\)\nTO '(?P<to>s3://[^']+/)'\n(?P<rest>.*)$", re.S)

    def __init__(self, aws_conn_id: str) -> None:
        self.aws_conn_id = aws_conn_id
        self.statements: list[str] = []
        self.locations: list[str] = []

    def __call__(self, reader: RedshiftReader, statement: str) -> None:
        self.statements.append(statement)
        match = self.STATEMENT.match(statement)
        assert match, statement
        query = match["query"].replace("''", "'").replace("\\\\", "\\")
        result = query_arrow(query)
        bucket, _, prefix = match["to"][len("s3://"):].partition("/")
        half = result.num_rows // 2
        put_table(self.aws_conn_id, bucket, f"{prefix}0000_part_00.parquet", result.slice(0, half))
        put_table(self.aws_conn_id, bucket, f"{prefix}0001_part_00.parquet", result.slice(half))
        self.locations.append(match["to"])


@pytest.fixture
def fake_unload(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeUnload]:
    aws_connection(monkeypatch, "wh_rs_aws")
    fake = FakeUnload("wh_rs_aws")
    monkeypatch.setattr(RedshiftReader, "execute_unload", lambda self, statement: fake(self, statement))
    yield fake


def test_big_day_goes_through_unload_parquet_in_moto_and_the_folder_is_deleted(
        rs_events: str, rs_conn: str, fake_unload: FakeUnload, demo_warehouse: Path, statsig: EmulatorProcess,
        tmp_path: Path) -> None:
    bucket = new_bucket("wh_rs_aws", "wh-rs-unload")
    options: dict[str, Any] = {"unload_s3_uri": f"s3://{bucket}/unload/", "unload_iam_role": ROLE,
                               "unload_threshold_rows": 5_000, "aws_conn_id": "wh_rs_aws",
                               "unload_max_file_mb": 256}
    report = ingest(spec_with(SPEC_DICT["sql"], rs_conn, options), warehouse_reader(rs_conn, options),  # type: ignore[arg-type]
                    statsig, tmp_path)
    assert report.status == L.INGESTED and report.rows_read == demo_table(demo_warehouse).num_rows
    assert_exactly_once(demo_warehouse, statsig)

    # One UNLOAD (the 1,000-row first-load sample stays below the threshold and is read in-band).
    assert len(fake_unload.statements) == 1
    location = fake_unload.locations[0]
    assert re.fullmatch(rf"s3://{bucket}/unload/{DAY}/\d{{8}}T\d{{6}}Z-[0-9a-f]{{8}}/", location)
    assert fake_unload.statements[0] == (
        "UNLOAD ('SELECT * FROM (\n"
        "SELECT ts, event_name, user_id, stable_id, value, page, plan, props FROM events "
        "WHERE ds = CAST(''2026-11-30'' AS DATE)\n"
        ") AS statsig_day')\n"
        f"TO '{location}'\n"
        f"IAM_ROLE '{ROLE}'\n"
        "FORMAT AS PARQUET\n"
        "MAXFILESIZE 256 MB")
    assert keys_under("wh_rs_aws", bucket, "unload/") == []  # the run's folder was deleted


def test_count_and_schema_probe(rs_events: str, rs_conn: str, demo_warehouse: Path) -> None:
    reader = warehouse_reader(rs_conn, {"unload_s3_uri": "s3://bkt/u/", "unload_iam_role": "default"})
    assert isinstance(reader, RedshiftReader)
    day_sql = render_macros(SPEC_DICT["sql"], DayWindow.of(DAY, "statsig"), "redshift")  # type: ignore[arg-type]
    assert reader.count(day_sql) == demo_table(demo_warehouse).num_rows
    assert reader.count("SELECT * FROM events WHERE event_name = 'purchase'") == len(
        [n for n in demo_table(demo_warehouse)["event_name"].to_pylist() if n == "purchase"])
    assert not reader.uses_unload(day_sql)  # 20,016 < the default 1,000,000: in-band
    schema = reader.schema("SELECT * FROM events")
    assert [schema.field(c).type for c in ("ds", "ts", "user_id", "value", "props")] == [
        pa.date32(), pa.int64(), pa.int64(), pa.float64(), pa.string()]


@pytest.mark.parametrize("tz", RENDER_TIMEZONES)
def test_day_rendering_runs_on_the_stand_in(tz: str, rs_conn: str) -> None:
    """TIMESTAMP (Tokyo wall clock), TIMESTAMPTZ, epoch-seconds and DATE columns — given or probed
    ("auto") — and the macros, rendered for Redshift, select exactly the day on the server."""
    table = "render_" + re.sub(r"\W", "_", tz).lower()
    load(table, boundary_rows(tz))
    reader = warehouse_reader(rs_conn, {})
    window = DayWindow.of(DAY, tz)
    schema = reader.schema(f"SELECT * FROM {table}")
    assert schema.field("ts_tz").type == pa.timestamp("us", tz="UTC") and schema.field("ts_naive").type.tz is None
    for column, column_type in RENDER_COLUMNS:
        for kind in (column_type, "auto"):
            spec = render_spec(f"SELECT * FROM {table}", column, kind, tz)
            query = day_query(spec, window, "redshift", column=column, column_arrow_type=schema.field(column).type)
            assert reader.count(query.sql) == BOUNDARY_INSIDE, (column, kind, query.sql)
    for sql in RENDER_MACROS:
        query = day_query(render_spec(sql.replace("{table}", table), None, "auto", tz), window, "redshift")
        assert reader.count(query.sql) == BOUNDARY_INSIDE, query.sql


def test_bad_password_missing_table_and_timeout_give_clear_messages(
        rs_events: str, rs_conn: str, monkeypatch: pytest.MonkeyPatch, statsig: EmulatorProcess,
        tmp_path: Path) -> None:
    rs_connection(monkeypatch, "wh_rs_bad", password="not-the-password")
    with pytest.raises(IngestionError) as err:
        ingest(spec_with(SPEC_DICT["sql"], "wh_rs_bad"), warehouse_reader("wh_rs_bad", {}), statsig, tmp_path)  # type: ignore[arg-type]
    message = str(err.value)
    assert message.startswith(f"source 'demo_events' day {DAY}: count failed on redshift connection 'wh_rs_bad'")
    assert "Redshift refused the login" in message and "password authentication failed" in message
    assert "not-the-password" not in message

    missing = SPEC_DICT["sql"].replace("FROM events", "FROM events_missing")  # type: ignore[union-attr]
    with pytest.raises(IngestionError, match=r'table not found \(relation "events_missing" does not exist\)'):
        ingest(spec_with(missing, rs_conn), warehouse_reader(rs_conn, {}), statsig, tmp_path, ledger_name="l2")

    slow = warehouse_reader(rs_conn, {"query_timeout_seconds": 0.2})
    with pytest.raises(Exception) as timeout:
        slow.count("SELECT * FROM events, (SELECT pg_sleep(3)) AS s")
    assert slow.explain(timeout.value).startswith(
        "the query timed out (warehouse.options.query_timeout_seconds = 0.2): canceling statement due to "
        "statement timeout")


def test_options_and_unload_text() -> None:
    options = RedshiftOptions.parse({"unload_s3_uri": "s3://bkt/u/", "unload_iam_role": "default",
                                     "unload_region": "eu-west-1"})
    text = unload_statement("SELECT 'it''s' AS a, 'c:\\tmp' AS b;", "s3://bkt/u/x/", options)
    assert text == ("UNLOAD ('SELECT * FROM (\nSELECT ''it''''s'' AS a, ''c:\\\\tmp'' AS b\n) AS statsig_day')\n"
                    "TO 's3://bkt/u/x/'\nIAM_ROLE default\nFORMAT AS PARQUET\nREGION 'eu-west-1'")
    for bad, match in [({"unload_s3_uri": "s3://bkt/u/"}, "unload_iam_role: required"),
                       ({"unload_iam_role": ROLE}, "unload_s3_uri: required"),
                       ({"unload_s3_uri": "s3://bkt/u/", "unload_iam_role": "arn:aws:iam::1:role/x' --"}, "IAM role"),
                       ({"unload_s3_uri": "https://bkt/u/", "unload_iam_role": ROLE}, "S3 URI"),
                       ({"unload_threshold": 5}, "did you mean 'unload_threshold_rows'"),
                       ({"fetch_rows": 0}, "at least 1")]:
        with pytest.raises(OptionError, match=match):
            RedshiftOptions.parse(bad)


def test_example_source_parses() -> None:
    spec = load_spec(ROOT / "dags_examples" / "sources" / "warehouses" / "redshift_events.yaml")
    assert spec.name == "redshift_events" and spec.warehouse_conn_id
    RedshiftOptions.parse(spec.warehouse_options)
