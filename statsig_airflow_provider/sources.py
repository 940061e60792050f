"""Resolving a task's source spec and the readers for it, at run time (never at parse time)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.pipeline import day_query_for
from statsig_airflow_provider.engine.plan import target_day
from statsig_airflow_provider.engine.readers import WarehouseReader
from statsig_airflow_provider.engine.spec import SourceSpec, load_spec
from statsig_airflow_provider.hooks.warehouse import warehouse_reader


def resolve_spec(source: SourceSpec | str, specs_path: str | Path | None) -> SourceSpec:
    """A task holds its spec, or a source name plus the folder to find it in."""
    if isinstance(source, SourceSpec):
        return source
    if specs_path is None:
        raise ValueError(f"source {source!r} is given by name: pass specs_path too")
    return load_spec(specs_path, name=source)


def run_after(context: Any) -> dt.datetime:
    """When this run is for: its logical date (the schedule's time, or the one chosen when
    triggering), else the time it was triggered (API-triggered runs have no logical date)."""
    when = context.get("logical_date") or getattr(context["dag_run"], "run_after", None)
    if when is None:
        return dt.datetime.now(dt.timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def scheduled_day(spec: SourceSpec, context: Any) -> dt.date:
    """The latest complete day (in the source's timezone) when this run is for."""
    return target_day(spec, run_after(context))


def count_day(spec: SourceSpec, day: dt.date, reader: WarehouseReader | None = None) -> int:
    """The warehouse's row count for one day, through the same day query the ingestion uses."""
    window = DayWindow.of(day, spec.day.timezone)
    bound = (reader or warehouse_reader(spec.warehouse_conn_id, spec.warehouse_options)).for_day(window)
    return bound.count(day_query_for(spec, window, bound).sql)


def is_backfill(context: Any) -> bool:
    run_type = getattr(context["dag_run"], "run_type", "")
    return str(getattr(run_type, "value", run_type)) == "backfill"
