"""StatsigS3Hook: a day of files in S3 (Parquet, CSV or newline-delimited JSON) as a source.

S3 holds files, not tables, so a source names where a day's files live (Statsig's own layout
`<prefix>/<dataset>/<YYYY-MM-DD>/` or any templated day prefix) and its `sql` runs on DuckDB over
exactly that day's files, registered as the view `day_files`. Mapping, day macros and the engine
then work as for any SQL warehouse. The files are read by pyarrow.dataset with the credentials,
region and endpoint of the Airflow AWS connection (S3Hook); DuckDB 2 cannot load its httpfs
extension offline, and does not need to: it scans the Arrow dataset with projection pushdown.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pyarrow as pa
from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.options import OptionError
from statsig_airflow_provider.engine.readers import DEFAULT_BATCH_ROWS, WarehouseError, WarehouseReader
from statsig_airflow_provider.engine.sql import count_query, probe_query
from statsig_airflow_provider.hooks.aws_common import (
    Options,
    S3Access,
    S3Object,
    bounded_dataset,
    explain_aws,
    is_data_object,
    open_dataset,
    split_s3_uri,
)

FORMATS = ("parquet", "csv", "json")
DEFAULT_SUFFIXES = {
    "parquet": (".parquet", ".parq", ".pq"),
    "csv": (".csv", ".csv.gz", ".csv.bz2", ".tsv", ".tsv.gz"),
    "json": (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz"),
}
# Day placeholders of a templated prefix, as strftime formats.
DAY_PLACEHOLDERS = {"day": "%Y-%m-%d", "yyyy": "%Y", "mm": "%m", "dd": "%d", "yyyymmdd": "%Y%m%d"}
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class S3FilesOptions:
    """A source's `warehouse.options` for S3 files (see docs/warehouses/s3.md)."""

    day_prefix: str  # template, e.g. s3://bucket/exports/events/{day}/
    format: str = "parquet"
    suffixes: tuple[str, ...] = ()
    table: str = "day_files"
    delimiter: str = ","
    column_names: tuple[str, ...] | None = None
    column_types: dict[str, str] = field(default_factory=dict)
    memory_limit: str | None = "512MB"
    threads: int | None = None

    @classmethod
    def parse(cls, options: dict[str, Any] | None) -> S3FilesOptions:
        o = Options(options, "S3")
        prefix = o.s3_uri("prefix")
        dataset = o.get("dataset", str, None)
        template = o.get("day_prefix", str, None)
        if (prefix is None) == (template is None):
            raise OptionError("S3 warehouse.options: set either `prefix` (Statsig's layout "
                              "<prefix>/<dataset>/<YYYY-MM-DD>/) or `day_prefix` (a template such as "
                              "s3://bucket/events/dt={day}/), not both")
        if prefix is not None:
            template = f"{prefix.rstrip('/')}/{dataset or 'events'}/{{day}}/"
        elif dataset is not None:
            raise OptionError("S3 warehouse.options.dataset: only used with `prefix` (Statsig's layout)")
        assert template is not None
        check_template(template)
        fmt = o.choice("format", FORMATS, "parquet")
        suffixes = o.get("suffixes", list, None)
        if suffixes is not None and not all(isinstance(s, str) for s in suffixes):
            raise OptionError("S3 warehouse.options.suffixes: must be a list of file-name endings")
        table = o.get("table", str, "day_files")
        if not _IDENTIFIER_RE.match(table):
            raise OptionError(f"S3 warehouse.options.table: {table!r} is not a plain SQL identifier")
        delimiter = o.get("delimiter", str, ",") if fmt == "csv" else ","
        if len(delimiter) != 1:
            raise OptionError("S3 warehouse.options.delimiter: must be one character")
        names = o.get("column_names", list, None) if fmt == "csv" else None
        if names is not None and not all(isinstance(n, str) and n for n in names):
            raise OptionError("S3 warehouse.options.column_names: must be a list of column names")
        types = o.get("column_types", dict, {}) if fmt in ("csv", "json") else {}
        for name, alias in types.items():
            try:
                arrow_type(alias)
            except (ValueError, TypeError):
                raise OptionError(f"S3 warehouse.options.column_types.{name}: unknown type {alias!r} (use "
                                  "Arrow names such as int64, float64, string, bool, date32, "
                                  "timestamp[s], timestamp[ms, tz=UTC])") from None
        memory_limit = o.get("memory_limit", str, "512MB")
        threads = o.number("threads", int, None, minimum=1)
        o.finish()
        return cls(day_prefix=template, format=fmt,
                   suffixes=tuple(s.lower() for s in suffixes) if suffixes is not None else DEFAULT_SUFFIXES[fmt],
                   table=table, delimiter=delimiter, column_names=tuple(names) if names else None,
                   column_types={str(k): str(v) for k, v in types.items()}, memory_limit=memory_limit,
                   threads=threads)


