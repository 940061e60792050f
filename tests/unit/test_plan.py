"""The schedule's rules: daily target, presence, reload window, backfill ranges, API triggers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.plan import (
    PlanError,
    admit_trigger,
    decide_reload,
    parse_trigger_conf,
    plan_backfill,
    presence_checks_needed,
    reload_candidates,
    target_day,
)
from statsig_airflow_provider.engine.spec import SourceSpec

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 4, 18, 0, tzinfo=UTC)  # 10:00 on Dec 4 in Statsig's UTC-8 day


def spec(name: str = "web", dataset: str = "events", **extra: object) -> SourceSpec:
    mapping = ({"timestamp": "ts", "event_name": "n", "ids": {"userID": "u"}} if dataset == "events" else
               {"unit_id": "u", "id_type": "t", "date": "d", "metric_name": "m", "metric_value": "v"})
    delivery = {"file_drop_uri": "/tmp/x"} if dataset == "metrics" else {}
    return SourceSpec.from_dict({"name": name, "dataset": dataset, "warehouse": {"conn_id": "wh"},
                                 "sql": "SELECT * FROM t WHERE d = {day}", "mapping": mapping,
                                 "delivery": delivery, **extra})


@pytest.fixture
def ledger(tmp_path: Path) -> L.Ledger:
    return L.Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def record(ledger: L.Ledger, day: dt.date, status: str, count: int | None, first: dt.datetime | None) -> None:
    ledger.write_day(L.DayRecord(source="web", day=day, dataset="events", status=status, warehouse_count=count,
                                 first_ingested_at=first))


def test_daily_target_is_the_latest_complete_day_in_the_source_zone() -> None:
    assert target_day(spec(), NOW) == dt.date(2026, 12, 3)
    assert target_day(spec(day={"timezone": "Asia/Tokyo"}), NOW) == dt.date(2026, 12, 4)  # 03:00 Dec 5 there


def test_a_fresh_day_needs_stable_counts_an_old_day_one_look() -> None:
    s = spec(schedule={"presence_checks": 3, "presence_timeout_hours": 12})
    assert presence_checks_needed(s, dt.date(2026, 12, 3), NOW) == 3
    assert presence_checks_needed(s, dt.date(2026, 11, 20), NOW) == 1


@pytest.mark.parametrize(("before", "now", "reload"), [
    (10_000, 10_600, True), (10_000, 10_400, False), (10_000, 9_000, True), (10_000, 9_600, False),
    (10_000, 10_500, False), (10_000, 10_501, True),
])
def test_reload_threshold_applies_both_ways(ledger: L.Ledger, before: int, now: int, reload: bool) -> None:
    rec = L.DayRecord(source="web", day=dt.date(2026, 12, 1), dataset="events", status=L.INGESTED,
                      warehouse_count=before, first_ingested_at=NOW)
    assert decide_reload(spec(), rec, now).reload is reload


def test_reload_window_counts_from_the_first_ingestion(ledger: L.Ledger) -> None:
    record(ledger, dt.date(2026, 11, 30), L.INGESTED, 100, NOW - dt.timedelta(days=2, hours=23))
    record(ledger, dt.date(2026, 11, 29), L.INGESTED, 100, NOW - dt.timedelta(days=3, hours=1))  # just outside
    record(ledger, dt.date(2026, 12, 2), L.NO_DATA, 0, None)
    record(ledger, dt.date(2026, 11, 20), L.NO_DATA, 0, None)  # too old to be retried automatically
    record(ledger, dt.date(2026, 12, 3), L.INGESTED, 100, NOW)  # the run's own target: excluded
    days = [r.day for r in reload_candidates(ledger, spec(), NOW, exclude=[dt.date(2026, 12, 3)])]
    assert days == [dt.date(2026, 11, 30), dt.date(2026, 12, 2)]
    late = decide_reload(spec(), ledger.get_day("web", dt.date(2026, 12, 2)), 50)  # type: ignore[arg-type]
    assert late.reason == "late_data" and late.reload


def test_backfill_range_checks_and_skips_matching_days(ledger: L.Ledger) -> None:
    s = spec()
    with pytest.raises(PlanError, match="end_date 2026-11-01 is before start_date 2026-11-05"):
        plan_backfill(s, "2026-11-05", "2026-11-01", now=NOW, force=False, ledger=ledger)
    with pytest.raises(PlanError, match="end_date 2026-12-04 has not ended yet"):
        plan_backfill(s, "2026-12-01", "2026-12-04", now=NOW, force=False, ledger=ledger)
    with pytest.raises(PlanError, match="holds 10 days; a backfill takes at most 7"):
        plan_backfill(s, "2026-11-01", "2026-11-10", now=NOW, force=False, ledger=ledger, max_days=7)
    with pytest.raises(PlanError, match="start_date: 'Nov 1' is not a day"):
        plan_backfill(s, "Nov 1", "2026-11-10", now=NOW, force=False, ledger=ledger)
    record(ledger, dt.date(2026, 11, 2), L.INGESTED, 100, NOW)
    record(ledger, dt.date(2026, 11, 3), L.INGESTED, 100, NOW)
    counts = {dt.date(2026, 11, 2): 100, dt.date(2026, 11, 3): 120}
    plan = plan_backfill(s, "2026-11-01", "2026-11-03", now=NOW, force=False, ledger=ledger,
                         count=lambda d: counts.get(d, 0))
    assert plan.days == [dt.date(2026, 11, 1), dt.date(2026, 11, 3)] and list(plan.skipped) == ["2026-11-02"]
    forced = plan_backfill(s, "2026-11-01", "2026-11-03", now=NOW, force=True, ledger=ledger)
    assert len(forced.days) == 3


SPECS = [spec("web"), spec("app"), spec("revenue", "metrics")]


@pytest.mark.parametrize(("conf", "words"), [
    ({"datestamps": "2026-12-01"}, "type: must be 'events' or 'metrics'"),
    ({"type": "events"}, "datestamps: give a day"),
    ({"datestamps": "12/01/2026", "type": "events"}, "datestamps: '12/01/2026' is not a day"),
    ({"datestamps": "2026-12-04", "type": "events"}, "datestamps: 2026-12-04 has not ended yet"),
    ({"datestamps": "2026-12-01", "type": "events", "sources": ["nope"]}, "sources: unknown source 'nope'"),
    ({"datestamps": "2026-12-01", "type": "events", "sources": ["revenue"]}, "type: source 'revenue' ingests metrics"),
    ({"datestamps": "2026-12-01", "type": "events", "source": ["web"]}, "source: unknown field"),
])
def test_trigger_conf_errors_name_the_field(conf: dict, words: str) -> None:
    with pytest.raises(PlanError) as err:
        parse_trigger_conf(conf, SPECS, NOW)
    assert str(err.value).startswith(words)


def test_trigger_defaults_to_every_source_of_the_type_and_is_rate_limited(ledger: L.Ledger) -> None:
    request = parse_trigger_conf({"datestamps": ["2026-12-02", "2026-12-01", "2026-12-02"], "type": "events"},
                                 SPECS, NOW)
    assert request.sources == ["web", "app"] and request.days == [dt.date(2026, 12, 1), dt.date(2026, 12, 2)]
    first = admit_trigger(ledger, request, "r1", NOW)
    assert first.accepted == ["web", "app"] and not first.refused
    only_web = parse_trigger_conf({"datestamps": "2026-12-02", "type": "events", "sources": ["web"]}, SPECS, NOW)
    again = admit_trigger(ledger, only_web, "r2", NOW + dt.timedelta(minutes=90))
    assert again.accepted == [] and again.refused == {"web": NOW + dt.timedelta(hours=2)}
    later = admit_trigger(ledger, only_web, "r3", NOW + dt.timedelta(hours=2, seconds=1))
    assert later.accepted == ["web"]
    metrics = parse_trigger_conf({"datestamps": "2026-12-02", "type": "metrics"}, SPECS, NOW)
    assert admit_trigger(ledger, metrics, "r4", NOW).accepted == ["revenue"]  # limit is per source × type
