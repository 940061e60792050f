"""The log_event client against the emulator (a real HTTP server): every outcome is classified right."""

from __future__ import annotations

import json
import socket
import time

import pytest

from statsig_airflow_provider.engine.deliver import gzip_body
from statsig_airflow_provider.engine.statsig_client import (
    ClientOptions,
    LogEventClient,
    StatsigAmbiguous,
    StatsigApiClient,
    StatsigAuthError,
    StatsigRejected,
    StatsigRetryable,
    parse_retry_after,
)
from tests.conftest import KEY, EmulatorProcess

EVENTS = [{"eventName": "page_view", "time": 1764489600000 + i, "user": {"userID": f"u{i}"},
           "metadata": {"page": "/home"}} for i in range(10)]
BODY = gzip_body(json.dumps({"events": EVENTS}).encode())


def client(statsig: EmulatorProcess, key: str = KEY, **options: float) -> LogEventClient:
    return LogEventClient(key, statsig.events_url, ClientOptions(**options))


def test_accepted_events_are_stored_with_headers_and_gzip(statsig: EmulatorProcess) -> None:
    c = client(statsig)
    assert c.post(BODY, len(EVENTS)) == 202
    assert c.post(BODY, len(EVENTS)) == 202  # the kept-alive connection is reused
    stats = statsig.stats()
    assert (stats["requests"], stats["events"], stats["gzip_requests"], stats["client_time_headers"]) == (2, 20, 2, 2)
    assert [json.loads(line) for line in statsig.events()][:10] == EVENTS


def test_wrong_key_fails_fast_before_the_body_is_sent(statsig: EmulatorProcess) -> None:
    c = client(statsig, key="secret-wrong-key-123")
    with pytest.raises(StatsigAuthError) as err:
        c.post(BODY, len(EVENTS))
    assert err.value.status == 401 and "secret-wrong-key-123" not in str(err.value)
    stats = statsig.stats()
    assert stats["refused"] == {"401": 1} and stats["bytes_received"] == 0 and stats["events"] == 0


def test_invalid_payload_is_refused_with_the_schema_error(statsig: EmulatorProcess) -> None:
    bad = gzip_body(json.dumps({"events": [{"eventName": "", "user": {"userID": 5}}]}).encode())
    with pytest.raises(StatsigRejected, match=r"400.*events\[0\]\.eventName") as err:
        client(statsig).post(bad, 1)
    assert not isinstance(err.value, StatsigAuthError)


def test_body_over_10_mb_is_refused_with_413(statsig: EmulatorProcess) -> None:
    big = json.dumps({"events": [{"eventName": "e", "user": {"userID": "u"}, "metadata": {"x": "y" * 4000}}] * 2700})
    with pytest.raises(StatsigRejected, match="413"):
        client(statsig).post(gzip_body(big.encode()), 2700)


def test_429_carries_retry_after(statsig: EmulatorProcess) -> None:
    statsig.faults(plan=[{"kind": "429", "retry_after": 7}])
    with pytest.raises(StatsigRetryable) as err:
        client(statsig).post(BODY, len(EVENTS))
    assert (err.value.status, err.value.retry_after) == (429, 7.0)
    assert parse_retry_after("Wed, 21 Oct 2099 07:28:00 GMT", now=time.time()) > 0


@pytest.mark.parametrize("kind", ["500", "502", "503", "reset"])
def test_failures_before_the_body_are_retryable_not_ambiguous(statsig: EmulatorProcess, kind: str) -> None:
    statsig.faults(plan=[{"kind": kind}])
    c = client(statsig)
    with pytest.raises(StatsigRetryable):
        c.post(BODY, len(EVENTS))
    assert statsig.stats()["events"] == 0
    assert c.post(BODY, len(EVENTS)) == 202  # and the next attempt goes through


def test_accept_then_timeout_is_ambiguous(statsig: EmulatorProcess) -> None:
    statsig.faults(plan=[{"kind": "accept_then_timeout", "delay": 5}])
    with pytest.raises(StatsigAmbiguous, match="no answer"):
        client(statsig, read_timeout=1).post(BODY, len(EVENTS))
    assert statsig.stats()["events"] == len(EVENTS)  # the server did take them: re-sending would duplicate


def test_slow_answer_within_the_timeout_succeeds(statsig: EmulatorProcess) -> None:
    statsig.faults(plan=[{"kind": "slow", "delay": 1}])
    assert client(statsig, read_timeout=5).post(BODY, len(EVENTS)) == 202


def test_nothing_listening_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StatsigRetryable, match="could not reach"):
        LogEventClient(KEY, f"http://127.0.0.1:{port}/v1/log_event").post(BODY, 1)


def test_key_check_and_mark_data_ready(statsig: EmulatorProcess) -> None:
    api = StatsigApiClient(KEY, f"{statsig.url}/v1")
    assert api.check_key() == (True, "Statsig accepted the server secret")
    assert StatsigApiClient("secret-nope", f"{statsig.url}/v1").check_key()[0] is False
    api.mark_data_ready(["2026-11-30"], "metrics", ["revenue"])
    with pytest.raises(StatsigRejected, match="429"):
        api.mark_data_ready(["2026-11-30"], "metrics", ["revenue"])  # once per two hours
    assert statsig.stats()["mark_data_ready"][0]["sources"] == ["revenue"]
