"""StatsigRedshiftHook: Redshift days as Arrow, read in-band for small days and by UNLOAD for big ones.

RedshiftSQLHook keeps the connection and auth (password or IAM). redshift_connector is a
pure-Python driver that loads a whole result into the client, so the in-band read goes through a
server-side cursor (DECLARE / FETCH FORWARD) and memory stays at one batch. A day with at least
`unload_threshold_rows` rows (counted first) is instead written by Redshift itself with
`UNLOAD ... FORMAT AS PARQUET` to a fresh S3 folder, read back with pyarrow (credentials and
endpoint of an Airflow AWS connection), and the folder is deleted afterwards. With
`in_band_driver: connectorx` (optional package) the in-band read streams Arrow from connectorx's
Rust client instead (about 15x faster on loopback), still authenticated by the hook.
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pyarrow as pa
from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook

from statsig_airflow_provider.engine.options import OptionError
from statsig_airflow_provider.engine.readers import (
    DEFAULT_BATCH_ROWS,
    WarehouseError,
    rows_to_batch,
)
from statsig_airflow_provider.engine.sql import count_query, probe_query
from statsig_airflow_provider.hooks.aws_common import (
    Options,
    S3Access,
    UnloadReader,
    explain_aws,
)

CURSOR_NAME = "statsig_day"
_ROLE_ARN = r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}"
_IAM_ROLE_RE = re.compile(rf"^(default|{_ROLE_ARN}(,{_ROLE_ARN})*)$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")

# PostgreSQL / Redshift type OIDs → the Arrow type of the column, so batches keep one type even
# when a batch is all NULL, and a zero-row probe still has a schema. Others are inferred per value.
_OID_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(), 20: pa.int64(), 21: pa.int64(), 23: pa.int64(), 26: pa.int64(),
    700: pa.float64(), 701: pa.float64(),
    18: pa.string(), 19: pa.string(), 25: pa.string(), 1042: pa.string(), 1043: pa.string(),
    1082: pa.date32(), 1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
}
_NUMERIC_OID = 1700
IN_BAND_DRIVERS = ("redshift_connector", "connectorx")


@dataclass(frozen=True)
class RedshiftOptions:
    """A source's `warehouse.options` for Redshift (see docs/warehouses/redshift.md)."""

    unload_s3_uri: str | None = None
    unload_iam_role: str | None = None
    unload_threshold_rows: int = 1_000_000
    unload_region: str | None = None
    unload_max_file_mb: int | None = None
    keep_unload_files: bool = False
    aws_conn_id: str = "aws_default"
    fetch_rows: int = 10_000
    query_timeout_seconds: float | None = None
    in_band_driver: str = "redshift_connector"

    @classmethod
    def parse(cls, options: dict[str, Any] | None) -> RedshiftOptions:
        o = Options(options, "Redshift")
        parsed = cls(
            unload_s3_uri=o.s3_uri("unload_s3_uri"),
            unload_iam_role=o.get("unload_iam_role", str, None),
            unload_threshold_rows=o.number("unload_threshold_rows", int, 1_000_000, minimum=0),
            unload_region=o.get("unload_region", str, None),
            unload_max_file_mb=o.number("unload_max_file_mb", int, None, minimum=5),
            keep_unload_files=o.get("keep_unload_files", bool, False),
            aws_conn_id=o.get("aws_conn_id", str, "aws_default"),
            fetch_rows=o.number("fetch_rows", int, 10_000, minimum=1),
            query_timeout_seconds=o.number("query_timeout_seconds", float, None, minimum=0.001),
            in_band_driver=o.choice("in_band_driver", IN_BAND_DRIVERS, "redshift_connector"),
        )
        o.finish()
        if parsed.unload_s3_uri and not parsed.unload_iam_role:
            raise OptionError("Redshift warehouse.options.unload_iam_role: required with unload_s3_uri (the role "
                              "Redshift assumes to write there, or 'default' for the cluster's default role)")
        if parsed.unload_iam_role and not parsed.unload_s3_uri:
            raise OptionError("Redshift warehouse.options.unload_s3_uri: required with unload_iam_role")
        if parsed.unload_iam_role and not _IAM_ROLE_RE.match(parsed.unload_iam_role):
            raise OptionError("Redshift warehouse.options.unload_iam_role: must be 'default' or IAM role ARNs "
                              "(arn:aws:iam::<account>:role/<name>, comma-separated to chain)")
        if parsed.unload_region and not _REGION_RE.match(parsed.unload_region):
            raise OptionError(f"Redshift warehouse.options.unload_region: {parsed.unload_region!r} is not an AWS "
                              "region name")
        return parsed

    @property
    def unload_enabled(self) -> bool:
        return bool(self.unload_s3_uri)