def check_template(template: str) -> None:
    """A day prefix must be in S3, keep the bucket fixed, and name the day at least once."""
    try:
        bucket, _ = split_s3_uri(_PLACEHOLDER_RE.sub("day", template))
    except ValueError as exc:
        raise OptionError(f"S3 warehouse.options.day_prefix: {exc}") from None
    names = _PLACEHOLDER_RE.findall(template)
    unknown = [n for n in names if n not in DAY_PLACEHOLDERS]
    if unknown:
        raise OptionError(f"S3 warehouse.options.day_prefix: unknown placeholder {{{unknown[0]}}}; use "
                          + ", ".join("{" + n + "}" for n in DAY_PLACEHOLDERS))
    if not names:
        raise OptionError("S3 warehouse.options.day_prefix: must name the day, e.g. s3://bucket/events/{day}/")
    if "{" in template.split("//", 1)[1].split("/", 1)[0]:
        raise OptionError(f"S3 warehouse.options.day_prefix: the bucket ({bucket}) cannot depend on the day")


def render_day_prefix(template: str, day: dt.date) -> str:
    """The S3 prefix of one day's files. A template ending in '*' is a key-name prefix; anything
    else is a folder (a '/' is added), so 2026-11-30 never also matches 2026-11-30-backup/."""
    rendered = _PLACEHOLDER_RE.sub(lambda m: day.strftime(DAY_PLACEHOLDERS[m.group(1)]), template)
    if rendered.endswith("*"):
        return rendered[:-1]
    return rendered if rendered.endswith("/") else rendered + "/"


def arrow_type(alias: str) -> pa.DataType:
    """An Arrow type from its name: int64, float64, string, date32, timestamp[ms, tz=UTC], ..."""
    text = alias.strip().replace(" ", "")
    match = re.fullmatch(r"timestamp\[(s|ms|us|ns)(?:,tz=([^\]]+))?\]", text)
    if match:
        return pa.timestamp(match.group(1), tz=match.group(2))
    match = re.fullmatch(r"decimal(?:128)?\((\d+),(\d+)\)", text)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    return pa.type_for_alias(text)


class StatsigS3Hook(S3Hook):
    """S3Hook (the Airflow AWS connection: keys, role, profile, `endpoint_url`) with a reader for a
    day of files; `warehouse_reader(options)` is what the engine uses."""

    def warehouse_reader(self, options: dict[str, Any] | None = None) -> S3FilesReader:
        return S3FilesReader(S3Access(self), S3FilesOptions.parse(options), conn_id=self.aws_conn_id or "")


