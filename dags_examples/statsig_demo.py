"""The demo DAG: ingest one day of the demo source into Statsig (or the local emulator).

Trigger it with a `day` (YYYY-MM-DD); without one it ingests the latest complete Statsig day.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import DAG, Param

from statsig_airflow_provider.engine.spec import load_spec
from statsig_airflow_provider.operators.ingestion import IngestionOperator

SOURCE = load_spec(Path(__file__).parent / "sources" / "demo_events.yaml")

with DAG(
    dag_id="statsig_demo",
    description="Ingest a day of the demo source",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["statsig", "demo"],
    params={"day": Param(None, type=["null", "string"], format="date", title="Day (YYYY-MM-DD)")},
) as dag:
    IngestionOperator(task_id="ingest", source=SOURCE, days="{{ params.day or '' }}", progress_every_s=2)
