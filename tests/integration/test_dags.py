"""The generated DAGs, run for real with `dag.test()`: reload window, no-data days, backfill, assets."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest

from statsig_airflow_provider import sample_data
from statsig_airflow_provider.dag_factory import build_dags
from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.settings import get_ledger
from tests.conftest import KEY, EmulatorProcess

UTC = dt.timezone.utc
SOURCE = """
name: {name}
warehouse: {{conn_id: wh_dags}}
sql: SELECT ts, event_name, user_id, stable_id, value, page, plan, props FROM events WHERE ds = {{day}}
mapping:
  timestamp: ts
  event_name: event_name
  ids: {{userID: user_id, stableID: stable_id}}
  event_value: value
  metadata: {{page: page, plan: plan}}
  metadata_json: props
schedule: {schedule}
"""


@pytest.fixture(scope="module")
def airflow_db() -> None:
    from airflow.utils import db

    db.resetdb()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statsig: EmulatorProcess, airflow_db: None):
    """A specs folder, a DuckDB warehouse, the emulator and a fresh ledger, wired through connections."""
    specs = tmp_path / "specs"
    specs.mkdir()
    db = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("STATSIG_SOURCES_PATH", str(specs))
    monkeypatch.setenv("AIRFLOW__STATSIG__LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    monkeypatch.setenv("AIRFLOW_CONN_WH_DAGS", json.dumps({"conn_type": "duckdb", "host": str(db)}))
    monkeypatch.setenv("AIRFLOW_CONN_STATSIG_DEFAULT", json.dumps({"conn_type": "statsig", "host": statsig.url,
                                                                   "password": KEY}))
    return specs, db


def add_source(specs: Path, name: str, schedule: str = "{mode: daily}") -> None:
    (specs / f"{name}.yaml").write_text(SOURCE.format(name=name, schedule=schedule))


def make_pool(db: Path, days: list[dt.date], rows: int) -> None:
    """All generated rows in `pool` (numbered per day); `events` shows the first `visible` of each day."""
    sample_data.create_events_table(db, days, rows, bad_rows_per_day=0, table="pool")
    con = duckdb.connect(str(db))
    con.execute("CREATE OR REPLACE TABLE pool AS SELECT *, row_number() OVER (PARTITION BY ds ORDER BY ts, stable_id,"
                " event_name) AS rn FROM pool")
    con.close()


def show(db: Path, visible: int) -> None:
    con = duckdb.connect(str(db))
    con.execute(f"CREATE OR REPLACE TABLE events AS SELECT * EXCLUDE (rn) FROM pool WHERE rn <= {visible}")
    con.close()


def stored(statsig: EmulatorProcess) -> list[tuple]:
    return sample_data.stored_events(statsig.events())


def expected(db: Path, day: dt.date) -> list[tuple]:
    return sample_data.expected_events(db, day)


def holds_exactly(statsig: EmulatorProcess, rows: list[tuple]) -> bool:
    """The emulator holds exactly `rows`, as a multiset, field by field."""
    return bool(sample_data.compare_events(rows, stored(statsig))["match"])


def run_at(day_after: dt.date) -> dt.datetime:
    """10:00 in Statsig's day on `day_after`: a daily run whose latest complete day is the day before."""
    return DayWindow.of(day_after, "statsig").start + dt.timedelta(hours=10)


def test_reload_window_scenario(env: tuple[Path, Path], statsig: EmulatorProcess) -> None:
    specs, db = env
    add_source(specs, "scenario", "{mode: api_triggered}")
    day = dt.date(2026, 11, 20)
    make_pool(db, [day], 12_000)
    show(db, 10_000)
    dags = build_dags(specs)
    assert [t.task_id for t in dags["statsig__scenario"].tasks] == ["check_recent_days", "reload"]

    # Day D arrives through an API trigger.
    run = dags["statsig__data_ready"].test(run_conf={"datestamps": day.isoformat(), "type": "events"})
    assert run.state == "success"
    assert holds_exactly(statsig, expected(db, day)) and len(stored(statsig)) == 10_000
    first = get_ledger().get_day("scenario", day)
    assert first is not None and first.warehouse_count == 10_000
    t0 = first.first_ingested_at
    daily = dags["statsig__scenario"]

    # +6% a day later: reloaded, and only the new rows go out.
    show(db, 10_600)
    assert daily.test(logical_date=t0 + dt.timedelta(days=1)).state == "success"
    assert holds_exactly(statsig, expected(db, day))
    rec = get_ledger().get_day("scenario", day)
    assert (rec.warehouse_count, rec.reload_count, rec.delivered) == (10_600, 1, 10_600)  # type: ignore[union-attr]

    # +4% more: within the threshold, nothing happens.
    show(db, 11_024)
    assert daily.test(logical_date=t0 + dt.timedelta(days=2)).state == "success"
    assert len(stored(statsig)) == 10_600
    assert get_ledger().get_day("scenario", day).reload_count == 1  # type: ignore[union-attr]

    # -10%: reloaded; the vanished rows are reported (Statsig cannot take them back).
    show(db, 9_540)
    assert daily.test(logical_date=t0 + dt.timedelta(days=2, hours=12)).state == "success"
    rec = get_ledger().get_day("scenario", day)
    assert (rec.reload_count, rec.vanished, rec.warehouse_count) == (2, 1_060, 9_540)  # type: ignore[union-attr]
    assert len(stored(statsig)) == 10_600

    # Four days after the first ingestion the day is outside the window: never touched automatically.
    show(db, 12_000)
    assert daily.test(logical_date=t0 + dt.timedelta(days=4)).state == "success"
    rec = get_ledger().get_day("scenario", day)
    assert (rec.reload_count, rec.warehouse_count, len(stored(statsig))) == (2, 9_540, 10_600)  # type: ignore[union-attr]


