"""The DAG factory: one call in a DAG file turns a folder (or file) of source specs into DAGs.

Per source:
  `statsig__<source>`            the daily run — wait for the latest complete day's data, ingest it —
                                 and the reload window check, which re-ingests recent days whose
                                 warehouse count moved;
  `statsig__<source>__backfill`  manual backfills of a date range from the trigger form;
and one `statsig__data_ready` for API-triggered runs (Statsig's `mark_data_ready_dwh` shape).

Parsing reads local files only: no warehouse, network, Variable or Connection access. A broken
spec file leaves the other sources' DAGs intact and shows up as an import error of the DAG file
naming the spec file, the source and the field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, CronTriggerTimetable, Param, get_parsing_context

from statsig_airflow_provider.assets import landed_alias
from statsig_airflow_provider.engine.days import STATSIG_TIMEZONE_NAME
from statsig_airflow_provider.engine.plan import MAX_BACKFILL_DAYS, TRIGGER_INTERVAL
from statsig_airflow_provider.engine.spec import SourceSpec, SpecError, load_specs
from statsig_airflow_provider.operators.backfill import BackfillPlanOperator
from statsig_airflow_provider.operators.data_ready import DataReadyTriggerOperator
from statsig_airflow_provider.operators.ingestion import IngestionOperator
from statsig_airflow_provider.sensors.data_presence import DataPresenceSensor
from statsig_airflow_provider.sensors.row_count import RowCountChangeSensor

DATA_READY_DAG_ID = "statsig__data_ready"
INVALID_SPECS_DAG_ID = "statsig__invalid_specs"
DEFAULT_START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
DEFAULT_ARGS: dict[str, Any] = {"owner": "statsig", "retries": 2, "retry_delay": dt.timedelta(minutes=5)}


def daily_dag_id(source: str) -> str:
    return f"statsig__{source}"


def backfill_dag_id(source: str) -> str:
    return f"statsig__{source}__backfill"


def timetable_zone(name: str) -> str:
    """Statsig's day is fixed UTC-8 with no DST: 'Etc/GMT+8' in IANA's inverted sign."""
    return "Etc/GMT+8" if name.lower() == STATSIG_TIMEZONE_NAME else name


class _InvalidSpecsDag(DAG):
    """Stands for spec files that did not load: the DAG processor validates every DAG it bags, and
    this one's failure becomes an import error of the DAG file while the valid DAGs still load."""

    spec_errors: tuple[str, ...] = ()

    def validate(self) -> None:
        raise SpecError("source specs that did not load (their DAGs are missing):\n" + "\n".join(self.spec_errors))


def build_dags(specs_path: str | Path, target: MutableMapping[str, Any] | None = None, *,
               start_date: dt.datetime = DEFAULT_START, default_args: Mapping[str, Any] | None = None,
               ledger_conn_id: str | None = None, statsig_conn_id: str | None = None,
               max_backfill_days: int = MAX_BACKFILL_DAYS, trigger_interval: dt.timedelta = TRIGGER_INTERVAL,
               tags: tuple[str, ...] = ()) -> dict[str, DAG]:
    """Build every DAG for the specs under `specs_path`; put them in `target` (pass `globals()`).

    When Airflow runs a task it re-parses the file for one DAG only; then only that DAG is built.
    """
    specs_path = Path(specs_path)
    result = load_specs(specs_path)
    only = get_parsing_context().dag_id
    wanted = (lambda dag_id: only is None or only == dag_id)  # noqa: E731
    common = {"start_date": start_date, "default_args": {**DEFAULT_ARGS, **(default_args or {})}}
    tags = ("statsig", *tags)
    shared = {"ledger_conn_id": ledger_conn_id}
    dags: dict[str, DAG] = {}
    for spec in result.specs:
        if wanted(daily_dag_id(spec.name)):
            dags[daily_dag_id(spec.name)] = _daily_dag(spec, common, shared, statsig_conn_id,
                                                      [*tags, spec.dataset, spec.name])
        if wanted(backfill_dag_id(spec.name)):
            dags[backfill_dag_id(spec.name)] = _backfill_dag(spec, common, shared, statsig_conn_id,
                                                            max_backfill_days, [*tags, "backfill", spec.name])
    if result.specs and wanted(DATA_READY_DAG_ID):
        dags[DATA_READY_DAG_ID] = _data_ready_dag(result.specs, specs_path, common, shared, statsig_conn_id,
                                                  trigger_interval, [*tags, "api"])
    if result.errors and only is None:
        broken = _InvalidSpecsDag(dag_id=INVALID_SPECS_DAG_ID, schedule=None, start_date=start_date)
        broken.spec_errors = tuple(str(e) for e in result.errors.values())
        dags[INVALID_SPECS_DAG_ID] = broken
    if target is not None:
        target.update(dags)
    return dags


