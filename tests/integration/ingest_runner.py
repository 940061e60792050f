"""Run one ingestion in a separate process (the kill tests stop it mid-delivery).

SIGTERM is how Airflow stops a task: it sets the cancel event, requests in flight finish and are
recorded, and the process exits. SIGKILL gives no such chance.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from statsig_airflow_provider.engine.ledger import Ledger
from statsig_airflow_provider.engine.pipeline import EventsTarget, IngestionError, RunOptions, ingest_day
from statsig_airflow_provider.engine.readers import DuckDBReader
from statsig_airflow_provider.engine.spec import SourceSpec
from statsig_airflow_provider.engine.statsig_client import LogEventClient


def main() -> int:
    p = argparse.ArgumentParser()
    for name in ("spec", "day", "db", "ledger", "events-url", "key", "rejects", "run-id", "report"):
        p.add_argument(f"--{name}", required=True)
    a = p.parse_args()
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    spec = SourceSpec.from_dict(json.loads(a.spec))
    target = EventsTarget(lambda: LogEventClient(a.key, a.events_url))
    options = RunOptions(run_id=a.run_id, rejects_dir=Path(a.rejects), cancel=cancel, log=print,
                         progress_every_s=0.5, batch_rows=2_000)
    try:
        report = ingest_day(spec, a.day, DuckDBReader(a.db), target, Ledger(a.ledger), options)
    except IngestionError as exc:
        report = exc.report
    Path(a.report).write_text(json.dumps(report.to_dict()))
    print("finished", report.status, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