def unload_statement(sql: str, location: str, options: RedshiftOptions) -> str:
    """The UNLOAD that writes `sql`'s result as Parquet under `location`.

    The query is wrapped (Redshift refuses a LIMIT in UNLOAD's outer SELECT) and put in a string
    literal: quotes are doubled and backslashes doubled, as Redshift reads both as escapes there.
    """
    inner = f"SELECT * FROM (\n{sql.strip().rstrip(';')}\n) AS statsig_day"
    literal = inner.replace("\\", "\\\\").replace("'", "''")
    role = options.unload_iam_role or "default"
    role_clause = "IAM_ROLE default" if role == "default" else f"IAM_ROLE '{role}'"
    lines = [f"UNLOAD ('{literal}')", f"TO '{location}'", role_clause, "FORMAT AS PARQUET"]
    if options.unload_max_file_mb:
        lines.append(f"MAXFILESIZE {int(options.unload_max_file_mb)} MB")
    if options.unload_region:
        lines.append(f"REGION '{options.unload_region}'")
    return "\n".join(lines)


class StatsigRedshiftHook(RedshiftSQLHook):
    """RedshiftSQLHook (connection, password or IAM auth) with the engine's Arrow reader on top."""

    def warehouse_reader(self, options: dict[str, Any] | None = None) -> RedshiftReader:
        return RedshiftReader(self, RedshiftOptions.parse(options))

    def connectorx_uri(self) -> str:
        """The connection as a connectorx `redshift://` URI, credentials resolved by the hook (a
        password, or a temporary IAM token when the extra says iam). It holds a secret: never log it."""
        params = self._get_conn_params()
        user = urllib.parse.quote(str(params.get("user", "")), safe="")
        password = urllib.parse.quote(str(params.get("password", "")), safe="")
        auth = f"{user}:{password}@" if password else f"{user}@"
        host = params.get("host", "localhost")
        port = params.get("port", 5439)
        database = urllib.parse.quote(str(params.get("database", "dev")), safe="")
        ssl = self.conn.extra_dejson.get("ssl", True)
        return f"redshift://{auth}{host}:{port}/{database}?sslmode={'require' if ssl else 'disable'}"


