"""StatsigDatabricksHook: Databricks SQL through the official DatabricksHook, read as Arrow.

The hook (`DatabricksHook`, connection type `databricks`) keeps doing what users configured it
for: workspace host, personal access token, service principal OAuth, Azure AD / managed identity,
OIDC federation, proxies, retries. Underneath, the day is read with the SQL Statement Execution
API on a SQL warehouse: `format=ARROW_STREAM, disposition=EXTERNAL_LINKS`, so the result is a
series of Arrow IPC chunks in cloud storage. Links are followed through `next_chunk_internal_link`
and the chunks are downloaded `download_threads` at a time, *without* the workspace's
Authorization header (presigned URLs refuse it), then sliced into record batches of the
engine's size. Memory stays bounded by chunk size x download window.

Statement Execution runs only on SQL warehouses. An `http_path` naming an all-purpose cluster
(`/sql/protocolv1/o/...`), or `api: connector`, reads through DatabricksSqlHook and the
databricks-sql-connector's `fetchmany_arrow` instead (Thrift + CloudFetch).

`warehouse.options` (all optional, checked by `DatabricksOptions.from_dict`): warehouse_id,
http_path, catalog, schema, api, query_timeout_seconds, wait_timeout_seconds, download_threads.
See docs/warehouses/databricks.md.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pyarrow as pa
from airflow.providers.databricks.exceptions import DatabricksSqlExecutionError, DatabricksSqlExecutionTimeout
from airflow.providers.databricks.hooks.databricks import SQL_STATEMENTS_ENDPOINT, DatabricksHook

from statsig_airflow_provider.engine.options import parse_options
from statsig_airflow_provider.engine.readers import DEFAULT_BATCH_ROWS, WarehouseReader, open_cursor
from statsig_airflow_provider.engine.sql import count_query, probe_query

_WAREHOUSE_PATH_RE = re.compile(r"^/?sql/1\.0/(?:warehouses|endpoints)/([A-Za-z0-9_-]+)/?$")
_TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELED", "CLOSED")
_DOWNLOAD_TIMEOUT_S = 300.0
_APIS = ("statement", "connector")


@dataclass(frozen=True)
class DatabricksOptions:
    """The source's `warehouse.options` for Databricks; unknown keys and wrong types are refused."""

    warehouse_id: str | None = None  # SQL warehouse that runs the query; default: from http_path
    http_path: str | None = None  # default: the connection extra's http_path
    catalog: str | None = None  # default catalog for unqualified names
    schema: str | None = None  # default schema for unqualified names
    api: str | None = None  # "statement" (SQL warehouses; default) or "connector" (clusters, Thrift)
    query_timeout_seconds: float | None = None  # cancel the statement after this long
    wait_timeout_seconds: int = 10  # how long the submit call waits for a quick statement (0 or 5-50)
    download_threads: int = 4  # result chunks downloaded ahead of the one being read

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> DatabricksOptions:
        opts = parse_options(cls, options, "Databricks", {
            "query_timeout_seconds": (int, float), "wait_timeout_seconds": (int,), "download_threads": (int,)})
        if opts.api is not None and opts.api not in _APIS:
            raise ValueError(f"Databricks warehouse option 'api' must be one of {', '.join(_APIS)}, got {opts.api!r}")
        if opts.query_timeout_seconds is not None and opts.query_timeout_seconds <= 0:
            raise ValueError(f"query_timeout_seconds must be positive, got {opts.query_timeout_seconds}")
        if opts.wait_timeout_seconds != 0 and not 5 <= opts.wait_timeout_seconds <= 50:
            raise ValueError(f"wait_timeout_seconds must be 0 or between 5 and 50 (the API's limits), "
                             f"got {opts.wait_timeout_seconds}")
        if not 1 <= opts.download_threads <= 32:
            raise ValueError(f"download_threads must be between 1 and 32, got {opts.download_threads}")
        return opts


