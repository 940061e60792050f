"""Athena, against moto server's Athena and S3 APIs, with DuckDB standing in for Athena's engine.

moto's Athena accepts queries and reports them SUCCEEDED but never runs SQL: it hands out queued
results (and writes them as the CSV result file in moto S3). `AthenaOnDuckDB` fills that gap: just
before the reader starts each query, it transpiles the Athena SQL to DuckDB, runs it on the sample
warehouse and queues the real answer — so pyathena, the Athena API calls, the CSV result file and
pyarrow's reading of it are real, and the rows are the SQL's real result. For an UNLOAD it writes
the Parquet where Athena would (moto S3), so the reader's UNLOAD read and cleanup are real too.
Not exercised: Athena's own SQL engine (Trino semantics beyond what sqlglot's transpile to DuckDB
preserves), the UNLOAD data manifest (moto returns none), IAM/Lake Formation permissions, real
failure states (moto never fails a query: the missing-table message is checked on the exception
pyathena raises for Athena's TABLE_NOT_FOUND reason), and workgroup query timeouts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import requests

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.options import OptionError
from statsig_airflow_provider.engine.pipeline import IngestionError
from statsig_airflow_provider.engine.spec import load_spec
from statsig_airflow_provider.engine.sql import day_query, render_macros, transpile
from statsig_airflow_provider.hooks.athena import AthenaOptions, AthenaReader, explain_athena, unload_statement
from statsig_airflow_provider.hooks.warehouse import warehouse_reader
from tests.conftest import DAY, ROOT, EmulatorProcess, assert_exactly_once
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
    moto_url,
    new_bucket,
    put_table,
    render_spec,
    spec_with,
)
from tests.integration.test_pipeline import SPEC_DICT

FAST = {"poll_interval_seconds": 0.05}
_ATHENA_TYPE_NAMES = [(pa.types.is_boolean, "boolean"), (pa.types.is_int32, "integer"), (pa.types.is_integer, "bigint"),
                      (pa.types.is_floating, "double"), (pa.types.is_date, "date"), (pa.types.is_decimal, "decimal")]


def _athena_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp"
    return next((name for check, name in _ATHENA_TYPE_NAMES if check(t)), "varchar")


def _athena_text(value: Any) -> str | None:
    """A value as Athena writes it in a result. moto writes each value between quotes without
    escaping, so quotes are doubled here as Athena's own CSV writer does."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        return f"{text} UTC" if value.tzinfo else text
    if isinstance(value, float):
        return repr(value)
    return str(value).replace('"', '""')


class AthenaOnDuckDB:
    """Answers each Athena query with its DuckDB result, queued in moto just before it starts."""

    UNLOAD = re.compile(r"^UNLOAD \((?P<query>.*)\)\nTO '(?P<to>s3://[^']+/)'\nWITH \((?P<with>.*)\)$", re.S)

    def __init__(self, database: Path, aws_conn_id: str) -> None:
        self.database = database
        self.aws_conn_id = aws_conn_id
        self.statements: list[str] = []

    def run(self, athena_sql: str) -> pa.Table:
        con = duckdb.connect(str(self.database), read_only=True)
        try:
            return con.sql(transpile(athena_sql, "athena", "duckdb")).to_arrow_table()
        finally:
            con.close()

    def queue(self, table: pa.Table) -> None:
        columns = [{"Name": f.name, "Label": f.name, "Type": _athena_type(f.type), "CatalogName": "hive",
                    "SchemaName": "", "TableName": "", "Precision": getattr(f.type, "precision", 0),
                    "Scale": getattr(f.type, "scale", 0), "Nullable": "UNKNOWN", "CaseSensitive": False}
                   for f in table.schema]
        header = {"Data": [{"VarCharValue": f.name} for f in table.schema]} if table.num_columns else None
        rows = [{"Data": [{"VarCharValue": t} if (t := _athena_text(v)) is not None else {} for v in row.values()]}
                for row in table.to_pylist()]
        body = {"results": [{"rows": ([header] if header else []) + rows, "column_info": columns}]}
        response = requests.post(f"{moto_url()}/moto-api/static/athena/query-results", json=body, timeout=60)
        assert response.status_code == 201, response.text

    def __call__(self, sql: str) -> None:
        self.statements.append(sql)
        unload = self.UNLOAD.match(sql)
        if unload is None:
            self.queue(self.run(sql))
            return
        assert "format = 'PARQUET'" in unload["with"]
        result = self.run(unload["query"])
        bucket, _, prefix = unload["to"][len("s3://"):].partition("/")
        half = result.num_rows // 2  # two files, named the way Athena names UNLOAD output
        put_table(self.aws_conn_id, bucket, f"{prefix}20261201_000000_00001_abcde_1.snappy", result.slice(0, half))
        put_table(self.aws_conn_id, bucket, f"{prefix}20261201_000000_00001_abcde_2.snappy", result.slice(half))
        self.queue(pa.table({}))


