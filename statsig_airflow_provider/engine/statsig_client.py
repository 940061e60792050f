"""A small HTTP client for Statsig's `log_event` that knows when a request's outcome is unknown.

Statsig cannot deduplicate events, so after a failure the client must say whether the events
may have arrived. It sends `Expect: 100-continue` and hands the body over only once the server
asks for it: a failure before that point is certainly "not delivered" and safe to retry; a
failure after the whole body left is *ambiguous*. Connections are reused per thread; the API key
never appears in an exception or a log line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import http.client
import json
import select
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from statsig_airflow_provider import __version__

DEFAULT_EVENTS_URL = "https://events.statsigapi.net/v1/log_event"
DEFAULT_API_URL = "https://api.statsig.com/v1"
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 522, 524, 599})
AUTH_STATUSES = frozenset({401, 403})


class StatsigError(Exception):
    """Base class; messages never contain the API key."""


class StatsigRejected(StatsigError):
    """Statsig refused the request for good (4xx other than 408/429): do not retry."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class StatsigAuthError(StatsigRejected):
    """The key was refused (401/403)."""


class StatsigRetryable(StatsigError):
    """The request was certainly not accepted and may be sent again (after `retry_after`)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


class StatsigAmbiguous(StatsigError):
    """The body was sent but no answer came: Statsig may or may not have the events."""


@dataclass(frozen=True)
class ClientOptions:
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    continue_timeout: float = 2.0  # how long to wait for "100 Continue" before sending anyway
    user_agent: str = f"statsig-airflow-provider/{__version__}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class _Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class LogEventClient:
    """POSTs pre-gzipped `log_event` bodies; one kept-alive connection per thread."""

    def __init__(self, api_key: str, events_url: str = DEFAULT_EVENTS_URL,
                 options: ClientOptions | None = None) -> None:
        if not api_key:
            raise StatsigAuthError(401, "no Statsig server secret configured (the connection's password is empty)")
        self._key = api_key
        self.url = events_url
        self.options = options or ClientOptions()
        parsed = urllib.parse.urlsplit(events_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"events URL must be http(s)://host/...: {events_url!r}")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self._local = threading.local()
        self._expect_continue = True

    # ------------------------------------------------------------------ connections
    def _connect(self) -> http.client.HTTPConnection:
        proxy = _proxy_for(self._scheme, self._host)
        timeout = self.options.connect_timeout
        if proxy is None:
            if self._scheme == "https":
                return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                                   context=ssl.create_default_context())
            return http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        p = urllib.parse.urlsplit(proxy)
        if self._scheme == "https":
            conn = http.client.HTTPSConnection(p.hostname, p.port or 8080, timeout=timeout,
                                               context=ssl.create_default_context())
            conn.set_tunnel(self._host, self._port)
            return conn
        return _ProxiedHTTPConnection(p.hostname, p.port or 8080, timeout=timeout,
                                      target=f"http://{self._host}:{self._port}")

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and _peer_closed(conn.sock):
            self._drop()
            conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._drop()

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    # ------------------------------------------------------------------ the request
    def post(self, body_gz: bytes, event_count: int) -> int:
        """Send one gzipped `{"events": [...]}` body; return the 2xx status or raise."""
        conn = self._conn()
        expect = self._expect_continue
        try:
            if conn.sock is None:
                conn.connect()
            conn.putrequest("POST", conn.target_path(self._path) if isinstance(conn, _ProxiedHTTPConnection)
                            else self._path, skip_accept_encoding=True)
            for name, value in (
                ("STATSIG-API-KEY", self._key), ("STATSIG-CLIENT-TIME", str(int(time.time() * 1000))),
                ("STATSIG-EVENT-COUNT", str(event_count)), ("STATSIG-SDK-TYPE", "statsig-airflow-provider"),
                ("STATSIG-SDK-VERSION", __version__), ("User-Agent", self.options.user_agent),
                ("Content-Type", "application/json"), ("Content-Encoding", "gzip"),
                ("Content-Length", str(len(body_gz))), ("Accept", "application/json"),
            ):
                conn.putheader(name, value)
            if expect:
                conn.putheader("Expect", "100-continue")
            conn.endheaders()
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            reason = self._redact(str(exc)) or type(exc).__name__
            raise StatsigRetryable(f"could not reach Statsig at {self.url}: {reason}") from None

        if expect:
            early = self._await_continue(conn)
            if early is not None:  # a final answer before the body was sent (e.g. 401, 413, 429, 503)
                self._drop()
                return self._outcome(early, body_sent=False)
        try:
            conn.send(body_gz)
        except OSError as exc:
            self._drop()
            raise StatsigRetryable(f"connection to Statsig lost while sending the body: {exc}") from None
        try:
            if conn.sock is not None:
                conn.sock.settimeout(self.options.read_timeout)
            resp = conn.getresponse()
            response = _Response(resp.status, resp.headers, resp.read())
            if resp.will_close:
                self._drop()
        except TimeoutError as exc:
            self._drop()
            raise StatsigAmbiguous(
                f"no answer from Statsig within {self.options.read_timeout:.0f}s after the body was sent") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise StatsigAmbiguous(f"connection lost after the body was sent: {type(exc).__name__}") from None
        return self._outcome(response, body_sent=True)

    def _await_continue(self, conn: http.client.HTTPConnection) -> _Response | None:
        """Wait for "100 Continue"; return a final response if the server answered without it."""
        sock = conn.sock
        assert sock is not None
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
        if not pending:
            ready, _, _ = select.select([sock], [], [], self.options.continue_timeout)
            if not ready:
                # The server ignores Expect: send the body now and stop asking on this client.
                self._expect_continue = False
                return None
        try:
            sock.settimeout(self.options.read_timeout)
            fp = sock.makefile("rb")
            line = fp.readline(65537)
            if not line:
                raise StatsigRetryable("Statsig closed the connection before accepting the body")
            parts = line.decode("iso-8859-1").split(None, 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise StatsigRetryable("Statsig sent a malformed response before the body")
            status = int(parts[1])
            headers = http.client.parse_headers(fp)
            if status == 100:
                return None
            length = int(headers.get("Content-Length") or 0)
            body = fp.read(min(length, 65536)) if length else b""
            return _Response(status, headers, body)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._drop()
            raise StatsigRetryable(
                f"connection to Statsig lost before the body was sent: {type(exc).__name__}") from None

    def _outcome(self, response: _Response, *, body_sent: bool) -> int:
        status = response.status
        detail = self._redact(response.body[:300].decode("utf-8", "replace")).strip()
        if 200 <= status < 300:
            if response.body:
                try:
                    parsed = json.loads(response.body)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict) and parsed.get("success") is False:
                    raise StatsigRetryable(f"Statsig answered {status} with success=false", status=status)
            return status
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status in RETRYABLE_STATUSES:
            raise StatsigRetryable(f"Statsig answered {status}{': ' + detail if detail else ''}", status=status,
                                   retry_after=retry_after)
        if status in AUTH_STATUSES:
            raise StatsigAuthError(status, f"Statsig refused the API key (HTTP {status}): check the server secret "
                                           "in the Statsig connection")
        if status == 413:
            raise StatsigRejected(status, "Statsig refused the request as too large (HTTP 413): lower "
                                          "delivery.max_body_bytes or delivery.max_events_per_request")
        raise StatsigRejected(status, f"Statsig refused the request (HTTP {status}){': ' + detail if detail else ''}")


class _ProxiedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP through a forward proxy: the request line carries the absolute URL."""

    def __init__(self, host: str | None, port: int, *, timeout: float, target: str) -> None:
        super().__init__(host or "localhost", port, timeout=timeout)
        self._target = target

    def target_path(self, path: str) -> str:
        return self._target + path


