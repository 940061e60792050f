"""One source × one day, end to end: read → map → deliver → record.

`ingest_day` holds the day's lease, asks the warehouse how many rows the day has, streams it,
maps and validates every batch, sends what was not sent before, and records the outcome in the
ledger. Every row read ends up counted as delivered (now or earlier), rejected with a reason,
ambiguous, or not sent because the run stopped — the report adds up.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.columns import MappingError, resolve_columns
from statsig_airflow_provider.engine.days import DayWindow, parse_day
from statsig_airflow_provider.engine.deliver import DeliveryAborted, EventSender, RetryPolicy
from statsig_airflow_provider.engine.filedrop import DayFileDrop
from statsig_airflow_provider.engine.fingerprint import DeliveredSet, fingerprints
from statsig_airflow_provider.engine.map_events import EventMapper
from statsig_airflow_provider.engine.map_metrics import METRICS_SCHEMA, MetricMapper
from statsig_airflow_provider.engine.readers import DEFAULT_BATCH_ROWS, WarehouseError, WarehouseReader
from statsig_airflow_provider.engine.rejects import RejectsWriter, RejectTally
from statsig_airflow_provider.engine.requests import RequestBuilder
from statsig_airflow_provider.engine.spec import SourceSpec
from statsig_airflow_provider.engine.sql import DayQuery, day_query, sample_query
from statsig_airflow_provider.engine.statsig_client import LogEventClient, StatsigAuthError, StatsigError

REASONS = ("daily", "reload", "backfill", "api_trigger", "manual")


class IngestionError(RuntimeError):
    """A day could not be ingested; `report` holds what was done before it stopped."""

    def __init__(self, message: str, report: DayReport) -> None:
        self.report = report
        super().__init__(message)


@dataclass
class DayReport:
    source: str
    day: str
    dataset: str
    status: str = L.RUNNING
    reason: str = "manual"
    run_id: str | None = None
    scoping: str = ""
    warehouse_count: int = 0
    rows_read: int = 0
    delivered: int = 0  # this run
    already_delivered: int = 0  # rows of this read that earlier runs delivered
    held_ambiguous: int = 0  # rows of this read matching ambiguous requests not sent again
    rejected: int = 0
    rejects: list[dict[str, object]] = field(default_factory=list)
    ambiguous: int = 0  # rows of this run's requests whose outcome is unknown
    ambiguous_total: int = 0  # all ambiguous rows on record for the day
    not_sent: int = 0  # valid rows this run did not get to deliver (it stopped)
    vanished: int = 0  # rows delivered earlier that the warehouse no longer has
    delivered_total: int = 0  # all rows delivered for the day so far
    requests: int = 0
    retries: int = 0
    bytes_sent: int = 0
    elapsed_s: float = 0.0
    rows_per_s: float = 0.0
    rejects_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            f"{self.source} {self.day} [{self.dataset}] → {self.status} ({self.reason}; {self.scoping})",
            f"  warehouse rows {self.warehouse_count:,}; read {self.rows_read:,} in {self.elapsed_s:.1f}s "
            f"({self.rows_per_s:,.0f} rows/s)",
            f"  delivered {self.delivered:,} now, {self.already_delivered:,} earlier "
            f"(day total {self.delivered_total:,}); requests {self.requests:,}, retries {self.retries:,}",
            f"  rejected {self.rejected:,}" + (f" → {self.rejects_path}" if self.rejects_path else ""),
        ]
        lines += [f"    {r['reason']} [{r['column']}]: {r['rows']:,} — {r['message']}" for r in self.rejects]
        lines.append(f"  ambiguous {self.ambiguous:,} this run, {self.ambiguous_total:,} on record"
                     + (f" ({self.held_ambiguous:,} held back, not re-sent)" if self.held_ambiguous else ""))
        if self.not_sent:
            lines.append(f"  not sent (run stopped): {self.not_sent:,}")
        if self.vanished:
            lines.append(f"  vanished from the warehouse since delivery (cannot be retracted): {self.vanished:,}")
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.message:
            lines.append(f"  {self.message}")
        return "\n".join(lines)


@dataclass
class EventsTarget:
    """Deliver events to Statsig's `log_event` with a client made per run."""

    client_factory: Callable[[], LogEventClient]


