"""Parsing: 100 generated sources load with no import errors; a broken spec breaks only itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from statsig_airflow_provider.dag_factory import build_dags
from tests.conftest import ROOT

SPEC = """name: src_{i:03d}
dataset: {dataset}
warehouse: {{conn_id: wh_{i:03d}}}
sql: SELECT * FROM t_{i:03d} WHERE ds = {{day}}
mapping: {mapping}
schedule: {{mode: {mode}, hour: {hour}}}
delivery: {delivery}
"""
EVENTS = "{timestamp: ts, event_name: name, ids: {userID: uid}}"
METRICS = "{unit_id: u, id_type: t, date: ds, metric_name: m, metric_value: v}"


def write_specs(folder: Path, n: int = 100) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        metrics = i % 10 == 0
        (folder / f"src_{i:03d}.yaml").write_text(SPEC.format(
            i=i, dataset="metrics" if metrics else "events", mapping=METRICS if metrics else EVENTS,
            mode="api_triggered" if i % 7 == 0 else "daily", hour=i % 24,
            delivery="{file_drop_uri: /tmp/drop}" if metrics else "{}"))


def parse_dag_file(specs: Path, dag_id: str | None = None) -> str:
    """Parse the example DAG file in a fresh process with Airflow's DagBag; print DAG ids and import errors."""
    code = (
        "import json, sys; from airflow.dag_processing.dagbag import DagBag;"
        f"bag = DagBag(dag_folder={str(ROOT / 'dags_examples' / 'statsig_sources.py')!r});"
        "print(json.dumps({'dags': sorted(bag.dags), 'errors': bag.import_errors}))"
    )
    env = {**os.environ, "STATSIG_SOURCES_PATH": str(specs)}
    if dag_id:
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_hundred_sources_parse_and_a_broken_spec_breaks_only_itself(tmp_path: Path) -> None:
    import json

    specs = tmp_path / "specs"
    write_specs(specs)
    (specs / "src_042.yaml").write_text((specs / "src_042.yaml").read_text().replace("ids:", "idz:"))
    result = json.loads(parse_dag_file(specs))
    assert len(result["dags"]) == 99 * 2 + 1  # the 99 good sources, twice, plus statsig__data_ready
    assert "statsig__src_042" not in result["dags"] and "statsig__src_041__backfill" in result["dags"]
    [(path, error)] = result["errors"].items()
    assert path.endswith("statsig_sources.py")
    assert f"{specs / 'src_042.yaml'}: source 'src_042': field 'mapping.ids': is required (found 'idz': did you " \
        "mean 'ids'?)" in error


def test_a_task_run_parses_only_its_own_dag(tmp_path: Path) -> None:
    import json

    specs = tmp_path / "specs"
    write_specs(specs, 20)
    assert json.loads(parse_dag_file(specs, "statsig__src_005__backfill"))["dags"] == ["statsig__src_005__backfill"]


def test_generated_dags_shape(tmp_path: Path) -> None:
    write_specs(tmp_path, 8)
    dags = build_dags(tmp_path)
    daily, api = dags["statsig__src_001"], dags["statsig__src_000"]
    assert [t.task_id for t in daily.tasks] == ["wait_for_data", "ingest", "check_recent_days", "reload"]
    assert [t.task_id for t in api.tasks] == ["check_recent_days", "reload"]  # api_triggered: reload checks only
    assert "expression='0 1 * * *', timezone='Etc/GMT+8'" in repr(daily.timetable)  # minute 0, hour 1
    sensor = daily.get_task("wait_for_data")
    assert sensor.mode == "reschedule" and sensor.poke_interval == 900
    assert dags["statsig__src_003__backfill"].params["force"] is False
    assert set(dags["statsig__data_ready"].params) == {"datestamps", "type", "sources"}
    assert dags["statsig__data_ready"].params.get_param("sources").schema["items"]["enum"] == sorted(
        f"src_{i:03d}" for i in range(8))


@pytest.mark.parametrize("name", ["statsig__src_000", "statsig__src_000__backfill", "statsig__data_ready"])
def test_task_ids_do_not_depend_on_days_or_config_values(tmp_path: Path, name: str) -> None:
    write_specs(tmp_path / "a", 3)
    write_specs(tmp_path / "b", 3)
    (tmp_path / "b" / "src_000.yaml").write_text((tmp_path / "b" / "src_000.yaml").read_text().replace(
        "hour: 0", "hour: 5"))
    assert [t.task_id for t in build_dags(tmp_path / "a")[name].tasks] == \
        [t.task_id for t in build_dags(tmp_path / "b")[name].tasks]
