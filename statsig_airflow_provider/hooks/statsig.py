"""StatsigHook: the Statsig connection (server secret, endpoints) turned into API clients."""

from __future__ import annotations

import urllib.parse
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from statsig_airflow_provider.engine.statsig_client import (
    DEFAULT_API_URL,
    DEFAULT_EVENTS_URL,
    ClientOptions,
    LogEventClient,
    StatsigApiClient,
)


class StatsigHook(BaseHook):
    """Statsig's event and ingestion APIs.

    The connection's password is the project's server secret. `host` overrides the events API
    (a proxy, or the local emulator); the `api_url` extra overrides the API base used by
    `mark_data_ready_dwh` and the key check.
    """

    conn_name_attr = "statsig_conn_id"
    default_conn_name = "statsig_default"
    conn_type = "statsig"
    hook_name = "Statsig"

    def __init__(self, statsig_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.statsig_conn_id = statsig_conn_id

    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.statsig_conn_id)

    def _extra(self, name: str) -> Any:
        extra = self.connection.extra_dejson
        return extra.get(name, extra.get(f"extra__statsig__{name}"))

    @property
    def events_url(self) -> str:
        host = (self.connection.host or "").strip()
        if not host:
            return DEFAULT_EVENTS_URL
        if "://" not in host:
            host = f"https://{host}"
        parsed = urllib.parse.urlsplit(host)
        if parsed.path in ("", "/"):
            port = f":{self.connection.port}" if self.connection.port and not parsed.port else ""
            return f"{parsed.scheme}://{parsed.netloc}{port}/v1/log_event"
        return host

    @property
    def api_url(self) -> str:
        configured = self._extra("api_url")
        if configured:
            return str(configured).rstrip("/")
        if self.connection.host:  # a proxy or the emulator serves both
            return self.events_url.rsplit("/log_event", 1)[0]
        return DEFAULT_API_URL

    @property
    def timeout(self) -> float:
        value = self._extra("timeout_seconds")
        return float(value) if value else ClientOptions.read_timeout

    def _secret(self) -> str:
        return self.connection.password or ""

    def get_events_client(self, timeout: float | None = None) -> LogEventClient:
        return LogEventClient(self._secret(), self.events_url,
                              ClientOptions(read_timeout=timeout or self.timeout))

    def get_api_client(self) -> StatsigApiClient:
        return StatsigApiClient(self._secret(), self.api_url, timeout=self.timeout)

    def test_connection(self) -> tuple[bool, str]:
        try:
            return self.get_api_client().check_key()
        except Exception as exc:
            return False, str(exc)
