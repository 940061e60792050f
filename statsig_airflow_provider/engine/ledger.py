"""The ledger: per source × day status, the delivery manifest, and the lease that serialises writers.

It lives in a SQL database reached through SQLAlchemy, so every worker of a distributed Airflow
shares it (PostgreSQL), with an embedded SQLite file as the default for local use. The reload
check compares against it, the status command reads it, and the manifest in it is what makes
retries, resumes, reloads and backfills send each row once.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from statsig_airflow_provider.engine.fingerprint import FINGERPRINT_DTYPE, from_blob, to_blob

metadata = sa.MetaData()

DAYS = sa.Table(
    "statsig_ingestion_days", metadata,
    sa.Column("source", sa.String(100), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("dataset", sa.String(16), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("warehouse_count", sa.BigInteger),
    sa.Column("rows_read", sa.BigInteger),
    sa.Column("delivered", sa.BigInteger, nullable=False, default=0),
    sa.Column("rejected", sa.BigInteger, nullable=False, default=0),
    sa.Column("ambiguous", sa.BigInteger, nullable=False, default=0),
    sa.Column("vanished", sa.BigInteger, nullable=False, default=0),
    sa.Column("reload_count", sa.Integer, nullable=False, default=0),
    sa.Column("first_ingested_at", sa.DateTime(timezone=True)),
    sa.Column("last_ingested_at", sa.DateTime(timezone=True)),
    sa.Column("last_run_id", sa.String(250)),
    sa.Column("last_reason", sa.String(32)),
    sa.Column("spec_fingerprint", sa.String(32)),
    sa.Column("message", sa.Text),
    sa.Column("rejects_path", sa.Text),
    sa.Column("last_report", sa.Text),  # the last run's report as JSON (timings, reasons, warnings)
    sa.Column("presence_count", sa.BigInteger),  # the data-presence check's last count...
    sa.Column("presence_checks", sa.Integer),  # ...and how many checks in a row saw it unchanged
    sa.Column("presence_checked_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

MANIFEST = sa.Table(
    "statsig_delivery_manifest", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("run_id", sa.String(250)),
    sa.Column("lease_token", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("fingerprints", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_statsig_manifest_source_day", "source", "day"),
)

LEASES = sa.Table(
    "statsig_day_leases", metadata,
    sa.Column("source", sa.String(100), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(250), nullable=False),
    sa.Column("run_id", sa.String(250)),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

TRIGGERS = sa.Table(
    "statsig_api_triggers", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("dataset", sa.String(16), nullable=False),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(250)),
    sa.Column("days", sa.Text, nullable=False),
    sa.Index("ix_statsig_triggers_source", "source", "dataset", "accepted_at"),
)

# Manifest entry states. `in_flight` is written before a request goes out; a run that finds
# in_flight entries left by a dead owner cannot know their outcome and turns them `ambiguous`.
IN_FLIGHT, DELIVERED, AMBIGUOUS, FAILED = "in_flight", "delivered", "ambiguous", "failed"

# Day states.
WAITING = "waiting"  # the daily run is waiting for the day's data to be present
RUNNING = "running"
INGESTED = "ingested"
INGESTED_AMBIGUOUS = "ingested_ambiguous"
NO_DATA = "no_data"
FAILED_DAY = "failed"
TOO_MANY_REJECTS = "too_many_rejects"
DONE_STATES = (INGESTED, INGESTED_AMBIGUOUS)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.timezone.utc)


RECHECK_AFTER_S = 1.0


class DayBusyError(RuntimeError):
    """Another live worker holds this source × day."""


class LeaseLostError(RuntimeError):
    """Our lease on a source × day expired and someone else took it: stop sending."""


@dataclass
class DayRecord:
    source: str
    day: dt.date
    dataset: str
    status: str
    warehouse_count: int | None = None
    rows_read: int | None = None
    delivered: int = 0
    rejected: int = 0
    ambiguous: int = 0
    vanished: int = 0
    reload_count: int = 0
    first_ingested_at: dt.datetime | None = None
    last_ingested_at: dt.datetime | None = None
    last_run_id: str | None = None
    last_reason: str | None = None
    spec_fingerprint: str | None = None
    message: str | None = None
    rejects_path: str | None = None
    last_report: str | None = None
    presence_count: int | None = None
    presence_checks: int | None = None
    presence_checked_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> DayRecord:
        values = dict(row._mapping)
        for key in ("first_ingested_at", "last_ingested_at", "presence_checked_at", "updated_at"):
            values[key] = _aware(values.get(key))
        return cls(**{f.name: values.get(f.name) for f in fields(cls)})


@dataclass
class Lease:
    """Exclusive right to deliver one source × day, renewed by a heartbeat thread."""

    ledger: Ledger
    source: str
    day: dt.date
    token: str
    run_id: str | None
    ttl: dt.timedelta
    stale_in_flight: int = 0  # requests a dead owner left in flight (now ambiguous)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _renewed_at: float = field(default_factory=time.monotonic)
    lost: bool = False

    def start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.ttl.total_seconds() / 4):
                try:
                    self.renew()
                except LeaseLostError:
                    self.lost = True
                    return
                except sa.exc.SQLAlchemyError:
                    continue  # a transient database error: the next beat retries before the lease runs out
        self._thread = threading.Thread(target=beat, name=f"lease-{self.source}-{self.day}", daemon=True)
        self._thread.start()

    def renew(self, conn: Connection | None = None) -> None:
        now = utcnow()
        stmt = (sa.update(LEASES).where(LEASES.c.source == self.source, LEASES.c.day == self.day,
                                        LEASES.c.token == self.token).values(expires_at=now + self.ttl))
        if conn is not None:
            rows = conn.execute(stmt).rowcount
        else:
            with self.ledger.engine.begin() as c:
                rows = c.execute(stmt).rowcount
        if rows != 1:
            self.lost = True
            raise LeaseLostError(f"lost the lease on {self.source} {self.day}: another worker took over")
        self._renewed_at = time.monotonic()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self.ledger.engine.begin() as c:
            c.execute(sa.delete(LEASES).where(LEASES.c.source == self.source, LEASES.c.day == self.day,
                                              LEASES.c.token == self.token))

    # Manifest writes go through the lease, so a worker that lost it cannot record deliveries
    # on top of another's. Each write is its own committed transaction: durable before we go on.
    # The lease is re-checked before a request unless it was renewed within the last second: losing
    # it takes a stall of its whole ttl, so a stalled worker always checks again before sending.
    def manifest_begin(self, seq: int, fps: np.ndarray) -> int:
        now = utcnow()
        with self.ledger.engine.begin() as c:
            if time.monotonic() - self._renewed_at > RECHECK_AFTER_S:
                self.renew(c)
            result = c.execute(sa.insert(MANIFEST).values(
                source=self.source, day=self.day, run_id=self.run_id, lease_token=self.token, seq=seq,
                status=IN_FLIGHT, row_count=len(fps), fingerprints=to_blob(fps), created_at=now, updated_at=now))
            return int(result.inserted_primary_key[0])

    def manifest_finish(self, entry_id: int, status: str) -> None:
        with self.ledger.engine.begin() as c:
            c.execute(sa.update(MANIFEST).where(MANIFEST.c.id == entry_id)
                      .values(status=status, updated_at=utcnow()))


class Ledger:
    def __init__(self, engine: Engine | str) -> None:
        self.engine = create_ledger_engine(engine) if isinstance(engine, str) else engine
        self._create_tables()

    def _create_tables(self) -> None:
        """Create the ledger's tables once, even when several workers start at the same moment."""
        for attempt in range(3):
            try:
                with self.engine.begin() as c:
                    if c.dialect.name == "postgresql":
                        c.execute(sa.text("SELECT pg_advisory_xact_lock(7305110)"))
                    metadata.create_all(c)
                return
            except sa.exc.DBAPIError:
                if attempt == 2:
                    raise

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------ leases
    def acquire(self, source: str, day: dt.date, *, run_id: str | None,
                ttl: dt.timedelta = dt.timedelta(minutes=2)) -> Lease:
        """Take the source × day, or raise DayBusyError naming who holds it.

        A lease whose holder stopped renewing it (expired), or whose holder process on this host
        is gone, is taken over; the requests that holder left in flight become ambiguous.
        """
        token = uuid.uuid4().hex
        owner = f"{socket.gethostname()}:{os.getpid()}"
        now = utcnow()
        values = dict(source=source, day=day, token=token, owner=owner, run_id=run_id, acquired_at=now,
                      expires_at=now + ttl)
        with self.engine.begin() as c:
            current = c.execute(sa.select(LEASES).where(LEASES.c.source == source, LEASES.c.day == day)).first()
            if current is None:
                try:
                    c.execute(sa.insert(LEASES).values(**values))
                except sa.exc.IntegrityError:
                    current = None
                    raise DayBusyError(f"{source} {day} was taken by another worker just now") from None
            else:
                if not _stealable(current, now):
                    raise DayBusyError(
                        f"{source} {day} is being ingested by {current.owner} (run {current.run_id}) since "
                        f"{_aware(current.acquired_at):%Y-%m-%d %H:%M:%S} UTC; its lease runs until "
                        f"{_aware(current.expires_at):%H:%M:%S} UTC")
                taken = c.execute(sa.update(LEASES).where(LEASES.c.source == source, LEASES.c.day == day,
                                                          LEASES.c.token == current.token).values(**values))
                if taken.rowcount != 1:
                    raise DayBusyError(f"{source} {day} was taken by another worker just now")
            stale = c.execute(sa.update(MANIFEST).where(
                MANIFEST.c.source == source, MANIFEST.c.day == day, MANIFEST.c.status == IN_FLIGHT,
            ).values(status=AMBIGUOUS, updated_at=now)).rowcount
        return Lease(ledger=self, source=source, day=day, token=token, run_id=run_id, ttl=ttl,
                     stale_in_flight=stale or 0)

    # ------------------------------------------------------------------ manifest
    def manifest_fingerprints(self, source: str, day: dt.date) -> dict[str, np.ndarray]:
        """Fingerprints per manifest status for a day (delivered / ambiguous / in_flight)."""
        parts: dict[str, list[np.ndarray]] = {}
        with self.engine.connect() as c:
            rows = c.execute(sa.select(MANIFEST.c.status, MANIFEST.c.fingerprints).where(
                MANIFEST.c.source == source, MANIFEST.c.day == day, MANIFEST.c.status != FAILED))
            for status, blob in rows:
                parts.setdefault(status, []).append(from_blob(blob))
        return {status: np.concatenate(arrays) if arrays else np.empty(0, FINGERPRINT_DTYPE)
                for status, arrays in parts.items()}

    def manifest_counts(self, source: str, day: dt.date) -> dict[str, int]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(MANIFEST.c.status, sa.func.sum(MANIFEST.c.row_count)).where(
                MANIFEST.c.source == source, MANIFEST.c.day == day).group_by(MANIFEST.c.status))
            return {status: int(total or 0) for status, total in rows}

    def resolve_ambiguous(self, source: str, day: dt.date, *, as_status: str) -> int:
        """Settle ambiguous requests by hand: `delivered` (seen in Statsig) or `failed` (send again)."""
        if as_status not in (DELIVERED, FAILED):
            raise ValueError("ambiguous rows resolve to 'delivered' or 'failed'")
        with self.engine.begin() as c:
            return c.execute(sa.update(MANIFEST).where(
                MANIFEST.c.source == source, MANIFEST.c.day == day, MANIFEST.c.status == AMBIGUOUS,
            ).values(status=as_status, updated_at=utcnow())).rowcount or 0

    # ------------------------------------------------------------------ days
    def get_day(self, source: str, day: dt.date) -> DayRecord | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(DAYS).where(DAYS.c.source == source, DAYS.c.day == day)).first()
        return DayRecord.from_row(row) if row is not None else None

    def days(self, source: str | None = None, *, since: dt.date | None = None,
             until: dt.date | None = None) -> list[DayRecord]:
        query = sa.select(DAYS)
        if source is not None:
            query = query.where(DAYS.c.source == source)
        if since is not None:
            query = query.where(DAYS.c.day >= since)
        if until is not None:
            query = query.where(DAYS.c.day <= until)
        with self.engine.connect() as c:
            return [DayRecord.from_row(r) for r in c.execute(query.order_by(DAYS.c.source, DAYS.c.day))]

    def has_ingested(self, source: str) -> bool:
        with self.engine.connect() as c:
            return c.execute(sa.select(sa.func.count()).select_from(DAYS).where(
                DAYS.c.source == source, DAYS.c.first_ingested_at.is_not(None))).scalar_one() > 0

    def write_day(self, record: DayRecord) -> None:
        values = {f.name: getattr(record, f.name) for f in fields(DayRecord)}
        values["updated_at"] = utcnow()
        with self.engine.begin() as c:
            updated = c.execute(sa.update(DAYS).where(DAYS.c.source == record.source, DAYS.c.day == record.day)
                                .values(**{k: v for k, v in values.items() if k not in ("source", "day")}))
            if updated.rowcount == 0:
                c.execute(sa.insert(DAYS).values(**values))

    def note_presence(self, source: str, day: dt.date, dataset: str, count: int) -> int:
        """Record a data-presence count; return how many checks in a row saw this same non-zero count."""
        now = utcnow()
        with self.engine.begin() as c:
            row = c.execute(sa.select(DAYS.c.presence_count, DAYS.c.presence_checks).where(
                DAYS.c.source == source, DAYS.c.day == day)).first()
            if count <= 0:
                checks = 0
            elif row is not None and row.presence_count == count:
                checks = (row.presence_checks or 0) + 1
            else:
                checks = 1
            values = dict(presence_count=count, presence_checks=checks, presence_checked_at=now, updated_at=now)
            if row is None:
                c.execute(sa.insert(DAYS).values(source=source, day=day, dataset=dataset, status=WAITING, **values))
            else:
                c.execute(sa.update(DAYS).where(DAYS.c.source == source, DAYS.c.day == day).values(**values))
        return checks

    # ------------------------------------------------------------------ API triggers
    def last_trigger(self, source: str, dataset: str) -> dt.datetime | None:
        with self.engine.connect() as c:
            value = c.execute(sa.select(sa.func.max(TRIGGERS.c.accepted_at)).where(
                TRIGGERS.c.source == source, TRIGGERS.c.dataset == dataset)).scalar()
        return _aware(value)

    def record_trigger(self, source: str, dataset: str, days: list[dt.date], run_id: str | None,
                       *, min_interval: dt.timedelta, now: dt.datetime | None = None) -> dt.datetime | None:
        """Record an accepted trigger unless one was accepted within `min_interval`.

        Returns None when recorded, else the time the next trigger will be allowed. The check and
        the insert share one transaction, so two simultaneous triggers cannot both pass.
        """
        now = now or utcnow()
        with self.engine.begin() as c:
            if c.dialect.name == "postgresql":
                c.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{source}/{dataset}"})
            last = _aware(c.execute(sa.select(sa.func.max(TRIGGERS.c.accepted_at)).where(
                TRIGGERS.c.source == source, TRIGGERS.c.dataset == dataset)).scalar())
            if last is not None and now - last < min_interval:
                return last + min_interval
            c.execute(sa.insert(TRIGGERS).values(source=source, dataset=dataset, accepted_at=now, run_id=run_id,
                                                 days=",".join(d.isoformat() for d in days)))
        return None


def _stealable(current: Any, now: dt.datetime) -> bool:
    if _aware(current.expires_at) <= now:
        return True
    host, _, pid = str(current.owner).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not _pid_alive(int(pid))
    return False


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create_ledger_engine(url: str) -> Engine:
    """An engine for the ledger; SQLite gets WAL and a busy timeout so threads and processes share it."""
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


@contextmanager
def held(ledger: Ledger, source: str, day: dt.date, *, run_id: str | None,
         ttl: dt.timedelta = dt.timedelta(minutes=2)) -> Iterator[Lease]:
    """Hold a source × day for the duration of a block, heartbeat included."""
    lease = ledger.acquire(source, day, run_id=run_id, ttl=ttl)
    lease.start_heartbeat()
    try:
        yield lease
    finally:
        lease.release()
