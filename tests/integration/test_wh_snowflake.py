"""Snowflake: StatsigSnowflakeHook against fakesnow in server mode, started by scripts/test.sh.

What runs for real here: the stock SnowflakeHook's connection handling (plus the `protocol` extra
it does not forward), the real snowflake-connector over HTTP speaking Snowflake's login, query
and Arrow result protocol (`fetch_arrow_batches`, describe-only requests, cursor timeouts), the
day macros and day filters rendered for Snowflake and executed (fakesnow translates them to
DuckDB with sqlglot), Snowflake's missing-object error, the engine and the Statsig emulator.

What is NOT exercised: the real Snowflake service; results split into many chunks downloaded from
a stage (fakesnow returns every result inline as one chunk, so `prefetch_threads` does nothing
here); NUMBER(p,s) sent as scaled integers (fakesnow sends decimal128, so `number_to_decimal`
is checked on the connection parameters and the schema mapping only); authentication (fakesnow
accepts any password), grants, warehouses and server-side statement timeouts. Their messages are
tested on the exception objects the connector raises for them (see the unit tests at the end).
The test data is put into fakesnow with `read_parquet` (a DuckDB function fakesnow passes
through): that is loading, not the read path under test.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pytest

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.pipeline import IngestionError, day_query_for
from statsig_airflow_provider.engine.spec import SourceSpec, load_spec
from statsig_airflow_provider.hooks.snowflake import (
    SnowflakeOptions,
    SnowflakeReader,
    StatsigSnowflakeHook,
    explain_snowflake_error,
    snowflake_arrow_type,
)
from statsig_airflow_provider.hooks.warehouse import warehouse_reader
from tests.conftest import (
    DAY,
    ROOT,
    EmulatorProcess,
    assert_exactly_once,
    day_row_count,
    ingest_with,
    require_service,
)

EXAMPLE = ROOT / "dags_examples" / "sources" / "warehouses" / "snowflake_events.yaml"
PASSWORD = "sf-test-password-0123"  # fakesnow accepts anything; long enough for Airflow's secret masking
CONN_ID = "wh_sf"


def _conn_json(port: int, **extra: object) -> str:
    return json.dumps({"conn_type": "snowflake", "login": "statsig_reader", "password": PASSWORD, "schema": "public",
                       "extra": {"account": "fakesnow", "database": "analytics", "warehouse": "statsig_wh",
                                 "host": "127.0.0.1", "port": port, "protocol": "http", "network_timeout": 15,
                                 **extra}})


@pytest.fixture(scope="session")
def fakesnow_port() -> int:
    raw = os.environ.get("STATSIG_TEST_FAKESNOW_PORT", "")
    if not raw:
        require_service("fakesnow", "STATSIG_TEST_FAKESNOW_PORT is not set")
    try:
        socket.create_connection(("127.0.0.1", int(raw)), timeout=3).close()
    except OSError as exc:
        require_service("fakesnow", f"nothing listens on 127.0.0.1:{raw}: {exc}")
    return int(raw)


@pytest.fixture(scope="session")
def sf_tables(fakesnow_port: int, demo_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> int:
    """ANALYTICS.PUBLIC.EVENTS (the demo day) and TYPED (one row at each edge of a day) in fakesnow."""
    import pyarrow.parquet as pq
    import snowflake.connector

    parquet = tmp_path_factory.mktemp("snowflake") / "events.parquet"
    con = duckdb.connect(str(demo_warehouse), read_only=True)
    try:
        pq.write_table(con.sql("SELECT * FROM events").to_arrow_table(), parquet)
    finally:
        con.close()
    conn = snowflake.connector.connect(user="loader", password=PASSWORD, account="fakesnow", host="127.0.0.1",
                                       port=fakesnow_port, protocol="http", network_timeout=15)
    try:
        cur = conn.cursor()
        cur.execute("CREATE DATABASE IF NOT EXISTS analytics")
        cur.execute("CREATE SCHEMA IF NOT EXISTS analytics.public")
        cur.execute(f"CREATE OR REPLACE TABLE analytics.public.events AS SELECT * FROM read_parquet('{parquet}')")
        cur.execute("""CREATE OR REPLACE TABLE analytics.public.typed (n VARCHAR, u VARCHAR, t TIMESTAMP_TZ,
                       naive TIMESTAMP_NTZ, naive_la TIMESTAMP_NTZ, secs NUMBER(18, 0), d DATE)""")
        for name, instant in EDGES.items():
            la = instant.astimezone(ZoneInfo("America/Los_Angeles")).replace(tzinfo=None)
            statsig_day = instant.astimezone(dt.timezone(dt.timedelta(hours=-8))).date()
            cur.execute(f"""INSERT INTO analytics.public.typed VALUES ('{name}', 'u1',
                            '{instant.isoformat(sep=" ")}', '{instant.replace(tzinfo=None).isoformat(sep=" ")}',
                            '{la.isoformat(sep=" ")}', {int(instant.timestamp())}, '{statsig_day.isoformat()}')""")
    finally:
        conn.close()
    return fakesnow_port


@pytest.fixture
def sf_conn(sf_tables: int, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", _conn_json(sf_tables))
    return CONN_ID


def example_spec(**changes: object) -> SourceSpec:
    """The shipped example source, on the test connection (its options stay: fakesnow ignores them)."""
    return dataclasses.replace(load_spec(EXAMPLE), warehouse_conn_id=CONN_ID, **changes)  # type: ignore[arg-type]


def ingest(spec: SourceSpec, statsig: EmulatorProcess, tmp_path: Path):
    reader = warehouse_reader(spec.warehouse_conn_id, spec.warehouse_options)
    return ingest_with(spec, reader, statsig, tmp_path)


# ------------------------------------------------------------------------------ against fakesnow
def test_example_source_lands_exactly_once(sf_conn: str, demo_warehouse: Path, statsig: EmulatorProcess,
                                           tmp_path: Path) -> None:
    spec = example_spec()
    reader = warehouse_reader(sf_conn, spec.warehouse_options)
    assert isinstance(reader, SnowflakeReader) and reader.dialect == "snowflake"
    assert "fakesnow" in reader.describe() and PASSWORD not in reader.describe()
    report = ingest(spec, statsig, tmp_path)
    assert report.status == L.INGESTED, report.summary()
    assert report.warehouse_count == report.rows_read == day_row_count(demo_warehouse)
    result = assert_exactly_once(demo_warehouse, statsig)
    assert report.delivered == result["expected"] and report.rejected == report.rows_read - result["expected"]


def test_batches_are_bounded_and_count_matches(sf_conn: str, demo_warehouse: Path) -> None:
    reader = warehouse_reader(sf_conn, {"query_timeout_seconds": 60})
    sql = "SELECT * FROM analytics.public.events WHERE ds = CAST('2026-11-30' AS DATE)"
    sizes = [b.num_rows for b in reader.read_batches(sql, 3_000)]
    assert max(sizes) <= 3_000 and sum(sizes) == day_row_count(demo_warehouse)
    assert reader.count(sql) == sum(sizes)
    schema = reader.schema(sql)  # describe-only: the types the Arrow batches will have
    types = {f.name.lower(): f.type for f in schema}
    assert (types["ts"], types["ds"], types["value"], types["props"]) == (
        pa.int64(), pa.date32(), pa.float64(), pa.string())


EDGES = {  # one row at each edge of the Statsig (UTC-8) day 2026-03-08 and one just outside each edge
    "before": dt.datetime(2026, 3, 8, 7, 59, 59, tzinfo=dt.timezone.utc),
    "first": dt.datetime(2026, 3, 8, 8, 0, 0, tzinfo=dt.timezone.utc),
    "last": dt.datetime(2026, 3, 9, 7, 59, 59, tzinfo=dt.timezone.utc),
    "after": dt.datetime(2026, 3, 9, 8, 0, 0, tzinfo=dt.timezone.utc),
}
RENDER_DAY = dt.date(2026, 3, 8)  # also the US spring-forward day (23 hours in America/Los_Angeles)


TYPED = "SELECT * FROM analytics.public.typed"


@pytest.mark.parametrize(("sql", "day", "expected"), [
    pytest.param(TYPED, {"column": "t"}, ["first", "last"], id="timestamp_tz-auto"),
    pytest.param(TYPED, {"column": "naive"}, ["first", "last"], id="timestamp_ntz-auto"),
    pytest.param(TYPED, {"column": "naive_la", "naive_timezone": "America/Los_Angeles"}, ["first", "last"],
                 id="timestamp_ntz-in-los-angeles"),
    pytest.param(TYPED, {"column": "secs"}, ["first", "last"], id="epoch-seconds-auto"),
    pytest.param(TYPED, {"column": "d"}, ["first", "last"], id="date-auto"),
    pytest.param(TYPED, {"column": "t", "timezone": "Asia/Kolkata"}, ["before", "first"],
                 id="timestamp_tz-kolkata-day"),
    pytest.param("SELECT * FROM analytics.public.typed WHERE t >= {day_start} AND t < {day_end}",
                 {"timezone": "Asia/Kolkata"}, ["before", "first"], id="macros-kolkata-day"),
    pytest.param("SELECT * FROM analytics.public.typed WHERE secs >= {day_start_epoch} AND secs < {day_end_epoch}",
                 {}, ["first", "last"], id="epoch-macros"),
    pytest.param("SELECT * FROM analytics.public.typed WHERE d = {day}", {}, ["first", "last"], id="date-macro"),
    pytest.param("SELECT * FROM analytics.public.typed WHERE naive >= {day_start_utc} AND naive < {day_end_utc}",
                 {}, ["first", "last"], id="utc-macros-on-ntz"),
])
def test_day_rendering_selects_exactly_the_day(sf_conn: str, sql: str, day: dict[str, str],
                                               expected: list[str]) -> None:
    """The engine's day query in the Snowflake dialect, scoped as the pipeline does it, run on the stand-in."""
    spec = SourceSpec.from_dict({"name": "typed", "warehouse": {"conn_id": sf_conn}, "sql": sql,
                                 "mapping": {"timestamp": day.get("column", "t"), "event_name": "n",
                                             "ids": {"userID": "u"}}, "day": day})
    reader = warehouse_reader(sf_conn)
    window = DayWindow.of(RENDER_DAY, spec.day.timezone)
    query = day_query_for(spec, window, reader)  # as the pipeline scopes it (probing the day column's type)
    names = sorted(r for b in reader.read_batches(query.sql) for r in b.column("N").to_pylist())
    assert names == sorted(expected), query.sql
    assert reader.count(query.sql) == len(expected)


