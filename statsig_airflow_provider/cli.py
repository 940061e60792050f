"""`statsig-airflow`: the ledger at a glance, and settling ambiguous deliveries by hand.

    statsig-airflow status [--source NAME] [--since YYYY-MM-DD] [--ledger-url URL]
    statsig-airflow resolve-ambiguous --source NAME --day YYYY-MM-DD --as delivered|resend

Without --ledger-url the ledger is the one Airflow's `[statsig]` settings name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.days import parse_day

COLUMNS = ("source", "day", "status", "warehouse", "delivered", "rejected", "ambiguous", "vanished", "reloads",
           "last run")


def _ledger(url: str | None) -> L.Ledger:
    if url:
        return L.Ledger(url)
    from statsig_airflow_provider.settings import get_ledger

    return get_ledger()


def status_rows(records: Sequence[L.DayRecord]) -> list[tuple[str, ...]]:
    def n(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    rows = []
    for r in records:
        when = r.last_ingested_at or r.updated_at
        last = f"{when:%Y-%m-%d %H:%M} UTC" if when else "-"
        if r.last_reason or r.last_run_id:
            last += f" {r.last_reason or ''} {r.last_run_id or ''}".rstrip()
        rows.append((r.source, r.day.isoformat(), r.status, n(r.warehouse_count), n(r.delivered), n(r.rejected),
                     n(r.ambiguous), n(r.vanished), str(r.reload_count or 0), last))
    return rows


def render(rows: list[tuple[str, ...]]) -> str:
    table = [COLUMNS, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    numeric = {3, 4, 5, 6, 7, 8}
    lines = ["  ".join(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                       for i, cell in enumerate(row)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="statsig-airflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledger-url", default=None, help="SQLAlchemy URL of the ledger")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="per source × day: status, counts, reloads, last run")
    status.add_argument("--source")
    status.add_argument("--since", type=parse_day, help="first day to show (default: 30 days ago)")
    resolve = commands.add_parser("resolve-ambiguous", help="settle ambiguous requests of a day")
    resolve.add_argument("--source", required=True)
    resolve.add_argument("--day", required=True, type=parse_day)
    resolve.add_argument("--as", dest="outcome", required=True, choices=("delivered", "resend"),
                         help="delivered: Statsig has them (never send again); resend: send them next run")
    args = parser.parse_args(argv)
    ledger = _ledger(args.ledger_url)
    if args.command == "status":
        since = args.since or dt.date.today() - dt.timedelta(days=30)
        records = ledger.days(args.source, since=since)
        print(render(status_rows(records)) if records else f"no ledger entries since {since}")
        return 0
    changed = ledger.resolve_ambiguous(args.source, args.day,
                                       as_status=L.DELIVERED if args.outcome == "delivered" else L.FAILED)
    print(f"{changed} ambiguous request(s) of {args.source} {args.day} settled as {args.outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
