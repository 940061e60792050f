"""External systems through Airflow's real REST API: `airflow standalone` (API server, scheduler,
DAG processor, triggerer) on loopback, a token from /auth/token, then triggers and backfills."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from statsig_airflow_provider import sample_data
from tests.conftest import KEY, ROOT, EmulatorProcess

TODAY = dt.datetime.now(dt.timezone.utc).date()
D1, D2 = TODAY - dt.timedelta(days=10), TODAY - dt.timedelta(days=9)
SOURCE = """
name: api_src
warehouse: {conn_id: wh_api}
sql: SELECT ts, event_name, user_id, stable_id, value, page, plan, props FROM events WHERE ds = {day}
mapping:
  timestamp: ts
  event_name: event_name
  ids: {userID: user_id, stableID: stable_id}
  event_value: value
  metadata: {page: page, plan: plan}
  metadata_json: props
schedule: {mode: daily, presence_checks: 1}
"""


class Airflow:
    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.home = home
        self._token = ""

    def token(self) -> str:
        if not self._token:
            password = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
            self._token = self.call("POST", "/auth/token", {"username": "admin", "password": password},
                                    auth=False)["access_token"]
        return self._token

    def call(self, method: str, path: str, body: object = None, *, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(self.url + path, method=method, headers=headers,
                                         data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read()
        return json.loads(text) if text else {}

    def refused(self, method: str, path: str, body: object) -> tuple[int, str]:
        try:
            self.call(method, path, body)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        raise AssertionError(f"{method} {path} was accepted")

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call("GET", f"/api/v2/dags/{dag_id}")
                return
            except urllib.error.HTTPError:
                assert time.monotonic() < deadline, f"{dag_id} was never parsed"
                time.sleep(2)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            assert time.monotonic() < deadline, f"{dag_id} {run_id} still {state}"
            time.sleep(2)

    def log(self, dag_id: str, run_id: str, task_id: str) -> str:
        return json.dumps(self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorProcess) -> Iterator[tuple[Airflow, Path]]:
    work = tmp_path_factory.mktemp("rest")
    specs, home, db = work / "specs", work / "home", work / "warehouse.duckdb"
    specs.mkdir()
    home.mkdir()
    (specs / "api_src.yaml").write_text(SOURCE)
    sample_data.create_events_table(db, [D1, D2], 2_000, bad_rows_per_day=0)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples"), "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5", "STATSIG_SOURCES_PATH": str(specs),
        "AIRFLOW__STATSIG__LEDGER_URL": f"sqlite:///{work / 'ledger.sqlite'}",
        "AIRFLOW__STATSIG__REJECTS_DIR": str(work / "rejects"),
        "AIRFLOW_CONN_WH_API": json.dumps({"conn_type": "duckdb", "host": str(db)}),
        "AIRFLOW_CONN_STATSIG_DEFAULT": json.dumps({"conn_type": "statsig", "host": emulator.url, "password": KEY}),
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    })
    log = (work / "standalone.log").open("w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "standalone"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    client = Airflow(f"http://127.0.0.1:{port}", home)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{client.url}/api/v2/monitor/health", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, (work / "standalone.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "airflow standalone did not come up"
                time.sleep(2)
        client.wait_for_dag("statsig__data_ready")
        yield client, db
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def trigger(client: Airflow, dag_id: str, conf: dict, run_id: str) -> None:
    client.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "dag_run_id": run_id, "conf": conf})


def test_bad_conf_is_refused_naming_the_field(airflow: tuple[Airflow, Path]) -> None:
    client, _ = airflow
    path = "/api/v2/dags/statsig__data_ready/dagRuns"
    for conf, words in [
        ({"datestamps": "2026-13-45", "type": "events"}, "param datestamps"),
        ({"datestamps": D1.isoformat(), "type": "logs"}, "param type"),
        ({"datestamps": D1.isoformat(), "type": "events", "sources": ["nope"]}, "param sources"),
        ({"type": "events"}, "param datestamps: No value passed"),
    ]:
        status, body = client.refused("POST", path, {"logical_date": None, "conf": conf})
        assert status == 400 and words in body, body


def test_trigger_rate_limit_and_backfill(airflow: tuple[Airflow, Path], statsig: EmulatorProcess) -> None:
    client, db = airflow
    day1, day2 = sample_data.expected_events(db, D1), sample_data.expected_events(db, D2)

    # A valid trigger ingests its day.
    client.call("PATCH", "/api/v2/dags/statsig__data_ready", {"is_paused": False})
    trigger(client, "statsig__data_ready", {"datestamps": D1.isoformat(), "type": "events"}, "ext-1")
    assert client.wait_for_run("statsig__data_ready", "ext-1") == "success"
    result = sample_data.compare_events(day1, sample_data.stored_events(statsig.events()))
    assert result["match"], result

    # A second trigger for the source within two hours is refused, saying when the next one is allowed.
    trigger(client, "statsig__data_ready", {"datestamps": [D2.isoformat()], "type": "events", "sources": ["api_src"]},
            "ext-2")
    assert client.wait_for_run("statsig__data_ready", "ext-2") == "failed"
    log = client.log("statsig__data_ready", "ext-2", "admit")
    assert "refused by the rate limit" in log and "next trigger allowed from" in log, log[-2000:]
    assert statsig.stats()["events"] == len(day1)  # nothing more went out

    # A day that has not ended is refused with the field named.
    trigger(client, "statsig__data_ready", {"datestamps": TODAY.isoformat(), "type": "events"}, "ext-3")
    assert client.wait_for_run("statsig__data_ready", "ext-3") == "failed"
    assert "datestamps: " in client.log("statsig__data_ready", "ext-3", "admit")

    # `airflow backfill create` (POST /api/v2/backfills) replays the daily DAG's schedule: the runs of D2 and
    # D2+1 ingest their latest complete days, D1 and D2; D1 is already in Statsig, so only D2 goes out.
    client.call("PATCH", "/api/v2/dags/statsig__api_src", {"is_paused": False})
    client.call("POST", "/api/v2/backfills", {
        "dag_id": "statsig__api_src", "from_date": f"{D2}T00:00:00Z",
        "to_date": f"{D2 + dt.timedelta(days=1)}T23:59:59Z", "reprocess_behavior": "none", "max_active_runs": 1})
    deadline = time.monotonic() + 420
    while True:
        runs = client.call("GET", "/api/v2/dags/statsig__api_src/dagRuns?run_type=backfill")["dag_runs"]
        states = [r["state"] for r in runs]
        if len(runs) == 2 and all(s in ("success", "failed") for s in states):
            break
        assert time.monotonic() < deadline, f"backfill runs: {states}"
        time.sleep(3)
    assert states == ["success", "success"]
    result = sample_data.compare_events(day1 + day2, sample_data.stored_events(statsig.events()))
    assert result["match"], result
