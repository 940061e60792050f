"""Common-sql connections as warehouses (SQLite, a real PostgreSQL server) and PostgreSQL as the ledger."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.ledger import DayBusyError, Ledger
from statsig_airflow_provider.engine.pipeline import EventsTarget, RunOptions, ingest_day
from statsig_airflow_provider.engine.readers import AdbcReader, DbApiReader, WarehouseReader
from statsig_airflow_provider.engine.spec import SourceSpec
from statsig_airflow_provider.engine.statsig_client import LogEventClient
from statsig_airflow_provider.hooks.warehouse import warehouse_reader
from tests.conftest import DAY, KEY, EmulatorProcess, assert_exactly_once
from tests.integration.test_pipeline import SPEC_DICT

COLUMNS = "ds, ts, event_name, user_id, stable_id, value, page, plan, props"


def rows_of(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT CAST(ds AS VARCHAR), {COLUMNS.split(', ', 1)[1]} FROM events").fetchall()
    finally:
        con.close()


def ingest(reader: WarehouseReader, statsig: EmulatorProcess, ledger: Ledger, tmp_path: Path):
    spec = SourceSpec.from_dict(SPEC_DICT)  # type: ignore[arg-type]
    target = EventsTarget(lambda: LogEventClient(KEY, statsig.events_url))
    return ingest_day(spec, DAY, reader, target, ledger,
                      RunOptions(rejects_dir=tmp_path / "rejects", log=lambda _m: None, batch_rows=5_000))


def test_sqlite_connection(demo_warehouse: Path, statsig: EmulatorProcess, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.sqlite"
    con = sqlite3.connect(path)
    con.execute(f"CREATE TABLE events ({COLUMNS})")
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows_of(demo_warehouse))
    con.commit()
    con.close()
    monkeypatch.setenv("AIRFLOW_CONN_WH_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    reader = warehouse_reader("wh_sqlite")
    assert reader.dialect == "sqlite" and isinstance(reader, AdbcReader)
    report = ingest(reader, statsig, Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}"), tmp_path)
    assert report.status == L.INGESTED and report.warehouse_count == report.rows_read
    assert_exactly_once(demo_warehouse, statsig)


@pytest.fixture
def pg_events(postgres_dsn: str, demo_warehouse: Path) -> str:
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS events")
        conn.execute("""CREATE TABLE events (ds DATE, ts BIGINT, event_name TEXT, user_id BIGINT, stable_id TEXT,
                        value DOUBLE PRECISION, page TEXT, plan TEXT, props TEXT)""")
        with conn.cursor() as cur, cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
            for row in rows_of(demo_warehouse):
                copy.write_row(row)
    return postgres_dsn


def _pg_conn_json(dsn: str) -> str:
    url = sa.engine.make_url(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    return json.dumps({"conn_type": "postgres", "host": url.host, "port": url.port, "login": url.username,
                       "password": url.password, "schema": url.database})


@pytest.mark.postgres
def test_postgres_connection_adbc_and_server_side_cursor(pg_events: str, demo_warehouse: Path,
                                                         statsig: EmulatorProcess, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WH_PG", _pg_conn_json(pg_events))
    reader = warehouse_reader("wh_pg")
    assert isinstance(reader, AdbcReader) and reader.dialect == "postgres"
    assert ingest(reader, statsig, Ledger(f"sqlite:///{tmp_path / 'l1.sqlite'}"), tmp_path).status == L.INGESTED
    assert_exactly_once(demo_warehouse, statsig)

    statsig.reset()
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    cursor_reader = DbApiReader(PostgresHook(postgres_conn_id="wh_pg").get_conn, dialect="postgres",
                                description="postgres (server-side cursor)", server_side=True)
    batches = list(cursor_reader.read_batches("SELECT * FROM events", 7_000))
    assert [b.num_rows for b in batches][:2] == [7_000, 7_000]  # streamed, not fetched whole
    assert ingest(cursor_reader, statsig, Ledger(f"sqlite:///{tmp_path / 'l2.sqlite'}"), tmp_path).status == L.INGESTED
    assert_exactly_once(demo_warehouse, statsig)


@pytest.mark.postgres
def test_postgres_ledger_shared_by_concurrent_workers(postgres_dsn: str, demo_warehouse: Path,
                                                      statsig: EmulatorProcess, tmp_path: Path) -> None:
    url = postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    L.metadata.drop_all(engine)
    outcomes: list[object] = []

    def worker() -> None:  # each worker has its own engine, as separate Airflow workers would
        try:
            from statsig_airflow_provider.engine.readers import DuckDBReader

            outcomes.append(ingest(DuckDBReader(str(demo_warehouse)), statsig, Ledger(url), tmp_path).delivered)
        except DayBusyError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 3  # every worker either ingested or was told the day is busy
    assert_exactly_once(demo_warehouse, statsig)
    record = Ledger(url).get_day("demo_events", DAY)
    assert record is not None and record.status == L.INGESTED
    assert sum(o for o in outcomes if isinstance(o, int)) == record.delivered == 20_000
    assert Ledger(url).record_trigger("demo_events", "events", [DAY], "r1", min_interval=__import__(
        "datetime").timedelta(hours=2)) is None
