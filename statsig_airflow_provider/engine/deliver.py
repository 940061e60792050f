"""Delivering event requests: several in flight, retried safely, each one recorded in the manifest.

A request's fingerprints are written to the manifest as `in_flight` before it leaves and turned
`delivered`, `ambiguous` or `failed` when its fate is known, so a crash at any point leaves a
ledger that tells the next run exactly what not to send again.
"""

from __future__ import annotations

import queue
import random
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import tenacity

from statsig_airflow_provider.engine.ledger import AMBIGUOUS, DELIVERED, FAILED
from statsig_airflow_provider.engine.statsig_client import (
    LogEventClient,
    StatsigAmbiguous,
    StatsigError,
    StatsigRejected,
    StatsigRetryable,
)


@dataclass
class PreparedRequest:
    seq: int
    body: bytes  # uncompressed `{"events":[...]}`
    count: int
    fingerprints: np.ndarray


class ManifestWriter(Protocol):
    """What the sender needs from the ledger (a `Lease` provides it)."""

    def manifest_begin(self, seq: int, fps: np.ndarray) -> int: ...

    def manifest_finish(self, entry_id: int, status: str) -> None: ...


@dataclass
class SenderStats:
    requests: int = 0
    delivered: int = 0
    ambiguous: int = 0
    failed: int = 0  # rows of requests that certainly did not land (sent again next run)
    unsent: int = 0  # rows never attempted because the run stopped
    retries: int = 0
    bytes_sent: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)


class DeliveryAborted(RuntimeError):
    """Delivery stopped; `cause` says why (a refused key, retries exhausted, a cancel)."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        self.cause = cause
        super().__init__(message)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_wait: float = 0.5
    max_wait: float = 30.0
    max_retry_after: float = 300.0


class EventSender:
    """A pool of threads posting prepared requests; `submit` blocks when enough are queued."""

    def __init__(self, client: LogEventClient, manifest: ManifestWriter, *, concurrency: int = 4,
                 gzip_level: int = 1, retry: RetryPolicy | None = None,
                 cancel: threading.Event | None = None, log: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.manifest = manifest
        self.gzip_level = gzip_level
        self.retry = retry or RetryPolicy()
        self.cancel = cancel or threading.Event()
        self.log = log or (lambda _msg: None)
        self.stats = SenderStats()
        self._lock = threading.Lock()
        self._queue: queue.Queue[PreparedRequest | None] = queue.Queue(maxsize=concurrency * 2)
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"statsig-sender-{i}", daemon=True)
                         for i in range(concurrency)]
        for t in self._threads:
            t.start()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set() or self.cancel.is_set()

    def submit(self, request: PreparedRequest) -> None:
        while True:
            if self.stopped:
                with self._lock:
                    self.stats.unsent += request.count
                return
            try:
                self._queue.put(request, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> SenderStats:
        """Wait for every queued request; raise DeliveryAborted if delivery stopped early."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        self.client.close()
        if self._error is not None:
            raise DeliveryAborted(str(self._error), self._error)
        if self.cancel.is_set() and (self.stats.unsent or self.stats.failed):
            raise DeliveryAborted("delivery was cancelled")
        return self.stats

    def abort(self) -> None:
        """Stop sending what is queued (the caller's run failed); requests in flight finish and are recorded."""
        self._stopped.set()

    def _stop(self, error: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = error
        self._stopped.set()

    def _work(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                return
            if self.stopped:
                with self._lock:
                    self.stats.unsent += request.count
                continue
            try:
                self._deliver(request)
            except BaseException as exc:  # the manifest write failed, or the lease was lost
                with self._lock:
                    self.stats.unsent += request.count
                self._stop(exc)

    def _deliver(self, request: PreparedRequest) -> None:
        body = gzip_body(request.body, self.gzip_level)
        entry = self.manifest.manifest_begin(request.seq, request.fingerprints)
        try:
            for attempt in tenacity.Retrying(
                stop=tenacity.stop_after_attempt(self.retry.max_attempts) | _stop_when(self.cancel),
                wait=self._wait, retry=tenacity.retry_if_exception_type(StatsigRetryable),
                before_sleep=self._note_retry, sleep=self._sleep, reraise=True,
            ):
                with attempt:
                    self.client.post(body, request.count)
        except StatsigAmbiguous as exc:
            self.manifest.manifest_finish(entry, AMBIGUOUS)
            with self._lock:
                self.stats.ambiguous += request.count
                self.stats.requests += 1
            self.log(f"request {request.seq} ({request.count} events) is ambiguous: {exc}")
            return
        except (StatsigRejected, StatsigRetryable, StatsigError) as exc:
            self.manifest.manifest_finish(entry, FAILED)
            with self._lock:
                self.stats.failed += request.count
                self.stats.requests += 1
            if isinstance(exc, StatsigRetryable) and self.cancel.is_set():
                return
            if isinstance(exc, StatsigRetryable):
                exc = StatsigRetryable(f"gave up after {self.retry.max_attempts} attempts: {exc}",
                                       status=exc.status)
            self._stop(exc)
            return
        self.manifest.manifest_finish(entry, DELIVERED)
        with self._lock:
            self.stats.delivered += request.count
            self.stats.requests += 1
            self.stats.bytes_sent += len(body)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = min(self.retry.max_wait, self.retry.initial_wait * 2 ** (state.attempt_number - 1))
        backoff *= 0.5 + random.random() / 2
        if isinstance(exc, StatsigRetryable) and exc.retry_after is not None:
            return min(self.retry.max_retry_after, max(exc.retry_after, 0.0))
        return backoff

    def _note_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        key = str(getattr(exc, "status", None) or type(exc).__name__)
        with self._lock:
            self.stats.retries += 1
            self.stats.retry_reasons[key] = self.stats.retry_reasons.get(key, 0) + 1

    def _sleep(self, seconds: float) -> None:
        self.cancel.wait(seconds)


def _stop_when(event: threading.Event) -> tenacity.stop.stop_base:
    class _Stop(tenacity.stop.stop_base):
        def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
            return event.is_set()

    return _Stop()


def gzip_body(data: bytes, level: int = 1) -> bytes:
    """gzip (not zlib) framing, as Statsig's SDKs send with Content-Encoding: gzip."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()
