"""Request bodies and the delivered-rows multiset."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from statsig_airflow_provider.engine.fingerprint import DeliveredSet, fingerprints, from_blob, to_blob
from statsig_airflow_provider.engine.requests import RequestBuilder


def rows(n: int, start: int = 0, pad: int = 0) -> pa.Array:
    return pa.array([f'{{"eventName":"e{i}","pad":"{"x" * pad}"}},' for i in range(start, start + n)])


def test_bodies_respect_count_and_size_and_keep_every_row_once() -> None:
    builder = RequestBuilder(max_events=7, max_body_bytes=1_000)
    out = []
    for start in (0, 10, 33):
        n = {0: 10, 10: 23, 33: 5}[start]
        out += list(builder.add(rows(n, start, pad=40), np.arange(start, start + n, dtype=np.uint64)))
    tail = builder.flush()
    out += [tail] if tail else []
    seen = []
    for request in out:
        body = json.loads(request.body)
        assert 1 <= len(body["events"]) <= 7 and len(request.body) <= 1_000
        assert request.count == len(body["events"]) == len(request.fingerprints)
        seen += [int(e["eventName"][1:]) for e in body["events"]]
        assert list(request.fingerprints) == [int(e["eventName"][1:]) for e in body["events"]]
    assert seen == list(range(38))
    assert [r.seq for r in out] == list(range(len(out)))


def test_an_event_too_big_for_any_request_is_refused() -> None:
    with pytest.raises(ValueError, match="more than a request may hold"):
        list(RequestBuilder(10, 10_000).add(rows(1, pad=20_000), np.zeros(1, dtype=np.uint64)))


def test_fingerprints_are_xxh3_of_the_identity() -> None:
    identity = pa.array(["a", "", "é\x1fb"]).slice(1)  # a sliced array: offsets must be honoured
    expected = [xxhash.xxh3_64_intdigest(b""), xxhash.xxh3_64_intdigest("é\x1fb".encode())]
    assert fingerprints(identity).tolist() == expected
    assert xxhash.xxh3_64_intdigest(b"") == 0x2D06800538D394C2  # XXH3-64 reference vector: the hash must never change
    fps = fingerprints(pa.array(["x", "y"]))
    assert np.array_equal(from_blob(to_blob(fps)), fps)


def test_delivered_set_is_a_multiset() -> None:
    delivered = np.array([1, 1, 2, 3], dtype=np.uint64)
    held = np.array([9], dtype=np.uint64)
    ds = DeliveredSet(delivered, held)
    new = ds.select_new(np.array([1, 1, 1, 2, 9, 9, 4], dtype=np.uint64))
    assert new.tolist() == [False, False, True, False, False, True, True]
    assert ds.matched == [3, 1]
    assert ds.vanished == (1, 0)  # row 3 was delivered and is gone from the warehouse
    assert DeliveredSet().select_new(np.array([5], dtype=np.uint64)).tolist() == [True]
