"""StatsigBigQueryHook: BigQuery through the official Google hook, read as Arrow.

The hook (`BigQueryHook`, connection types `google_cloud_platform` / `gcpbigquery`) keeps doing
what users configured it for: credentials (key file, key JSON, ADC, impersonation), project,
location, labels. Underneath, the day is read with google-cloud-bigquery and, for big results,
the BigQuery Storage Read API: a read session over the query's result table, several streams
read in parallel, each page already an Arrow record batch. When Storage Read is not available
(package missing, `bigquery.readsessions.create` not granted, gRPC blocked, an emulator that does
not materialise query results) the same result is paged through REST instead, with a warning.

`warehouse.options` (all optional, checked by `BigQueryOptions.from_dict`):
  project, location, default_dataset, storage_read, storage_read_min_rows, max_stream_count,
  staging_dataset, query_timeout_seconds, maximum_bytes_billed, labels, endpoint, storage_endpoint.
See docs/warehouses/bigquery.md.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

from statsig_airflow_provider.engine.options import parse_options
from statsig_airflow_provider.engine.readers import DEFAULT_BATCH_ROWS, WarehouseReader
from statsig_airflow_provider.engine.sql import count_query, probe_query

log = logging.getLogger(__name__)

_SESSION_TIMEOUT_S = 120.0  # creating a read session is quick; do not inherit the client's 600 s retry
_STAGING_EXPIRY_HOURS = 24  # safety net: the reader drops its staging table itself
_STREAM_IDLE_TIMEOUT_S = 300.0  # a read session that sends nothing this long is treated as stalled


@dataclass(frozen=True)
class BigQueryOptions:
    """The source's `warehouse.options` for BigQuery; unknown keys and wrong types are refused."""

    project: str | None = None  # project that runs (and pays for) the jobs; default: the connection's
    location: str | None = None  # job location (US, EU, europe-west1...); default: the connection's
    default_dataset: str | None = None  # "dataset" or "project.dataset" for unqualified table names
    storage_read: bool = True  # read big results through the Storage Read API (Arrow over gRPC)
    storage_read_min_rows: int = 50_000  # smaller results are paged through REST (no session set-up)
    max_stream_count: int = 4  # Storage Read streams read in parallel
    staging_dataset: str | None = None  # write each day to a table here first (no response-size limit)
    query_timeout_seconds: float = 3600.0
    maximum_bytes_billed: int | None = None  # BigQuery refuses queries that would bill more
    labels: dict[str, str] = field(default_factory=dict)  # job labels, on top of the connection's
    endpoint: str | None = None  # REST endpoint (emulator / private endpoint); BIGQUERY_EMULATOR_HOST also works
    storage_endpoint: str | None = None  # Storage Read gRPC endpoint; "http://host:port" = plaintext (emulator)

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> BigQueryOptions:
        opts = parse_options(cls, options, "BigQuery", {
            "storage_read": (bool,), "storage_read_min_rows": (int,), "max_stream_count": (int,),
            "query_timeout_seconds": (int, float), "maximum_bytes_billed": (int,), "labels": (dict,),
        })
        if not 1 <= opts.max_stream_count <= 1000:
            raise ValueError(f"max_stream_count must be between 1 and 1000, got {opts.max_stream_count}")
        if opts.storage_read_min_rows < 0 or opts.query_timeout_seconds <= 0:
            raise ValueError("storage_read_min_rows must be >= 0 and query_timeout_seconds > 0")
        for name in ("default_dataset", "staging_dataset"):
            value = getattr(opts, name)
            if value is not None and not 1 <= value.count(".") + 1 <= 2:
                raise ValueError(f"{name} must be 'dataset' or 'project.dataset', got {value!r}")
        return opts


