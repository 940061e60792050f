"""Azure Synapse (T-SQL): StatsigSynapseHook without a SQL Server engine — read this before trusting it.

No SQL Server-compatible engine can run on this machine (nothing on apt, PyPI or npm), so:

* MOCKED: the server. `TsqlOnDuckDB` stands in for a pyodbc connection: it takes the T-SQL the
  reader sends, transpiles it with sqlglot (tsql → duckdb) and runs it on DuckDB over the sample
  rows, answering with pyodbc-shaped descriptions and rows. The end-to-end and dialect tests run
  the real hook (connection string, options), the real reader (fetchmany → Arrow, COUNT_BIG,
  TOP), the engine and the Statsig emulator on top of it. They prove the T-SQL the provider
  renders selects the right rows *after translation*; they cannot prove SQL Server would accept
  it, nor how pyodbc types real DATETIMEOFFSET / DECIMAL / NVARCHAR(MAX) columns.
* REAL: the ODBC layer. unixODBC, FreeTDS (Debian) and Microsoft ODBC Driver 18 (PyPI), registered
  by scripts/services.d/synapse.sh, are driven by pyodbc against loopback listeners: the
  connection string reaches the right port with both drivers (the `SERVER=host,port` trap), a
  missing driver and a failed handshake come back as real driver errors, explained without the
  password.
* REAL DRIVERS, FAKE LOGIN: `LoginRefusingTds` answers the TDS pre-login and refuses the login with
  error 18456 (SQL Server's wrong-password answer), so both drivers report a real login failure.
* NOT EXERCISED: a successful TDS login, Azure AD authentication, TLS to Synapse, real query timeouts,
  permission and missing-table errors from a server (their messages are checked on pyodbc errors
  carrying the SQLSTATE and text SQL Server sends), any result set coming from a real driver
  (pyodbc's real typing of columns), and CETAS.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.pipeline import IngestionError
from statsig_airflow_provider.engine.spec import SourceSpec, load_spec
from statsig_airflow_provider.engine.sql import day_query, transpile
from statsig_airflow_provider.hooks.warehouse import warehouse_reader
from tests.conftest import DAY, IN_CI, ROOT, EmulatorProcess, assert_exactly_once, ingest_with, require_service

try:
    import pyodbc
except ImportError as exc:  # libodbc.so.2 missing: scripts/services.d/synapse.sh installs unixODBC
    if IN_CI:
        raise
    pytest.skip(f"pyodbc cannot load ({exc}); scripts/test.sh installs unixODBC", allow_module_level=True)

EXAMPLE = ROOT / "dags_examples" / "sources" / "warehouses" / "synapse_events.yaml"
PASSWORD = "s3cr;et}pw"  # holds both characters ODBC reserves


# ------------------------------------------------------------------------------------ the mock
def _pyodbc_description(name: str, duck_type: str) -> tuple:
    """(name, type_code, display_size, internal_size, precision, scale, null_ok) as pyodbc gives it."""
    t = duck_type.upper()
    if t.startswith("DECIMAL"):
        precision, scale = (int(x) for x in t[t.index("(") + 1:-1].split(","))
        return (name, decimal.Decimal, None, precision, precision, scale, True)
    if t == "TIMESTAMP WITH TIME ZONE":  # DATETIMEOFFSET(7): pyodbc describes it as text, 34 wide, 7 digits
        return (name, str, None, 34, 34, 7, True)
    code = {"BIGINT": int, "INTEGER": int, "SMALLINT": int, "TINYINT": int, "HUGEINT": int, "DOUBLE": float,
            "FLOAT": float, "BOOLEAN": bool, "DATE": dt.date, "TIMESTAMP": dt.datetime, "BLOB": bytes}.get(t, str)
    return (name, code, None, None, None, None, True)


class _Cursor:
    def __init__(self, conn: TsqlOnDuckDB) -> None:
        self.conn = conn
        self.description: list[tuple] | None = None
        self._rel: Any = None

    def execute(self, sql: str) -> _Cursor:
        self.conn.executed.append(sql)
        duck_sql = transpile(sql, "tsql", "duckdb")
        rel = self.conn.duck.sql(duck_sql)  # bound, not run: only for the column types
        self.description = [_pyodbc_description(n, str(t)) for n, t in zip(rel.columns, rel.types, strict=True)]
        self._rel = self.conn.duck.cursor().execute(duck_sql)
        return self

    def fetchmany(self, size: int) -> list[tuple]:
        self.conn.fetch_sizes.append(size)
        return self._rel.fetchmany(size)

    def fetchone(self) -> tuple | None:
        return self._rel.fetchone()

    def close(self) -> None:
        if self._rel is not None:
            self._rel.close()
        self._rel = None


class TsqlOnDuckDB:
    """A pyodbc connection whose "server" is DuckDB running sqlglot's translation of the T-SQL. Not SQL Server."""

    def __init__(self, setup: list[str]) -> None:
        self.duck = duckdb.connect()
        self.duck.execute("SET TimeZone = 'UTC'")  # SQL Server compares datetime2 to datetimeoffset as UTC
        for statement in setup:
            self.duck.execute(statement)
        self.executed: list[str] = []
        self.fetch_sizes: list[int] = []
        self.converters: dict[int, Any] = {}
        self.timeout = 0
        self.closed = 0

    def cursor(self) -> _Cursor:
        return _Cursor(self)

    def add_output_converter(self, sql_type: int, func: Any) -> None:
        self.converters[sql_type] = func

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


