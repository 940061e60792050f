"""StatsigAthenaHook: Athena days as Arrow, from the query's result file or, for big days, UNLOAD.

AthenaSQLHook keeps the connection and auth (its pyathena connection: region, workgroup,
`s3_staging_dir`, keys or role). Athena writes every SELECT result as a CSV file in S3; a small day
is read by streaming that file through pyarrow's CSV reader, typed from Athena's column metadata,
so memory stays at one block. A day with at least `unload_threshold_rows` rows (counted first) runs
as `UNLOAD (...) TO 's3://…/' WITH (format = 'PARQUET')` instead: Athena writes typed Parquet in
parallel, pyarrow reads it back, and the run's folder is deleted. pyathena's own ArrowCursor is
not used because it reads the whole result into memory and builds its S3 filesystem without the
connection's endpoint; here the endpoint and credentials of the connection go to pyarrow.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pyarrow as pa
from airflow.providers.amazon.aws.hooks.athena_sql import AthenaSQLHook

from statsig_airflow_provider.engine.readers import DEFAULT_BATCH_ROWS, rows_to_batch
from statsig_airflow_provider.engine.sql import count_query, probe_query
from statsig_airflow_provider.hooks.aws_common import (
    Options,
    S3Access,
    UnloadReader,
    aws_error_code,
    explain_aws,
    split_s3_uri,
)

CSV_BLOCK_BYTES = 8 << 20

# Athena result column types → Arrow types for reading the CSV result. Complex and exotic types
# (array, map, row, json, varbinary, time, timestamp with time zone, ...) stay text.
_ATHENA_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(), "tinyint": pa.int8(), "smallint": pa.int16(), "integer": pa.int32(),
    "int": pa.int32(), "bigint": pa.int64(), "float": pa.float32(), "real": pa.float32(), "double": pa.float64(),
    "char": pa.string(), "varchar": pa.string(), "string": pa.string(),
    "date": pa.date32(), "timestamp": pa.timestamp("us"),
}


def athena_arrow_type(type_name: str, precision: Any = None, scale: Any = None, *,
                      probe: bool = False) -> pa.DataType:
    """The Arrow type for an Athena result column.

    `timestamp with time zone` is read as text (its CSV form, "2026-11-30 08:00:00.000 UTC", is not
    one pyarrow parses), but a schema probe reports it as a zoned timestamp so an "auto" day
    column of that type gets an instant filter.
    """
    name = (type_name or "").lower().strip()
    if name == "decimal" and isinstance(precision, int) and 0 < precision <= 38:
        return pa.decimal128(precision, int(scale or 0))
    if probe and name == "timestamp with time zone":
        return pa.timestamp("us", tz="UTC")
    return _ATHENA_TYPES.get(name, pa.string())


@dataclass(frozen=True)
class AthenaOptions:
    """A source's `warehouse.options` for Athena (see docs/warehouses/athena.md)."""

    unload_s3_uri: str | None = None  # default: <connection s3_staging_dir>statsig-unload/
    unload_threshold_rows: int = 1_000_000
    keep_unload_files: bool = False
    aws_conn_id: str = "aws_default"
    poll_interval_seconds: float = 1.0

    @property
    def unload_enabled(self) -> bool:
        return bool(self.unload_s3_uri)

    @classmethod
    def parse(cls, options: dict[str, Any] | None, staging_dir: str | None) -> AthenaOptions:
        o = Options(options, "Athena")
        uri = o.s3_uri("unload_s3_uri")
        if uri is None and staging_dir:
            uri = f"{staging_dir.rstrip('/')}/statsig-unload/"
        parsed = cls(
            unload_s3_uri=uri,
            unload_threshold_rows=o.number("unload_threshold_rows", int, 1_000_000, minimum=0),
            keep_unload_files=o.get("keep_unload_files", bool, False),
            aws_conn_id=o.get("aws_conn_id", str, "aws_default"),
            poll_interval_seconds=o.number("poll_interval_seconds", float, 1.0, minimum=0.01),
        )
        o.finish()
        return parsed


def unload_statement(sql: str, location: str) -> str:
    """The UNLOAD that writes `sql`'s result as Parquet under `location` (the query is wrapped, so
    one that starts with WITH or ends with LIMIT is fine)."""
    inner = f"SELECT * FROM (\n{sql.strip().rstrip(';')}\n) AS statsig_day"
    return f"UNLOAD ({inner})\nTO '{location}'\nWITH (format = 'PARQUET', compression = 'SNAPPY')"


class StatsigAthenaHook(AthenaSQLHook):
    """AthenaSQLHook (pyathena connection; keys, role or the `aws_conn_id` connection) with the
    engine's Arrow reader on top."""

    def warehouse_reader(self, options: dict[str, Any] | None = None) -> AthenaReader:
        staging = self.get_connection(self.athena_conn_id).extra_dejson.get("s3_staging_dir")
        parsed = AthenaOptions.parse(options, staging)
        hook: StatsigAthenaHook = self
        if parsed.aws_conn_id != self.aws_conn_id:
            hook = StatsigAthenaHook(athena_conn_id=self.athena_conn_id, aws_conn_id=parsed.aws_conn_id)
        return AthenaReader(hook, parsed)