def _doc(spec: SourceSpec, what: str) -> str:
    return (f"### {spec.name} ({spec.dataset}) — {what}\n\n{spec.description or ''}\n\n"
            f"Spec: `{spec.origin}` · warehouse connection `{spec.warehouse_conn_id}` · day timezone "
            f"`{spec.day.timezone}` · reload window {spec.reload.window_days} days / "
            f"{spec.reload.threshold:.0%}")


def _daily_dag(spec: SourceSpec, common: dict[str, Any], shared: dict[str, Any],
               statsig_conn_id: str | None, tags: list[str]) -> DAG:
    schedule = spec.schedule
    cron = f"{schedule.minute} {schedule.hour} * * *"
    mode = "daily ingestion and reload checks" if schedule.mode == "daily" else \
        "reload checks (ingestion is API-triggered through statsig__data_ready)"
    with DAG(dag_id=daily_dag_id(spec.name), schedule=CronTriggerTimetable(cron, timezone=timetable_zone(
            schedule.timezone)), catchup=False, max_active_runs=1, doc_md=_doc(spec, mode),
             description=f"Statsig ingestion of {spec.name}: {mode}", tags=tags, **common) as dag:
        ingest_args = {"source": spec, "statsig_conn_id": statsig_conn_id, "max_active_tis_per_dag": 1,
                       "outlets": [landed_alias(spec.name)], **shared}
        if schedule.mode == "daily":
            wait = DataPresenceSensor(task_id="wait_for_data", source=spec, **shared)
            ingest = IngestionOperator(task_id="ingest", reason="daily",
                                       days="{{ ti.xcom_pull(task_ids='wait_for_data')['day'] }}", **ingest_args)
            wait >> ingest
        check = RowCountChangeSensor(task_id="check_recent_days", source=spec, check_once=True, mode="poke",
                                     poke_interval=1, **shared)
        IngestionOperator.partial(task_id="reload", reason="reload", **ingest_args).expand(days=check.output)
    return dag


def _backfill_dag(spec: SourceSpec, common: dict[str, Any], shared: dict[str, Any], statsig_conn_id: str | None,
                  max_days: int, tags: list[str]) -> DAG:
    with DAG(dag_id=backfill_dag_id(spec.name), schedule=None, catchup=False, max_active_runs=1,
             doc_md=_doc(spec, f"manual backfill (a date range, at most {max_days} days)"),
             description=f"Backfill a date range of {spec.name} into Statsig", tags=tags, **common,
             params={
                 "start_date": Param(type="string", format="date", title="First day",
                                     description="First day to ingest (YYYY-MM-DD), in the source's day timezone"),
                 "end_date": Param(type="string", format="date", title="Last day",
                                   description="Last day to ingest (inclusive); it must have ended"),
                 "force": Param(False, type="boolean", title="Re-check every day",
                                description="Re-read days already ingested even when their counts match; rows "
                                            "already delivered are still never sent again"),
             }) as dag:
        plan = BackfillPlanOperator(task_id="plan", source=spec, first_day="{{ params.start_date }}",
                                    last_day="{{ params.end_date }}", force="{{ params.force }}",
                                    max_days=max_days, **shared)
        IngestionOperator.partial(
            task_id="ingest", source=spec, reason="backfill", statsig_conn_id=statsig_conn_id,
            max_active_tis_per_dag=1, outlets=[landed_alias(spec.name)], **shared,
        ).expand(days=plan.output)
    return dag


def _data_ready_dag(specs: list[SourceSpec], specs_path: Path, common: dict[str, Any], shared: dict[str, Any],
                    statsig_conn_id: str | None, interval: dt.timedelta, tags: list[str]) -> DAG:
    names = sorted(s.name for s in specs)
    day = {"type": "string", "format": "date"}
    with DAG(dag_id=DATA_READY_DAG_ID, schedule=None, catchup=False,
             doc_md="### API-triggered ingestion\n\nTrigger with conf `{\"datestamps\": \"YYYY-MM-DD\" or a list, "
                    "\"type\": \"events\" | \"metrics\", \"sources\": [...]}` (Statsig's mark_data_ready_dwh "
                    f"shape). At most one trigger per source and type every {interval}.",
             description="API-triggered ingestion (mark_data_ready_dwh shape)", tags=tags, **common,
             params={
                 "datestamps": Param(anyOf=[day, {"type": "array", "items": day, "minItems": 1}],
                                     title="Days", description="A day (YYYY-MM-DD) or a list of days"),
                 "type": Param(type="string", enum=["events", "metrics"], title="Dataset"),
                 "sources": Param(None, type=["null", "array"], items={"type": "string", "enum": names},
                                  title="Sources", description="Source names; default: every source of the type"),
             }) as dag:
        admit = DataReadyTriggerOperator(task_id="admit", specs_path=specs_path, min_interval=interval, **shared)
        IngestionOperator.partial(
            task_id="ingest", specs_path=str(specs_path), reason="api_trigger", statsig_conn_id=statsig_conn_id,
            outlets=[landed_alias("data_ready")], **shared,
        ).expand_kwargs(admit.output)
    return dag