def test_a_day_without_data_is_recorded_then_ingested_when_it_appears(env: tuple[Path, Path],
                                                                       statsig: EmulatorProcess) -> None:
    specs, db = env
    add_source(specs, "late", "{mode: daily, presence_timeout_hours: 0, presence_interval_minutes: 0.02}")
    day = dt.date(2026, 11, 10)
    make_pool(db, [day], 3_000)
    show(db, 0)
    daily = build_dags(specs)["statsig__late"]
    assert daily.test(logical_date=run_at(day + dt.timedelta(days=1))).state == "success"
    rec = get_ledger().get_day("late", day)
    assert rec is not None and rec.status == L.NO_DATA and rec.first_ingested_at is None
    assert stored(statsig) == []

    show(db, 3_000)  # the data lands a day late
    assert daily.test(logical_date=run_at(day + dt.timedelta(days=2))).state == "success"
    rec = get_ledger().get_day("late", day)
    assert rec is not None and rec.status == L.INGESTED and rec.delivered == 3_000
    assert holds_exactly(statsig, expected(db, day))
    assert get_ledger().get_day("late", day + dt.timedelta(days=1)).status == L.NO_DATA  # type: ignore[union-attr]


def test_daily_run_waits_for_data_then_ingests_and_emits_an_asset_event(env: tuple[Path, Path],
                                                                        statsig: EmulatorProcess) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    specs, db = env
    add_source(specs, "daily_src")
    day = dt.date(2026, 11, 12)
    make_pool(db, [day], 2_000)
    show(db, 2_000)
    run = build_dags(specs)["statsig__daily_src"].test(logical_date=run_at(day + dt.timedelta(days=1)))
    assert run.state == "success"
    assert holds_exactly(statsig, expected(db, day))
    with create_session() as session:
        events = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                  .filter(AssetModel.name == "statsig/daily_src").all())
        extras = [e.extra for e in events]
    assert [(x["day"], x["delivered"], x["status"]) for x in extras] == [(day.isoformat(), 2_000, "ingested")]


def test_backfill_from_the_trigger_form(env: tuple[Path, Path], statsig: EmulatorProcess) -> None:
    specs, db = env
    add_source(specs, "bf")
    days = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(5)]
    make_pool(db, days, 1_500)
    show(db, 1_500)
    dag = build_dags(specs)["statsig__bf__backfill"]
    conf = {"start_date": days[0].isoformat(), "end_date": days[-1].isoformat()}
    assert dag.test(run_conf=conf).state == "success"
    want = [row for d in days for row in expected(db, d)]
    assert holds_exactly(statsig, want) and len(want) == 7_500
    assert [r.status for r in get_ledger().days("bf")] == [L.INGESTED] * 5

    assert dag.test(run_conf=conf).state == "success"  # counts match: every day is skipped
    assert dag.test(run_conf={**conf, "force": True}).state == "success"  # re-read: nothing new to send
    assert holds_exactly(statsig, want)
    assert all(r.last_reason == "backfill" and r.delivered == 1_500 for r in get_ledger().days("bf"))

    bad = dag.test(run_conf={"start_date": days[-1].isoformat(), "end_date": days[0].isoformat()})
    assert bad.state == "failed"


def test_a_daily_run_for_a_past_day_needs_one_presence_check(env: tuple[Path, Path],
                                                             statsig: EmulatorProcess) -> None:
    """Runs of the daily DAG for past days (what `airflow backfill create` makes) do not wait for the
    counts of a day long over to hold still; test_rest_api runs a real `backfill create`."""
    specs, db = env
    add_source(specs, "replayed", "{mode: daily, presence_checks: 3}")
    day = dt.date(2026, 11, 5)
    make_pool(db, [day], 1_000)
    show(db, 1_000)
    daily = build_dags(specs)["statsig__replayed"]
    assert daily.test(logical_date=run_at(day + dt.timedelta(days=1))).state == "success"
    assert holds_exactly(statsig, expected(db, day))  # an old day needs one look, not three