class AthenaReader(UnloadReader):
    """An Athena connection as a stream of Arrow batches; see the module docstring."""

    dialect = "athena"

    def connection_label(self) -> str:
        return f"athena connection {self.hook.athena_conn_id!r}"

    @cached_property
    def s3(self) -> S3Access:
        return S3Access(self.hook)

    @contextlib.contextmanager
    def execute(self, sql: str) -> Iterator[Any]:
        """Run one statement on Athena through pyathena and wait for it; yield its cursor."""
        conn = self.hook.get_conn()
        try:
            cursor = conn.cursor(poll_interval=self.options.poll_interval_seconds)
            cursor.execute(sql)
            yield cursor
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    # ------------------------------------------------------------------ read interface
    def count_rows(self, sql: str) -> int:
        with self.execute(count_query(sql)) as cursor:
            row = cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def schema(self, sql: str) -> pa.Schema:
        with self.execute(probe_query(sql)) as cursor:
            return pa.schema([(d[0], athena_arrow_type(d[1], d[4], d[5], probe=True))
                              for d in cursor.description or []])

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        if self.uses_unload(sql):
            yield from self.read_unload(sql, batch_rows)
        else:
            yield from self._read_result(sql, batch_rows)

    def _read_result(self, sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        with self.execute(sql) as cursor:
            description = list(cursor.description or [])
            location = cursor.output_location
            if location and location.lower().endswith(".csv"):
                yield from self._csv_batches(location, description, batch_rows)
                return
            # No result file (e.g. managed query results): page through GetQueryResults.
            names = [d[0] for d in description]
            types: list[pa.DataType | None] = [athena_arrow_type(d[1], d[4], d[5]) for d in description]
            while rows := cursor.fetchmany(max(batch_rows, 1)):  # pyathena pages 1,000 rows per call
                yield rows_to_batch(list(rows), names, types)

    def _csv_batches(self, location: str, description: list[Any], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stream Athena's CSV result: header row, every value quoted, NULL as an empty field."""
        from pyarrow import csv

        names = [d[0] for d in description]
        types = {d[0]: athena_arrow_type(d[1], d[4], d[5]) for d in description}
        bucket, key = split_s3_uri(location)
        with self.s3.filesystem.open_input_stream(f"{bucket}/{key}") as stream:
            reader = csv.open_csv(
                stream,
                read_options=csv.ReadOptions(column_names=names, skip_rows_after_names=1,
                                             block_size=CSV_BLOCK_BYTES),
                parse_options=csv.ParseOptions(newlines_in_values=True, double_quote=True),
                convert_options=csv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                                   quoted_strings_can_be_null=False),
            )
            for batch in reader:
                for offset in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(offset, batch_rows)

    def unload_statement(self, sql: str, location: str) -> str:
        return unload_statement(sql, location)

    def execute_unload(self, statement: str) -> None:
        with self.execute(statement):
            pass

    # ------------------------------------------------------------------ errors
    def explain(self, exc: BaseException) -> str:
        return explain_athena(exc, self.options)


_TIMEOUT_RE = re.compile(r"Query timeout|EXCEEDED_TIME_LIMIT|Query exhausted resources|exceeded.*time limit", re.I)


def explain_athena(exc: BaseException, options: AthenaOptions) -> str:
    """Athena's failure reasons and AWS error codes in words a user can act on."""
    text = str(exc).strip()
    code = aws_error_code(exc)
    if code == "InvalidRequestException" and "WorkGroup" in text:
        return (f"Athena workgroup not found ({_tail(text)}): check work_group in the Airflow connection's "
                "extra")
    if code in ("AccessDeniedException",):
        return (f"permission denied by Athena ({_tail(text)}): the connection's IAM identity needs "
                "athena:StartQueryExecution, athena:GetQueryExecution and athena:GetQueryResults on the "
                "workgroup, Glue read access to the catalog, and S3 access to the data and result location")
    aws = explain_aws(exc, what="S3 (the Athena result or UNLOAD location)")
    if aws:
        return aws
    if "TABLE_NOT_FOUND" in text or re.search(r"Table '?[\w.\"`]+'? does not exist", text):
        return f"table not found: {text} — check the table and database names in the source's sql"
    if "SCHEMA_NOT_FOUND" in text or re.search(r"Schema '?[\w.\"`]+'? does not exist", text):
        return f"database not found: {text} — check the schema field of the connection and the source's sql"
    if "COLUMN_NOT_FOUND" in text:
        return f"column not found: {text} — check the source's sql"
    if "Insufficient permissions" in text or "Access Denied" in text or "AccessDenied" in text:
        return (f"permission denied: {text} — the connection's IAM identity needs Glue and S3 read access to the "
                f"table's data, and write access to the result location"
                + (f" and to {options.unload_s3_uri}" if options.unload_s3_uri else ""))
    if _TIMEOUT_RE.search(text):
        return (f"the query timed out in Athena: {text} — raise the workgroup's query timeout, or lower "
                "unload_threshold_rows so big days are written by UNLOAD")
    return f"{type(exc).__name__}: {text}"


def _tail(text: str) -> str:
    match = re.search(r"operation(?: \(reached max retries: \d+\))?: (.+)$", text)
    return match.group(1) if match else text
