"""The engine end to end: DuckDB warehouse → mapping → the emulator over HTTP → ledger.

The emulator's content is checked against an independent oracle (sample_data.expected_events,
which restates the rules in SQL), field by field.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from statsig_airflow_provider import sample_data
from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.filedrop import filesystem_for
from statsig_airflow_provider.engine.ledger import DayBusyError, Ledger
from statsig_airflow_provider.engine.pipeline import (
    EventsTarget,
    FileDropTarget,
    IngestionError,
    RunOptions,
    ingest_day,
)
from statsig_airflow_provider.engine.readers import DuckDBReader
from statsig_airflow_provider.engine.spec import SourceSpec, load_spec
from statsig_airflow_provider.engine.statsig_client import LogEventClient, StatsigAuthError
from tests.conftest import DAY, KEY, ROOT, EmulatorProcess, assert_exactly_once

SPEC_DICT = {
    "name": "demo_events", "warehouse": {"conn_id": "unused"},
    "sql": "SELECT ts, event_name, user_id, stable_id, value, page, plan, props FROM events WHERE ds = {day}",
    "mapping": {"timestamp": "ts", "event_name": "event_name", "ids": {"userID": "user_id", "stableID": "stable_id"},
                "event_value": "value", "metadata": {"page": "page", "plan": "plan"}, "metadata_json": "props"},
    "delivery": {"max_events_per_request": 500, "concurrency": 4},
}


def make_spec(**delivery: object) -> SourceSpec:
    return SourceSpec.from_dict({**SPEC_DICT, "delivery": {**SPEC_DICT["delivery"], **delivery}})  # type: ignore[dict-item]


def run(spec: SourceSpec, db: Path, ledger: Ledger, statsig: EmulatorProcess, tmp_path: Path, key: str = KEY,
        **options: object):
    target = EventsTarget(lambda: LogEventClient(key, statsig.events_url))
    opts = RunOptions(run_id="test", rejects_dir=tmp_path / "rejects", log=lambda _m: None, **options)  # type: ignore[arg-type]
    return ingest_day(spec, DAY, DuckDBReader(str(db)), target, ledger, opts)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def test_day_lands_exactly_once_and_again_sends_nothing(demo_warehouse: Path, statsig: EmulatorProcess,
                                                        ledger: Ledger, tmp_path: Path) -> None:
    spec = make_spec()
    report = run(spec, demo_warehouse, ledger, statsig, tmp_path)
    result = assert_exactly_once(demo_warehouse, statsig)
    assert report.status == L.INGESTED
    assert report.delivered == result["expected"] == report.rows_read - report.rejected
    assert report.warehouse_count == report.rows_read == 20_000 + 2 * len(sample_data.BAD_ROWS)
    assert {r["reason"]: r["rows"] for r in report.rejects} == {reason: 2 for reason, _ in sample_data.BAD_ROWS}
    rejects = pq.read_table(report.rejects_path).to_pylist()
    assert len(rejects) == report.rejected and {r["statsig_reject_reason"] for r in rejects} == {
        reason for reason, _ in sample_data.BAD_ROWS}
    record = ledger.get_day("demo_events", DAY)
    assert record is not None and (record.status, record.delivered, record.rejected) == (
        L.INGESTED, report.delivered, report.rejected)
    assert record.first_ingested_at is not None and record.warehouse_count == report.rows_read

    again = run(spec, demo_warehouse, ledger, statsig, tmp_path)
    assert (again.delivered, again.already_delivered, again.requests) == (0, report.delivered, 0)
    assert_exactly_once(demo_warehouse, statsig)
    assert ledger.get_day("demo_events", DAY).first_ingested_at == record.first_ingested_at  # type: ignore[union-attr]


def test_twenty_percent_failing_requests_still_land_exactly_once(demo_warehouse: Path, statsig: EmulatorProcess,
                                                                 ledger: Ledger, tmp_path: Path) -> None:
    statsig.faults(rate=0.2, kinds=["429", "500", "503", "reset"], retry_after=0, seed=11)
    report = run(make_spec(), demo_warehouse, ledger, statsig, tmp_path)
    assert_exactly_once(demo_warehouse, statsig)
    faults = statsig.stats()["faults"]
    assert sum(faults.values()) >= 5 and report.retries == sum(faults.values())
    assert report.ambiguous == 0 and report.status == L.INGESTED


def test_wrong_key_fails_fast_with_no_retries_and_nothing_marked(demo_warehouse: Path, statsig: EmulatorProcess,
                                                                 ledger: Ledger, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(IngestionError, match="refused the API key") as err:
        run(make_spec(), demo_warehouse, ledger, statsig, tmp_path, key="secret-not-the-right-one")
    assert time.monotonic() - started < 10
    assert isinstance(err.value.__cause__, StatsigAuthError)
    report = err.value.report
    assert (report.delivered, report.retries, report.delivered_total) == (0, 0, 0)
    stats = statsig.stats()
    assert stats["events"] == 0 and stats["refused"]["401"] <= 4  # at most the requests already in flight
    assert ledger.manifest_counts("demo_events", DAY).get(L.DELIVERED, 0) == 0
    record = ledger.get_day("demo_events", DAY)
    assert record is not None and record.status == L.FAILED and record.delivered == 0
    assert "secret-not-the-right-one" not in str(err.value) + (record.message or "") + (record.last_report or "")


def test_ambiguous_requests_are_reported_and_held(demo_warehouse: Path, statsig: EmulatorProcess, ledger: Ledger,
                                                  tmp_path: Path) -> None:
    statsig.faults(plan=[{"kind": "accept_then_timeout", "delay": 4}])
    spec = make_spec(timeout_seconds=1)
    report = run(spec, demo_warehouse, ledger, statsig, tmp_path)
    assert report.status == L.INGESTED_AMBIGUOUS
    assert report.ambiguous == report.ambiguous_total == 500  # one request
    assert report.delivered + report.ambiguous == report.rows_read - report.rejected
    again = run(spec, demo_warehouse, ledger, statsig, tmp_path)
    assert (again.delivered, again.held_ambiguous) == (0, 500)  # the default policy never re-sends them
    assert_exactly_once(demo_warehouse, statsig)  # the emulator had accepted them, so nothing is missing


def test_resend_policy_sends_ambiguous_rows_again(demo_warehouse: Path, statsig: EmulatorProcess, ledger: Ledger,
                                                  tmp_path: Path) -> None:
    statsig.faults(plan=[{"kind": "accept_then_timeout", "delay": 4}])
    run(make_spec(timeout_seconds=1), demo_warehouse, ledger, statsig, tmp_path)
    again = run(make_spec(ambiguous="resend"), demo_warehouse, ledger, statsig, tmp_path)
    assert again.delivered == 500
    result = sample_data.compare_events(sample_data.expected_events(demo_warehouse, DAY),
                                        sample_data.stored_events(statsig.events()))
    assert result["unexpected"] == 500  # the documented cost of "resend": the accepted ones now appear twice


def test_sample_check_stops_a_bad_mapping_before_anything_is_sent(demo_warehouse: Path, statsig: EmulatorProcess,
                                                                  ledger: Ledger, tmp_path: Path) -> None:
    bad = SourceSpec.from_dict({**SPEC_DICT, "mapping": {**SPEC_DICT["mapping"], "timestamp_unit": "ms"}})  # type: ignore[dict-item]
    with pytest.raises(IngestionError, match=r"sample check before the first load: 1,000 of 1,000 .*timestamp_seconds"):
        run(bad, demo_warehouse, ledger, statsig, tmp_path)
    assert statsig.stats()["requests"] == 0


def test_a_second_worker_on_the_same_day_is_refused(demo_warehouse: Path, statsig: EmulatorProcess, ledger: Ledger,
                                                    tmp_path: Path) -> None:
    lease = ledger.acquire("demo_events", DAY, run_id="other-run")
    with pytest.raises(DayBusyError, match=r"being ingested by .* \(run other-run\)"):
        run(make_spec(), demo_warehouse, ledger, statsig, tmp_path)
    lease.release()
    assert run(make_spec(), demo_warehouse, ledger, statsig, tmp_path).status == L.INGESTED


def test_query_errors_name_the_source_day_and_warehouse(demo_warehouse: Path, statsig: EmulatorProcess,
                                                        ledger: Ledger, tmp_path: Path) -> None:
    broken = SourceSpec.from_dict({**SPEC_DICT, "sql": "SELECT * FROM no_such_table WHERE ds = {day}"})  # type: ignore[dict-item]
    with pytest.raises(IngestionError) as err:
        run(broken, demo_warehouse, ledger, statsig, tmp_path)
    message = str(err.value)
    assert "'demo_events'" in message and str(DAY) in message and "duckdb" in message and "no_such_table" in message
    assert ledger.get_day("demo_events", DAY).status == L.FAILED  # type: ignore[union-attr]
    assert statsig.stats()["requests"] == 0


def _start_runner(tmp_path: Path, db: Path, statsig: EmulatorProcess, ledger_url: str, run_id: str) -> subprocess.Popen:
    spec = {**SPEC_DICT, "delivery": {"max_events_per_request": 200, "concurrency": 2}}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "integration" / "ingest_runner.py"), "--spec", json.dumps(spec),
         "--day", DAY.isoformat(), "--db", str(db), "--ledger", ledger_url, "--events-url", statsig.events_url,
         "--key", KEY, "--rejects", str(tmp_path / "rejects"), "--run-id", run_id, "--report",
         str(tmp_path / f"{run_id}.json")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def _wait_for_deliveries(statsig: EmulatorProcess, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while statsig.stats()["events"] < at_least:
        assert time.monotonic() < deadline, "the runner delivered nothing"
        time.sleep(0.05)


def test_sigterm_mid_delivery_then_resume_delivers_every_row_once(demo_warehouse: Path, statsig: EmulatorProcess,
                                                                  tmp_path: Path) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    statsig.faults(rate=1.0, kinds=["slow"], delay=0.05)  # slow answers keep requests in flight
    proc = _start_runner(tmp_path, demo_warehouse, statsig, ledger_url, "first")
    _wait_for_deliveries(statsig, 2_000)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    first = json.loads((tmp_path / "first.json").read_text())
    assert first["status"] == L.FAILED and "cancelled" in first["message"], output
    assert 0 < first["delivered"] < 20_000 and first["ambiguous"] == 0 and first["not_sent"] > 0
    statsig.faults(rate=0.0)
    resumed = run(make_spec(), demo_warehouse, Ledger(ledger_url), statsig, tmp_path)
    assert resumed.already_delivered == first["delivered"] and resumed.ambiguous_total == 0
    assert_exactly_once(demo_warehouse, statsig)


def test_sigkill_mid_delivery_never_duplicates_and_accounts_for_every_row(demo_warehouse: Path,
                                                                          statsig: EmulatorProcess,
                                                                          tmp_path: Path) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    statsig.faults(rate=1.0, kinds=["slow"], delay=0.2)
    proc = _start_runner(tmp_path, demo_warehouse, statsig, ledger_url, "killed")
    _wait_for_deliveries(statsig, 2_000)
    proc.kill()
    proc.wait(10)
    time.sleep(0.5)  # let the emulator finish what the dead process had already sent
    statsig.faults(rate=0.0)
    ledger = Ledger(ledger_url)
    resumed = run(make_spec(), demo_warehouse, ledger, statsig, tmp_path)
    expected = sample_data.expected_events(demo_warehouse, DAY)
    stored = sample_data.stored_events(statsig.events())
    result = sample_data.compare_events(expected, stored)
    assert result["unexpected"] == 0, "a row went out twice"
    # Requests in flight at the kill are ambiguous: they may or may not have landed, and the report says so.
    assert resumed.ambiguous_total == result["missing"] + (len(stored) - resumed.delivered_total)
    assert resumed.delivered_total + resumed.ambiguous_total == len(expected)
    assert resumed.ambiguous_total > 0 and any("left in flight" in w for w in resumed.warnings)
    # Here the slow fault holds each request before its body is read, and the emulator drops a request whose
    # client vanished, so the ambiguous rows are exactly the missing ones. Someone who has checked that in
    # Statsig settles them as not delivered, and the next run sends them: every row then lands exactly once.
    assert result["missing"] == resumed.ambiguous_total
    assert ledger.resolve_ambiguous("demo_events", DAY, as_status=L.FAILED) > 0
    settled = run(make_spec(), demo_warehouse, ledger, statsig, tmp_path)
    assert settled.delivered == result["missing"] and settled.ambiguous_total == 0
    assert_exactly_once(demo_warehouse, statsig)


def test_concurrent_runs_of_one_day_send_each_row_once(demo_warehouse: Path, statsig: EmulatorProcess,
                                                       ledger: Ledger, tmp_path: Path) -> None:
    outcomes: list[object] = []

    def attempt() -> None:
        try:
            outcomes.append(run(make_spec(), demo_warehouse, ledger, statsig, tmp_path).delivered)
        except DayBusyError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_exactly_once(demo_warehouse, statsig)
    assert sum(o for o in outcomes if isinstance(o, int)) == ledger.get_day("demo_events", DAY).delivered  # type: ignore[union-attr]


def test_metrics_file_drop_replaces_the_day(tmp_path: Path, ledger: Ledger) -> None:
    import duckdb

    db = tmp_path / "metrics.duckdb"
    con = duckdb.connect(str(db))
    con.execute("""CREATE TABLE m AS SELECT DATE '2026-11-30' AS ds, 'user_id' AS id_type, i AS uid,
                   CASE WHEN i % 2 = 0 THEN 'revenue' ELSE 'sessions' END AS metric, i * 1.5 AS v
                   FROM range(1000) t(i)""")
    con.execute("INSERT INTO m VALUES (DATE '2026-11-30', 'User_ID', 5000, 'revenue', 1.0)")
    con.close()
    spec = SourceSpec.from_dict({
        "name": "metrics_src", "dataset": "metrics", "warehouse": {"conn_id": "unused"}, "sql": "SELECT * FROM m",
        "mapping": {"unit_id": "uid", "id_type": "id_type", "date": "ds", "metric_name": "metric", "metric_value": "v"},
        "validation": {"id_types": ["user_id", "stable_id"]},
        "delivery": {"file_drop_uri": str(tmp_path / "drop")}})
    fs, base = filesystem_for(str(tmp_path / "drop"))
    opts = RunOptions(rejects_dir=tmp_path / "rejects", log=lambda _m: None)
    for _ in range(2):  # a second run replaces the day, it does not add to it
        report = ingest_day(spec, DAY, DuckDBReader(str(db)), FileDropTarget(fs, base), ledger, opts)
    day_dir = tmp_path / "drop" / "metrics" / DAY.isoformat()
    files = sorted(day_dir.glob("*.parquet"))
    table = pq.read_table(files).to_pylist() if len(files) == 1 else pq.ParquetDataset(day_dir).read().to_pylist()
    assert len(table) == report.delivered == 1000 and report.rejected == 1
    assert {r["metric_name"] for r in table} == {"revenue", "sessions"} and table[0]["date"] == dt.date(2026, 11, 30)
    assert [p.name for p in (tmp_path / "drop" / "metrics").iterdir()] == [DAY.isoformat()]


def test_example_spec_is_the_one_the_tests_use() -> None:
    demo = load_spec(ROOT / "dags_examples" / "sources" / "demo_events.yaml")
    assert demo.mapping == SourceSpec.from_dict(SPEC_DICT).mapping


def test_a_failed_day_does_not_cancel_the_next_day_of_the_same_task(demo_warehouse: Path, statsig: EmulatorProcess,
                                                                    ledger: Ledger, tmp_path: Path) -> None:
    """The operator runs its days one after another with the same options (and cancel event)."""
    options = RunOptions(run_id="task", rejects_dir=tmp_path / "rejects", log=lambda _m: None)
    target = EventsTarget(lambda: LogEventClient(KEY, statsig.events_url))
    broken = SourceSpec.from_dict({**SPEC_DICT, "validation": {"sample_rows": 0},  # fail while delivering
                                   "mapping": {**SPEC_DICT["mapping"],  # type: ignore[dict-item]
                                               "metadata": {"page": "no_such_column"}}})
    with pytest.raises(IngestionError, match=r"'no_such_column' \(mapped as metadata\.page\)"):
        ingest_day(broken, DAY, DuckDBReader(str(demo_warehouse)), target, ledger, options)
    assert not options.cancel.is_set()
    report = ingest_day(make_spec(), DAY, DuckDBReader(str(demo_warehouse)), target, ledger, options)
    assert report.status == L.INGESTED
    assert_exactly_once(demo_warehouse, statsig)
