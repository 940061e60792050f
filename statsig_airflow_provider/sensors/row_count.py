"""RowCountChangeSensor: the reload window — which recent days changed in the warehouse."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSkipException

from statsig_airflow_provider.engine.days import parse_day
from statsig_airflow_provider.engine.plan import decide_reload, reload_candidates
from statsig_airflow_provider.engine.spec import SourceSpec
from statsig_airflow_provider.hooks.warehouse import warehouse_reader
from statsig_airflow_provider.settings import get_ledger
from statsig_airflow_provider.sources import count_day, is_backfill, resolve_spec, run_after, scheduled_day


class RowCountChangeSensor(BaseSensorOperator):
    """Done when a watched day's warehouse count differs from the ledger's by more than
    `reload.threshold` (either way), or a day that had no data now has some.

    Watched days: `days` if given, else every day first ingested within `reload.window_days`
    (Statsig: reload within 3 days of the first ingestion) plus recent days recorded as no data,
    leaving out the run's own target day. Returns the changed days (YYYY-MM-DD), ready to map a
    reload over. With `check_once` it looks once and skips when nothing changed — the daily DAG's
    way of using it; otherwise it keeps watching like any sensor.
    """

    template_fields: Sequence[str] = ("days",)
    ui_color = "#ffe8cc"

    def __init__(self, *, source: SourceSpec | str, days: list[str] | str | None = None,
                 specs_path: str | Path | None = None, ledger_conn_id: str | None = None,
                 check_once: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.days = days
        self.specs_path = specs_path
        self.ledger_conn_id = ledger_conn_id
        self.check_once = check_once

    def poke(self, context: Any) -> PokeReturnValue | bool:
        if self.check_once and is_backfill(context):
            raise AirflowSkipException("reload checks belong to the schedule's own runs, not to backfill runs")
        spec = resolve_spec(self.source, self.specs_path)
        ledger = get_ledger(self.ledger_conn_id)
        if self.days:
            wanted = {parse_day(d) for d in ([self.days] if isinstance(self.days, str) else self.days)}
            records = [r for r in ledger.days(spec.name) if r.day in wanted]
        else:
            records = reload_candidates(ledger, spec, run_after(context), exclude=[scheduled_day(spec, context)])
        reader = warehouse_reader(spec.warehouse_conn_id, spec.warehouse_options) if records else None
        changed = []
        for record in records:
            decision = decide_reload(spec, record, count_day(spec, record.day, reader))
            self.log.info("%s %s: ledger %s rows, warehouse now %s (%+.1f%%) → %s", spec.name, record.day,
                          f"{decision.ledger_count:,}", f"{decision.current_count:,}",
                          100 * decision.change if decision.ledger_count else 0.0,
                          decision.reason.replace("_", " "))
            if decision.reload:
                changed.append(record.day.isoformat())
        if changed:
            return PokeReturnValue(is_done=True, xcom_value=sorted(changed))
        if self.check_once:
            raise AirflowSkipException(f"no day of {spec.name} changed beyond {spec.reload.threshold:.0%} "
                                       f"({len(records)} checked)")
        return False