def warehouse_id_from_http_path(http_path: str | None) -> str | None:
    """`/sql/1.0/warehouses/<id>` (or the older `/sql/1.0/endpoints/<id>`) → `<id>`; a cluster path → None."""
    match = _WAREHOUSE_PATH_RE.match((http_path or "").strip())
    return match.group(1) if match else None


class StatsigDatabricksHook(DatabricksHook):
    """DatabricksHook with an Arrow read path for the ingestion engine."""

    hook_name = "Databricks (Statsig provider)"

    def __init__(self, databricks_conn_id: str = DatabricksHook.default_conn_name, **kwargs: Any) -> None:
        kwargs.setdefault("caller", "StatsigIngestion")
        super().__init__(databricks_conn_id, **kwargs)

    @cached_property
    def user_agent_value(self) -> str:
        """The stock User-Agent, without running Airflow's provider discovery to learn the provider's version."""
        import platform
        from importlib.metadata import PackageNotFoundError, version

        from airflow import __version__ as airflow_version

        try:
            provider = version("apache-airflow-providers-databricks")
        except PackageNotFoundError:
            provider = "unknown"
        return (f"databricks-airflow/{provider} _/0.0.0 python/{platform.python_version()} "
                f"os/{platform.system().lower()} airflow/{airflow_version} operator/{self.caller}")

    def warehouse_reader(self, options: Mapping[str, Any] | None = None) -> WarehouseReader:
        """The engine's reader for this connection, configured by the source's `warehouse.options`."""
        opts = DatabricksOptions.from_dict(options)
        extra = self.databricks_conn.extra_dejson
        http_path = opts.http_path or extra.get("http_path")
        warehouse_id = opts.warehouse_id or warehouse_id_from_http_path(http_path)
        api = opts.api or ("statement" if warehouse_id or not http_path else "connector")
        where = f"databricks connection {self.databricks_conn_id!r} ({self.host or '?'}"
        if api == "connector":
            if not http_path:
                raise ValueError("reading through the Databricks SQL connector needs an http_path (connection extra "
                                 "'http_path' or warehouse.options.http_path)")
            return DatabricksConnectorReader(self.databricks_conn_id, http_path=http_path, catalog=opts.catalog,
                                             schema=opts.schema, description=f"{where}, {http_path}, connector)")
        if not warehouse_id:
            raise ValueError("the Statement Execution API needs a SQL warehouse: set the connection extra 'http_path' "
                             "to /sql/1.0/warehouses/<id>, or warehouse.options.warehouse_id")
        return DatabricksStatementReader(self, warehouse_id=warehouse_id, catalog=opts.catalog, schema=opts.schema,
                                         query_timeout_seconds=opts.query_timeout_seconds,
                                         wait_timeout_seconds=opts.wait_timeout_seconds,
                                         download_threads=opts.download_threads,
                                         description=f"{where}, warehouse {warehouse_id})")


# ------------------------------------------------------------------------------------------ errors
class DatabricksStatementFailed(DatabricksSqlExecutionError):
    """The warehouse ran the statement and it failed (state FAILED / CANCELED / CLOSED)."""

    def __init__(self, state: str, error_code: str, message: str) -> None:
        self.state, self.error_code, self.message = state, error_code, message
        super().__init__(f"statement {state.lower()}: {error_code + ': ' if error_code else ''}{message}")


class DatabricksStatementTimeout(DatabricksSqlExecutionTimeout):
    """The statement ran past `query_timeout_seconds` and was cancelled."""


class DatabricksResultError(DatabricksSqlExecutionError):
    """A result chunk could not be fetched, or the chunks do not add up to the result."""


