"""Real Airflow: the provider registers, the demo source's DAG runs through `dag.test()`, the key stays out of
the logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from statsig_airflow_provider import sample_data
from statsig_airflow_provider.dag_factory import build_dags
from tests.conftest import DAY, KEY, ROOT, EmulatorProcess


@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.resetdb()


def test_provider_registers_connection_types_and_config() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk import conf

    pm = ProvidersManager()
    assert pm.providers["statsig-airflow-provider"].version == "0.1.0"
    behaviour = pm.field_behaviours["statsig"]
    assert behaviour["relabeling"]["password"] == "Server secret"
    assert {"extra__statsig__api_url", "extra__duckdb__memory_limit"} <= set(pm.connection_form_widgets)
    assert conf.get("statsig", "ledger_conn_id") == ""


def test_statsig_hook_reads_the_connection(monkeypatch: pytest.MonkeyPatch, statsig: EmulatorProcess) -> None:
    from statsig_airflow_provider.hooks.statsig import StatsigHook

    monkeypatch.setenv("AIRFLOW_CONN_STATSIG_T", json.dumps({"conn_type": "statsig", "host": statsig.url,
                                                             "password": KEY, "extra": {"timeout_seconds": 5}}))
    hook = StatsigHook("statsig_t")
    assert hook.events_url == f"{statsig.url}/v1/log_event" and hook.api_url == f"{statsig.url}/v1"
    assert hook.timeout == 5.0
    assert hook.test_connection() == (True, "Statsig accepted the server secret")
    monkeypatch.setenv("AIRFLOW_CONN_STATSIG_D", json.dumps({"conn_type": "statsig", "password": KEY}))
    assert StatsigHook("statsig_d").events_url == "https://events.statsigapi.net/v1/log_event"


def test_demo_dag_runs_in_airflow_and_the_key_never_reaches_the_logs(
        airflow_db: None, demo_warehouse: Path, statsig: EmulatorProcess, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AIRFLOW__STATSIG__LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    monkeypatch.setenv("AIRFLOW_CONN_STATSIG_DEMO", json.dumps({"conn_type": "statsig", "host": statsig.url,
                                                                "password": KEY}))
    monkeypatch.setenv("AIRFLOW_CONN_STATSIG_DEMO_DUCKDB", json.dumps({"conn_type": "duckdb",
                                                                       "host": str(demo_warehouse)}))
    monkeypatch.delenv("STATSIG_SOURCES_PATH", raising=False)
    caplog.set_level("DEBUG")
    dag = build_dags(ROOT / "dags_examples" / "sources")["statsig__demo_events__backfill"]
    run = dag.test(run_conf={"start_date": DAY.isoformat(), "end_date": DAY.isoformat()})
    assert run.state == "success"
    result = sample_data.compare_events(sample_data.expected_events(demo_warehouse, DAY),
                                        sample_data.stored_events(statsig.events()))
    assert result["match"], result

    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    log_dir = Path(__import__("os").environ["AIRFLOW_HOME"]) / "logs"
    logs += "".join(p.read_text(errors="replace") for p in log_dir.rglob("*") if p.is_file())
    assert "progress: read" in logs and "delivered 20,000 now" in logs  # the task did log its report...
    assert KEY not in logs  # ...and never the server secret
