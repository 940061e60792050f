"""IngestionOperator: one source, one or more days, into Statsig (thin over the engine)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Sequence
from typing import Any

from airflow.sdk import AssetAlias, BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from statsig_airflow_provider.assets import source_asset
from statsig_airflow_provider.engine.columns import MappingError
from statsig_airflow_provider.engine.days import parse_day
from statsig_airflow_provider.engine.ledger import DayBusyError
from statsig_airflow_provider.engine.pipeline import IngestionError, RunOptions, ingest_day
from statsig_airflow_provider.engine.spec import SourceSpec
from statsig_airflow_provider.engine.statsig_client import StatsigAuthError, StatsigRejected
from statsig_airflow_provider.hooks.warehouse import warehouse_reader
from statsig_airflow_provider.settings import get_ledger, rejects_dir
from statsig_airflow_provider.sources import resolve_spec, scheduled_day
from statsig_airflow_provider.targets import delivery_target


class IngestionOperator(BaseOperator):
    """Ingest `source` for `days` (YYYY-MM-DD, a list, or comma-separated; templated).

    `source` is a SourceSpec, or a source name found under `specs_path` when the task runs.
    Without days it ingests the latest complete day at the run's time in the source's timezone.
    Days run one after another; each is safe to retry (what was delivered is never sent again).
    Returns one report per day (counts, reasons, timings) — also what the task logs — and, when
    an AssetAlias is among the task's outlets, adds an event for the source's Asset per landed day.
    """

    template_fields: Sequence[str] = ("days", "reason")
    ui_color = "#194bff"
    ui_fgcolor = "#ffffff"

    def __init__(self, *, source: SourceSpec | str, days: str | list[str] | None = None, reason: str = "manual",
                 specs_path: str | None = None, statsig_conn_id: str | None = None,
                 ledger_conn_id: str | None = None, progress_every_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.specs_path = specs_path
        self.days = days
        self.reason = reason
        self.statsig_conn_id = statsig_conn_id
        self.ledger_conn_id = ledger_conn_id
        self.progress_every_s = progress_every_s
        self._cancel = threading.Event()

    def resolve_days(self, spec: SourceSpec, context: Any) -> list[dt.date]:
        raw = self.days
        if raw in (None, "", "None", []):
            return [scheduled_day(spec, context)]
        if isinstance(raw, str):
            text = raw.strip()
            raw = json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
        return sorted({parse_day(d) for d in raw})

    def execute(self, context: Any) -> list[dict[str, Any]]:
        spec = resolve_spec(self.source, self.specs_path)
        days = self.resolve_days(spec, context)
        reader = warehouse_reader(spec.warehouse_conn_id, spec.warehouse_options)
        target = delivery_target(spec, self.statsig_conn_id)
        ledger = get_ledger(self.ledger_conn_id)
        self.log.info("ingesting %s (%s) for %s into %s; ledger %s", spec.name, spec.dataset,
                      ", ".join(d.isoformat() for d in days), getattr(target, "base_path", "Statsig"), ledger.url)
        reports: list[dict[str, Any]] = []
        failures: list[str] = []
        permanent = False
        for day in days:
            options = RunOptions(run_id=context["run_id"], reason=self.reason, rejects_dir=rejects_dir(),
                                 progress_every_s=self.progress_every_s, cancel=self._cancel, log=self.log.info)
            try:
                report = ingest_day(spec, day, reader, target, ledger, options)
            except IngestionError as exc:
                self.log.error("%s", exc.report.summary())
                reports.append(exc.report.to_dict())
                failures.append(str(exc))
                permanent = permanent or exc.report.status == "too_many_rejects" or _permanent(exc.__cause__)
                if isinstance(exc.__cause__, StatsigAuthError):
                    break  # a refused key fails every day the same way
                continue
            except DayBusyError as exc:
                failures.append(str(exc))
                continue
            self.log.info("%s", report.summary())
            reports.append(report.to_dict())
            self._emit_asset_event(spec, report, context)
            if self._cancel.is_set():
                break
        context["ti"].xcom_push(key="reports", value=reports)
        if failures:
            message = "; ".join(failures)
            raise (AirflowFailException if permanent else AirflowException)(message)
        return reports

    def _emit_asset_event(self, spec: SourceSpec, report: Any, context: Any) -> None:
        aliases = [o for o in self.outlets if isinstance(o, AssetAlias)]
        if report.status == "no_data" or not aliases:
            return
        context["outlet_events"][aliases[0]].add(source_asset(spec.name), extra={
            "source": spec.name, "day": report.day, "status": report.status, "reason": report.reason,
            "delivered": report.delivered, "delivered_total": report.delivered_total, "rejected": report.rejected,
            "ambiguous_total": report.ambiguous_total})

    def on_kill(self) -> None:
        # Stop after the requests in flight: what they deliver is recorded, the rest waits for the next run.
        self._cancel.set()


def _permanent(cause: BaseException | None) -> bool:
    """Failures a retry cannot fix: a refused key or request, a mapping that does not fit the query."""
    return isinstance(cause, (StatsigRejected, MappingError))
