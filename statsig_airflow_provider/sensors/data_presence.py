"""DataPresenceSensor: wait (without holding a worker slot) until a day's data is in the warehouse."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from statsig_airflow_provider.engine.days import parse_day
from statsig_airflow_provider.engine.plan import Presence, presence_checks_needed
from statsig_airflow_provider.engine.spec import SourceSpec
from statsig_airflow_provider.settings import get_ledger
from statsig_airflow_provider.sources import count_day, resolve_spec, run_after, scheduled_day


class DataPresenceSensor(BaseSensorOperator):
    """Done when the day's row count is non-zero and unchanged across `schedule.presence_checks`
    checks (one check for a day long over), or when `schedule.presence_timeout_hours` have passed
    since the run's time — then it reports what it saw, and an empty day is recorded as "no data"
    by the ingestion that follows instead of failing.

    Runs in reschedule mode by default: between checks the task holds no worker slot.
    Returns `{"day", "count", "present", "stable_checks"}`.
    """

    template_fields: Sequence[str] = ("day",)
    ui_color = "#d6e4ff"

    def __init__(self, *, source: SourceSpec | str, day: str | None = None, specs_path: str | Path | None = None,
                 ledger_conn_id: str | None = None, **kwargs: Any) -> None:
        spec = source if isinstance(source, SourceSpec) else None
        if spec is not None:
            kwargs.setdefault("poke_interval", spec.schedule.presence_interval_minutes * 60)
            kwargs.setdefault("timeout", (spec.schedule.presence_timeout_hours + 1) * 3600)
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.source = source
        self.day = day
        self.specs_path = specs_path
        self.ledger_conn_id = ledger_conn_id

    def poke(self, context: Any) -> PokeReturnValue | bool:
        spec = resolve_spec(self.source, self.specs_path)
        day = parse_day(self.day) if self.day else scheduled_day(spec, context)
        now = dt.datetime.now(dt.timezone.utc)
        count = count_day(spec, day)
        checks = get_ledger(self.ledger_conn_id).note_presence(spec.name, day, spec.dataset, count)
        presence = Presence(count=count, stable_checks=checks, needed=presence_checks_needed(spec, day, now))
        result = {"day": day.isoformat(), "count": count, "present": presence.ready,
                  "stable_checks": presence.stable_checks}
        self.log.info("%s %s: %s rows in the warehouse, unchanged for %d of %d checks", spec.name, day,
                      f"{count:,}", presence.stable_checks, presence.needed)
        if presence.ready:
            return PokeReturnValue(is_done=True, xcom_value=result)
        deadline = run_after(context) + dt.timedelta(hours=spec.schedule.presence_timeout_hours)
        if now >= deadline:
            self.log.warning("%s %s: gave up waiting at %s; %s", spec.name, day, deadline.isoformat(),
                             "ingesting what is there" if count else "the day will be recorded as no data")
            return PokeReturnValue(is_done=True, xcom_value={**result, "present": count > 0})
        return False