# ------------------------------------------------------------------------------------------ readers
class DatabricksStatementReader(WarehouseReader):
    """SQL Statement Execution API: Arrow IPC chunks through external links, fetched in parallel."""

    dialect = "databricks"

    def __init__(self, hook: DatabricksHook, *, warehouse_id: str, catalog: str | None = None,
                 schema: str | None = None, query_timeout_seconds: float | None = None,
                 wait_timeout_seconds: int = 10, download_threads: int = 4,
                 description: str = "databricks") -> None:
        self.hook = hook
        self.warehouse_id = warehouse_id
        self.catalog = catalog
        self.schema_name = schema
        self.query_timeout_seconds = query_timeout_seconds
        self.wait_timeout_seconds = wait_timeout_seconds
        self.download_threads = download_threads
        self._description = description
        self._local = threading.local()

    def describe(self) -> str:
        return self._description

    def explain(self, exc: BaseException) -> str:
        return explain_databricks_error(exc)

    # -- statements
    def execute(self, sql: str, *, fmt: str = "ARROW_STREAM", disposition: str = "EXTERNAL_LINKS") -> dict[str, Any]:
        """Run `sql` to completion; return the final statement response (manifest and first result)."""
        body: dict[str, Any] = {
            "warehouse_id": self.warehouse_id, "statement": sql, "format": fmt, "disposition": disposition,
            "wait_timeout": f"{self.wait_timeout_seconds}s", "on_wait_timeout": "CONTINUE",
        }
        if self.catalog:
            body["catalog"] = self.catalog
        if self.schema_name:
            body["schema"] = self.schema_name
        started = time.monotonic()
        response = self.hook._do_api_call(("POST", SQL_STATEMENTS_ENDPOINT), body)
        statement_id = response["statement_id"]
        delay = 0.25
        try:
            while _state(response) not in _TERMINAL_STATES:
                if self.query_timeout_seconds and time.monotonic() - started > self.query_timeout_seconds:
                    raise DatabricksStatementTimeout(
                        f"statement {statement_id} still {_state(response).lower()} after "
                        f"{self.query_timeout_seconds:g}s; it was cancelled")
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                response = self.hook._do_api_call(("GET", f"{SQL_STATEMENTS_ENDPOINT}/{statement_id}"))
        except BaseException:  # a timeout, a failed poll or the task being killed: do not leave it running
            with contextlib.suppress(Exception):
                self.hook._do_api_call(("POST", f"{SQL_STATEMENTS_ENDPOINT}/{statement_id}/cancel"))
            raise
        state = _state(response)
        if state != "SUCCEEDED":
            error = (response.get("status") or {}).get("error") or {}
            raise DatabricksStatementFailed(state, str(error.get("error_code") or ""),
                                            str(error.get("message") or "no error message"))
        return response

    def count(self, sql: str) -> int:
        response = self.execute(count_query(sql), fmt="JSON_ARRAY", disposition="INLINE")
        rows = (response.get("result") or {}).get("data_array") or []
        return int(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else 0

    def schema(self, sql: str) -> pa.Schema:
        """The result's schema from the statement manifest of a zero-row probe (no chunk to download)."""
        response = self.execute(probe_query(sql), fmt="JSON_ARRAY", disposition="INLINE")
        return manifest_schema(response.get("manifest") or {})

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        response = self.execute(sql)
        manifest = response.get("manifest") or {}
        if manifest.get("truncated"):
            raise DatabricksResultError("Databricks truncated the result (EXTERNAL_LINKS results are limited to "
                                        "100 GiB); read the day in smaller parts")
        target = manifest_schema(manifest)
        compression = manifest.get("result_compression")
        expected = manifest.get("total_row_count")
        rows = 0
        for payload in self._chunk_payloads(response["statement_id"], response.get("result") or {}):
            for batch in _ipc_batches(payload, compression):
                batch = conform(batch, target)
                for offset in range(0, batch.num_rows, batch_rows):
                    piece = batch.slice(offset, batch_rows)
                    rows += piece.num_rows
                    yield piece
        if expected is not None and rows != int(expected):
            raise DatabricksResultError(f"incomplete result: the chunks held {rows:,} rows, the manifest {expected:,}")

    # -- chunks
    def _links(self, statement_id: str, result: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every external link in order, following next_chunk_internal_link from the first result."""
        links = list(result.get("external_links") or [])
        while links:
            yield from links
            internal = links[-1].get("next_chunk_internal_link")
            if not internal:
                return
            page = self.hook._do_api_call(("GET", _api_endpoint(internal)))
            links = list(page.get("external_links") or [])

    def _chunk_payloads(self, statement_id: str, result: Mapping[str, Any]) -> Iterator[bytes]:
        """Chunk bodies in order, at most `download_threads` downloaded ahead of the consumer."""
        pending: collections.deque[concurrent.futures.Future[bytes]] = collections.deque()
        pool = concurrent.futures.ThreadPoolExecutor(self.download_threads, thread_name_prefix="dbx-chunk")
        try:
            for link in self._links(statement_id, result):
                pending.append(pool.submit(self._download, statement_id, link))
                if len(pending) >= self.download_threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _session(self) -> Any:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = True
            proxies = self.hook._get_requests_kwargs().get("proxies")
            if proxies:
                session.proxies.update(proxies)
        return session

    def _download(self, statement_id: str, link: Mapping[str, Any]) -> bytes:
        """One chunk, from its presigned URL with no Authorization header; an expired link is renewed once."""
        index = link.get("chunk_index")
        for attempt in (1, 2):
            url = link.get("external_link")
            if not url:
                raise DatabricksResultError(f"result chunk {index} has no external link")
            try:
                response = self._session().get(url, headers=dict(link.get("http_headers") or {}),
                                               timeout=_DOWNLOAD_TIMEOUT_S)
            except Exception as exc:  # requests names the URL, signature included: keep only the rest
                raise DatabricksResultError(f"downloading result chunk {index} failed: {type(exc).__name__}: "
                                            f"{_redact_urls(str(exc))}") from None
            if response.status_code == 200:
                return response.content
            if attempt == 1 and response.status_code in (401, 403) and index is not None:
                # Links last about 15 minutes; ask for a fresh one for this chunk and try again.
                page = self.hook._do_api_call(
                    ("GET", f"{SQL_STATEMENTS_ENDPOINT}/{statement_id}/result/chunks/{index}"))
                fresh = [lk for lk in page.get("external_links") or [] if lk.get("chunk_index") == index]
                if fresh:
                    link = fresh[0]
                    continue
            # The URL carries a signature: never put it in the error.
            raise DatabricksResultError(f"downloading result chunk {index} failed: HTTP {response.status_code}")
        raise DatabricksResultError(f"downloading result chunk {index} failed")


class DatabricksConnectorReader(WarehouseReader):
    """databricks-sql-connector through DatabricksSqlHook: Thrift, CloudFetch, `fetchmany_arrow`.

    For all-purpose clusters, which have no Statement Execution API. No local server speaks this
    protocol, so the tests cover it with a mocked connection only.
    """

    dialect = "databricks"

    def __init__(self, conn_id: str, *, http_path: str, catalog: str | None = None, schema: str | None = None,
                 description: str = "databricks (connector)") -> None:
        self.conn_id = conn_id
        self.http_path = http_path
        self.catalog = catalog
        self.schema_name = schema
        self._description = description

    def describe(self) -> str:
        return self._description

    def explain(self, exc: BaseException) -> str:
        return explain_databricks_error(exc)

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        from airflow.providers.databricks.hooks.databricks_sql import DatabricksSqlHook

        hook = DatabricksSqlHook(databricks_conn_id=self.conn_id, http_path=self.http_path, catalog=self.catalog,
                                 schema=self.schema_name, caller="StatsigIngestion")
        with open_cursor(hook.get_conn()) as cursor:
            yield cursor

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        with self._cursor() as cursor:
            cursor.execute(sql)
            while True:
                table = cursor.fetchmany_arrow(batch_rows)
                if table.num_rows == 0:  # its schema may be empty: never take the schema from it
                    return
                for batch in table.to_batches(max_chunksize=batch_rows):
                    if batch.num_rows:
                        yield batch

    def schema(self, sql: str) -> pa.Schema:
        with self._cursor() as cursor:
            cursor.execute(probe_query(sql))
            description = cursor.description or []
        return pa.schema([pa.field(d[0], databricks_arrow_type(str(d[1] or ""), d[4], d[5])) for d in description])


# ------------------------------------------------------------------------------------------ helpers
def _state(response: Mapping[str, Any]) -> str:
    return str((response.get("status") or {}).get("state") or "PENDING")


_URL_QUERY_RE = re.compile(r"\?[^\s'\")]*=[^\s'\")]*")


def _redact_urls(text: str) -> str:
    """Drop query strings (a presigned URL's signature) from `text`, wherever a URL or path shows up."""
    return _URL_QUERY_RE.sub("?<redacted>", text)


def _api_endpoint(internal_link: str) -> str:
    """`/api/2.0/sql/statements/<id>/result/chunks/<n>` → the hook's endpoint form (it prefixes `api/`)."""
    path = internal_link.lstrip("/")
    return path[len("api/"):] if path.startswith("api/") else path


def _ipc_batches(payload: bytes, compression: str | None) -> Iterator[pa.RecordBatch]:
    source: Any = pa.BufferReader(payload)
    if compression == "LZ4_FRAME":  # the whole stream is LZ4-framed when the manifest says so
        source = pa.CompressedInputStream(source, "lz4")
    with pa.ipc.open_stream(source) as reader:
        yield from reader


_DECIMAL_RE = re.compile(r"^DECIMAL\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_SIMPLE_TYPES: dict[str, pa.DataType] = {
    # Databricks type_name / type_text names, and the DuckDB spellings minilake (the local stand-in) reports
    "BOOLEAN": pa.bool_(), "BYTE": pa.int8(), "TINYINT": pa.int8(), "SHORT": pa.int16(), "SMALLINT": pa.int16(),
    "INT": pa.int32(), "INTEGER": pa.int32(), "LONG": pa.int64(), "BIGINT": pa.int64(), "FLOAT": pa.float32(),
    "REAL": pa.float32(), "DOUBLE": pa.float64(), "STRING": pa.string(), "VARCHAR": pa.string(),
    "CHAR": pa.string(), "BINARY": pa.binary(), "BLOB": pa.binary(), "DATE": pa.date32(),
    # Databricks TIMESTAMP is an instant (shown in the session time zone); its Arrow results are UTC.
    "TIMESTAMP": pa.timestamp("us", tz="UTC"), "TIMESTAMP WITH TIME ZONE": pa.timestamp("us", tz="UTC"),
    "TIMESTAMP_LTZ": pa.timestamp("us", tz="UTC"), "TIMESTAMP_NTZ": pa.timestamp("us"),
}


def databricks_arrow_type(type_name: str, precision: Any = None, scale: Any = None) -> pa.DataType:
    """The Arrow type of a Databricks column type; pa.null() for types the engine does not filter on
    (ARRAY, MAP, STRUCT, INTERVAL, VARIANT keep whatever type the chunks carry)."""
    name = " ".join(type_name.upper().split())
    match = _DECIMAL_RE.match(name)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    if name == "DECIMAL":
        return pa.decimal128(int(precision or 10), int(scale or 0))
    base = re.split(r"[(<]", name, maxsplit=1)[0].strip()
    if base in ("VARCHAR", "CHAR", "STRING"):
        return pa.string()
    return _SIMPLE_TYPES.get(name, pa.null())


def manifest_schema(manifest: Mapping[str, Any]) -> pa.Schema:
    """The result schema a statement manifest describes (type_text is the more precise of the two names)."""
    columns = sorted(((manifest.get("schema") or {}).get("columns") or []), key=lambda c: c.get("position", 0))
    return pa.schema([
        pa.field(c["name"], databricks_arrow_type(str(c.get("type_text") or c.get("type_name") or ""),
                                                  c.get("type_precision"), c.get("type_scale")))
        for c in columns])


def conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """Cast each column to the manifest's type where it differs and the cast is clean.

    Real chunks already carry these types (a no-op); it keeps the batch schema stable from chunk to
    chunk, and turns the text dates and timestamps of a stand-in into real ones.
    """
    if len(target) != batch.num_columns or batch.schema.types == target.types:
        return batch
    arrays = []
    changed = False
    for column, wanted in zip(batch.columns, target.types, strict=True):
        if not pa.types.is_null(wanted) and column.type != wanted:
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                column = column.cast(wanted)
                changed = True
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names) if changed else batch


_MISSING = ("TABLE_OR_VIEW_NOT_FOUND", "SCHEMA_NOT_FOUND", "CATALOG_NOT_FOUND", "NOT_FOUND", "NOT FOUND",
            "DOES NOT EXIST", "DOES_NOT_EXIST", "CANNOT BE FOUND")
_DENIED = ("PERMISSION_DENIED", "INSUFFICIENT_PERMISSIONS", "INSUFFICIENT_PRIVILEGES", "DOES NOT HAVE",
           "NOT AUTHORIZED", "UNAUTHORIZED_ACCESS")


_API_ERROR_RE = re.compile(r"^Response: (\{.*\}), Status Code: (\d+)$", re.DOTALL)


def _api_error_text(text: str, status: int | None) -> str:
    """DatabricksHook's "Response: {json}, Status Code: N" as "HTTP N ERROR_CODE: message"."""
    match = _API_ERROR_RE.match(text.strip())
    if not match:
        return text
    try:
        body = json.loads(match.group(1))
    except ValueError:
        return text
    if not isinstance(body, dict):
        return text
    code = body.get("error_code") or ""
    return f"HTTP {status or match.group(2)} {code + ': ' if code else ''}{body.get('message') or match.group(1)}"


def explain_databricks_error(exc: BaseException) -> str:
    """Words a user can act on for the Databricks failures seen in practice; the service's text follows."""
    status = getattr(exc, "http_status_code", None)
    text = " ".join(_api_error_text(str(exc), status).split())
    if len(text) > 600:
        text = text[:600] + "…"
    upper = text.upper()
    detail = f"{type(exc).__name__}: {text}"
    if isinstance(exc, (DatabricksStatementTimeout, DatabricksSqlExecutionTimeout, TimeoutError)):
        headline = ("the Databricks statement timed out: raise warehouse.options.query_timeout_seconds, size up the "
                    "SQL warehouse, or narrow the query")
    elif status == 401 or "INVALID_TOKEN" in upper or "UNAUTHENTICATED" in upper or "INVALID ACCESS TOKEN" in upper:
        headline = ("Databricks refused the credentials: check the connection's token (password field) or its "
                    "service principal / Azure AD settings, and that the token has not expired")
    elif status == 403 or any(k in upper for k in _DENIED):
        headline = ("the Databricks principal lacks a permission: it needs CAN USE on the SQL warehouse, USE CATALOG "
                    "and USE SCHEMA on the table's catalog and schema, and SELECT on the table")
    elif any(k in upper for k in _MISSING):
        headline = ("Databricks cannot find the table, view, schema or catalog (or the warehouse): check the names, "
                    "warehouse.options.catalog/schema and the connection's http_path")
    elif "API REQUESTS TO DATABRICKS FAILED" in upper or "CONNECTIONERROR" in upper or "MAX RETRIES" in upper:
        headline = "could not reach the Databricks workspace: check the connection's host, network access and proxies"
    else:
        return detail
    return f"{headline} ({detail})"