@dataclasses.dataclass
class FakeServer:
    setup: list[str]
    connects: list[tuple[str, dict]] = dataclasses.field(default_factory=list)
    connections: list[TsqlOnDuckDB] = dataclasses.field(default_factory=list)

    def connect(self, conn_str: str, **kwargs: Any) -> TsqlOnDuckDB:
        self.connects.append((conn_str, kwargs))
        conn = TsqlOnDuckDB(self.setup)
        self.connections.append(conn)
        return conn

    @property
    def executed(self) -> list[str]:
        return [sql for c in self.connections for sql in c.executed]


def synapse_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn_type: str = "odbc", **fields: Any) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
        "conn_type": conn_type, "host": "myworkspace.sql.azuresynapse.net", "port": 1433, "schema": "analytics",
        "login": "ingest", "password": PASSWORD, **fields}))
    return conn_id


@pytest.fixture
def events_server(demo_warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    """dbo.events holds the sample rows; pyodbc.connect is replaced by the DuckDB-backed stand-in."""
    server = FakeServer([f"ATTACH '{demo_warehouse}' AS wh (READ_ONLY)", "CREATE SCHEMA dbo",
                         "CREATE VIEW dbo.events AS SELECT * FROM wh.events"])
    monkeypatch.setattr(pyodbc, "connect", server.connect)
    return server


def ingest(spec: SourceSpec, reader: Any, statsig: EmulatorProcess, tmp_path: Path, name: str = "ledger"):
    return ingest_with(spec, reader, statsig, tmp_path, ledger_name=name, batch_rows=4_000)


# ------------------------------------------------------------------------------ end to end (mocked)
@pytest.mark.parametrize("conn_type", ["odbc", "mssql"])
def test_example_source_day_through_engine_on_mocked_cursor(conn_type: str, events_server: FakeServer,
                                                            demo_warehouse: Path, statsig: EmulatorProcess,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MOCKED SERVER: the example source's T-SQL, run (translated) on DuckDB; delivered rows checked field by field."""
    spec = load_spec(EXAMPLE)
    assert isinstance(spec, SourceSpec)
    synapse_conn(monkeypatch, spec.warehouse_conn_id, conn_type)
    reader = warehouse_reader(spec.warehouse_conn_id, spec.warehouse_options)
    assert reader.dialect == "tsql"
    assert reader.describe() == (f"{conn_type} connection 'synapse_sql' (myworkspace.sql.azuresynapse.net, "
                                 "database analytics)")
    report = ingest(spec, reader, statsig, tmp_path)
    assert report.status == L.INGESTED and report.warehouse_count == report.rows_read == 20_016
    assert_exactly_once(demo_warehouse, statsig)

    conn_str, kwargs = events_server.connects[0]
    assert conn_str == ("DRIVER={ODBC Driver 18 for SQL Server};SERVER=myworkspace.sql.azuresynapse.net,1433;"
                        "DATABASE=analytics;UID=ingest;PWD={s3cr;et}}pw};Encrypt=yes;")
    assert kwargs == {"timeout": 30}
    conn = events_server.connections[0]
    assert conn.timeout == 1800 and -155 in conn.converters
    executed = events_server.executed
    assert any(s.startswith("SELECT COUNT_BIG(*) AS statsig_rows") for s in executed)
    assert any(s.startswith("SELECT TOP 1000 * FROM") for s in executed)  # the sample check, in T-SQL
    assert all("CAST('2026-11-30' AS DATE)" in s for s in executed)
    assert 4_000 in events_server.connections[-1].fetch_sizes  # streamed by fetchmany(batch_rows)
    assert all(c.closed for c in events_server.connections)


def test_count_uses_count_big(events_server: FakeServer, monkeypatch: pytest.MonkeyPatch,
                              demo_warehouse: Path) -> None:
    """MOCKED SERVER: counts come from COUNT_BIG(*) (COUNT(*) is an INT in T-SQL and overflows)."""
    reader = warehouse_reader(synapse_conn(monkeypatch, "wh_syn"), {})
    con = duckdb.connect(str(demo_warehouse), read_only=True)
    expected = con.execute("SELECT count(*) FROM events WHERE ds = ?", [DAY]).fetchone()[0]
    con.close()
    assert reader.count("SELECT * FROM dbo.events WHERE ds = CAST('2026-11-30' AS DATE);") == expected
    assert reader.count("SELECT * FROM dbo.events WHERE ds = CAST('1999-01-01' AS DATE)") == 0
    assert events_server.executed[0].startswith("SELECT COUNT_BIG(*)")


# ------------------------------------------------------------------------------ dialect (transpiled)
TZ = "Asia/Kolkata"


@pytest.fixture
def times_server(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeServer, set[int]]:
    """dbo.times: rows around the edges of DAY in Asia/Kolkata, in every column type a day can be scoped on."""
    window = DayWindow.of(DAY, TZ)
    offsets = [-3600, -1, 0, 1, 3600, 86_399, 86_400, 86_401, 40_000]
    rows = []
    for i, s in enumerate(offsets):
        instant = window.start + dt.timedelta(seconds=s)
        local = instant.astimezone(window.tz)
        rows.append(f"({i}, TIMESTAMPTZ '{instant.isoformat()}', TIMESTAMP '{local.replace(tzinfo=None)}', "
                    f"{int(instant.timestamp())}, DATE '{local.date()}', '{local.date()}')")
    server = FakeServer(["CREATE SCHEMA dbo",
                         "CREATE TABLE dbo.times (id BIGINT, ts TIMESTAMPTZ, ts_local TIMESTAMP, epoch BIGINT, "
                         "d DATE, ds VARCHAR)",
                         "INSERT INTO dbo.times VALUES " + ", ".join(rows)])
    monkeypatch.setattr(pyodbc, "connect", server.connect)
    return server, {i for i, s in enumerate(offsets) if 0 <= s < 86_400}


@pytest.mark.parametrize(("case", "sql", "day"), [
    ("datetimeoffset macros", "SELECT id FROM dbo.times WHERE ts >= {day_start} AND ts < {day_end}", {}),
    ("datetime2 utc macros",
     "SELECT id FROM dbo.times WHERE ts >= {day_start_utc} AND ts < {day_end_utc}", {}),
    ("epoch macros", "SELECT id FROM dbo.times WHERE epoch >= {day_start_epoch} AND epoch < {day_end_epoch}", {}),
    ("date macro", "SELECT id FROM dbo.times WHERE d = {day}", {}),
    ("datetimeoffset column filter", "SELECT id, ts FROM dbo.times", {"column": "ts"}),
    ("datetime2 column filter", "SELECT id, ts_local FROM dbo.times", {"column": "ts_local", "naive_timezone": TZ}),
    ("epoch column filter", "SELECT id, epoch FROM dbo.times", {"column": "epoch"}),
    ("date column filter", "SELECT id, d FROM dbo.times", {"column": "d"}),
    ("date string filter", "SELECT id, ds FROM dbo.times", {"column": "ds", "column_type": "date_string"}),
])
def test_tsql_day_rendering_runs_transpiled_on_duckdb(times_server: tuple[FakeServer, set[int]], case: str,
                                                       sql: str, day: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """TRANSPILED: each way of scoping a day, rendered in T-SQL, translated to DuckDB and run, keeps exactly the day."""
    server, inside = times_server
    conn_id = synapse_conn(monkeypatch, "wh_times")
    spec = SourceSpec.from_dict({"name": "times", "warehouse": {"conn_id": conn_id}, "sql": sql,
                                 "mapping": {"timestamp": "id", "event_name": "id", "ids": {"userID": "id"}},
                                 "day": {"timezone": TZ, **day}})
    reader = warehouse_reader(conn_id, {})
    window = DayWindow.of(DAY, TZ)
    if spec.uses_macros:
        query = day_query(spec, window, "tsql")
    else:
        arrow_type = reader.schema(spec.sql).field(spec.day_column).type
        query = day_query(spec, window, "tsql", column=spec.day_column, column_arrow_type=arrow_type)
    ids = {v for b in reader.read_batches(query.sql) for v in b.column("id").to_pylist()}
    assert ids == inside, (case, query.sql, server.executed[-1])
    assert "[" in query.sql or spec.uses_macros  # T-SQL quoting reached the "server"
    if case == "datetimeoffset column filter":
        assert "DATETIMEOFFSET" in query.sql  # described as DATETIMEOFFSET → compared as an instant
    assert reader.count(query.sql) == len(inside)


def test_read_path_types_and_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """MOCKED SERVER: column types come from the description, so all-NULL first batches keep their type."""
    server = FakeServer(["CREATE TABLE t AS SELECT i AS id, "
                         "CASE WHEN i > 5 THEN CAST(i AS DOUBLE) * 1.5 END AS amount, "
                         "CAST(i AS DECIMAL(12, 2)) AS price, CASE WHEN i > 5 THEN 'x' END AS label, "
                         "TIMESTAMPTZ '2026-11-30 10:00:00+00' + i * INTERVAL 1 MINUTE AS created "
                         "FROM range(10) r(i)"])
    monkeypatch.setattr(pyodbc, "connect", server.connect)
    reader = warehouse_reader(synapse_conn(monkeypatch, "wh_types"), {})
    batches = list(reader.read_batches("SELECT id, amount, price, label, created FROM t ORDER BY id", 3))
    assert [b.num_rows for b in batches] == [3, 3, 3, 1]
    assert {b.schema for b in batches} == {pa.schema([("id", pa.int64()), ("amount", pa.float64()),
                                                      ("price", pa.decimal128(12, 2)), ("label", pa.string()),
                                                      ("created", pa.timestamp("us", tz="UTC"))])}
    table = pa.Table.from_batches(batches)
    assert table.column("amount").null_count == 6 and table.column("price")[3].as_py() == decimal.Decimal("3.00")


def test_datetimeoffset_converter() -> None:
    """The output converter registered for SQL type -155 decodes SQL Server's DATETIMEOFFSET struct."""
    from statsig_airflow_provider.hooks.synapse import datetimeoffset_to_datetime

    raw = struct.pack("<6hI2h", 2026, 11, 30, 13, 45, 7, 123_456_700, 5, 30)
    value = datetimeoffset_to_datetime(raw)
    assert value == dt.datetime(2026, 11, 30, 8, 15, 7, 123_456, tzinfo=dt.timezone.utc)
    assert value is not None and value.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert datetimeoffset_to_datetime(None) is None


# ------------------------------------------------------------------------------ real drivers
@pytest.fixture
def odbc_drivers() -> list[str]:
    wanted = [d for d in os.environ.get("STATSIG_TEST_ODBC_DRIVERS", "").split(",") if d]
    if not wanted or not os.environ.get("ODBCSYSINI"):
        require_service("ODBC drivers", "ODBCSYSINI / STATSIG_TEST_ODBC_DRIVERS are not set")
    missing = set(wanted) - set(pyodbc.drivers())
    if missing:
        require_service("ODBC drivers", f"{sorted(missing)} not registered in {os.environ['ODBCSYSINI']}")
    return wanted


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback TCP listener that records the first bytes of each connection, then hangs up."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            client.settimeout(2)
            try:
                seen.append(client.recv(64))
            except OSError:
                seen.append(b"")
            client.close()

    threading.Thread(target=serve, daemon=True).start()
    yield sock.getsockname()[1], seen
    sock.close()


@pytest.mark.parametrize("driver", ["ODBC Driver 18 for SQL Server", "FreeTDS"])
def test_real_driver_reaches_the_port_and_the_error_is_explained(driver: str, odbc_drivers: list[str],
                                                                 listener: tuple[int, list[bytes]],
                                                                 statsig: EmulatorProcess, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """REAL DRIVER: the hook's connection string reaches a non-default port (Driver 18 ignores PORT=), the
    handshake fails against a listener that is not SQL Server, and the engine reports it without the password."""
    port, seen = listener
    extra = {"TDS_Version": "7.4"} if driver == "FreeTDS" else {}
    conn_id = synapse_conn(monkeypatch, "wh_real", host="127.0.0.1", port=port, extra=json.dumps(extra))
    spec = dataclasses.replace(load_spec(EXAMPLE), warehouse_conn_id=conn_id)  # type: ignore[type-var]
    reader = warehouse_reader(conn_id, {"driver": driver, "login_timeout_seconds": 5})
    with pytest.raises(IngestionError) as info:
        ingest(spec, reader, statsig, tmp_path)
    message = str(info.value)
    assert seen and seen[0][:1] == b"\x12"  # a TDS PRELOGIN packet arrived on our port
    assert "synapse_events" in message and DAY.isoformat() in message and "cannot connect (08001" in message
    assert PASSWORD not in message and "s3cr" not in message
    assert ("[Microsoft][ODBC Driver 18" if driver.startswith("ODBC") else "[FreeTDS]") in message


class LoginRefusingTds:
    """A loopback TDS endpoint that answers PRELOGIN (no TLS) and refuses every LOGIN7 with error 18456,
    as SQL Server does for a wrong password. It runs no SQL: it only lets the real drivers report a
    real login failure."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.users: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _packet(payload: bytes) -> bytes:  # type 0x04 (tabular result), status EOM
        return struct.pack(">BBHHBB", 0x04, 0x01, len(payload) + 8, 0, 1, 0) + payload

    @staticmethod
    def _read(conn: socket.socket) -> tuple[int, bytes] | None:
        def exactly(n: int) -> bytes | None:
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    return None
                data += chunk
            return data

        head = exactly(8)
        if head is None:
            return None
        ptype, _status, length = struct.unpack(">BBH", head[:4])
        body = exactly(length - 8)
        return None if body is None else (ptype, body)

    @staticmethod
    def _prelogin() -> bytes:
        options = [(0x00, bytes([15, 0, 0x07, 0xD0, 0, 0])), (0x01, b"\x02"), (0x02, b"\x00"), (0x03, b""),
                   (0x04, b"\x00")]  # version 15.0.2000, ENCRYPT_NOT_SUP, instance, thread id, MARS off
        offset, head, data = 5 * len(options) + 1, b"", b""
        for token, value in options:
            head += struct.pack(">BHH", token, offset + len(data), len(value))
            data += value
        return head + b"\xff" + data

    @staticmethod
    def _login_failed(user: str) -> bytes:
        def text(value: str, width: str) -> bytes:
            return struct.pack(width, len(value)) + value.encode("utf-16-le")

        message = f"Login failed for user '{user}'."
        body = (struct.pack("<iBB", 18456, 1, 14) + text(message, "<H") + text("synapse-stand-in", "<B")
                + text("", "<B") + struct.pack("<i", 1))
        error = b"\xaa" + struct.pack("<H", len(body)) + body
        return error + b"\xfd" + struct.pack("<HHQ", 0x0002, 0, 0)  # DONE with DONE_ERROR

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    while (packet := self._read(conn)) is not None:
                        ptype, body = packet
                        if ptype == 0x12:  # PRELOGIN
                            conn.sendall(self._packet(self._prelogin()))
                        elif ptype == 0x10:  # LOGIN7: UserName offset/length at bytes 40-43
                            offset, length = struct.unpack("<HH", body[40:44])
                            self.users.append(body[offset:offset + 2 * length].decode("utf-16-le"))
                            conn.sendall(self._packet(self._login_failed(self.users[-1])))
                        else:
                            break
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("driver", ["ODBC Driver 18 for SQL Server", "FreeTDS"])
def test_real_driver_login_failure_is_bad_credentials(driver: str, odbc_drivers: list[str], statsig: EmulatorProcess,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """REAL DRIVER, FAKE LOGIN: the driver's own report of error 18456 becomes "bad credentials", password-free.

    (Encrypt=no only because the stand-in speaks no TLS; FreeTDS reports this error as 42000, Driver 18 as 28000.)
    """
    tds = LoginRefusingTds()
    try:
        extra = {"TDS_Version": "7.4"} if driver == "FreeTDS" else {"Encrypt": "no"}
        conn_id = synapse_conn(monkeypatch, "wh_login", host="127.0.0.1", port=tds.port, extra=json.dumps(extra))
        spec = dataclasses.replace(load_spec(EXAMPLE), warehouse_conn_id=conn_id)  # type: ignore[type-var]
        reader = warehouse_reader(conn_id, {"driver": driver, "login_timeout_seconds": 5})
        with pytest.raises(IngestionError) as info:
            ingest(spec, reader, statsig, tmp_path)
    finally:
        tds.close()
    message = str(info.value)
    assert tds.users == ["ingest"]
    assert "synapse_events" in message and DAY.isoformat() in message
    assert "bad credentials: " in message and "Login failed for user 'ingest'" in message, message
    assert PASSWORD not in message and "s3cr" not in message


def test_missing_driver_is_named(odbc_drivers: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """REAL DRIVER MANAGER: unixODBC's own error for a driver that is not registered."""
    reader = warehouse_reader(synapse_conn(monkeypatch, "wh_nodriver", host="127.0.0.1"),
                              {"driver": "ODBC Driver 17 for SQL Server"})
    with pytest.raises(pyodbc.Error) as info:
        reader.count("SELECT 1 AS x")
    message = reader.explain(info.value)
    assert message.startswith("ODBC driver 'ODBC Driver 17 for SQL Server' is not installed")
    assert PASSWORD not in message


# ------------------------------------------------------------------------------ unit: messages, strings
@pytest.mark.parametrize(("state", "text", "starts"), [
    ("28000", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed for user 'ingest'. (18456) "
              "(SQLDriverConnect)", "bad credentials: [Microsoft]"),
    ("42S02", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid object name 'dbo.evnts'. (208) "
              "(SQLExecDirectW)", "missing table or view:"),
    ("42000", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]The SELECT permission was denied on the "
              "object 'events', database 'analytics', schema 'dbo'. (229) (SQLExecDirectW)", "missing permission:"),
    ("HYT00", "[Microsoft][ODBC Driver 18 for SQL Server]Query timeout expired (0) (SQLExecDirectW)",
     "query timeout: the query ran longer than 1800s"),
    ("HYT00", "[Microsoft][ODBC Driver 18 for SQL Server]Login timeout expired (0) (SQLDriverConnect)",
     "cannot reach the SQL endpoint in time"),
    ("42000", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Cannot open server 'myworkspace' requested "
              "by the login. Client with IP address '203.0.113.9' is not allowed to access the server. (40615) "
              "(SQLDriverConnect)", "cannot connect (42000"),
])
def test_messages_for_server_errors(state: str, text: str, starts: str) -> None:
    """UNIT: pyodbc errors carrying the SQLSTATE and text SQL Server sends (no server here to send them)."""
    from statsig_airflow_provider.hooks.synapse import SynapseReader

    reader = SynapseReader(lambda: None, description="t", secrets=[PASSWORD], query_timeout_seconds=1800)
    error = pyodbc.Error(state, text + f" PWD={PASSWORD};")
    message = reader.explain(error)
    assert message.startswith(starts), message
    assert PASSWORD not in message and "(SQLExecDirectW)" not in message


def test_connection_string(monkeypatch: pytest.MonkeyPatch) -> None:
    from statsig_airflow_provider.hooks.synapse import StatsigSynapseHook, odbc_value

    synapse_conn(monkeypatch, "wh_aad", login="11111111-2222-3333-4444-555555555555", port=None,
                 extra=json.dumps({"Authentication": "ActiveDirectoryServicePrincipal", "Encrypt": "strict",
                                   "driver": "/opt/evil.so"}))
    hook = StatsigSynapseHook(odbc_conn_id="wh_aad")
    text = hook.odbc_connection_string
    assert text == ("DRIVER={ODBC Driver 18 for SQL Server};SERVER=myworkspace.sql.azuresynapse.net;"
                    "DATABASE=analytics;UID=11111111-2222-3333-4444-555555555555;PWD={s3cr;et}}pw};"
                    "Authentication=ActiveDirectoryServicePrincipal;Encrypt=strict;")  # extra driver ignored
    assert "PORT=" not in text
    assert odbc_value(" padded") == "{ padded}" and odbc_value("plain") == "plain"
    from statsig_airflow_provider.hooks.synapse import SynapseOptions

    with pytest.raises(ValueError, match="did you mean 'query_timeout_seconds'"):
        SynapseOptions.from_dict({"query_timeout_second": 5})
    with pytest.raises(ValueError, match="integer >= 0"):
        SynapseOptions.from_dict({"login_timeout_seconds": "5"})
