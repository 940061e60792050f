"""Read rows/s and peak memory per local warehouse stand-in, for a 1 M-row day.

Each stand-in lives in tests/benchmarks/standins/<name>.py and exposes
`load(workdir: Path, rows: int) -> None`, which puts `rows` rows for one day into the stand-in,
and `open(workdir: Path) -> ContextManager[tuple[WarehouseReader, str]]`, which yields a reader
and the day's SQL. Loading and reading run in separate fresh processes, so the peak RSS printed
is the reader's own; the stand-ins are not the real warehouses, so the only target is flat
memory (1 M vs 2 M rows, printed side by side).

    python -m tests.benchmarks.bench_warehouses [--rows 1000000] [--only duckdb,postgres]
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks import standins

COLUMNS = ("ts BIGINT, event_name VARCHAR, user_id BIGINT, stable_id VARCHAR, value DOUBLE, page VARCHAR, "
           "plan VARCHAR, props VARCHAR")


def sample_table(rows: int):
    """The benchmark's day: `rows` sample events (no bad rows), as an Arrow table."""
    import datetime as dt

    import duckdb

    from statsig_airflow_provider.sample_data import create_events_table

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "sample.duckdb"
        create_events_table(db, [dt.date(2026, 11, 30)], rows, bad_rows_per_day=0)
        con = duckdb.connect(str(db), read_only=True)
        try:
            return con.sql("SELECT * FROM events").to_arrow_table()
        finally:
            con.close()


def measure(name: str, workdir: Path) -> dict[str, object]:
    """Run in a child process: stream the stand-in's day and time the read alone."""
    module = importlib.import_module(f"tests.benchmarks.standins.{name}")
    with module.open(workdir) as (reader, sql):
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        count = sum(batch.num_rows for batch in reader.read_batches(sql))
        elapsed = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"standin": name, "rows": count, "seconds": round(elapsed, 3), "rows_per_s": round(count / elapsed),
            "peak_rss_mb": round(peak / 1024), "rss_before_read_mb": round(base / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", default="")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.load:
        importlib.import_module(f"tests.benchmarks.standins.{args.child}").load(args.workdir, args.rows)
        return
    if args.child:
        print(json.dumps(measure(args.child, args.workdir)))
        return
    names = [m.name for m in pkgutil.iter_modules(standins.__path__)]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    print(f"{'stand-in':<12} {'rows':>10} {'rows/s':>12} {'peak RSS MB':>12} {'peak RSS MB @2x':>16}")
    for name in names:
        results = []
        for rows in (args.rows, args.rows * 2):
            with tempfile.TemporaryDirectory() as tmp:
                child = [sys.executable, "-m", "tests.benchmarks.bench_warehouses", "--child", name,
                         "--rows", str(rows), "--workdir", tmp]
                out = subprocess.run([*child, "--load"], capture_output=True, text=True)
                if out.returncode == 0:
                    out = subprocess.run(child, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{name:<12} failed: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}")
                break
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if len(results) == 2:
            a, b = results
            print(f"{name:<12} {a['rows']:>10,} {a['rows_per_s']:>12,} {a['peak_rss_mb']:>12,} {b['peak_rss_mb']:>16,}"
                  f"   (memory ratio 2x/1x: {b['peak_rss_mb'] / a['peak_rss_mb']:.2f})")


if __name__ == "__main__":
    main()
