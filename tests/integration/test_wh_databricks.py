"""Databricks: StatsigDatabricksHook against minilake (a local Databricks API emulator), started by scripts/test.sh.

What runs for real here: the stock DatabricksHook's connection handling and REST calls (token
auth, retries, its error wrapping), the SQL Statement Execution API as minilake serves it
(`ARROW_STREAM` + `EXTERNAL_LINKS`, chunks of 100,000 rows followed through
`next_chunk_internal_link` and downloaded without the Authorization header, `JSON_ARRAY` + `INLINE`
for counts and schema probes), the day macros and day filters rendered for Databricks and executed
(minilake runs them on DuckDB, turning backticks into double quotes), a missing table's error,
the engine and the Statsig emulator.

What is NOT exercised: the real Databricks service and Databricks SQL semantics (DuckDB runs the
SQL; minilake reports DuckDB type names, builds its Arrow chunks from Python values, so dates and
timestamps arrive as text and are cast to the manifest's types by the reader); statements that
are still running when the submit call returns (minilake runs them synchronously), LZ4-compressed
results, expiring links; authentication and permissions (minilake checks no credentials).

Which path only a mock covers: the databricks-sql-connector's Thrift protocol (`api: connector`,
`cursor.fetchmany_arrow`, used for all-purpose clusters). No local server speaks Thrift, so
`sql.connect` is replaced by a fake connection whose cursor runs the SQL on DuckDB; what is tested
is our use of the connector's API, not the connector. The statement timeout and cancel, expired
link renewal and the 401/403 messages are tested against stubbed API responses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pytest

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.pipeline import IngestionError, day_query_for
from statsig_airflow_provider.engine.spec import SourceSpec, load_spec
from statsig_airflow_provider.engine.sql import transpile
from statsig_airflow_provider.hooks.databricks import (
    DatabricksConnectorReader,
    DatabricksOptions,
    DatabricksStatementReader,
    DatabricksStatementTimeout,
    StatsigDatabricksHook,
    conform,
    explain_databricks_error,
    manifest_schema,
    warehouse_id_from_http_path,
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

EXAMPLE = ROOT / "dags_examples" / "sources" / "warehouses" / "databricks_events.yaml"
TOKEN = "dapi-test-token-0123456789"  # minilake checks none; long enough for Airflow's secret masking
CONN_ID = "wh_dbx"
LAKE = {"catalog": "lake", "schema": "statsig"}  # minilake cannot create `main` (a reserved name in DuckDB)


@dataclasses.dataclass(frozen=True)
class Minilake:
    url: str
    warehouse_id: str

    def conn_json(self, **extra: object) -> str:
        host, port = self.url.removeprefix("http://").split(":")
        return json.dumps({"conn_type": "databricks", "host": host, "port": int(port), "schema": "http",
                           "password": TOKEN,
                           "extra": {"http_path": f"/sql/1.0/warehouses/{self.warehouse_id}", **extra}})

    def run(self, sql: str) -> dict[str, Any]:
        """A statement straight through the REST API (for loading test data, not the code under test)."""
        body = json.dumps({"warehouse_id": self.warehouse_id, "statement": sql, "format": "JSON_ARRAY",
                           "disposition": "INLINE", "wait_timeout": "30s"}).encode()
        request = urllib.request.Request(f"{self.url}/api/2.0/sql/statements", data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert answer["status"]["state"] == "SUCCEEDED", answer
        return answer


@pytest.fixture(scope="session")
def minilake() -> Minilake:
    url, warehouse = os.environ.get("STATSIG_TEST_MINILAKE_URL", ""), os.environ.get(
        "STATSIG_TEST_MINILAKE_WAREHOUSE_ID", "")
    if not (url and warehouse):
        require_service("minilake", "STATSIG_TEST_MINILAKE_URL / _WAREHOUSE_ID are not set")
    try:
        with urllib.request.urlopen(f"{url}/_minilake/health", timeout=5) as response:
            response.read()
    except OSError as exc:
        require_service("minilake", f"{url} does not answer: {exc}")
    return Minilake(url, warehouse)


EDGES = {  # one row at each edge of the Statsig (UTC-8) day 2026-03-08 and one just outside each edge
    "before": dt.datetime(2026, 3, 8, 7, 59, 59, tzinfo=dt.timezone.utc),
    "first": dt.datetime(2026, 3, 8, 8, 0, 0, tzinfo=dt.timezone.utc),
    "last": dt.datetime(2026, 3, 9, 7, 59, 59, tzinfo=dt.timezone.utc),
    "after": dt.datetime(2026, 3, 9, 8, 0, 0, tzinfo=dt.timezone.utc),
}
RENDER_DAY = dt.date(2026, 3, 8)  # also the US spring-forward day (23 hours in America/Los_Angeles)


@pytest.fixture(scope="session")
def dbx_tables(minilake: Minilake, demo_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Minilake:
    """lake.statsig.events (the demo day, loaded from Parquet by minilake's DuckDB) and lake.statsig.typed."""
    import pyarrow.parquet as pq

    parquet = tmp_path_factory.mktemp("databricks") / "events.parquet"
    con = duckdb.connect(str(demo_warehouse), read_only=True)
    try:
        pq.write_table(con.sql("SELECT * FROM events").to_arrow_table(), parquet)
    finally:
        con.close()
    minilake.run(f"CREATE OR REPLACE TABLE lake.statsig.events AS SELECT * FROM read_parquet('{parquet}')")
    rows = []
    for name, instant in EDGES.items():
        la = instant.astimezone(ZoneInfo("America/Los_Angeles")).replace(tzinfo=None)
        statsig_day = instant.astimezone(dt.timezone(dt.timedelta(hours=-8))).date()
        rows.append(f"('{name}', 'u1', TIMESTAMPTZ '{instant.isoformat(sep=' ')}', "
                    f"TIMESTAMP '{la.isoformat(sep=' ')}', {int(instant.timestamp())}, DATE '{statsig_day}')")
    minilake.run("CREATE OR REPLACE TABLE lake.statsig.typed (n VARCHAR, u VARCHAR, t TIMESTAMPTZ, "
                 "naive_la TIMESTAMP, secs BIGINT, d DATE)")
    minilake.run(f"INSERT INTO lake.statsig.typed VALUES {', '.join(rows)}")
    return minilake


@pytest.fixture
def dbx_conn(dbx_tables: Minilake, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", dbx_tables.conn_json())
    return CONN_ID


def example_spec(**changes: object) -> SourceSpec:
    """The shipped example source, on the test connection and minilake's catalog."""
    spec = load_spec(EXAMPLE)
    return dataclasses.replace(spec, warehouse_conn_id=CONN_ID, warehouse_options={**spec.warehouse_options, **LAKE},
                               **changes)  # type: ignore[arg-type]


def ingest(spec: SourceSpec, statsig: EmulatorProcess, tmp_path: Path):
    reader = warehouse_reader(spec.warehouse_conn_id, spec.warehouse_options)
    return ingest_with(spec, reader, statsig, tmp_path)


# ------------------------------------------------------------------------------ against minilake
def test_example_source_lands_exactly_once(dbx_conn: str, dbx_tables: Minilake, demo_warehouse: Path,
                                           statsig: EmulatorProcess, tmp_path: Path) -> None:
    spec = example_spec()
    reader = warehouse_reader(dbx_conn, spec.warehouse_options)
    assert isinstance(reader, DatabricksStatementReader) and reader.dialect == "databricks"
    assert reader.warehouse_id == dbx_tables.warehouse_id  # from the connection's http_path
    assert TOKEN not in reader.describe()
    report = ingest(spec, statsig, tmp_path)
    assert report.status == L.INGESTED, report.summary()
    assert report.warehouse_count == report.rows_read == day_row_count(demo_warehouse)
    result = assert_exactly_once(demo_warehouse, statsig)
    assert report.delivered == result["expected"] and report.rejected == report.rows_read - result["expected"]


def test_chunks_are_followed_bounded_and_fetched_without_auth(dbx_conn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """250,000 rows are three minilake chunks: the reader follows the links and keeps the batch size."""
    import requests.adapters

    sent: list[tuple[str, dict[str, str]]] = []
    original = requests.adapters.HTTPAdapter.send

    def recording_send(adapter: Any, request: Any, **kwargs: Any) -> Any:
        sent.append((request.url, dict(request.headers)))
        return original(adapter, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", recording_send)
    reader = warehouse_reader(dbx_conn, {**LAKE, "download_threads": 2})
    sql = "SELECT i, i % 7 AS k, 'row-' || CAST(i AS VARCHAR) AS label FROM range(250000) AS r(i)"
    batches = list(reader.read_batches(sql, 40_000))
    assert max(b.num_rows for b in batches) <= 40_000
    table = pa.Table.from_batches(batches)
    assert table.num_rows == 250_000 and table.column("i").to_pylist() == list(range(250_000))
    assert table.schema.field("i").type == pa.int64() and table.schema.field("label").type == pa.string()
    downloads = [headers for url, headers in sent if url.endswith("/data")]
    chunk_pages = [url for url, _ in sent if "/result/chunks/" in url and not url.endswith("/data")]
    assert len(downloads) == 3 and len(chunk_pages) == 2  # chunk 0 came with the statement; 1 and 2 via links
    assert all("Authorization" not in h and "authorization" not in h for h in downloads)
    api_calls = [h for url, h in sent if "/api/2.0/sql/statements" in url and not url.endswith("/data")]
    assert api_calls and all("Authorization" in h for h in api_calls)
    assert reader.count(sql) == 250_000


def test_count_and_schema(dbx_conn: str, demo_warehouse: Path) -> None:
    reader = warehouse_reader(dbx_conn, LAKE)
    sql = "SELECT * FROM events WHERE ds = CAST('2026-11-30' AS DATE)"
    assert reader.count(sql) == day_row_count(demo_warehouse)
    schema = reader.schema(sql)  # from the manifest of a zero-row probe
    assert (schema.field("ts").type, schema.field("ds").type, schema.field("value").type,
            schema.field("props").type) == (pa.int64(), pa.date32(), pa.float64(), pa.string())
    first = next(iter(reader.read_batches(sql, 100)))
    assert first.schema.field("ds").type == pa.date32()  # text dates from the stand-in, cast to the manifest type


TYPED = "SELECT * FROM typed"


@pytest.mark.parametrize(("sql", "day", "expected"), [
    pytest.param(TYPED, {"column": "t"}, ["first", "last"], id="timestamp-auto"),
    pytest.param(TYPED, {"column": "naive_la", "column_type": "timestamp", "naive_timezone": "America/Los_Angeles"},
                 ["first", "last"], id="timestamp_ntz-in-los-angeles"),
    pytest.param(TYPED, {"column": "secs"}, ["first", "last"], id="epoch-seconds-auto"),
    pytest.param(TYPED, {"column": "d"}, ["first", "last"], id="date-auto"),
    pytest.param(TYPED, {"column": "t", "timezone": "Asia/Kolkata"}, ["before", "first"],
                 id="timestamp-kolkata-day"),
    pytest.param("SELECT * FROM typed WHERE t >= {day_start} AND t < {day_end}", {"timezone": "Asia/Kolkata"},
                 ["before", "first"], id="macros-kolkata-day"),
    pytest.param("SELECT * FROM typed WHERE secs >= {day_start_epoch} AND secs < {day_end_epoch}", {},
                 ["first", "last"], id="epoch-macros"),
    pytest.param("SELECT * FROM typed WHERE d = {day}", {}, ["first", "last"], id="date-macro"),
])
def test_day_rendering_selects_exactly_the_day(dbx_conn: str, sql: str, day: dict[str, str],
                                               expected: list[str]) -> None:
    """The engine's day query in the Databricks dialect, scoped as the pipeline does it, run on the stand-in."""
    spec = SourceSpec.from_dict({"name": "typed", "warehouse": {"conn_id": dbx_conn, "options": LAKE}, "sql": sql,
                                 "mapping": {"timestamp": day.get("column", "t"), "event_name": "n",
                                             "ids": {"userID": "u"}}, "day": day})
    reader = warehouse_reader(dbx_conn, spec.warehouse_options)
    window = DayWindow.of(RENDER_DAY, spec.day.timezone)
    query = day_query_for(spec, window, reader)  # as the pipeline scopes it (probing the day column's type)
    names = sorted(r for b in reader.read_batches(query.sql) for r in b.column("n").to_pylist())
    assert names == sorted(expected), query.sql
    assert reader.count(query.sql) == len(expected)


def test_missing_table_fails_the_day_with_a_clear_message(dbx_conn: str, statsig: EmulatorProcess,
                                                          tmp_path: Path) -> None:
    spec = example_spec(sql="SELECT ts, event_name, user_id, stable_id, value, page, plan, props "
                            "FROM evnets WHERE ds = {day}")
    with pytest.raises(IngestionError) as caught:
        ingest(spec, statsig, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"source 'databricks_events' day {DAY}: count failed on databricks connection 'wh_dbx'")
    assert "Databricks cannot find the table, view, schema or catalog" in message and "evnets" in message
    assert TOKEN not in message
    assert caught.value.report.status == L.FAILED and statsig.stats()["requests"] == 0


# ------------------------------------------- the connector (Thrift) path: a mocked connection only
class _DuckCursor:
    """Stands in for databricks.sql's cursor: runs the (transpiled) SQL on DuckDB, answers in Arrow."""

    def __init__(self, db: Path, calls: list[str]) -> None:
        self.con = duckdb.connect(str(db), read_only=True)
        self.calls = calls
        self.reader: pa.RecordBatchReader | None = None
        self.description: list[tuple] | None = None

    def execute(self, sql: str) -> None:
        self.calls.append(sql)
        relation = self.con.sql(transpile(sql, "databricks", "duckdb"))
        self.description = [(name, str(kind).lower(), None, None, None, None, True)
                            for name, kind in zip(relation.columns, relation.types, strict=True)]
        self.reader = relation.to_arrow_reader(1_000)

    def fetchmany_arrow(self, size: int) -> pa.Table:
        assert self.reader is not None
        batches, rows = [], 0
        while rows < size:
            try:
                batch = self.reader.read_next_batch()
            except StopIteration:
                break
            batches.append(batch)
            rows += batch.num_rows
        return pa.Table.from_batches(batches) if batches else pa.table({})  # the connector's end: no schema

    def close(self) -> None:
        self.con.close()


def test_connector_path_on_a_mocked_connection(demo_warehouse: Path, statsig: EmulatorProcess, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.databricks.hooks import databricks_sql

    connects: list[tuple[tuple, dict]] = []
    calls: list[str] = []

    class FakeConnection:
        def cursor(self) -> _DuckCursor:
            return _DuckCursor(demo_warehouse, calls)

        def close(self) -> None:
            pass

    def fake_connect(*args: Any, **kwargs: Any) -> FakeConnection:
        connects.append((args, kwargs))
        return FakeConnection()

    monkeypatch.setattr(databricks_sql.sql, "connect", fake_connect)
    monkeypatch.setenv("AIRFLOW_CONN_DBX_CLUSTER", json.dumps({
        "conn_type": "databricks", "host": "adb-123.azuredatabricks.net", "password": TOKEN,
        "extra": {"http_path": "sql/protocolv1/o/123/0101-abcdef"}}))
    spec = dataclasses.replace(load_spec(EXAMPLE), warehouse_conn_id="dbx_cluster",
                               warehouse_options={"catalog": "main", "schema": "analytics"})
    reader = warehouse_reader("dbx_cluster", spec.warehouse_options)
    assert isinstance(reader, DatabricksConnectorReader)  # a cluster http_path has no Statement Execution API
    report = ingest(spec, statsig, tmp_path)
    assert report.status == L.INGESTED and report.warehouse_count == report.rows_read
    assert_exactly_once(demo_warehouse, statsig)
    args, kwargs = connects[0]
    assert args == ("adb-123.azuredatabricks.net", "sql/protocolv1/o/123/0101-abcdef", TOKEN)
    assert (kwargs["catalog"], kwargs["schema"]) == ("main", "analytics")
    assert any("COUNT(*)" in c for c in calls)
    assert reader.schema("SELECT ts, ds FROM events").field("ds").type == pa.date32()
    batches = list(reader.read_batches("SELECT * FROM events", 3_000))
    assert max(b.num_rows for b in batches) <= 3_000 and sum(b.num_rows for b in batches) == report.rows_read


# ------------------------------------------------------------ no service: stubs, options, messages
class _StubHook:
    """Answers the Statement Execution API calls the reader makes, from a script."""

    def __init__(self, responses: dict[str, list[dict[str, Any]]]) -> None:
        self.responses = responses
        self.calls: list[tuple[str, str]] = []

    def _do_api_call(self, endpoint: tuple[str, str], json: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append(endpoint)
        method, path = endpoint
        key = "cancel" if path.endswith("/cancel") else method
        queue = self.responses[key]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def _get_requests_kwargs(self) -> dict[str, Any]:
        return {}


def test_a_statement_past_its_timeout_is_cancelled() -> None:
    running = {"statement_id": "s1", "status": {"state": "RUNNING"}}
    hook = _StubHook({"POST": [running], "GET": [running], "cancel": [{}]})
    reader = DatabricksStatementReader(hook, warehouse_id="w1", query_timeout_seconds=0.3,  # type: ignore[arg-type]
                                       wait_timeout_seconds=0)
    with pytest.raises(DatabricksStatementTimeout) as caught:
        list(reader.read_batches("SELECT 1"))
    assert hook.calls[-1] == ("POST", "2.0/sql/statements/s1/cancel")
    assert reader.explain(caught.value).startswith("the Databricks statement timed out")


def test_failed_statement_and_expired_link() -> None:
    failed = {"statement_id": "s2", "status": {"state": "FAILED", "error": {
        "error_code": "PERMISSION_DENIED",
        "message": "User does not have SELECT on table `main`.`analytics`.`events`."}}}
    reader = DatabricksStatementReader(_StubHook({"POST": [failed]}), warehouse_id="w1")  # type: ignore[arg-type]
    with pytest.raises(Exception) as caught:
        reader.count("SELECT 1")
    assert reader.explain(caught.value).startswith("the Databricks principal lacks a permission")

    ipc = pa.BufferOutputStream()
    with pa.ipc.new_stream(ipc, pa.schema([("x", pa.int64())])) as writer:
        writer.write_table(pa.table({"x": [1, 2, 3]}))
    payload = ipc.getvalue().to_pybytes()

    class Response:
        def __init__(self, status: int, content: bytes = b"") -> None:
            self.status_code, self.content = status, content

    class Session:  # the first link has expired; the renewed one works
        def get(self, url: str, headers: dict[str, str], timeout: float) -> Response:
            assert "Authorization" not in headers
            return Response(200, payload) if url.endswith("fresh") else Response(403)

    done = {"statement_id": "s3", "status": {"state": "SUCCEEDED"},
            "manifest": {"schema": {"columns": [{"name": "x", "type_text": "BIGINT", "position": 0}]},
                         "total_row_count": 3},
            "result": {"external_links": [{"chunk_index": 0, "external_link": "https://storage/expired?sig=SECRET"}]}}
    renewed = {"external_links": [{"chunk_index": 0, "external_link": "https://storage/fresh"}]}
    hook = _StubHook({"POST": [done], "GET": [renewed]})
    reader = DatabricksStatementReader(hook, warehouse_id="w1")  # type: ignore[arg-type]
    reader._session = Session  # type: ignore[method-assign]
    assert pa.Table.from_batches(list(reader.read_batches("SELECT x"))).column("x").to_pylist() == [1, 2, 3]
    assert hook.calls[-1] == ("GET", "2.0/sql/statements/s3/result/chunks/0")

    class Refusing(Session):
        def get(self, url: str, headers: dict[str, str], timeout: float) -> Response:
            return Response(403)

    reader = DatabricksStatementReader(_StubHook({"POST": [done], "GET": [renewed]}),  # type: ignore[arg-type]
                                       warehouse_id="w1")
    reader._session = Refusing  # type: ignore[method-assign]
    with pytest.raises(Exception, match="downloading result chunk 0 failed: HTTP 403") as refused:
        list(reader.read_batches("SELECT x"))
    assert "SECRET" not in str(refused.value)  # the presigned URL's signature never reaches an error


def test_options_and_http_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    assert warehouse_id_from_http_path("/sql/1.0/warehouses/abc123") == "abc123"
    assert warehouse_id_from_http_path("sql/1.0/endpoints/abc123/") == "abc123"
    assert warehouse_id_from_http_path("sql/protocolv1/o/1/0101-abc") is None
    with pytest.raises(ValueError, match="did you mean 'catalog'"):
        DatabricksOptions.from_dict({"catalg": "main"})
    with pytest.raises(ValueError, match="wait_timeout_seconds must be 0 or between 5 and 50"):
        DatabricksOptions.from_dict({"wait_timeout_seconds": 60})
    monkeypatch.setenv("AIRFLOW_CONN_DBX_NOPATH",
                       json.dumps({"conn_type": "databricks", "host": "x", "password": TOKEN}))
    with pytest.raises(ValueError, match="needs a SQL warehouse"):
        StatsigDatabricksHook(databricks_conn_id="dbx_nopath").warehouse_reader({})
    hook = StatsigDatabricksHook(databricks_conn_id="dbx_nopath")
    reader = hook.warehouse_reader({"warehouse_id": "w9"})
    assert isinstance(reader, DatabricksStatementReader) and reader.warehouse_id == "w9"
    # the stock User-Agent format, without Airflow's provider discovery
    assert re.fullmatch(r"databricks-airflow/\d+\.\d+\.\d+\S* _/0\.0\.0 python/\S+ os/\S+ airflow/\S+ "
                        r"operator/StatsigIngestion", hook.user_agent_value)


def test_manifest_types_and_conform() -> None:
    kinds = ["TIMESTAMP", "TIMESTAMP_NTZ", "DATE", "DECIMAL(12,2)", "ARRAY<STRING>", "STRING"]
    manifest = {"schema": {"columns": [{"name": name, "type_text": kind, "position": i}
                                       for i, (name, kind) in enumerate(zip("tndvas", kinds, strict=True))]}}
    schema = manifest_schema(manifest)
    assert schema.types == [pa.timestamp("us", tz="UTC"), pa.timestamp("us"), pa.date32(), pa.decimal128(12, 2),
                            pa.null(), pa.string()]
    text = pa.record_batch({"t": ["2026-03-08 08:00:00+00:00"], "n": ["2026-03-08 08:00:00"], "d": ["2026-03-08"],
                            "v": ["1.25"], "a": ['["x"]'], "s": [None]})
    out = conform(text, schema)
    assert out.schema.types == [pa.timestamp("us", tz="UTC"), pa.timestamp("us"), pa.date32(), pa.decimal128(12, 2),
                                pa.string(), pa.string()]


def test_failure_messages_for_what_minilake_cannot_do() -> None:
    from airflow.providers.databricks.exceptions import DatabricksApiError

    bad_token = DatabricksApiError('Response: {"error_code":"401","message":"Credential was not sent or was of an '
                                   'unsupported type for this API."}, Status Code: 401', http_status_code=401)
    assert explain_databricks_error(bad_token).startswith("Databricks refused the credentials")
    denied = DatabricksApiError('Response: {"error_code":"PERMISSION_DENIED","message":"You do not have permission '
                                'to use the SQL Warehouse"}, Status Code: 403', http_status_code=403)
    assert explain_databricks_error(denied).startswith("the Databricks principal lacks a permission")
    missing = DatabricksApiError('Response: {"error_code":"RESOURCE_DOES_NOT_EXIST","message":"No warehouse found '
                                 'with id w1"}, Status Code: 404', http_status_code=404)
    assert explain_databricks_error(missing).startswith("Databricks cannot find")
    assert explain_databricks_error(ValueError("boom")) == "ValueError: boom"


def test_importing_the_hook_does_not_import_the_connector() -> None:
    """DAG files import the provider; databricks-sql-connector is imported only by the connector path."""
    code = ("import sys, statsig_airflow_provider.hooks.warehouse, statsig_airflow_provider.hooks.databricks; "
            "print(sorted(m for m in sys.modules if m.startswith('databricks.sql')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]"
