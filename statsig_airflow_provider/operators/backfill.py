"""BackfillPlanOperator: the days a manual backfill (trigger form) will process."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from statsig_airflow_provider.engine.plan import MAX_BACKFILL_DAYS, PlanError, plan_backfill
from statsig_airflow_provider.engine.spec import SourceSpec
from statsig_airflow_provider.hooks.warehouse import warehouse_reader
from statsig_airflow_provider.settings import get_ledger
from statsig_airflow_provider.sources import count_day, resolve_spec


class BackfillPlanOperator(BaseOperator):
    """Check the requested range and return its days (YYYY-MM-DD) for the mapped ingestion.

    Without `force`, days already ingested whose warehouse count still matches the ledger are left
    out; with it, every day is re-read (rows already delivered are still never sent again).
    """

    template_fields: Sequence[str] = ("first_day", "last_day", "force")
    ui_color = "#fff3bf"

    def __init__(self, *, source: SourceSpec | str, first_day: str, last_day: str, force: bool | str = False,
                 specs_path: str | Path | None = None, max_days: int = MAX_BACKFILL_DAYS,
                 ledger_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.first_day = first_day
        self.last_day = last_day
        self.force = force
        self.specs_path = specs_path
        self.max_days = max_days
        self.ledger_conn_id = ledger_conn_id

    def execute(self, context: Any) -> list[str]:
        spec = resolve_spec(self.source, self.specs_path)
        force = self.force if isinstance(self.force, bool) else str(self.force).lower() in ("true", "1", "yes")
        reader = warehouse_reader(spec.warehouse_conn_id, spec.warehouse_options)
        try:
            plan = plan_backfill(spec, self.first_day, self.last_day, now=dt.datetime.now(dt.timezone.utc),
                                 force=force, ledger=get_ledger(self.ledger_conn_id),
                                 count=lambda day: count_day(spec, day, reader), max_days=self.max_days)
        except PlanError as exc:
            raise AirflowFailException(f"{spec.name} backfill refused: {exc}") from None
        for day, why in sorted(plan.skipped.items()):
            self.log.info("%s %s: skipped, %s (turn on force to re-check it)", spec.name, day, why)
        self.log.info("%s: backfilling %d day(s): %s", spec.name, len(plan.days),
                      ", ".join(d.isoformat() for d in plan.days) or "none")
        return [d.isoformat() for d in plan.days]
