"""Cutting a stream of event JSON rows into `log_event` request bodies.

A body holds at most `max_events` events and `max_body_bytes` bytes before compression (Statsig
drops requests over 10 MB). Rows arrive as one Arrow string array per batch, each row already
ending in ','; a body is the array's value buffer between two offsets, with no per-row copy.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from statsig_airflow_provider.engine.deliver import PreparedRequest
from statsig_airflow_provider.engine.fingerprint import FINGERPRINT_DTYPE

PREFIX = b'{"events":['
SUFFIX = b"]}"


class RequestBuilder:
    def __init__(self, max_events: int, max_body_bytes: int) -> None:
        self.max_events = max_events
        self.max_payload = max_body_bytes - len(PREFIX) - len(SUFFIX)
        self.seq = 0
        self._rows: list[pa.Array] = []
        self._fps: list[np.ndarray] = []
        self._count = 0
        self._bytes = 0

    def add(self, rows: pa.Array, fps: np.ndarray) -> Iterator[PreparedRequest]:
        """Take rows (with their fingerprints); yield every request that is now full."""
        if not len(rows):
            return
        lengths = pc.binary_length(rows).to_numpy(zero_copy_only=False).astype(np.int64)
        if lengths.max(initial=0) > self.max_payload:
            raise ValueError(f"an event is {int(lengths.max()):,} bytes, more than a request may hold")
        start = 0
        n = len(rows)
        while start < n:
            room_events = self.max_events - self._count
            cum = np.cumsum(lengths[start:start + room_events])
            fit = int(np.searchsorted(cum, self.max_payload - self._bytes, side="right"))
            if fit:
                self._rows.append(rows.slice(start, fit))
                self._fps.append(fps[start:start + fit])
                self._count += fit
                self._bytes += int(cum[fit - 1])
                start += fit
            if self._count >= self.max_events or start < n:  # full by count or by bytes
                request = self.flush()
                if request is not None:
                    yield request

    def flush(self) -> PreparedRequest | None:
        if not self._count:
            return None
        rows = self._rows[0] if len(self._rows) == 1 else pa.concat_arrays(self._rows)
        fps = self._fps[0] if len(self._fps) == 1 else np.concatenate(self._fps)
        request = PreparedRequest(seq=self.seq, body=_body(rows), count=self._count,
                                  fingerprints=np.ascontiguousarray(fps, dtype=FINGERPRINT_DTYPE))
        self.seq += 1
        self._rows, self._fps, self._count, self._bytes = [], [], 0, 0
        return request


def _body(rows: pa.Array) -> bytes:
    """`{"events":[r1,r2,...]}` from rows that each end in ',' (the last comma dropped)."""
    n = len(rows)
    _, offsets_buf, data_buf = rows.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=n + 1, offset=rows.offset * 4)
    data = memoryview(data_buf)[int(offsets[0]):int(offsets[-1]) - 1]
    return b"".join((PREFIX, data, SUFFIX))
