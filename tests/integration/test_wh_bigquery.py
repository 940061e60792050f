"""BigQuery: StatsigBigQueryHook against bqemulator (REST + Storage Read gRPC), started by scripts/test.sh.

What runs for real here: the stock BigQueryHook's connection handling (anonymous credentials, or a
service-account key refreshed against a loopback token server), google-cloud-bigquery query jobs
over REST, the Storage Read API (read sessions, several streams read in parallel, Arrow pages),
the day macros and day filters rendered for BigQuery and executed by the emulator, the engine and
the Statsig emulator.

What is NOT exercised: the real BigQuery service (the emulator runs DuckDB behind a sqlglot
translation, so GoogleSQL corner cases and typing may differ); Storage Read of a query job's
anonymous result table (the emulator does not materialise query results, so on it that path
falls back to REST — the fallback itself is tested; Storage Read is tested on staged tables);
IAM permission errors, quotas and server-side job timeouts (the emulator has no IAM or quotas:
their messages are tested on the exceptions google-api-core raises, see the unit part below).
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import datetime as dt
import io
import json
import logging
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.pipeline import IngestionError, day_query_for
from statsig_airflow_provider.engine.spec import SourceSpec, load_spec
from statsig_airflow_provider.hooks.warehouse import warehouse_reader
from tests.conftest import DAY, ROOT, EmulatorProcess, assert_exactly_once, ingest_with, require_service

EXAMPLE = ROOT / "dags_examples" / "sources" / "warehouses" / "bigquery_events.yaml"
BQ_SCHEMA = [("ds", "DATE"), ("ts", "INT64"), ("event_name", "STRING"), ("user_id", "INT64"),
             ("stable_id", "STRING"), ("value", "FLOAT64"), ("page", "STRING"), ("plan", "STRING"),
             ("props", "STRING")]


@dataclasses.dataclass(frozen=True)
class BQEmulator:
    rest: str
    grpc: str
    project: str

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"endpoint": self.rest, "storage_endpoint": self.grpc, **extra}

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": self.rest})


@pytest.fixture(scope="session")
def bq() -> BQEmulator:
    rest, grpc_, project = (os.environ.get(f"STATSIG_TEST_BQ_{k}", "") for k in ("REST", "GRPC", "PROJECT"))
    if not (rest and grpc_ and project):
        require_service("bqemulator", "STATSIG_TEST_BQ_REST / _GRPC / _PROJECT are not set")
    emu = BQEmulator(rest, grpc_, project)
    try:
        list(emu.client().list_datasets(timeout=10))
    except Exception as exc:
        require_service("bqemulator", f"cannot reach {rest}: {exc}")
    return emu


def load_table(client: Any, table_id: str, table: pa.Table, schema: list[tuple[str, str]]) -> None:
    """Create `table_id` with `schema` and load `table` into it with a Parquet load job."""
    from google.cloud import bigquery

    client.create_dataset(table_id.rsplit(".", 1)[0], exists_ok=True)
    client.delete_table(table_id, not_found_ok=True)
    client.create_table(bigquery.Table(table_id, schema=[bigquery.SchemaField(n, t) for n, t in schema]))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    buf.seek(0)
    client.load_table_from_file(buf, table_id, job_config=bigquery.LoadJobConfig(source_format="PARQUET")).result()


@pytest.fixture(scope="session")
def bq_events(bq: BQEmulator, demo_warehouse: Path) -> str:
    """The 20,000 sample events (plus the bad rows) as analytics.events in the emulator."""
    con = duckdb.connect(str(demo_warehouse), read_only=True)
    try:
        rows = con.sql(f"SELECT {', '.join(n for n, _ in BQ_SCHEMA)} FROM events").to_arrow_table()
    finally:
        con.close()
    table_id = f"{bq.project}.analytics.events"
    load_table(bq.client(), table_id, rows, BQ_SCHEMA)
    assert bq.client().get_table(table_id).num_rows == rows.num_rows
    return table_id


@pytest.fixture
def gcp_conn(bq: BQEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """An ordinary Google Cloud connection with anonymous credentials (what the emulator accepts)."""
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"project": bq.project, "is_anonymous": True}}))
    return "google_cloud_default"


def example_spec(**options: Any) -> SourceSpec:
    spec = load_spec(EXAMPLE)
    assert isinstance(spec, SourceSpec)
    return dataclasses.replace(spec, warehouse_options={**spec.warehouse_options, **options})


def ingest(spec: SourceSpec, reader: Any, statsig: EmulatorProcess, tmp_path: Path, name: str = "ledger"):
    return ingest_with(spec, reader, statsig, tmp_path, ledger_name=name, batch_rows=5_000)


# --------------------------------------------------------------------------------- end to end
def test_example_source_day_through_engine_rest_fallback(bq: BQEmulator, bq_events: str, gcp_conn: str,
                                                         demo_warehouse: Path, statsig: EmulatorProcess,
                                                         tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The example source, unchanged but for the emulator's endpoints, read over a query job.

    Storage Read is attempted on the query's result table; the emulator does not materialise it, so
    the reader must fall back to REST pages before handing out any row (checked field by field).
    """
    spec = example_spec(**bq.options(storage_read_min_rows=1_000))
    reader = warehouse_reader(spec.warehouse_conn_id, spec.warehouse_options)
    assert reader.dialect == "bigquery" and "google_cloud_default" in reader.describe()
    with caplog.at_level(logging.WARNING, logger="statsig_airflow_provider.hooks.bigquery"):
        report = ingest(spec, reader, statsig, tmp_path)
    assert report.status == L.INGESTED and report.warehouse_count == report.rows_read == 20_016
    assert reader.last_read_path == "rest"  # type: ignore[attr-defined]
    assert "Storage Read is not available (NotFound" in caplog.text
    assert_exactly_once(demo_warehouse, statsig)


