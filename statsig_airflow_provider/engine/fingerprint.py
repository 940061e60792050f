"""Row fingerprints and the multiset of rows a day has already delivered.

Statsig cannot deduplicate custom events, so the provider remembers what it sent: one 64-bit
XXH3 hash per row of the row's identity (time, event name, IDs). Value and metadata are left
out on purpose: a corrected value on a row already in Statsig must not make it go out twice.
Counting is by multiset, because two identical rows in the warehouse are two events.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import xxhash

FINGERPRINT_DTYPE = np.dtype("<u8")


def fingerprints(identity: pa.Array) -> np.ndarray:
    """XXH3-64 of each identity string (stable across platforms and library versions)."""
    if isinstance(identity, pa.ChunkedArray):
        identity = identity.combine_chunks()
    n = len(identity)
    if n == 0:
        return np.empty(0, dtype=FINGERPRINT_DTYPE)
    if identity.null_count:
        raise ValueError("identity keys must not be null")
    _, offsets_buf, data_buf = identity.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=n + 1, offset=identity.offset * 4).tolist()
    data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
    digest = xxhash.xxh3_64_intdigest
    return np.fromiter((digest(data[a:b]) for a, b in itertools.pairwise(offsets)), dtype=FINGERPRINT_DTYPE,
                       count=n)


def to_blob(fps: np.ndarray) -> bytes:
    return np.ascontiguousarray(fps, dtype=FINGERPRINT_DTYPE).tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=FINGERPRINT_DTYPE)


class DeliveredSet:
    """Rows a day already sent, consumed as this run re-reads the day.

    `delivered` are rows Statsig acknowledged; `held` are rows of ambiguous requests that the
    policy says not to send again. A row of the current read matching one of them is not sent.
    Whatever is left unmatched at the end has vanished from the warehouse since it was sent.
    """

    def __init__(self, delivered: np.ndarray | None = None, held: np.ndarray | None = None) -> None:
        self._left: list[dict[int, int]] = []
        self._totals: list[int] = []
        keys = []
        for fps in (delivered, held):
            fps = np.empty(0, FINGERPRINT_DTYPE) if fps is None else fps
            unique, counts = np.unique(fps, return_counts=True)
            self._left.append(dict(zip(unique.tolist(), counts.tolist(), strict=True)))
            self._totals.append(len(fps))
            keys.append(unique)
        self._keys = np.union1d(keys[0], keys[1])
        self.matched = [0, 0]

    @property
    def empty(self) -> bool:
        return len(self._keys) == 0

    def select_new(self, fps: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows in `fps` that have not been sent before."""
        new = np.ones(len(fps), dtype=bool)
        if self.empty or not len(fps):
            return new
        for i in np.flatnonzero(np.isin(fps, self._keys)).tolist():
            fp = int(fps[i])
            for pool, left in enumerate(self._left):
                if left.get(fp, 0) > 0:
                    left[fp] -= 1
                    self.matched[pool] += 1
                    new[i] = False
                    break
        return new

    @property
    def vanished(self) -> tuple[int, int]:
        """(delivered, held) rows not seen again in this read."""
        return self._totals[0] - self.matched[0], self._totals[1] - self.matched[1]
