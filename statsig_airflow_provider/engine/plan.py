"""Which days a run handles, and why: the daily target, the reload window, backfill ranges and
API-triggered requests. Plain functions over the ledger, so the schedule's rules are testable
without Airflow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.days import day_range, latest_complete_day, parse_day, resolve_timezone
from statsig_airflow_provider.engine.spec import SourceSpec

MAX_BACKFILL_DAYS = 366
TRIGGER_INTERVAL = dt.timedelta(hours=2)  # Statsig: mark_data_ready_dwh at most once every two hours


def target_day(spec: SourceSpec, run_after: dt.datetime) -> dt.date:
    """The latest day that has fully ended, in the source's day timezone, when the run starts."""
    return latest_complete_day(run_after, resolve_timezone(spec.day.timezone))


# ------------------------------------------------------------------------------ presence
def presence_checks_needed(spec: SourceSpec, day: dt.date, now: dt.datetime) -> int:
    """How many equal, non-zero counts in a row mean a day's data is complete.

    A fresh day may still be loading, so its count must hold still; a day long over (a backfill, a
    catch-up) needs one look.
    """
    ended = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), resolve_timezone(spec.day.timezone))
    fresh = now - ended < dt.timedelta(hours=spec.schedule.presence_timeout_hours)
    return spec.schedule.presence_checks if fresh else 1


@dataclass(frozen=True)
class Presence:
    count: int
    stable_checks: int
    needed: int

    @property
    def ready(self) -> bool:
        return self.count > 0 and self.stable_checks >= self.needed


# ------------------------------------------------------------------------------ reload window
@dataclass(frozen=True)
class ReloadDecision:
    day: dt.date
    ledger_count: int
    current_count: int
    reason: str  # "changed" | "late_data" | "within_threshold"

    @property
    def reload(self) -> bool:
        return self.reason != "within_threshold"

    @property
    def change(self) -> float:
        if not self.ledger_count:
            return float("inf") if self.current_count else 0.0
        return (self.current_count - self.ledger_count) / self.ledger_count


def reload_candidates(ledger: L.Ledger, spec: SourceSpec, now: dt.datetime,
                      exclude: Iterable[dt.date] = ()) -> list[L.DayRecord]:
    """Days the reload check looks at: ingested days whose *first* ingestion is within the window,
    and recent days that had no data (or failed) and may have data now. Older days are never
    touched automatically: that is what the backfill DAG is for."""
    window = dt.timedelta(days=spec.reload.window_days)
    if not spec.reload.window_days:
        return []
    excluded = set(exclude)
    today = target_day(spec, now) + dt.timedelta(days=1)
    out = []
    for record in ledger.days(spec.name):  # one row per day: small, and old days may be freshly ingested
        if record.day in excluded:
            continue
        ingested = record.status in L.DONE_STATES and record.first_ingested_at is not None
        empty = record.status in (L.NO_DATA, L.FAILED) and record.first_ingested_at is None
        if (ingested and now - record.first_ingested_at <= window) or (empty and today - record.day <= window):
            out.append(record)
    return out


def decide_reload(spec: SourceSpec, record: L.DayRecord, current_count: int) -> ReloadDecision:
    """Reload when the count moved by more than the threshold, either way (Statsig's own pages
    disagree on "changes" vs "increases"; a drop is reported as vanished rows on reload)."""
    if record.first_ingested_at is None:
        reason = "late_data" if current_count > 0 else "within_threshold"
        return ReloadDecision(record.day, 0, current_count, reason)
    base = record.warehouse_count or 0
    changed = base == 0 or abs(current_count - base) / base > spec.reload.threshold
    return ReloadDecision(record.day, base, current_count, "changed" if changed else "within_threshold")


# ------------------------------------------------------------------------------ backfill
class PlanError(ValueError):
    """A request (trigger form, API conf) that cannot be planned; the message names the field."""


@dataclass(frozen=True)
class BackfillPlan:
    days: list[dt.date]
    skipped: dict[str, str] = field(default_factory=dict)  # day → why it needs no work


