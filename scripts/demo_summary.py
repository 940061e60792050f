"""Print the demo run's report from the ledger and check the emulator against the warehouse."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import urllib.request

from statsig_airflow_provider import sample_data
from statsig_airflow_provider.engine.ledger import Ledger
from statsig_airflow_provider.engine.pipeline import DayReport


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--day", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--emulator", required=True)
    parser.add_argument("--source", default="demo_events")
    args = parser.parse_args()

    record = Ledger(args.ledger).get_day(args.source, args.day)
    if record is None or not record.last_report:
        print(f"no ledger entry for {args.source} {args.day}")
        return 1
    report = DayReport(**json.loads(record.last_report))
    print(report.summary())

    with urllib.request.urlopen(f"{args.emulator}/_emulator/events") as response:
        stored = sample_data.stored_events(response.read().splitlines())
    result = sample_data.compare_events(sample_data.expected_events(args.db, args.day), stored)
    print(f"\nemulator check: {result['stored']:,} events stored, {result['expected']:,} valid rows in the "
          f"warehouse; missing {result['missing']:,}, unexpected or duplicated {result['unexpected']:,} "
          f"(compared field by field: {', '.join(sample_data.EVENT_FIELDS)})")
    if not result["match"]:
        print(f"MISMATCH: {json.dumps(result, default=str)}")
        return 1
    print("OK: the emulator holds exactly the delivered rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