@dataclass
class FileDropTarget:
    """Deliver a day as Statsig-layout Parquet (metrics, or events when asked)."""

    filesystem: object
    base_path: str
    after_commit: Callable[[dt.date], None] | None = None  # e.g. mark_data_ready_dwh


@dataclass
class RunOptions:
    run_id: str | None = None
    reason: str = "manual"
    rejects_dir: Path | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS
    progress_every_s: float = 10.0
    cancel: threading.Event = field(default_factory=threading.Event)
    log: Callable[[str], None] = print
    lease_ttl: dt.timedelta = dt.timedelta(minutes=2)


class _Progress:
    def __init__(self, opts: RunOptions, expected: int) -> None:
        self.opts = opts
        self.expected = expected
        self.started = time.monotonic()
        self.last = self.started

    def maybe(self, read: int, delivered: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.opts.progress_every_s:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        pct = f" ({100 * read / self.expected:.0f}% of {self.expected:,})" if self.expected else ""
        self.opts.log(f"progress: read {read:,}{pct}, delivered {delivered:,}, {read / elapsed:,.0f} rows/s")


def ingest_day(spec: SourceSpec, day: dt.date | str, reader: WarehouseReader, target: EventsTarget | FileDropTarget,
               ledger: L.Ledger, options: RunOptions | None = None) -> DayReport:
    """Ingest one day of one source; raise IngestionError (with the report) if the day failed."""
    opts = options or RunOptions()
    window = DayWindow.of(parse_day(day), spec.day.timezone)
    reader = reader.for_day(window)
    report = DayReport(source=spec.name, day=window.day.isoformat(), dataset=spec.dataset, reason=opts.reason,
                       run_id=opts.run_id)
    started = time.monotonic()
    failure: BaseException | None = None
    with L.held(ledger, spec.name, window.day, run_id=opts.run_id, ttl=opts.lease_ttl) as lease:
        previous = ledger.get_day(spec.name, window.day)
        record = _running_record(spec, window.day, previous, opts)
        ledger.write_day(record)
        if lease.stale_in_flight:
            report.warnings.append(f"{lease.stale_in_flight} request(s) left in flight by an earlier run that "
                                   "died are now ambiguous")
        try:
            query = day_query_for(spec, window, reader)
            report.scoping = query.scoping
            report.warehouse_count = _warehouse(reader, "count", lambda: reader.count(query.sql))
            opts.log(f"{spec.name} {window.day}: {report.warehouse_count:,} rows in the warehouse "
                     f"({reader.describe()}, {query.scoping})")
            if report.warehouse_count == 0:
                report.status = L.NO_DATA
                report.message = "the warehouse has no rows for this day yet"
            else:
                if spec.validation.sample_rows and not ledger.has_ingested(spec.name):
                    _sample_check(spec, window, reader, query)
                if isinstance(target, EventsTarget):
                    _deliver_events(spec, window, reader, query, target, lease, ledger, opts, report)
                else:
                    _deliver_file_drop(spec, window, reader, query, target, opts, report)
                report.status = L.INGESTED
        except (WarehouseError, MappingError, DeliveryAborted, StatsigError, _TooManyRejects) as exc:
            failure = exc.cause if isinstance(exc, DeliveryAborted) and exc.cause is not None else exc
            report.status = L.TOO_MANY_REJECTS if isinstance(exc, _TooManyRejects) else L.FAILED
            report.message = _failure_message(spec, window, exc)
        finally:
            report.elapsed_s = round(time.monotonic() - started, 3)
            report.rows_per_s = round(report.rows_read / report.elapsed_s, 1) if report.elapsed_s else 0.0
            if isinstance(target, EventsTarget):
                counts = ledger.manifest_counts(spec.name, window.day)
                report.delivered_total = counts.get(L.DELIVERED, 0)
                report.ambiguous_total = counts.get(L.AMBIGUOUS, 0)
                if report.status == L.INGESTED and report.ambiguous_total:
                    report.status = L.INGESTED_AMBIGUOUS
            elif report.status not in (L.FAILED, L.TOO_MANY_REJECTS):
                report.delivered_total = report.delivered
            elif previous is not None:
                report.delivered_total = previous.delivered
            ledger.write_day(_final_record(record, report, previous, spec))
    if report.status in (L.FAILED, L.TOO_MANY_REJECTS):
        raise IngestionError(report.message, report) from failure
    return report


# -------------------------------------------------------------------------------------- steps
def day_query_for(spec: SourceSpec, window: DayWindow, reader: WarehouseReader) -> DayQuery:
    """The day's query for this warehouse (probing the day column's type when the spec leaves it on auto)."""
    if spec.uses_macros or spec.day.column_type != "auto":
        return day_query(spec, window, reader.dialect)
    schema = _warehouse(reader, "schema probe", lambda: reader.schema(spec.sql))
    column = resolve_columns(schema, {spec.day_column: "the day column"})[spec.day_column]
    return day_query(spec, window, reader.dialect, column=column, column_arrow_type=schema.field(column).type)


def _warehouse(reader: WarehouseReader, what: str, call: Callable):
    """Run a warehouse call; a driver's own error becomes a WarehouseError naming the warehouse
    (ingest_day adds the source and the day)."""
    try:
        return call()
    except (MappingError, WarehouseError):
        raise
    except Exception as exc:  # drivers raise their own types; name the source, day and warehouse
        raise WarehouseError(f"{what} failed on {reader.describe()}: {reader.explain(exc)}") from exc


def _mapper(spec: SourceSpec, window: DayWindow) -> EventMapper | MetricMapper:
    return EventMapper(spec, window) if spec.dataset == "events" else MetricMapper(spec, window)


def _sample_check(spec: SourceSpec, window: DayWindow, reader: WarehouseReader, query: DayQuery) -> None:
    """Before a source's first load, map a sample of the day and stop if it would be refused."""
    mapper = _mapper(spec, window)
    tally = RejectTally(context=mapper.reject_context())
    rows = 0
    sql = sample_query(query.sql, reader.dialect, spec.validation.sample_rows)
    for batch in _warehouse(reader, "sample query", lambda: list(reader.read_batches(sql))):
        rows += batch.num_rows
        tally.add(mapper.map(batch).reasons.counts())
    if rows and tally.total / rows > spec.validation.max_reject_ratio:
        raise _TooManyRejects(
            f"sample check before the first load: {tally.total:,} of {rows:,} sampled rows would be rejected "
            f"(limit {spec.validation.max_reject_ratio:.1%}): {tally.describe()}; nothing was sent")


class _TooManyRejects(RuntimeError):
    pass


def _stream(reader: WarehouseReader, sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The day's batches, with errors raised while streaming named like any other warehouse error."""
    batches = iter(_warehouse(reader, "query", lambda: reader.read_batches(sql, batch_rows)))
    while (batch := _warehouse(reader, "query", lambda: next(batches, None))) is not None:
        yield batch


def _check_running_ratio(spec: SourceSpec, tally: RejectTally, rows: int) -> None:
    floor = max(spec.validation.sample_rows, 10_000)
    if rows >= floor and tally.total / rows > spec.validation.max_reject_ratio:
        raise _TooManyRejects(
            f"{tally.total:,} of the first {rows:,} rows were rejected (limit "
            f"{spec.validation.max_reject_ratio:.1%}), so the day was stopped: {tally.describe()}")


def _deliver_events(spec: SourceSpec, window: DayWindow, reader: WarehouseReader, query: DayQuery,
                    target: EventsTarget, lease: L.Lease, ledger: L.Ledger, opts: RunOptions,
                    report: DayReport) -> None:
    stored = ledger.manifest_fingerprints(spec.name, window.day)
    held = stored.get(L.AMBIGUOUS) if spec.delivery.ambiguous == "hold" else None
    already = DeliveredSet(stored.get(L.DELIVERED), held)
    mapper = EventMapper(spec, window)
    tally = RejectTally(context=mapper.reject_context())
    rejects = RejectsWriter(_rejects_path(spec, window, opts), tally)
    builder = RequestBuilder(spec.delivery.max_events_per_request, spec.delivery.max_body_bytes)
    sender = EventSender(
        target.client_factory(), lease, concurrency=spec.delivery.concurrency, gzip_level=spec.delivery.gzip_level,
        retry=RetryPolicy(max_attempts=spec.delivery.max_attempts), cancel=opts.cancel, log=opts.log)
    progress = _Progress(opts, report.warehouse_count)
    valid = 0
    failure: BaseException | None = None
    try:
        for batch in _stream(reader, query.sql, opts.batch_rows):
            report.rows_read += batch.num_rows
            mapped = mapper.map(batch)
            tally.add(mapped.reasons.counts())
            rejects.write(batch, mapped.reasons)
            valid += len(mapped)
            fps = fingerprints(mapped.identity)
            new = already.select_new(fps)
            rows, fps = (mapped.rows, fps) if new.all() else (mapped.rows.filter(pa.array(new)), fps[new])
            for request in builder.add(rows, fps):
                sender.submit(request)
            _check_running_ratio(spec, tally, report.rows_read)
            progress.maybe(report.rows_read, sender.stats.delivered)
            if sender.stopped or lease.lost:
                break
        else:
            tail = builder.flush()
            if tail is not None:
                sender.submit(tail)
    except BaseException as exc:
        failure = exc
        sender.abort()  # stop sending what is queued; in-flight requests finish and are recorded
    finally:
        try:
            stats = sender.close()
        except DeliveryAborted as exc:
            stats = sender.stats
            failure = failure or exc
        report.rejects_path = str(rejects.close() or "") or None
    report.delivered = stats.delivered
    report.ambiguous = stats.ambiguous
    report.requests, report.retries, report.bytes_sent = stats.requests, stats.retries, stats.bytes_sent
    report.already_delivered, report.held_ambiguous = already.matched
    report.rejected = tally.total
    report.rejects = tally.as_list()
    sent_or_known = report.delivered + report.ambiguous + report.already_delivered + report.held_ambiguous
    report.not_sent = max(valid - sent_or_known, 0)
    if failure is None and not opts.cancel.is_set():
        report.vanished = already.vanished[0]
        _check_final_ratio(spec, tally, report)
    progress.maybe(report.rows_read, report.delivered, force=True)
    if failure is not None:
        if isinstance(failure, (KeyboardInterrupt, SystemExit)):
            raise failure
        if isinstance(failure, DeliveryAborted) and isinstance(failure.cause, StatsigAuthError):
            raise failure.cause
        raise failure
    if opts.cancel.is_set():
        raise DeliveryAborted("the run was cancelled; what was delivered is recorded and will not be sent again")


def _check_final_ratio(spec: SourceSpec, tally: RejectTally, report: DayReport) -> None:
    if report.rows_read and tally.total / report.rows_read > spec.validation.max_reject_ratio:
        raise _TooManyRejects(
            f"{tally.total:,} of {report.rows_read:,} rows were rejected (limit "
            f"{spec.validation.max_reject_ratio:.1%}); the valid rows were delivered: {tally.describe()}")


def _deliver_file_drop(spec: SourceSpec, window: DayWindow, reader: WarehouseReader, query: DayQuery,
                       target: FileDropTarget, opts: RunOptions, report: DayReport) -> None:
    mapper = _mapper(spec, window)
    if not isinstance(mapper, MetricMapper):
        raise MappingError("the file drop carries metrics sources")
    tally = RejectTally(context=mapper.reject_context())
    rejects = RejectsWriter(_rejects_path(spec, window, opts), tally)
    drop = DayFileDrop(target.filesystem, target.base_path, "metrics", window.day, METRICS_SCHEMA)  # type: ignore[arg-type]
    progress = _Progress(opts, report.warehouse_count)
    try:
        for batch in _stream(reader, query.sql, opts.batch_rows):
            if opts.cancel.is_set():
                raise DeliveryAborted("the run was cancelled before the day was written; nothing was replaced")
            report.rows_read += batch.num_rows
            mapped = mapper.map(batch)
            tally.add(mapped.reasons.counts())
            rejects.write(batch, mapped.reasons)
            drop.write(mapped.table)
            _check_running_ratio(spec, tally, report.rows_read)
            progress.maybe(report.rows_read, drop.rows)
        report.rejected = tally.total
        report.rejects = tally.as_list()
        _check_final_ratio(spec, tally, report)
        drop.commit()
    except BaseException:
        drop.abort()
        report.rejected = tally.total
        report.rejects = tally.as_list()
        raise
    finally:
        report.rejects_path = str(rejects.close() or "") or None
    report.delivered = drop.rows
    for name, rows in mapper.kinds.mixed().items():
        report.warnings.append(f"metric {name!r} mixes value-only rows ({rows:,}) with numerator/denominator rows: "
                               "Statsig treats it as a ratio metric and ignores the value-only rows")
    if target.after_commit is not None:
        target.after_commit(window.day)


def _rejects_path(spec: SourceSpec, window: DayWindow, opts: RunOptions) -> Path:
    base = opts.rejects_dir or Path("statsig_rejects")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return base / spec.name / window.day.isoformat() / f"rejects-{stamp}.parquet"


def _failure_message(spec: SourceSpec, window: DayWindow, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"source {spec.name!r} day {window.day}: {text}"


def _running_record(spec: SourceSpec, day: dt.date, previous: L.DayRecord | None, opts: RunOptions) -> L.DayRecord:
    if previous is None:
        return L.DayRecord(source=spec.name, day=day, dataset=spec.dataset, status=L.RUNNING,
                           last_run_id=opts.run_id, last_reason=opts.reason, spec_fingerprint=spec.fingerprint())
    record = L.DayRecord(**{**previous.__dict__})
    record.status = L.RUNNING
    record.last_run_id = opts.run_id
    record.last_reason = opts.reason
    record.message = None
    return record


def _final_record(record: L.DayRecord, report: DayReport, previous: L.DayRecord | None,
                  spec: SourceSpec) -> L.DayRecord:
    now = L.utcnow()
    final = L.DayRecord(**{**record.__dict__})
    final.status = report.status
    final.message = report.message or None
    final.rejects_path = report.rejects_path
    final.last_report = json.dumps(report.to_dict(), default=str)
    if report.status == L.NO_DATA:
        final.warehouse_count = 0
        final.rows_read = 0
        return final
    if report.status in (L.INGESTED, L.INGESTED_AMBIGUOUS):
        final.warehouse_count = report.warehouse_count
        final.rows_read = report.rows_read
        final.rejected = report.rejected
        final.vanished = report.vanished
        final.first_ingested_at = record.first_ingested_at or now
        final.last_ingested_at = now
        final.spec_fingerprint = spec.fingerprint()
        if previous is not None and previous.first_ingested_at is not None and report.reason == "reload":
            final.reload_count = (previous.reload_count or 0) + 1
    final.delivered = report.delivered_total
    final.ambiguous = report.ambiguous_total
    return final
