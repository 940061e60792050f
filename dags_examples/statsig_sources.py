"""Every Statsig source under ./sources becomes DAGs: statsig__<source> (daily run + reload window),
statsig__<source>__backfill (trigger form), and statsig__data_ready (API-triggered runs).

STATSIG_SOURCES_PATH points the factory at another folder or file of specs (a local path: parsing
never reaches a warehouse, the network or Airflow Variables).
"""

from __future__ import annotations

import os
from pathlib import Path

from statsig_airflow_provider.dag_factory import build_dags

build_dags(os.environ.get("STATSIG_SOURCES_PATH") or Path(__file__).parent / "sources", globals())
