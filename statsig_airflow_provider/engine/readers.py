"""Reading a warehouse as a stream of Arrow record batches.

Every warehouse sits behind the same small interface: stream the batches of a query, count a
query's rows, and give a query's schema. Memory stays bounded by the batch size whatever the
size of the day. Warehouse-specific readers (Snowflake, BigQuery, ...) live with their hooks;
here are the embedded DuckDB reader and the generic DB-API and ADBC ones.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.sql import count_query, probe_query

DEFAULT_BATCH_ROWS = 65_536


class WarehouseError(RuntimeError):
    """A warehouse query failed; the message names the source, the day and the warehouse."""


class WarehouseReader(ABC):
    """The read interface the engine needs from a warehouse."""

    #: sqlglot dialect of the warehouse's SQL
    dialect: str = "duckdb"

    @abstractmethod
    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """Stream the result of `sql` as record batches of at most about `batch_rows` rows."""

    def describe(self) -> str:
        """A short, secret-free name for logs and errors."""
        return self.dialect

    def count(self, sql: str) -> int:
        """Rows `sql` returns, counted by the warehouse."""
        for batch in self.read_batches(count_query(sql), 16):
            if batch.num_rows:
                return int(batch.column(0)[0].as_py())
        return 0

    def schema(self, sql: str) -> pa.Schema:
        """The result schema of `sql`, read without fetching rows."""
        batches = self.read_batches(probe_query(sql), 16)
        try:
            first = next(batches, None)
        finally:
            with contextlib.suppress(Exception):
                batches.close()  # type: ignore[attr-defined]
        if first is None:
            raise WarehouseError("the schema probe returned no result set")
        return first.schema

    def for_day(self, window: DayWindow) -> WarehouseReader:
        """The reader to use for one day. SQL warehouses read the day through the query; a file
        store (S3) returns a reader bound to that day's files."""
        return self

    def explain(self, exc: BaseException) -> str:
        """A clear message for a driver error (readers turn bad credentials, missing permissions,
        missing tables and timeouts into words a user can act on)."""
        return f"{type(exc).__name__}: {exc}"

    def close(self) -> None:  # noqa: B027 - optional hook, most readers open connections per query
        """Release connections (readers open them per query by default)."""


class DuckDBReader(WarehouseReader):
    """The embedded default: a DuckDB database file (or an existing connection).

    The relation API streams Arrow with no copy (`to_arrow_reader`); DuckDB 2 removed the
    DB-API `fetch_record_batch`. A memory limit keeps DuckDB's buffer cache from growing with
    the size of the day being read.
    """

    dialect = "duckdb"

    def __init__(self, database: str = ":memory:", *, read_only: bool = True, memory_limit: str | None = "512MB",
                 threads: int | None = None, connection: Any = None) -> None:
        self.database = database
        self.read_only = read_only and database != ":memory:"
        self.config: dict[str, str] = {}
        if memory_limit:
            self.config["memory_limit"] = memory_limit
        if threads:
            self.config["threads"] = str(threads)
        self._shared = connection

    def describe(self) -> str:
        return f"duckdb {self.database}"

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        import duckdb

        if self._shared is not None:
            cursor = self._shared.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
            return
        con = duckdb.connect(self.database, read_only=self.read_only, config=self.config)
        try:
            yield con
        finally:
            con.close()

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        with self._connection() as con:
            reader = con.sql(sql).to_arrow_reader(batch_rows)
            yield from reader

    def schema(self, sql: str) -> pa.Schema:
        with self._connection() as con:
            return con.sql(probe_query(sql)).to_arrow_reader(16).schema


class DbApiReader(WarehouseReader):
    """Any PEP 249 connection: `fetchmany` rows, transposed into Arrow batches.

    `server_side` asks for a named (server-side) cursor, which PostgreSQL drivers need to stream
    instead of loading the whole result into the client.
    """

    def __init__(self, connect: Callable[[], Any], *, dialect: str, description: str,
                 server_side: bool = False) -> None:
        self._connect = connect
        self.dialect = dialect
        self._description = description
        self.server_side = server_side

    def describe(self) -> str:
        return self._description

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        with open_cursor(self._connect(), **({"name": "statsig_day"} if self.server_side else {})) as cursor:
            if self.server_side and hasattr(cursor, "itersize"):
                cursor.itersize = batch_rows
            cursor.execute(sql)
            names = [d[0] for d in cursor.description]
            types: list[pa.DataType | None] = [None] * len(names)
            while True:
                rows = cursor.fetchmany(batch_rows)
                if not rows:
                    break
                yield rows_to_batch(rows, names, types)


class AdbcReader(WarehouseReader):
    """An ADBC connection (e.g. adbc_driver_postgresql / adbc_driver_sqlite): Arrow end to end."""

    def __init__(self, connect: Callable[[], Any], *, dialect: str, description: str) -> None:
        self._connect = connect
        self.dialect = dialect
        self._description = description

    def describe(self) -> str:
        return self._description

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        conn = self._connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                for batch in cursor.fetch_record_batch():
                    # ADBC drivers choose their own batch size; re-slice so memory stays bounded.
                    for offset in range(0, max(batch.num_rows, 1), batch_rows):
                        piece = batch.slice(offset, batch_rows)
                        if piece.num_rows:
                            yield piece
        finally:
            conn.close()


@contextlib.contextmanager
def open_cursor(conn: Any, **cursor_args: Any) -> Iterator[Any]:
    """A cursor on a DB-API connection; the cursor and the connection are closed (after a rollback:
    reads change nothing) however the read ends — an abandoned day must not leak either."""
    try:
        cursor = conn.cursor(**cursor_args)
        try:
            yield cursor
        finally:
            with contextlib.suppress(Exception):
                cursor.close()
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
        with contextlib.suppress(Exception):
            conn.close()


def rows_to_batch(rows: list[Any], names: list[str], types: list[pa.DataType | None]) -> pa.RecordBatch:
    """Transpose DB-API rows into a record batch, keeping a column's type stable across batches.

    `types` carries each column's type from earlier batches; a column whose values do not convert
    (SQLite's dynamic typing can mix them) falls back to text rather than failing the day.
    """
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for i, values in enumerate(columns):
        arrays.append(_column_array(list(values), types, i))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _column_array(values: list[Any], types: list[pa.DataType | None], i: int) -> pa.Array:
    known = types[i]
    if known is not None and not pa.types.is_null(known):
        try:
            return pa.array(values, type=known)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        arr = pa.array([None if v is None else _text(v) for v in values], pa.string())
    if known is None or pa.types.is_null(known):
        types[i] = arr.type
    elif arr.type != known:
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            arr = arr.cast(known)
    return arr


def _text(value: Any) -> str:
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