def plan_backfill(spec: SourceSpec, start: str | dt.date, end: str | dt.date, *, now: dt.datetime, force: bool,
                  ledger: L.Ledger, count: Callable[[dt.date], int] | None = None,
                  max_days: int = MAX_BACKFILL_DAYS) -> BackfillPlan:
    """Days a manual backfill processes. Without `force`, days already ingested whose warehouse count
    still matches the ledger are skipped; with it every day is re-checked (the manifest still keeps
    rows that were delivered from going out again)."""
    try:
        first = parse_day(start)
    except ValueError as exc:
        raise PlanError(f"start_date: {exc}") from None
    try:
        last = parse_day(end)
    except ValueError as exc:
        raise PlanError(f"end_date: {exc}") from None
    if last < first:
        raise PlanError(f"end_date {last} is before start_date {first}")
    latest = target_day(spec, now)
    if last > latest:
        raise PlanError(f"end_date {last} has not ended yet in the source's timezone ({spec.day.timezone}); "
                        f"the latest complete day is {latest}")
    days = day_range(first, last)
    if len(days) > max_days:
        raise PlanError(f"the range holds {len(days)} days; a backfill takes at most {max_days} "
                        "(split it into several runs, or use `airflow backfill create` on the daily DAG)")
    if force:
        return BackfillPlan(days)
    records = {r.day: r for r in ledger.days(spec.name, since=first, until=last)}
    todo, skipped = [], {}
    for day in days:
        record = records.get(day)
        if record is not None and record.status in L.DONE_STATES and count is not None:
            current = count(day)
            if current == record.warehouse_count:
                skipped[day.isoformat()] = f"already ingested and the count still matches ({current:,} rows)"
                continue
        todo.append(day)
    return BackfillPlan(todo, skipped)


# ------------------------------------------------------------------------------ API triggers
@dataclass(frozen=True)
class TriggerRequest:
    """A validated `mark_data_ready_dwh`-shaped request: days and the sources they apply to."""

    days: list[dt.date]
    dataset: str
    sources: list[str]


def parse_trigger_conf(conf: Mapping[str, Any], specs: Sequence[SourceSpec], now: dt.datetime) -> TriggerRequest:
    """Validate `{"datestamps": "YYYY-MM-DD" | [...], "type": "events" | "metrics", "sources": [...]}`."""
    if not isinstance(conf, Mapping):
        raise PlanError("conf must be a JSON object with datestamps, type and optional sources")
    unknown = sorted(set(conf) - {"datestamps", "type", "sources"})
    if unknown:
        raise PlanError(f"{unknown[0]}: unknown field; the fields are datestamps, type and sources")
    dataset = conf.get("type")
    if dataset not in ("events", "metrics"):
        raise PlanError(f"type: must be 'events' or 'metrics', got {dataset!r}")
    raw_days = conf.get("datestamps")
    if isinstance(raw_days, str):
        raw_days = [raw_days]
    if not isinstance(raw_days, list) or not raw_days:
        raise PlanError("datestamps: give a day (YYYY-MM-DD) or a list of days")
    by_name = {s.name: s for s in specs}
    requested = conf.get("sources")
    if requested is None:
        names = [s.name for s in specs if s.dataset == dataset]
        if not names:
            raise PlanError(f"type: no source ingests {dataset}")
    else:
        if not isinstance(requested, list) or not all(isinstance(n, str) for n in requested) or not requested:
            raise PlanError("sources: give a list of source names")
        missing = [n for n in requested if n not in by_name]
        if missing:
            raise PlanError(f"sources: unknown source {missing[0]!r}; known sources: {', '.join(sorted(by_name))}")
        mismatched = [n for n in requested if by_name[n].dataset != dataset]
        if mismatched:
            raise PlanError(f"type: source {mismatched[0]!r} ingests {by_name[mismatched[0]].dataset}, not {dataset}")
        names = list(dict.fromkeys(requested))
    days = []
    for value in raw_days:
        try:
            day = parse_day(value)
        except ValueError as exc:
            raise PlanError(f"datestamps: {exc}") from None
        for name in names:
            latest = target_day(by_name[name], now)
            if day > latest:
                raise PlanError(f"datestamps: {day} has not ended yet for source {name!r} "
                                f"(latest complete day {latest})")
        days.append(day)
    return TriggerRequest(sorted(set(days)), dataset, names)


@dataclass(frozen=True)
class TriggerOutcome:
    accepted: list[str]
    refused: dict[str, dt.datetime]  # source → when the next trigger is allowed


def admit_trigger(ledger: L.Ledger, request: TriggerRequest, run_id: str | None, now: dt.datetime,
                  interval: dt.timedelta = TRIGGER_INTERVAL) -> TriggerOutcome:
    """Apply the rate limit per source × type (Statsig's: once every two hours)."""
    accepted, refused = [], {}
    for name in request.sources:
        next_allowed = ledger.record_trigger(name, request.dataset, request.days, run_id, min_interval=interval,
                                             now=now)
        if next_allowed is None:
            accepted.append(name)
        else:
            refused[name] = next_allowed
    return TriggerOutcome(accepted, refused)