def test_missing_table_fails_the_day_with_a_clear_message(sf_conn: str, statsig: EmulatorProcess,
                                                          tmp_path: Path) -> None:
    spec = example_spec(sql="SELECT ts, event_name, user_id, stable_id, value, page, plan, props "
                            "FROM analytics.public.evnets WHERE ds = {day}")
    with pytest.raises(IngestionError) as caught:
        ingest(spec, statsig, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"source 'snowflake_events' day {DAY}: count failed on snowflake connection 'wh_sf'")
    assert "cannot find the table or view, or the role may not read it" in message
    assert "EVNETS" in message.upper() and message.count("002003") == 1
    assert PASSWORD not in message
    assert caught.value.report.status == L.FAILED and statsig.stats()["requests"] == 0


# ------------------------------------------------------------------ no service: parameters, errors
def test_connection_parameters_carry_protocol_options_and_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SF_PARAMS", _conn_json(443, session_parameters={"TIMEZONE": "UTC"}))
    hook = StatsigSnowflakeHook(snowflake_conn_id="sf_params")
    assert "protocol" in hook._get_conn_params()  # even a plain get_conn() honours the extra
    reader_hook = StatsigSnowflakeHook(
        snowflake_conn_id="sf_params", warehouse="BIG_WH", role="READER",
        connector_options={"arrow_number_to_decimal": False, "client_prefetch_threads": 8},
        extra_session_parameters={"QUERY_TAG": "statsig", "STATEMENT_TIMEOUT_IN_SECONDS": 60})
    params = reader_hook._get_conn_params()
    assert (params["protocol"], params["host"], params["port"], params["network_timeout"]) == (
        "http", "127.0.0.1", 443, 15)
    assert (params["warehouse"], params["role"], params["database"]) == ("BIG_WH", "READER", "analytics")
    assert params["arrow_number_to_decimal"] is False and params["client_prefetch_threads"] == 8
    assert params["session_parameters"] == {"TIMEZONE": "UTC", "QUERY_TAG": "statsig",
                                            "STATEMENT_TIMEOUT_IN_SECONDS": 60}
    described = reader_hook.describe_connection()
    assert "account fakesnow" in described and "warehouse BIG_WH" in described and PASSWORD not in described

    reader = hook.warehouse_reader({"warehouse": "W2", "prefetch_threads": 2, "query_timeout_seconds": 90})
    built = reader._connect.__self__._get_conn_params()  # type: ignore[attr-defined]  # the hook get_conn uses
    assert (built["warehouse"], built["client_prefetch_threads"], built["arrow_number_to_decimal"]) == ("W2", 2, True)
    assert built["session_parameters"] == {"TIMEZONE": "UTC", "QUERY_TAG": "statsig_airflow_provider"}
    assert reader.query_timeout_seconds == 90


