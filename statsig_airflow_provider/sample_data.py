"""Sample product events in DuckDB, for the demo, the tests and the benchmarks.

Each day gets `rows_per_day` events in Statsig's day (UTC-8): several event names, an integer
user ID (absent for anonymous visitors) and a string stable ID, purchase values, two metadata
columns and a JSON properties column — plus a handful of deliberately bad rows, one per common
mistake, so validation has something to catch.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from statsig_airflow_provider.engine.days import DayWindow

EVENT_NAMES = ["page_view", "page_view", "page_view", "search", "add_to_cart", "purchase", "signup", "share"]

# (reason the row is bad, SQL expressions overriding the good row's columns)
BAD_ROWS: list[tuple[str, dict[str, str]]] = [
    ("event_name_null", {"event_name": "NULL"}),
    ("event_name_forbidden_char", {"event_name": "'add to cart; promo=1'"}),
    ("event_name_too_long", {"event_name": "repeat('x', 140)"}),
    ("timestamp_milliseconds", {"ts": "ts * 1000"}),
    ("timestamp_outside_day", {"ts": "ts - 86400 * 2"}),
    ("no_id", {"user_id": "NULL", "stable_id": "NULL"}),
    ("metadata_not_json", {"props": "'{\"referrer\": google'"}),
    ("metadata_not_object", {"props": "'[1, 2, 3]'"}),
]


def create_events_table(database: str | Path, days: list[dt.date], rows_per_day: int, *,
                        bad_rows_per_day: int = 2, table: str = "events") -> int:
    """Create (or replace) `table` with generated events for `days`; return the row count."""
    import duckdb

    con = duckdb.connect(str(database))
    try:
        con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute(f"""
            CREATE TABLE {table} (
                ds DATE, ts BIGINT, event_name VARCHAR, user_id BIGINT, stable_id VARCHAR,
                value DOUBLE, page VARCHAR, plan VARCHAR, props VARCHAR)""")
        names = "[" + ",".join(f"'{n}'" for n in EVENT_NAMES) + "]"
        for offset, day in enumerate(days):
            window = DayWindow.of(day, "statsig")
            seed = offset * 1_000_003
            con.execute(f"""
                INSERT INTO {table}
                SELECT
                    DATE '{day.isoformat()}' AS ds,
                    {window.start_epoch} + (h1 % 86400) AS ts,
                    {names}[1 + (h2 % {len(EVENT_NAMES)})] AS event_name,
                    CASE WHEN h3 % 10 = 0 THEN NULL ELSE 1000 + h3 % 50000 END AS user_id,
                    'dev-' || lpad(CAST(h4 % 90000 AS VARCHAR), 5, '0') AS stable_id,
                    CASE WHEN {names}[1 + (h2 % {len(EVENT_NAMES)})] = 'purchase'
                         THEN round((h5 % 20000) / 100.0, 2) END AS value,
                    '/' || ['home','search','product','cart','checkout'][1 + h5 % 5] AS page,
                    ['free','pro','enterprise'][1 + h1 % 3] AS plan,
                    CASE WHEN h4 % 4 = 0 THEN NULL
                         ELSE '{{"referrer":"' || ['google','direct','newsletter'][1 + h2 % 3]
                              || '","experiment":{{"arm":' || (h3 % 2) || '}}}}' END AS props
                FROM (
                    SELECT CAST(hash(i + {seed}) % 1000000007 AS BIGINT) AS h1,
                           CAST(hash(i * 7 + {seed}) % 1000000007 AS BIGINT) AS h2,
                           CAST(hash(i * 13 + {seed}) % 1000000007 AS BIGINT) AS h3,
                           CAST(hash(i * 31 + {seed}) % 1000000007 AS BIGINT) AS h4,
                           CAST(hash(i * 61 + {seed}) % 1000000007 AS BIGINT) AS h5
                    FROM range({rows_per_day}) t(i)
                )""")
            for i in range(bad_rows_per_day):
                for _reason, overrides in BAD_ROWS:
                    columns = ["ds", "ts", "event_name", "user_id", "stable_id", "value", "page", "plan", "props"]
                    select = ", ".join(overrides.get(c, c) for c in columns)
                    con.execute(f"""
                        INSERT INTO {table}
                        SELECT {select} FROM (
                            SELECT * FROM {table} WHERE ds = DATE '{day.isoformat()}'
                            AND ts >= {window.start_epoch} AND ts < {window.end_epoch}
                            AND event_name = 'page_view' AND user_id IS NOT NULL AND props IS NOT NULL
                            ORDER BY ts, stable_id LIMIT 1 OFFSET {i})""")
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


# ------------------------------------------------------------------------------------------
# An independent oracle: which rows of the sample table are valid, and what Statsig must hold
# for them, restated in SQL rather than through the provider's mapping code.

FORBIDDEN_EVENT_NAME_CHARS = r"[\\\[\]{}<>#=;&$%|\x00\n\r]"  # Statsig drops events whose names hold these
EVENT_FIELDS = ("eventName", "time", "userID", "stableID", "value", "page", "plan", "referrer", "experiment")


def expected_events(database: str | Path, day: dt.date, table: str = "events") -> list[tuple]:
    """The events a correct ingestion of `day` delivers, one tuple of EVENT_FIELDS per event."""
    import duckdb

    window = DayWindow.of(day, "statsig")
    con = duckdb.connect(str(database), read_only=True)
    try:
        return con.execute(f"""
            SELECT event_name, ts * 1000, CAST(user_id AS VARCHAR), NULLIF(stable_id, ''), value, page, plan,
                   json_extract_string(props, '$.referrer'), CAST(json_extract(props, '$.experiment') AS VARCHAR)
            FROM {table}
            WHERE ds = DATE '{day.isoformat()}'
              AND event_name IS NOT NULL AND event_name <> '' AND length(event_name) < 128
              AND NOT regexp_matches(event_name, ?)
              AND ts >= {window.start_epoch} AND ts < {window.end_epoch}
              AND (user_id IS NOT NULL OR NULLIF(stable_id, '') IS NOT NULL)
              AND (props IS NULL OR (json_valid(props) AND json_type(props) = 'OBJECT'))
        """, [FORBIDDEN_EVENT_NAME_CHARS]).fetchall()
    finally:
        con.close()


def stored_events(ndjson_lines: list[bytes]) -> list[tuple]:
    """Emulator events (NDJSON lines) as tuples of EVENT_FIELDS."""
    import orjson

    out = []
    for line in ndjson_lines:
        if not line.strip():
            continue
        e = orjson.loads(line)
        user, meta = e.get("user", {}), e.get("metadata", {})
        out.append((e["eventName"], e["time"], user.get("userID"), user.get("customIDs", {}).get("stableID"),
                    e.get("value"), meta.get("page"), meta.get("plan"), meta.get("referrer"), meta.get("experiment")))
    return out


def compare_events(expected: list[tuple], stored: list[tuple]) -> dict[str, object]:
    """Multiset comparison: what is missing from Statsig, what it holds that it should not."""
    from collections import Counter

    want, have = Counter(expected), Counter(stored)
    missing, extra = want - have, have - want
    return {"expected": len(expected), "stored": len(stored), "missing": sum(missing.values()),
            "unexpected": sum(extra.values()), "examples_missing": list(missing)[:3],
            "examples_unexpected": list(extra)[:3], "match": not missing and not extra}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate sample events into a DuckDB file.")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--day", required=True, type=dt.date.fromisoformat, help="first day (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--rows", type=int, default=300_000, help="rows per day")
    parser.add_argument("--bad-rows", type=int, default=2, help="bad rows of each kind per day")
    args = parser.parse_args(argv)
    args.db.parent.mkdir(parents=True, exist_ok=True)
    days = [args.day + dt.timedelta(days=i) for i in range(args.days)]
    total = create_events_table(args.db, days, args.rows, bad_rows_per_day=args.bad_rows)
    print(f"wrote {total:,} events for {days[0]}..{days[-1]} into {args.db}")


if __name__ == "__main__":
    main()