def test_staged_day_read_through_storage_read(bq: BQEmulator, bq_events: str, gcp_conn: str,
                                              demo_warehouse: Path, statsig: EmulatorProcess,
                                              tmp_path: Path) -> None:
    """staging_dataset: the day is written to a table and read by a Storage Read session (gRPC, Arrow)."""
    spec = example_spec(**bq.options(staging_dataset="statsig_staging", storage_read_min_rows=1_000))
    bq.client().create_dataset("statsig_staging", exists_ok=True)
    reader = warehouse_reader(spec.warehouse_conn_id, spec.warehouse_options)
    report = ingest(spec, reader, statsig, tmp_path)
    assert report.status == L.INGESTED and report.rows_read == 20_016
    assert reader.last_read_path.startswith("staged storage_read(")  # type: ignore[attr-defined]
    assert_exactly_once(demo_warehouse, statsig)
    assert list(bq.client().list_tables("statsig_staging")) == []  # staging tables are dropped


def test_storage_read_streams_in_parallel(bq: BQEmulator, gcp_conn: str) -> None:
    """300k rows: several streams read at once, every row exactly once, batches cut to batch_rows.

    Rows are ~90 bytes so a read-session page (65,536 rows on the emulator) exceeds gRPC's 4 MB
    default message limit, which a hand-made channel must lift as the library's own does.
    """
    client = bq.client()
    client.create_dataset("bench", exists_ok=True)
    client.query("CREATE OR REPLACE TABLE bench.seq AS SELECT x AS id, "
                 "CONCAT('n', CAST(x AS STRING), REPEAT('x', 80)) AS name "
                 "FROM UNNEST(GENERATE_ARRAY(1, 300000)) AS x").result()
    client.create_dataset("statsig_staging", exists_ok=True)
    reader = warehouse_reader(gcp_conn, bq.options(staging_dataset="statsig_staging", max_stream_count=4))
    seen = 0
    total = 0
    sizes = set()
    for batch in reader.read_batches("SELECT id, name FROM bench.seq", 50_000):
        seen += batch.num_rows
        total += pc.sum(batch.column("id")).as_py()
        sizes.add(batch.num_rows)
    assert seen == 300_000 and total == 300_000 * 300_001 // 2
    assert max(sizes) <= 50_000
    streams = int(reader.last_read_path.split("(")[1].split()[0])  # type: ignore[attr-defined]
    assert 2 <= streams <= 4, reader.last_read_path  # type: ignore[attr-defined]

    for _ in range(3):  # consumers that stop early: reader threads end, the gRPC calls are cancelled
        closed = reader.read_batches("SELECT id FROM bench.seq", 1_000)
        assert next(closed).num_rows == 1_000
        closed.close()  # type: ignore[attr-defined]
        assert not [t for t in threading.enumerate() if t.name.startswith("bq-stream-")]
    # and the emulator (a handful of worker threads) still serves a full read afterwards
    assert sum(b.num_rows for b in reader.read_batches("SELECT id FROM bench.seq")) == 300_000


