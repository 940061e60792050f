"""Shared fixtures: a private Airflow home, the Statsig emulator, sample warehouses, PostgreSQL.

Services are real: the emulator is an HTTP server, PostgreSQL is the server `scripts/test.sh`
starts. Under CI=true a missing service fails the run instead of skipping its tests.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="statsig-airflow-tests-"))
os.environ.setdefault("AIRFLOW_HOME", str(_HOME / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path(__file__).resolve().parents[1] / "dags_examples"))
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_HOME / 'airflow.db'}")
os.environ.setdefault("AIRFLOW__STATSIG__LEDGER_URL", f"sqlite:///{_HOME / 'ledger.sqlite'}")
os.environ.setdefault("AIRFLOW__STATSIG__REJECTS_DIR", str(_HOME / "rejects"))

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DAY = dt.date(2026, 11, 30)
KEY = "secret-test-0123456789abcdef"


def require_service(name: str, reason: str) -> None:
    """Skip locally when a service is absent; fail under CI, where scripts/test.sh must provide it."""
    message = f"{name} is not available: {reason} (scripts/test.sh starts it)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class EmulatorProcess:
    """The emulator in its own process (as in production, Statsig is not in our process)."""

    def __init__(self, workdir: Path, keys: list[str]) -> None:
        ready = workdir / "emulator.url"
        ready.unlink(missing_ok=True)
        args = [sys.executable, "-m", "statsig_airflow_provider.emulator", "--port", "0", "--ready-file", str(ready)]
        for key in keys:
            args += ["--key", key]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not (ready.exists() and ready.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                stderr = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"emulator did not start: {stderr}")
            time.sleep(0.05)
        self.url = ready.read_text()
        self.events_url = f"{self.url}/v1/log_event"

    def call(self, method: str, path: str, body: object | None = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def reset(self) -> None:
        self.call("POST", "/_emulator/reset")

    def stats(self) -> dict:
        return self.call("GET", "/_emulator/stats")  # type: ignore[return-value]

    def faults(self, **plan: object) -> None:
        self.call("POST", "/_emulator/faults", plan)

    def events(self) -> list[bytes]:
        with urllib.request.urlopen(f"{self.url}/_emulator/events", timeout=60) as response:
            return response.read().splitlines()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def assert_exactly_once(db: Path, statsig: EmulatorProcess, day: dt.date = DAY) -> dict:
    """The emulator holds exactly the valid rows of `day`, field by field (sample_data's SQL oracle)."""
    from statsig_airflow_provider import sample_data

    result = sample_data.compare_events(sample_data.expected_events(db, day),
                                        sample_data.stored_events(statsig.events()))
    assert result["match"], result
    return result


def ingest_with(spec: object, reader: object, statsig: EmulatorProcess, tmp_path: Path, *,
                ledger_name: str = "ledger", day: dt.date | str = DAY, batch_rows: int = 5_000):
    """One day of `spec` read through `reader` into the emulator, with a ledger under tmp_path."""
    from statsig_airflow_provider.engine.ledger import Ledger
    from statsig_airflow_provider.engine.pipeline import EventsTarget, RunOptions, ingest_day
    from statsig_airflow_provider.engine.statsig_client import LogEventClient

    target = EventsTarget(lambda: LogEventClient(KEY, statsig.events_url))
    ledger = Ledger(f"sqlite:///{tmp_path / (ledger_name + '.sqlite')}")
    return ingest_day(spec, day, reader, target, ledger,  # type: ignore[arg-type]
                      RunOptions(rejects_dir=tmp_path / "rejects", log=lambda _m: None, batch_rows=batch_rows))


def day_row_count(db: Path, day: dt.date = DAY) -> int:
    """Rows of the sample table for `day`, counted by DuckDB itself (the oracle for counts)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM events WHERE ds = ?", [day]).fetchall()[0][0]
    finally:
        con.close()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(tmp_path_factory.mktemp("emulator"), [KEY])
    yield emu
    emu.stop()


@pytest.fixture
def statsig(emulator: EmulatorProcess) -> EmulatorProcess:
    """The session's emulator, emptied and without faults for this test."""
    emulator.reset()
    return emulator


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file with 20,000 sample events on DAY (plus the deliberately bad rows)."""
    from statsig_airflow_provider.sample_data import create_events_table

    path = tmp_path_factory.mktemp("warehouse") / "events.duckdb"
    create_events_table(path, [DAY], 20_000)
    return path


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of the PostgreSQL server started by scripts/test.sh (STATSIG_TEST_PG_DSN)."""
    dsn = os.environ.get("STATSIG_TEST_PG_DSN", "")
    if not dsn:
        require_service("PostgreSQL", "STATSIG_TEST_PG_DSN is not set")
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        require_service("PostgreSQL", f"cannot connect to {dsn.split('@')[-1]}: {exc}")
    return dsn