@pytest.fixture
def athena_conn(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """An Athena connection on moto (result location in its own bucket) and an AWS one for the tests."""
    aws_connection(monkeypatch, "wh_athena_s3")
    bucket = new_bucket("wh_athena_s3", "wh-athena")
    aws_connection(monkeypatch, "wh_athena", conn_type="athena", s3_staging_dir=f"s3://{bucket}/results/",
                   work_group="primary")
    return "wh_athena", bucket


@pytest.fixture
def athena(athena_conn: tuple[str, str], demo_warehouse: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[AthenaOnDuckDB]:
    engine = AthenaOnDuckDB(demo_warehouse, "wh_athena_s3")
    original = AthenaReader.execute

    @contextlib.contextmanager
    def execute(self: AthenaReader, sql: str) -> Iterator[Any]:
        engine(sql)
        with original(self, sql) as cursor:
            yield cursor

    monkeypatch.setattr(AthenaReader, "execute", execute)
    yield engine


def test_small_day_reads_the_csv_result_and_lands_exactly_once(
        athena: AthenaOnDuckDB, athena_conn: tuple[str, str], demo_warehouse: Path, statsig: EmulatorProcess,
        tmp_path: Path) -> None:
    conn_id, _ = athena_conn
    reader = warehouse_reader(conn_id, FAST)
    assert isinstance(reader, AthenaReader) and reader.dialect == "athena"
    expected = demo_table(demo_warehouse).num_rows
    day_sql = render_macros(SPEC_DICT["sql"], DayWindow.of(DAY, "statsig"), "athena")  # type: ignore[arg-type]
    # The result CSV is streamed and re-cut to the batch size (GetQueryResults paging would give 1,000s).
    assert [b.num_rows for b in reader.read_batches(day_sql, 7_000)] == [7_000, 7_000, expected - 14_000]
    report = ingest(spec_with(SPEC_DICT["sql"], conn_id, FAST), reader, statsig, tmp_path)  # type: ignore[arg-type]
    assert report.status == L.INGESTED and report.warehouse_count == report.rows_read == expected
    assert_exactly_once(demo_warehouse, statsig)
    assert not any(s.startswith("UNLOAD") for s in athena.statements)


def test_big_day_goes_through_unload_and_the_folder_is_deleted(
        athena: AthenaOnDuckDB, athena_conn: tuple[str, str], demo_warehouse: Path, statsig: EmulatorProcess,
        tmp_path: Path) -> None:
    conn_id, bucket = athena_conn
    options = {**FAST, "unload_threshold_rows": 5_000}
    report = ingest(spec_with(SPEC_DICT["sql"], conn_id, options), warehouse_reader(conn_id, options), statsig,  # type: ignore[arg-type]
                    tmp_path)
    assert report.status == L.INGESTED and report.rows_read == demo_table(demo_warehouse).num_rows
    assert_exactly_once(demo_warehouse, statsig)

    unloads = [s for s in athena.statements if s.startswith("UNLOAD")]
    assert len(unloads) == 1  # the 1,000-row first-load sample is below the threshold: a plain SELECT
    location = re.search(r"TO '([^']+)'", unloads[0])[1]  # type: ignore[index]
    assert re.fullmatch(rf"s3://{bucket}/results/statsig-unload/{DAY}/\d{{8}}T\d{{6}}Z-[0-9a-f]{{8}}/", location)
    day_sql = render_macros(SPEC_DICT["sql"], DayWindow.of(DAY, "statsig"), "athena")  # type: ignore[arg-type]
    assert unloads[0] == (
        "UNLOAD (SELECT * FROM (\n" + day_sql + "\n) AS statsig_day)\n"
        f"TO '{location}'\nWITH (format = 'PARQUET', compression = 'SNAPPY')")
    assert "CAST('2026-11-30' AS DATE)" in unloads[0]
    assert keys_under("wh_athena_s3", bucket, "results/statsig-unload/") == []


def test_count(athena: AthenaOnDuckDB, athena_conn: tuple[str, str], demo_warehouse: Path) -> None:
    reader = warehouse_reader(athena_conn[0], FAST)
    assert isinstance(reader, AthenaReader)
    day_sql = render_macros(SPEC_DICT["sql"], DayWindow.of(DAY, "statsig"), "athena")  # type: ignore[arg-type]
    assert reader.count(day_sql) == demo_table(demo_warehouse).num_rows
    assert reader.count("SELECT * FROM events WHERE event_name = 'purchase'") == len(
        [n for n in demo_table(demo_warehouse)["event_name"].to_pylist() if n == "purchase"])
    assert athena.statements[0].startswith("SELECT COUNT(*) AS statsig_rows FROM (\nSELECT ts, event_name")
    assert not reader.uses_unload(day_sql)


def test_results_without_a_result_file_are_paged(athena: AthenaOnDuckDB, athena_conn: tuple[str, str],
                                                 monkeypatch: pytest.MonkeyPatch, demo_warehouse: Path) -> None:
    """No s3_staging_dir (as with managed query results): no CSV file, rows paged from GetQueryResults."""
    aws_connection(monkeypatch, "wh_athena_paged", conn_type="athena", work_group="primary")
    reader = warehouse_reader("wh_athena_paged", FAST)
    assert isinstance(reader, AthenaReader) and reader.options.unload_s3_uri is None
    sql = "SELECT ts, event_name, user_id, value FROM events WHERE event_name = 'share' ORDER BY ts, user_id"
    batches = list(reader.read_batches(sql, 1_500))
    expected = athena.run(sql)
    assert sum(b.num_rows for b in batches) == expected.num_rows > 1_500
    assert max(b.num_rows for b in batches) == 1_500
    got = pa.Table.from_batches(batches)
    assert got.schema.field("ts").type == pa.int64() and got.to_pylist() == expected.to_pylist()


@pytest.mark.parametrize("tz", RENDER_TIMEZONES)
def test_day_rendering_transpiled_to_duckdb(tz: str, athena: AthenaOnDuckDB, athena_conn: tuple[str, str],
                                            tmp_path: Path) -> None:
    """The day SQL rendered for Athena, transpiled to DuckDB, selects exactly the day; the "auto"
    column types come from a schema probe through moto's Athena API (Athena's type names)."""
    db = tmp_path / "render.duckdb"
    con = duckdb.connect(str(db))
    con.register("rows", boundary_rows(tz))
    con.execute("CREATE TABLE render AS SELECT * FROM rows")
    con.close()
    athena.database = db
    reader = warehouse_reader(athena_conn[0], FAST)
    schema = reader.schema("SELECT * FROM render")
    assert [schema.field(c).type for c in ("ts_epoch", "ts_naive", "ts_tz", "ds")] == [
        pa.int64(), pa.timestamp("us"), pa.timestamp("us", tz="UTC"), pa.date32()]
    window = DayWindow.of(DAY, tz)
    check = duckdb.connect(str(db), read_only=True)
    try:
        def count(athena_sql: str) -> int:
            return check.sql(f"SELECT COUNT(*) FROM ({transpile(athena_sql, 'athena', 'duckdb')})").fetchall()[0][0]

        for column, column_type in RENDER_COLUMNS:
            for kind in (column_type, "auto"):
                spec = render_spec("SELECT * FROM render", column, kind, tz)
                query = day_query(spec, window, "athena", column=column, column_arrow_type=schema.field(column).type)
                assert count(query.sql) == BOUNDARY_INSIDE, (column, kind, query.sql)
        for sql in RENDER_MACROS:
            query = day_query(render_spec(sql.replace("{table}", "render"), None, "auto", tz), window, "athena")
            assert count(query.sql) == BOUNDARY_INSIDE, query.sql
            if "{day_start}" in sql:  # Athena's own spelling of an instant
                assert f"CAST('{window.start:%Y-%m-%d %H:%M:%S}+00:00' AS TIMESTAMP WITH TIME ZONE)" in query.sql
    finally:
        check.close()


def test_missing_workgroup_and_missing_table_give_clear_messages(
        athena_conn: tuple[str, str], monkeypatch: pytest.MonkeyPatch, statsig: EmulatorProcess,
        tmp_path: Path) -> None:
    _, bucket = athena_conn
    # A real API failure from moto, end to end (no query is queued: the query never starts).
    aws_connection(monkeypatch, "wh_athena_wg", conn_type="athena", s3_staging_dir=f"s3://{bucket}/results/",
                   work_group="no-such-workgroup")
    with pytest.raises(IngestionError) as err:
        ingest(spec_with(SPEC_DICT["sql"], "wh_athena_wg", FAST), warehouse_reader("wh_athena_wg", FAST),  # type: ignore[arg-type]
               statsig, tmp_path)
    message = str(err.value)
    assert message.startswith(f"source 'demo_events' day {DAY}: count failed on athena connection 'wh_athena_wg'")
    assert "Athena workgroup not found (WorkGroup does not exist)" in message and "testing" not in message

    # moto never fails a query, so the missing-table case is the exception pyathena raises for a
    # FAILED query with Athena's reason text.
    from pyathena.error import OperationalError

    reason = "TABLE_NOT_FOUND: line 1:15: Table 'awsdatacatalog.default.events_missing' does not exist"
    explained = explain_athena(OperationalError(reason), AthenaOptions())
    assert explained.startswith("table not found: TABLE_NOT_FOUND") and "check the table and database" in explained
    timeout = explain_athena(OperationalError("Query exhausted resources at this scale factor"), AthenaOptions())
    assert timeout.startswith("the query timed out in Athena")


def test_options_and_unload_text() -> None:
    assert AthenaOptions.parse({}, "s3://res/staging").unload_s3_uri == "s3://res/staging/statsig-unload/"
    assert AthenaOptions.parse({}, None).unload_s3_uri is None
    assert unload_statement("WITH a AS (SELECT 1 AS x) SELECT * FROM a LIMIT 5;", "s3://bkt/u/") == (
        "UNLOAD (SELECT * FROM (\nWITH a AS (SELECT 1 AS x) SELECT * FROM a LIMIT 5\n) AS statsig_day)\n"
        "TO 's3://bkt/u/'\nWITH (format = 'PARQUET', compression = 'SNAPPY')")
    for bad, match in [({"unload_threshold_rows": -1}, "at least 0"), ({"poll_interval": 1}, "did you mean"),
                       ({"unload_s3_uri": "bkt/u"}, "S3 URI")]:
        with pytest.raises(OptionError, match=match):
            AthenaOptions.parse(bad, None)


def test_example_source_parses() -> None:
    spec = load_spec(ROOT / "dags_examples" / "sources" / "warehouses" / "athena_events.yaml")
    assert spec.name == "athena_events" and spec.warehouse_conn_id
    AthenaOptions.parse(spec.warehouse_options, "s3://bkt/results/")