def test_count_and_emulator_host_variable(bq: BQEmulator, bq_events: str, gcp_conn: str,
                                          demo_warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """count() runs COUNT(*) in BigQuery; BIGQUERY_EMULATOR_HOST alone also points the hook at the emulator."""
    con = duckdb.connect(str(demo_warehouse), read_only=True)
    expected = con.execute("SELECT count(*) FROM events WHERE ds = ?", [DAY]).fetchone()[0]
    con.close()
    sql = f"SELECT * FROM events WHERE ds = CAST('{DAY}' AS DATE)"
    assert warehouse_reader(gcp_conn, bq.options(default_dataset="analytics")).count(sql) == expected
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bq.rest)
    assert warehouse_reader(gcp_conn, {"default_dataset": "analytics"}).count(sql) == expected
    assert warehouse_reader(gcp_conn, {}).count(f"SELECT 1 FROM `{bq_events}` WHERE ds = DATE '1999-01-01'") == 0


# --------------------------------------------------------------------------------- dialect
TZ = "Asia/Kolkata"  # a non-default day: [2026-11-29 18:30, 2026-11-30 18:30) UTC


@pytest.fixture(scope="session")
def bq_times(bq: BQEmulator) -> tuple[str, set[int]]:
    """Rows around the edges of DAY in Asia/Kolkata, in every column type a day can be scoped on."""
    window = DayWindow.of(DAY, TZ)
    offsets = [-3600, -1, 0, 1, 3600, 86_399, 86_400, 86_401, 40_000]
    instants = [window.start + dt.timedelta(seconds=s) for s in offsets]
    local = [i.astimezone(window.tz) for i in instants]
    table = pa.table({
        "id": pa.array(range(len(instants)), pa.int64()),
        "ts": pa.array(instants, pa.timestamp("us", tz="UTC")),
        # DATETIME: Kolkata wall-clock time without zone
        "ts_local": pa.array([t.replace(tzinfo=None) for t in local], pa.timestamp("us")),
        "epoch": pa.array([int(i.timestamp()) for i in instants], pa.int64()),
        "d": pa.array([t.date() for t in local], pa.date32()),
        "ds": pa.array([t.date().isoformat() for t in local], pa.string()),
    })
    table_id = f"{bq.project}.dialect.times"
    load_table(bq.client(), table_id, table, [("id", "INT64"), ("ts", "TIMESTAMP"), ("ts_local", "DATETIME"),
                                              ("epoch", "INT64"), ("d", "DATE"), ("ds", "STRING")])
    inside = {i for i, s in enumerate(offsets) if 0 <= s < 86_400}
    return table_id, inside


@pytest.mark.parametrize(("case", "sql", "day"), [
    ("timestamp macros", "SELECT id FROM {t} WHERE ts >= {day_start} AND ts < {day_end}", {}),
    ("epoch macros", "SELECT id FROM {t} WHERE epoch >= {day_start_epoch} AND epoch < {day_end_epoch}", {}),
    ("date macro", "SELECT id FROM {t} WHERE d = {day}", {}),
    ("timestamp column filter", "SELECT id, ts FROM {t}", {"column": "ts"}),
    ("datetime column filter", "SELECT id, ts_local FROM {t}",
     {"column": "ts_local", "naive_timezone": TZ}),
    ("epoch column filter", "SELECT id, epoch FROM {t}", {"column": "epoch"}),
    ("date column filter", "SELECT id, d FROM {t}", {"column": "d"}),
    ("date string filter", "SELECT id, ds FROM {t}", {"column": "ds", "column_type": "date_string"}),
])
def test_day_rendering_runs_on_bigquery(bq: BQEmulator, bq_times: tuple[str, set[int]], gcp_conn: str,
                                        case: str, sql: str, day: dict[str, str]) -> None:
    """Each way of scoping a day, rendered for BigQuery and run by the emulator, keeps exactly the day's rows."""
    table_id, inside = bq_times
    spec = SourceSpec.from_dict({
        "name": "times", "warehouse": {"conn_id": gcp_conn}, "sql": sql.replace("{t}", f"`{table_id}`"),
        "mapping": {"timestamp": "id", "event_name": "id", "ids": {"userID": "id"}},
        "day": {"timezone": TZ, **day}})
    reader = warehouse_reader(gcp_conn, bq.options())
    window = DayWindow.of(DAY, TZ)
    query = day_query_for(spec, window, reader)  # as the pipeline scopes it (probing the day column's type)
    ids = {v for b in reader.read_batches(query.sql) for v in b.column("id").to_pylist()}
    assert ids == inside, (case, query.sql)
    assert reader.count(query.sql) == len(inside)