def test_options_are_checked() -> None:
    assert SnowflakeOptions.from_dict(None) == SnowflakeOptions()
    with pytest.raises(ValueError, match="did you mean 'warehouse'"):
        SnowflakeOptions.from_dict({"warehous": "X"})
    with pytest.raises(ValueError, match="query_timeout_seconds' must be int"):
        SnowflakeOptions.from_dict({"query_timeout_seconds": "60"})
    with pytest.raises(ValueError, match="prefetch_threads must be between"):
        SnowflakeOptions.from_dict({"prefetch_threads": 0})


def test_number_with_scale_maps_to_decimal_unless_asked_for_float() -> None:
    from snowflake.connector.constants import FIELD_NAME_TO_ID
    from snowflake.connector.cursor import ResultMetadata

    def meta(kind: str, precision: int | None = None, scale: int | None = None) -> ResultMetadata:
        return ResultMetadata("c", FIELD_NAME_TO_ID[kind], None, None, precision, scale, True)

    assert snowflake_arrow_type(meta("FIXED", 12, 2)) == pa.decimal128(12, 2)
    assert snowflake_arrow_type(meta("FIXED", 12, 2), number_to_decimal=False) == pa.float64()
    assert snowflake_arrow_type(meta("FIXED", 38, 0)) == pa.int64()
    assert snowflake_arrow_type(meta("TIMESTAMP_TZ")) == pa.timestamp("ns", tz="UTC")
    assert snowflake_arrow_type(meta("TIMESTAMP_NTZ")) == pa.timestamp("ns")
    assert snowflake_arrow_type(meta("VARIANT")) == pa.string()