class RedshiftReader(UnloadReader):
    """A Redshift connection as a stream of Arrow batches; see the module docstring."""

    dialect = "redshift"

    def connection_label(self) -> str:
        return f"redshift connection {self.hook.get_conn_id()!r}"

    @cached_property
    def s3(self) -> S3Access:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Access(S3Hook(aws_conn_id=self.options.aws_conn_id))

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor in a transaction that is rolled back at the end (reads change nothing)."""
        conn = self.hook.get_conn()
        try:
            cursor = conn.cursor()
            self._set_timeout(cursor)
            yield cursor
        finally:
            with contextlib.suppress(Exception):
                conn.rollback()
            with contextlib.suppress(Exception):
                conn.close()

    def _set_timeout(self, cursor: Any) -> None:
        """Redshift (and PostgreSQL) cancel the statement past this; 0 would mean no limit."""
        if self.options.query_timeout_seconds:
            cursor.execute(f"SET statement_timeout TO {max(int(self.options.query_timeout_seconds * 1000), 1)}")

    # ------------------------------------------------------------------ read interface
    def count_rows(self, sql: str) -> int:
        with self._cursor() as cursor:
            cursor.execute(count_query(sql))
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    def schema(self, sql: str) -> pa.Schema:
        with self._cursor() as cursor:
            cursor.execute(probe_query(sql))
            cursor.fetchall()
            return pa.schema([(d[0], _description_type(d) or pa.string()) for d in cursor.description])

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        if self.uses_unload(sql):
            yield from self.read_unload(sql, batch_rows)
        elif self.options.in_band_driver == "connectorx":
            yield from self._read_connectorx(sql, batch_rows)
        else:
            yield from self._read_cursor(sql, batch_rows)

    def _read_connectorx(self, sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """In-band through connectorx's Redshift protocol (a cursor, no COPY), streamed as Arrow."""
        try:
            import connectorx as cx
        except ImportError:
            raise WarehouseError("warehouse.options.in_band_driver is connectorx, but the connectorx package is "
                                 "not installed on the worker (pip install connectorx)") from None
        if not isinstance(self.hook, StatsigRedshiftHook):
            raise WarehouseError("the connectorx driver needs a StatsigRedshiftHook")
        pre = None
        if self.options.query_timeout_seconds:
            pre = [f"SET statement_timeout TO {max(int(self.options.query_timeout_seconds * 1000), 1)}"]
        stream = cx.read_sql(self.hook.connectorx_uri(), sql.strip().rstrip(";"), return_type="arrow_stream",
                             batch_size=batch_rows, pre_execution_query=pre)
        for batch in stream:
            for offset in range(0, batch.num_rows, batch_rows):
                yield batch.slice(offset, batch_rows)

    def _read_cursor(self, sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """In-band: a server-side cursor, FETCH FORWARD in steps, rows transposed into Arrow."""
        fetch = max(1, min(batch_rows, self.options.fetch_rows))
        with self._cursor() as cursor:
            cursor.execute(f"DECLARE {CURSOR_NAME} CURSOR FOR {sql.strip().rstrip(';')}")
            names: list[str] | None = None
            types: list[pa.DataType | None] = []
            pending: list[Any] = []
            while True:
                cursor.execute(f"FETCH FORWARD {fetch} FROM {CURSOR_NAME}")
                rows = cursor.fetchall()
                if names is None:
                    names = [d[0] for d in cursor.description]
                    types = [_description_type(d) for d in cursor.description]
                pending.extend(rows)
                while len(pending) >= batch_rows:
                    yield rows_to_batch(pending[:batch_rows], names, types)
                    pending = pending[batch_rows:]
                if len(rows) < fetch:
                    break
            if pending and names is not None:
                yield rows_to_batch(pending, names, types)
            cursor.execute(f"CLOSE {CURSOR_NAME}")

    def unload_statement(self, sql: str, location: str) -> str:
        return unload_statement(sql, location, self.options)

    def execute_unload(self, statement: str) -> None:
        """Run an UNLOAD on Redshift (the tests replace this: PostgreSQL has no UNLOAD)."""
        conn = self.hook.get_conn()
        try:
            cursor = conn.cursor()
            self._set_timeout(cursor)
            cursor.execute(statement)
            conn.commit()
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    # ------------------------------------------------------------------ errors
    def explain(self, exc: BaseException) -> str:
        text = explain_redshift(exc, self.options)
        with contextlib.suppress(Exception):  # a driver message must never carry the password
            password = self.hook.conn.password
            if password:
                for secret in {password, urllib.parse.quote(password, safe="")}:
                    text = text.replace(secret, "***")
        return text


def _description_type(column: Any) -> pa.DataType | None:
    oid = column[1] if len(column) > 1 else None
    if oid == _NUMERIC_OID:
        precision, scale = (column[4], column[5]) if len(column) > 5 else (None, None)
        if precision and scale is not None and 0 < precision <= 38:
            return pa.decimal128(int(precision), int(scale))
        return None
    return _OID_TYPES.get(oid) if isinstance(oid, int) else None


def _server_error(exc: BaseException) -> tuple[str, str] | None:
    """(SQLSTATE, message) of an error the server sent, from redshift_connector's dict argument."""
    if exc.args and isinstance(exc.args[0], dict):  # redshift_connector
        fields = exc.args[0]
        return str(fields.get("C", "")), str(fields.get("M", ""))
    match = re.search(r"db error: (?:ERROR|FATAL): ([^\n]+)", str(exc))  # connectorx (rust-postgres)
    if match:
        return "", match.group(1).strip()
    return None


def explain_redshift(exc: BaseException, options: RedshiftOptions) -> str:
    """Bad credentials, missing permissions, missing tables and timeouts in words a user can act on."""
    server = _server_error(exc)
    if server is not None:
        state, message = server
        if state in ("28P01", "28000") or "authentication failed" in message:
            return (f"Redshift refused the login ({message}): check the user and password of the Airflow "
                    "connection, or its IAM settings (extra iam/cluster_identifier)")
        if state == "3D000" or re.search(r'database ".+" does not exist', message):
            return f"{message}: check the database (schema field) of the Airflow connection"
        if state == "42501" or "permission denied" in message:
            return (f"permission denied ({message}): grant the connection's user USAGE on the schema and "
                    "SELECT on the tables the query reads")
        if state == "42P01" or re.search(r'relation ".+" does not exist', message):
            return f"table not found ({message}): check the table name and schema in the source's sql"
        if state == "3F000":
            return f"schema not found ({message}): check the schema in the source's sql"
        if state == "42703":
            return f"column not found ({message}): check the source's sql"
        if state == "57014" or "statement timeout" in message or "WLM" in message:
            limit = (f" (warehouse.options.query_timeout_seconds = {options.query_timeout_seconds:g})"
                     if options.query_timeout_seconds else "")
            return (f"the query timed out{limit}: {message}; raise the timeout, or lower "
                    "unload_threshold_rows so big days go through UNLOAD")
        if "S3ServiceException" in message or "Access Denied" in message or "not authorized" in message.lower():
            return (f"UNLOAD could not write to {options.unload_s3_uri}: {message}; the role "
                    f"{options.unload_iam_role} needs s3:PutObject on that prefix (and the cluster must be "
                    "allowed to assume it)")
        return f"{message} (SQLSTATE {state})" if state else message
    aws = explain_aws(exc, what=f"the UNLOAD folder {options.unload_s3_uri}")
    if aws:
        return aws
    name = type(exc).__name__
    text = str(exc)
    if name == "InterfaceError" or isinstance(exc, (ConnectionError, TimeoutError)):
        return (f"cannot reach Redshift ({text}): check host, port and network access (security group, "
                "VPC) of the Airflow connection")
    return f"{name}: {text}"

