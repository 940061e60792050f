"""Day windows and day queries; the rendered SQL is run on real DuckDB, not just compared as text."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pytest

from statsig_airflow_provider.engine.days import DayWindow, latest_complete_day, resolve_timezone
from statsig_airflow_provider.engine.spec import SourceSpec
from statsig_airflow_provider.engine.sql import count_query, day_query, macro_values, sample_query

DAY = dt.date(2026, 3, 8)  # the US spring-forward day: 23 hours in America/Los_Angeles


def test_statsig_day_is_fixed_utc_minus_8() -> None:
    w = DayWindow.of(DAY, "statsig")
    assert w.start == dt.datetime(2026, 3, 8, 8, tzinfo=dt.timezone.utc)
    assert w.end - w.start == dt.timedelta(hours=24)
    la = DayWindow.of(DAY, "America/Los_Angeles")
    assert la.end - la.start == dt.timedelta(hours=23)
    now = dt.datetime(2026, 3, 9, 7, 59, tzinfo=dt.timezone.utc)  # 23:59 on the 8th in UTC-8
    assert latest_complete_day(now, "statsig") == dt.date(2026, 3, 7)
    with pytest.raises(ValueError, match="unknown timezone"):
        resolve_timezone("Nowhere/Atlantis")


@pytest.mark.parametrize(("dialect", "day", "start"), [
    ("duckdb", "CAST('2026-03-08' AS DATE)", "CAST('2026-03-08 08:00:00+00:00' AS TIMESTAMPTZ)"),
    ("snowflake", "CAST('2026-03-08' AS DATE)", "CAST('2026-03-08 08:00:00+00:00' AS TIMESTAMPTZ)"),
    ("bigquery", "CAST('2026-03-08' AS DATE)", "CAST('2026-03-08 08:00:00+00:00' AS TIMESTAMP)"),
    ("tsql", "CAST('2026-03-08' AS DATE)", "CAST('2026-03-08 08:00:00+00:00' AS DATETIMEOFFSET)"),
    ("sqlite", "'2026-03-08'", "'2026-03-08 08:00:00'"),
])
def test_macros_render_typed_literals_per_dialect(dialect: str, day: str, start: str) -> None:
    values = macro_values(DayWindow.of(DAY, "statsig"), dialect)
    assert values["day"] == day
    assert values["day_start"] == start
    assert values["day_start_epoch"] == str(int(dt.datetime(2026, 3, 8, 8, tzinfo=dt.timezone.utc).timestamp()))


def _spec(sql: str, column: str = "t", column_type: str = "auto", tz: str = "statsig", **mapping: str) -> SourceSpec:
    return SourceSpec.from_dict({
        "name": "s", "warehouse": {"conn_id": "wh"}, "sql": sql,
        "mapping": {"timestamp": column, "event_name": "n", "ids": {"userID": "u"}, **mapping},
        "day": {"timezone": tz, "column_type": column_type}})


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'Asia/Tokyo'")  # a session zone that must not leak into day scoping
    # one row at each edge of the UTC-8 day 2026-03-08 and one just outside each edge
    c.execute("""
        CREATE TABLE ev AS SELECT * FROM (VALUES
            (TIMESTAMPTZ '2026-03-08 07:59:59+00', 'before'), (TIMESTAMPTZ '2026-03-08 08:00:00+00', 'first'),
            (TIMESTAMPTZ '2026-03-09 07:59:59+00', 'last'), (TIMESTAMPTZ '2026-03-09 08:00:00+00', 'after')
        ) v(t, n)""")
    c.execute("""CREATE TABLE typed AS SELECT t, n, 'u' AS u, t::TIMESTAMPTZ AT TIME ZONE 'UTC' AS naive,
                 epoch(t)::BIGINT AS secs, epoch_ms(t) AS millis,
                 CAST(t AT TIME ZONE 'Etc/GMT+8' AS DATE) AS d,
                 strftime(t AT TIME ZONE 'Etc/GMT+8', '%Y-%m-%d') AS ds FROM ev""")
    return c


@pytest.mark.parametrize("column", ["t", "naive", "secs", "millis", "d", "ds"])
def test_wrapped_filter_selects_exactly_the_day(con: duckdb.DuckDBPyConnection, column: str) -> None:
    spec = _spec("SELECT * FROM typed", column=column, timestamp_unit="ms" if column == "millis" else "s")
    schema = con.sql("SELECT * FROM typed LIMIT 0").to_arrow_table().schema
    query = day_query(spec, DayWindow.of(DAY, "statsig"), "duckdb", column=column,
                      column_arrow_type=schema.field(column).type)
    names = sorted(r[0] for r in con.sql(f"SELECT n FROM ({query.sql})").fetchall())
    assert names == ["first", "last"], query.sql
    assert con.execute(count_query(query.sql)).fetchall()[0][0] == 2


def test_macro_query_runs_and_non_default_timezone(con: duckdb.DuckDBPyConnection) -> None:
    spec = _spec("SELECT * FROM ev WHERE t >= {day_start} AND t < {day_end}", tz="Asia/Kolkata")
    window = DayWindow.of(dt.date(2026, 3, 8), "Asia/Kolkata")  # 2026-03-07 18:30Z .. 2026-03-08 18:30Z
    query = day_query(spec, window, "duckdb")
    assert query.scoping == "macros"
    assert sorted(r[0] for r in con.sql(f"SELECT n FROM ({query.sql})").fetchall()) == ["before", "first"]
    limited = sample_query(query.sql, "duckdb", 1)
    assert len(con.sql(limited).fetchall()) == 1


def test_epoch_macros_filter_an_integer_column(con: duckdb.DuckDBPyConnection) -> None:
    spec = _spec("SELECT * FROM typed WHERE secs >= {day_start_epoch} AND secs < {day_end_epoch}", column="secs")
    query = day_query(spec, DayWindow.of(DAY, "statsig"), "duckdb")
    assert sorted(r[0] for r in con.sql(f"SELECT n FROM ({query.sql})").fetchall()) == ["first", "last"]


def test_auto_needs_the_probe_type_and_rejects_unfilterable_types() -> None:
    spec = _spec("SELECT * FROM typed")
    with pytest.raises(ValueError, match="probe"):
        day_query(spec, DayWindow.of(DAY, "statsig"), "duckdb")
    with pytest.raises(ValueError, match="cannot filter a day"):
        day_query(spec, DayWindow.of(DAY, "statsig"), "duckdb", column="t", column_arrow_type=pa.bool_())


def test_trailing_semicolon_and_comment_survive_wrapping(con: duckdb.DuckDBPyConnection) -> None:
    spec = _spec("SELECT * FROM typed -- the events\n;", column="secs", column_type="epoch_seconds")
    query = day_query(spec, DayWindow.of(DAY, "statsig"), "duckdb")
    assert len(con.sql(query.sql).fetchall()) == 2
