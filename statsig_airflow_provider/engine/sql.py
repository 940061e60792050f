"""Turning a source's SQL into the queries for one day, in the warehouse's own dialect.

The user's SQL is never rewritten: day macros are replaced by typed literals that sqlglot
renders for the dialect, or the query is wrapped in a filter on the day column. The values that
go into SQL are dates and instants computed here, never user strings.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import sqlglot
from sqlglot import exp

from statsig_airflow_provider.engine.days import UTC, DayWindow, resolve_timezone
from statsig_airflow_provider.engine.spec import MACRO_RE, SourceSpec

SOURCE_ALIAS = "statsig_src"


def _timestamp_literal(value: dt.datetime, dialect: str, *, with_zone: bool) -> str:
    text = value.isoformat(sep=" ")
    if dialect == "sqlite":  # no temporal types: SQLite compares ISO text ("YYYY-MM-DD HH:MM:SS")
        return exp.Literal.string(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if with_zone
                                  else value.strftime("%Y-%m-%d %H:%M:%S")).sql(dialect)
    kind = "TIMESTAMPTZ" if with_zone else "TIMESTAMP"
    return exp.cast(exp.Literal.string(text), exp.DataType.build(kind)).sql(dialect)


def _date_literal(day: dt.date, dialect: str) -> str:
    if dialect == "sqlite":
        return exp.Literal.string(day.isoformat()).sql(dialect)
    return exp.cast(exp.Literal.string(day.isoformat()), exp.DataType.build("DATE")).sql(dialect)


def macro_values(window: DayWindow, dialect: str) -> dict[str, str]:
    """SQL text for each day macro, in `dialect`."""
    start_utc = window.start.replace(tzinfo=None)
    end_utc = window.end.replace(tzinfo=None)
    return {
        "day": _date_literal(window.day, dialect),
        "day_start": _timestamp_literal(window.start, dialect, with_zone=True),
        "day_end": _timestamp_literal(window.end, dialect, with_zone=True),
        "day_start_utc": _timestamp_literal(start_utc, dialect, with_zone=False),
        "day_end_utc": _timestamp_literal(end_utc, dialect, with_zone=False),
        "day_start_epoch": str(window.start_epoch),
        "day_end_epoch": str(window.end_epoch),
    }


def _strip(sql: str) -> str:
    return sql.strip().rstrip(";").rstrip()


def render_macros(sql: str, window: DayWindow, dialect: str) -> str:
    values = macro_values(window, dialect)
    return MACRO_RE.sub(lambda m: values[m.group(1)], _strip(sql))


def column_type_from_arrow(arrow_type: pa.DataType, *, timestamp_unit: str = "s") -> str:
    """The day-filter kind for a column of this Arrow type (see DayScope.column_type)."""
    if pa.types.is_timestamp(arrow_type):
        return "timestamp_tz" if arrow_type.tz else "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "epoch_millis" if timestamp_unit == "ms" else "epoch_seconds"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "date_string"
    raise ValueError(f"cannot filter a day on a column of type {arrow_type}")


def day_condition(column: str, column_type: str, window: DayWindow, dialect: str, naive_timezone: str) -> str:
    """A WHERE condition selecting `window` on `column` of the given kind."""
    col = exp.column(column, quoted=True).sql(dialect)
    if column_type == "timestamp_tz":
        lo = _timestamp_literal(window.start, dialect, with_zone=True)
        hi = _timestamp_literal(window.end, dialect, with_zone=True)
    elif column_type == "timestamp":
        start, end = window.naive_bounds(resolve_timezone(naive_timezone))
        lo = _timestamp_literal(start, dialect, with_zone=False)
        hi = _timestamp_literal(end, dialect, with_zone=False)
    elif column_type in ("epoch_seconds", "epoch_millis"):
        scale = 1000 if column_type == "epoch_millis" else 1
        lo, hi = str(window.start_epoch * scale), str(window.end_epoch * scale)
    elif column_type == "date":
        return f"{col} = {_date_literal(window.day, dialect)}"
    elif column_type == "date_string":
        return f"{col} = {exp.Literal.string(window.day.isoformat()).sql(dialect)}"
    else:
        raise ValueError(f"unknown day column type {column_type!r}")
    return f"{col} >= {lo} AND {col} < {hi}"


def wrap(sql: str, condition: str | None = None) -> str:
    """SELECT * over the user's query, optionally filtered; the newline guards a trailing comment."""
    where = f" WHERE {condition}" if condition else ""
    return f"SELECT * FROM (\n{_strip(sql)}\n) AS {SOURCE_ALIAS}{where}"


def probe_query(sql: str) -> str:
    """Zero rows with the query's schema (macros must already be rendered)."""
    return wrap(sql, "1 = 0")


def count_query(day_sql: str) -> str:
    return f"SELECT COUNT(*) AS statsig_rows FROM (\n{_strip(day_sql)}\n) AS statsig_day"


def sample_query(day_sql: str, dialect: str, rows: int) -> str:
    inner = f"(\n{_strip(day_sql)}\n) AS statsig_day"
    if dialect == "tsql":
        return f"SELECT TOP {int(rows)} * FROM {inner}"
    return f"SELECT * FROM {inner} LIMIT {int(rows)}"


@dataclass(frozen=True)
class DayQuery:
    """The SQL that reads one day, and how it was scoped (for logs and errors)."""

    sql: str
    scoping: str  # "macros" or "filter on <column> (<type>)"


def day_query(spec: SourceSpec, window: DayWindow, dialect: str, *, column: str | None = None,
              column_arrow_type: pa.DataType | None = None) -> DayQuery:
    """The query for one day: macros rendered, or the query wrapped with a day filter.

    `column` is the day column as the query result spells it (warehouses differ in case) and
    `column_arrow_type` its type, both from a probe of the query; the type is needed only when the
    spec leaves `day.column_type` on "auto" and the query has no macros.
    """
    if spec.uses_macros:
        return DayQuery(render_macros(spec.sql, window, dialect), "macros")
    column_type = spec.day.column_type
    if column_type == "auto":
        if column_arrow_type is None:
            raise ValueError("the day column's type is needed to filter the query (probe it first)")
        unit = getattr(spec.mapping, "timestamp_unit", "s")
        column_type = column_type_from_arrow(column_arrow_type, timestamp_unit=unit)
    elif column_type == "timestamp" and column_arrow_type is not None and getattr(column_arrow_type, "tz", None):
        column_type = "timestamp_tz"
    column = column or spec.day_column
    condition = day_condition(column, column_type, window, dialect, spec.day.naive_timezone)
    return DayQuery(wrap(spec.sql, condition), f"filter on {column} ({column_type})")


def transpile(sql: str, read: str, write: str) -> str:
    """Translate SQL between dialects (used by tests that run warehouse SQL on DuckDB)."""
    return sqlglot.transpile(sql, read=read, write=write)[0]