# --------------------------------------------------------------------------------- failures
def test_missing_table_is_named(bq: BQEmulator, gcp_conn: str, statsig: EmulatorProcess, tmp_path: Path) -> None:
    spec = example_spec(**bq.options(default_dataset="no_such_dataset"))
    reader = warehouse_reader(gcp_conn, spec.warehouse_options)
    with pytest.raises(IngestionError) as info:
        ingest(spec, reader, statsig, tmp_path)
    message = str(info.value)
    assert "bigquery_events" in message and DAY.isoformat() in message
    assert "missing table or dataset" in message and "no_such_dataset" in message
    assert statsig.events() == []


class _TokenServer(BaseHTTPRequestHandler):
    """Google's OAuth token endpoint answering as it does for a deleted or revoked key."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def token_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/token"
    server.shutdown()
    server.server_close()


def test_bad_credentials_are_named_without_the_key(bq: BQEmulator, token_server: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A service-account key Google no longer accepts: the real token refresh fails, the message says so."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    keyfile = {"type": "service_account", "project_id": bq.project, "private_key_id": "k1", "private_key": pem,
               "client_email": f"ingest@{bq.project}.iam.gserviceaccount.com", "client_id": "1",
               "token_uri": token_server}
    monkeypatch.setenv("AIRFLOW_CONN_GCP_REVOKED", json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"project": bq.project, "keyfile_dict": json.dumps(keyfile)}}))
    reader = warehouse_reader("gcp_revoked", bq.options())
    with pytest.raises(Exception) as info:
        reader.count("SELECT 1")
    message = reader.explain(info.value)
    assert message.startswith("bad credentials") and "invalid_grant" in message
    secret = base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption())).decode()
    assert secret[:40] not in message and "PRIVATE KEY" not in message


# --------------------------------------------------------------------------------- unit (no emulator)
def _reader(**options: Any) -> Any:
    from statsig_airflow_provider.hooks.bigquery import BigQueryOptions, BigQueryReader

    return BigQueryReader(client=lambda: None, storage_client=lambda: None,
                          options=BigQueryOptions.from_dict(options), project="p1", location="EU", labels={},
                          description="bigquery test")


def test_messages_for_failures_the_emulator_cannot_produce() -> None:
    """Unit level: exceptions as google-api-core raises them for IAM, quota and timeouts (no emulator has these)."""
    from google.api_core import exceptions as gexc

    reader = _reader(query_timeout_seconds=90)
    denied = gexc.Forbidden("Access Denied: Table p1:analytics.events: User does not have permission to query "
                            "table p1:analytics.events", errors=[{"reason": "accessDenied"}])
    assert reader.explain(denied).startswith("missing permission in project p1, location EU: Access Denied")
    assert "roles/bigquery.dataViewer" in reader.explain(denied)
    assert "readsessions" in reader.explain(gexc.PermissionDenied("bigquery.readsessions.create denied"))
    assert reader.explain(concurrent.futures.TimeoutError()).startswith("query timeout: BigQuery did not finish "
                                                                        "within 90s")
    server_timeout = gexc.BadRequest("Query exceeded the job timeout", errors=[{"reason": "timeout"}])
    assert reader.explain(server_timeout).startswith("query timeout")
    billed = gexc.BadRequest("Query exceeded limit for bytes billed: 1000. 20971520 or higher required.",
                             errors=[{"reason": "bytesBilledLimitExceeded"}])
    assert "maximum_bytes_billed" in reader.explain(billed)
    quota = gexc.Forbidden("Quota exceeded", errors=[{"reason": "quotaExceeded"}])
    assert reader.explain(quota).startswith("quota exceeded")


def test_options_are_checked() -> None:
    from statsig_airflow_provider.hooks.bigquery import BigQueryOptions

    assert BigQueryOptions.from_dict({}).max_stream_count == 4
    with pytest.raises(ValueError, match="did you mean 'max_stream_count'"):
        BigQueryOptions.from_dict({"max_streams_count": 2})
    with pytest.raises(ValueError, match="must be int"):
        BigQueryOptions.from_dict({"max_stream_count": "4"})
    with pytest.raises(ValueError, match="between 1 and 1000"):
        BigQueryOptions.from_dict({"max_stream_count": 0})
    with pytest.raises(ValueError, match=r"'dataset' or 'project\.dataset'"):
        BigQueryOptions.from_dict({"staging_dataset": "a.b.c"})