class StatsigBigQueryHook(BigQueryHook):
    """BigQueryHook with an Arrow read path for the ingestion engine.

    Always GoogleSQL (the stock hook defaults to legacy SQL, which the day macros cannot target).
    """

    hook_name = "Google BigQuery (Statsig provider)"

    def __init__(self, *args: Any, use_legacy_sql: bool = False, endpoint: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, use_legacy_sql=use_legacy_sql, **kwargs)
        self.endpoint = endpoint

    def get_client(self, project_id: str | None = None, location: str | None = None) -> Any:
        """The stock client, pointed at `endpoint` when one is set (else BIGQUERY_EMULATOR_HOST / Google)."""
        from airflow.providers.google.common.consts import CLIENT_INFO
        from google.cloud.bigquery import Client

        return Client(client_info=CLIENT_INFO, project=project_id or self.project_id, location=location,
                      credentials=self.get_credentials(),
                      client_options=self.get_client_options(api_endpoint_override=self.endpoint))

    def get_storage_client(self, storage_endpoint: str | None = None) -> Any:
        """A Storage Read client with the hook's credentials; an http:// endpoint means plaintext gRPC."""
        from google.cloud import bigquery_storage_v1

        if storage_endpoint and storage_endpoint.startswith("http://"):
            import grpc
            from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
                BigQueryReadGrpcTransport,
            )

            # Same unlimited message sizes as the library's own channel (pages exceed gRPC's 4 MB default).
            channel = grpc.insecure_channel(storage_endpoint.removeprefix("http://").rstrip("/"), options=[
                ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
            return bigquery_storage_v1.BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
        options = self.get_client_options(api_endpoint_override=storage_endpoint)
        return bigquery_storage_v1.BigQueryReadClient(credentials=self.get_credentials(), client_options=options)

    def warehouse_reader(self, options: Mapping[str, Any] | None = None) -> BigQueryReader:
        opts = BigQueryOptions.from_dict(options)
        if opts.endpoint:
            self.endpoint = opts.endpoint
        project = opts.project or self.project_id
        location = opts.location or self.location
        labels = {**(self.labels or {}), **opts.labels}
        return BigQueryReader(
            client=lambda: self.get_client(project_id=project, location=location),
            storage_client=lambda: self.get_storage_client(opts.storage_endpoint),
            options=opts, project=project, location=location, labels=labels,
            description=f"bigquery connection {self.get_conn_id()!r} (project {project}"
                        + (f", {location})" if location else ")"),
        )


class BigQueryReader(WarehouseReader):
    """A BigQuery day as Arrow: query job, then Storage Read streams in parallel (or REST pages).

    `last_read_path` says how the last `read_batches` read its rows ("rest", "storage_read(N streams)",
    prefixed "staged " when a staging table was used): for logs and tests.
    """

    dialect = "bigquery"

    def __init__(self, *, client: Callable[[], Any], storage_client: Callable[[], Any], options: BigQueryOptions,
                 project: str, location: str | None, labels: dict[str, str], description: str) -> None:
        self._make_client = client
        self._make_storage_client = storage_client
        self._client: Any = None
        self._storage: Any = None
        self.options = options
        self.project = project
        self.location = location
        self.labels = labels
        self._description = description
        self.last_read_path = ""

    def describe(self) -> str:
        return self._description

    # ------------------------------------------------------------------------------ clients
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _storage_client(self) -> Any:
        if self._storage is None:
            self._storage = self._make_storage_client()
        return self._storage

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._client is not None:
                self._client.close()
        self._client = None
        self._storage = None

    # ------------------------------------------------------------------------------ queries
    def _job_config(self) -> Any:
        """GoogleSQL, the job timeout, the cost guard, labels and the default dataset of every job."""
        from google.cloud import bigquery

        cfg = bigquery.QueryJobConfig(use_legacy_sql=False)
        if self.labels:
            cfg.labels = dict(self.labels)
        cfg.job_timeout_ms = int(self.options.query_timeout_seconds * 1000)
        if self.options.maximum_bytes_billed is not None:
            cfg.maximum_bytes_billed = self.options.maximum_bytes_billed
        if self.options.default_dataset:
            ds = self.options.default_dataset
            cfg.default_dataset = ds if "." in ds else f"{self.project}.{ds}"
        return cfg

    def _run(self, sql: str, page_size: int | None = None) -> tuple[Any, Any]:
        """Run `sql` and wait for it; a job still running at the timeout is cancelled, not left billing."""
        job = self.client.query(sql, job_config=self._job_config(), location=self.location,
                                job_id_prefix="statsig_")
        try:
            rows = job.result(timeout=self.options.query_timeout_seconds, page_size=page_size)
        except concurrent.futures.TimeoutError:
            with contextlib.suppress(Exception):
                job.cancel()
            raise
        return job, rows

    def count(self, sql: str) -> int:
        _, rows = self._run(count_query(sql))
        for row in rows:
            return int(row[0])
        return 0

    def schema(self, sql: str) -> pa.Schema:
        _, rows = self._run(probe_query(sql))
        return rows.to_arrow(create_bqstorage_client=False).schema

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        if self.options.staging_dataset:
            yield from self._read_staged(sql, batch_rows)
            return
        job, rows = self._run(sql, page_size=batch_rows)
        streams = self._open_storage_read(job.destination, rows.total_rows or 0)
        if streams is None:
            self.last_read_path = "rest"
            yield from _reslice(rows.to_arrow_iterable(), batch_rows)
        else:
            yield from _reslice(streams, batch_rows)

    def _read_staged(self, sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """CTAS the day into the staging dataset, read that table, drop it.

        A destination table lifts the 10 GB response-size limit of anonymous result tables; DDL is
        used rather than `QueryJobConfig(destination=...)` because it behaves the same on BigQuery
        and on the emulator (which ignores job destinations).
        """
        from google.cloud.bigquery import TableReference

        dataset = self.options.staging_dataset or ""
        dataset = dataset if "." in dataset else f"{self.project}.{dataset}"
        table = TableReference.from_string(f"{dataset}.statsig_stage_{uuid.uuid4().hex}")
        name = f"`{table.project}.{table.dataset_id}.{table.table_id}`"
        ddl = (f"CREATE TABLE {name} OPTIONS(expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), "
               f"INTERVAL {_STAGING_EXPIRY_HOURS} HOUR)) AS SELECT * FROM (\n{sql}\n)")
        try:
            self._run(ddl)
            staged = self.client.get_table(table)
            streams = self._open_storage_read(table, staged.num_rows or 0)
            if streams is None:
                self.last_read_path = "staged rest"
                pages = self.client.list_rows(staged, page_size=batch_rows).to_arrow_iterable()
                yield from _reslice(pages, batch_rows)
            else:
                self.last_read_path = "staged " + self.last_read_path
                yield from _reslice(streams, batch_rows)
        finally:
            try:
                self.client.delete_table(table, not_found_ok=True)
            except Exception as exc:  # the table expires by itself; do not fail a delivered day over it
                log.warning("could not drop staging table %s (it expires in %sh): %s", name,
                            _STAGING_EXPIRY_HOURS, exc)

    # ------------------------------------------------------------------------------ Storage Read
    def _open_storage_read(self, table: Any, total_rows: int) -> Iterator[pa.RecordBatch] | None:
        """Batches from a read session over `table`, or None to page through REST instead.

        The session is created here, before any row is handed out, so falling back can never
        deliver a row twice.
        """
        if not self.options.storage_read or table is None or total_rows < max(self.options.storage_read_min_rows, 1):
            return None
        try:
            from google.api_core import exceptions as gexc
            from google.cloud.bigquery_storage_v1 import types
        except ImportError:
            log.warning("google-cloud-bigquery-storage is not installed: reading through REST pages (slower)")
            return None
        unavailable = (gexc.PermissionDenied, gexc.Forbidden, gexc.NotFound, gexc.MethodNotImplemented,
                       gexc.ServiceUnavailable, gexc.DeadlineExceeded)
        try:
            client = self._storage_client()
            session = client.create_read_session(
                parent=f"projects/{self.project}",
                read_session=types.ReadSession(table=table.to_bqstorage(), data_format=types.DataFormat.ARROW),
                max_stream_count=self.options.max_stream_count, timeout=_SESSION_TIMEOUT_S)
        except unavailable as exc:
            log.warning("BigQuery Storage Read is not available (%s: %s): reading through REST pages (slower)",
                        type(exc).__name__, _first_line(str(exc)))
            return None
        self.last_read_path = f"storage_read({len(session.streams)} streams)"
        return _read_streams(client, session)

    # ------------------------------------------------------------------------------ errors
    def explain(self, exc: BaseException) -> str:
        return explain_bigquery_error(exc, self.project, self.location, self.options.query_timeout_seconds)


class StorageReadStalled(TimeoutError):
    """No Storage Read stream delivered anything for a long time."""


def _read_streams(client: Any, session: Any, idle_timeout_s: float = _STREAM_IDLE_TIMEOUT_S
                  ) -> Iterator[pa.RecordBatch]:
    """Read every stream of `session` in its own thread; a bounded queue keeps memory flat.

    Streams hold disjoint rows, so order between them does not matter. Each response carries one
    Arrow IPC record batch, decoded against the session's schema (`ReadRowsStream` reconnects at
    the right offset on transient errors). Closing the generator (the consumer stopped or failed)
    cancels the gRPC calls: a call merely abandoned keeps the server writing into a full window.
    """
    streams = list(session.streams)
    if not streams:
        return
    schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
    pending: queue.Queue[Any] = queue.Queue(maxsize=2 * len(streams))
    stop = threading.Event()
    done = object()
    calls: list[Any] = []

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def work(stream_name: str) -> None:
        try:
            call = client.read_rows(stream_name)
            calls.append(call)
            for response in call:
                if stop.is_set():
                    return
                data = response.arrow_record_batch.serialized_record_batch
                if data:
                    put(pa.ipc.read_record_batch(pa.py_buffer(data), schema))
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)
        finally:
            put(done)

    threads = [threading.Thread(target=work, args=(s.name,), name=f"bq-stream-{i}", daemon=True)
               for i, s in enumerate(streams)]
    for t in threads:
        t.start()
    try:
        remaining = len(threads)
        while remaining:
            try:
                item = pending.get(timeout=idle_timeout_s)
            except queue.Empty:
                raise StorageReadStalled(f"Storage Read streams sent nothing for {idle_timeout_s:g}s") from None
            if item is done:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        for call in list(calls):
            with contextlib.suppress(Exception):
                call.cancel()
        with contextlib.suppress(queue.Empty):
            while True:
                pending.get_nowait()
        for t in threads:
            t.join(timeout=5)


def _reslice(batches: Any, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Cut server-sized pages to at most `batch_rows` rows (REST pages and read-session pages vary)."""
    for batch in batches:
        if isinstance(batch, pa.Table):
            yield from _reslice(batch.to_batches(max_chunksize=batch_rows), batch_rows)
            continue
        for offset in range(0, batch.num_rows, batch_rows):
            yield batch.slice(offset, batch_rows)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _reasons(exc: BaseException) -> set[str]:
    reasons = {e.get("reason", "") for e in getattr(exc, "errors", None) or [] if isinstance(e, dict)}
    if getattr(exc, "reason", None):
        reasons.add(str(exc.reason))
    return {r for r in reasons if r}


def explain_bigquery_error(exc: BaseException, project: str, location: str | None, timeout_s: float) -> str:
    """Words a user can act on for BigQuery's common failures (no credential material is echoed)."""
    message = _first_line(getattr(exc, "message", None) or str(exc))
    reasons = _reasons(exc)
    where = f"project {project}" + (f", location {location}" if location else "")
    try:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as gauth
    except ImportError:  # pragma: no cover - the google provider depends on both
        return f"{type(exc).__name__}: {message}"
    if isinstance(exc, StorageReadStalled):
        return f"Storage Read stalled: {message}; retry the day, or set warehouse.options.storage_read: false"
    if isinstance(exc, concurrent.futures.TimeoutError) or "timeout" in reasons or "timed out" in message.lower():
        return (f"query timeout: BigQuery did not finish within {timeout_s:g}s and the job was cancelled; "
                "narrow the query (partition filter on the day) or raise warehouse.options.query_timeout_seconds")
    if isinstance(exc, (gauth.RefreshError, gauth.DefaultCredentialsError, gexc.Unauthenticated)) or (
            isinstance(exc, gauth.GoogleAuthError) and not isinstance(exc, gauth.TransportError)):
        return (f"bad credentials: Google refused the connection's credentials ({type(exc).__name__}: {message}); "
                "check the key file / key JSON, that the service account and key still exist, or the "
                "impersonation chain")
    if "bytesBilledLimitExceeded" in reasons:
        return (f"query would bill more than warehouse.options.maximum_bytes_billed "
                f"({message}); filter on the table's partition column or raise the limit")
    if reasons & {"quotaExceeded", "rateLimitExceeded"}:
        return f"quota exceeded in {where}: {message}; retry later or ask for more quota"
    if isinstance(exc, (gexc.Forbidden, gexc.PermissionDenied)):
        return (f"missing permission in {where}: {message}. The connection's account needs "
                "roles/bigquery.jobUser on the project that runs the query, roles/bigquery.dataViewer on "
                "the datasets it reads, and for Storage Read bigquery.readsessions.create "
                "(roles/bigquery.readSessionUser)")
    if isinstance(exc, gexc.NotFound):
        return (f"missing table or dataset: {message}. Check the names in the query, "
                "warehouse.options.default_dataset and the location (datasets are looked up in the job's "
                f"location; {where})")
    if isinstance(exc, gexc.BadRequest):
        return f"query rejected by BigQuery: {message}"
    if isinstance(exc, (gexc.ServiceUnavailable, gauth.TransportError, ConnectionError)) or (
            type(exc).__module__.startswith("requests") and "Connection" in type(exc).__name__):
        return f"cannot reach BigQuery ({type(exc).__name__}: {message}); check the network or endpoint option"
    return f"{type(exc).__name__}: {message}"