class S3FilesReader(WarehouseReader):
    """The day's files as the DuckDB view `day_files`, streamed as Arrow.

    Unbound, it only knows the layout; `for_day` binds it to one day's prefix. Listing happens on
    first use (inside the engine's error handling), so a bad credential or missing bucket is
    reported as the source's failure for that day.
    """

    dialect = "duckdb"

    def __init__(self, access: S3Access, options: S3FilesOptions, *, conn_id: str = "",
                 window: DayWindow | None = None) -> None:
        self.access = access
        self.options = options
        self.conn_id = conn_id
        self.window = window

    def for_day(self, window: DayWindow) -> S3FilesReader:
        return S3FilesReader(self.access, self.options, conn_id=self.conn_id, window=window)

    @property
    def location(self) -> str:
        """The day's prefix (or the template when no day is bound)."""
        if self.window is None:
            return self.options.day_prefix
        return render_day_prefix(self.options.day_prefix, self.window.day)

    def describe(self) -> str:
        conn = f" via AWS connection {self.conn_id!r}" if self.conn_id else ""
        return f"S3 {self.options.format} files {self.location}{conn}"

    # ------------------------------------------------------------------ files of the day
    @cached_property
    def files(self) -> list[S3Object]:
        """The day's data files (sorted keys), listed once per bound reader."""
        if self.window is None:
            raise WarehouseError("an S3 source reads one day of files: bind the reader with for_day(window)")
        bucket, prefix = split_s3_uri(self.location)
        return [o for o in self.access.list(bucket, prefix) if is_data_object(o.key, o.size, self.options.suffixes)]

    @cached_property
    def dataset(self) -> Any:
        """A pyarrow dataset over the day's files, its schema unified across them."""
        bucket, _ = split_s3_uri(self.location)
        return open_dataset(self.access.filesystem, [f"{bucket}/{o.key}" for o in self.files], self._file_format())

    def _file_format(self) -> Any:
        from pyarrow import csv, json
        from pyarrow import dataset as ds

        opts = self.options
        types = {name: arrow_type(alias) for name, alias in opts.column_types.items()}
        if opts.format == "parquet":
            return ds.ParquetFileFormat()
        if opts.format == "csv":
            read = csv.ReadOptions(column_names=list(opts.column_names) if opts.column_names else None)
            # An empty unquoted field is NULL; a quoted "" stays an empty string.
            convert = csv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                         quoted_strings_can_be_null=False)
            return ds.CsvFileFormat(read_options=read, convert_options=convert,
                                    parse_options=csv.ParseOptions(delimiter=opts.delimiter, newlines_in_values=True))
        parse = json.ParseOptions(explicit_schema=pa.schema(types) if types else None,
                                  unexpected_field_behavior="infer", newlines_in_values=False)
        return ds.JsonFileFormat(parse_options=parse)

    def file_rows(self) -> int:
        """Rows in the day's files (Parquet: from the footers, without reading data)."""
        return int(self.dataset.count_rows()) if self.files else 0

    @contextlib.contextmanager
    def _duckdb(self, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Any]:
        import duckdb

        config: dict[str, str] = {}
        if self.options.memory_limit:
            config["memory_limit"] = self.options.memory_limit
        if self.options.threads:
            config["threads"] = str(self.options.threads)
        con = duckdb.connect(":memory:", config=config)
        try:
            con.register(self.options.table, bounded_dataset(self.dataset, batch_rows=batch_rows))
            yield con
        finally:
            con.close()

    # ------------------------------------------------------------------ read interface
    def count(self, sql: str) -> int:
        if not self.files:
            return 0
        with self._duckdb() as con:
            rows = con.sql(count_query(sql)).fetchall()
        return int(rows[0][0]) if rows else 0

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        if not self.files:
            return
        with self._duckdb(batch_rows) as con:
            yield from con.sql(sql).to_arrow_reader(batch_rows)

    def schema(self, sql: str) -> pa.Schema:
        if not self.files:
            raise WarehouseError(
                f"no {self.options.format} files under {self.location} yet, so the query's columns cannot be "
                "probed; set day.column_type (or use day macros) so an empty day reads as 'no data'")
        with self._duckdb() as con:
            return con.sql(probe_query(sql)).to_arrow_reader(16).schema

    def explain(self, exc: BaseException) -> str:
        aws = explain_aws(exc, what=f"S3 ({self.location})")
        if aws:
            return aws
        name = type(exc).__name__
        text = str(exc)
        if name == "CatalogException" and "does not exist" in text:
            return (f"{text.splitlines()[0]} — an S3 source's sql reads the day's files from the view "
                    f"{self.options.table!r}, e.g. SELECT * FROM {self.options.table}")
        if name == "BinderException":
            return f"the query does not match the columns of the day's files: {text.splitlines()[0]}"
        if isinstance(exc, (pa.ArrowInvalid, pa.ArrowTypeError)) or name == "InvalidInputException":
            return f"a file under {self.location} is not readable as {self.options.format}: {text.splitlines()[0]}"
        return super().explain(exc)