def _proxy_for(scheme: str, host: str) -> str | None:
    proxies = urllib.request.getproxies()
    if not proxies.get(scheme) or urllib.request.proxy_bypass(host):
        return None
    return proxies[scheme]


def _peer_closed(sock: socket.socket) -> bool:
    """True when an idle kept-alive connection was closed by the server (so a POST on it would be lost)."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    if not ready:
        return False
    try:
        if isinstance(sock, ssl.SSLSocket):
            return True  # unexpected readable data on an idle TLS connection: start afresh
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class StatsigApiClient:
    """Statsig's small JSON endpoints: the key check and `mark_data_ready_dwh`."""

    def __init__(self, api_key: str, api_url: str = DEFAULT_API_URL, *, timeout: float = 30.0) -> None:
        if not api_key:
            raise StatsigAuthError(401, "no Statsig server secret configured (the connection's password is empty)")
        self._key = api_key
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout

    def _post(self, path: str, payload: dict[str, object]) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"{self.api_url}/{path}", data=json.dumps(payload).encode(), method="POST",
            headers={"STATSIG-API-KEY": self._key, "Content-Type": "application/json",
                     "STATSIG-CLIENT-TIME": str(int(time.time() * 1000)),
                     "User-Agent": ClientOptions().user_agent})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (OSError, http.client.HTTPException) as exc:
            raise StatsigRetryable(f"could not reach Statsig at {self.api_url}: {type(exc).__name__}") from None

    def check_key(self) -> tuple[bool, str]:
        """Ask Statsig whether the server secret is valid (download_config_specs answers 401 if not)."""
        status, _ = self._post("download_config_specs", {})
        if 200 <= status < 300:
            return True, "Statsig accepted the server secret"
        if status in AUTH_STATUSES:
            return False, f"Statsig refused the server secret (HTTP {status})"
        return False, f"Statsig answered HTTP {status}"

    def mark_data_ready(self, datestamps: list[str], dataset: str, sources: list[str] | None = None) -> None:
        """Tell Statsig a day is ready to pull (`mark_data_ready_dwh`; at most once every two hours)."""
        payload: dict[str, object] = {"datestamps": datestamps[0] if len(datestamps) == 1 else datestamps,
                                      "type": dataset}
        if sources:
            payload["sources"] = sources
        status, body = self._post("mark_data_ready_dwh", payload)
        if 200 <= status < 300:
            return
        detail = body[:300].decode("utf-8", "replace").replace(self._key, "***")
        if status in AUTH_STATUSES:
            raise StatsigAuthError(status, f"Statsig refused the server secret for mark_data_ready_dwh (HTTP {status})")
        if status in RETRYABLE_STATUSES and status != 429:  # 429 here is the two-hour limit, not load
            raise StatsigRetryable(f"mark_data_ready_dwh answered {status}: {detail}", status=status)
        raise StatsigRejected(status, f"mark_data_ready_dwh answered {status}: {detail}")