def test_failure_messages_for_what_fakesnow_cannot_do() -> None:
    """The exceptions the connector raises for these (errno = Snowflake's code), worded for users."""
    from snowflake.connector.errors import DatabaseError, OperationalError, ProgrammingError

    bad_login = DatabaseError(msg="Failed to connect to DB: acme.snowflakecomputing.com:443. Incorrect username or "
                                  "password was specified.", errno=390100, sqlstate="28000")
    assert explain_snowflake_error(bad_login).startswith("Snowflake refused the credentials")
    timeout = ProgrammingError(msg="Statement reached its statement or warehouse timeout of 60 second(s) and was "
                                   "canceled.", errno=630, sqlstate="57014")
    assert explain_snowflake_error(timeout).startswith("the Snowflake query timed out")
    denied = ProgrammingError(msg="SQL access control error: Insufficient privileges to operate on table 'EVENTS'",
                              errno=3001, sqlstate="42501")
    assert explain_snowflake_error(denied).startswith("the Snowflake role lacks a privilege")
    no_warehouse = ProgrammingError(msg="No active warehouse selected in the current session.", errno=606,
                                    sqlstate="57P03")
    assert explain_snowflake_error(no_warehouse).startswith("no usable Snowflake warehouse")
    unreachable = OperationalError(msg="Could not connect to Snowflake backend after 2 attempt(s).", errno=250001)
    assert explain_snowflake_error(unreachable).startswith("could not reach Snowflake")
    other = ProgrammingError(msg="SQL compilation error: syntax error line 1", errno=1003, sqlstate="42000")
    assert explain_snowflake_error(other) == ("ProgrammingError 001003 (42000): "
                                              "SQL compilation error: syntax error line 1")


def test_importing_the_hook_does_not_import_the_driver() -> None:
    """DAG files import the provider; the connector is imported only when a day is read."""
    code = ("import sys, statsig_airflow_provider.hooks.warehouse, statsig_airflow_provider.hooks.snowflake; "
            "print(sorted(m for m in sys.modules if m.startswith('snowflake.connector')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]"
