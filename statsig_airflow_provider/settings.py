"""Provider settings read from Airflow's `[statsig]` config section, with local defaults."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from airflow.sdk import BaseHook, conf

from statsig_airflow_provider.engine.ledger import Ledger


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")


def _option(name: str) -> str:
    return (conf.get("statsig", name, fallback="") or "").strip()


def ledger_url(ledger_conn_id: str | None = None) -> str:
    """The ledger's SQLAlchemy URL: a connection (shared database) or a local SQLite file."""
    conn_id = ledger_conn_id or _option("ledger_conn_id")
    if conn_id:
        hook = BaseHook.get_connection(conn_id).get_hook()
        url = getattr(hook, "sqlalchemy_url", None)
        if url is not None:
            return url.render_as_string(hide_password=False)
        return hook.get_uri()
    return _option("ledger_url") or f"sqlite:///{airflow_home() / 'statsig' / 'ledger.sqlite'}"


@lru_cache(maxsize=8)
def _ledger_for(url: str) -> Ledger:
    return Ledger(url)


def get_ledger(ledger_conn_id: str | None = None) -> Ledger:
    return _ledger_for(ledger_url(ledger_conn_id))


def rejects_dir() -> Path:
    configured = _option("rejects_dir")
    return Path(configured) if configured else airflow_home() / "statsig" / "rejects"
