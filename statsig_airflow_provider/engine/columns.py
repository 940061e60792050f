"""Column casts that Statsig performs, done vectorised on Arrow arrays.

Each cast returns the converted array plus boolean masks for the rows that could not be
converted, so the mapper can reject exactly those rows with a reason instead of failing a day.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from statsig_airflow_provider.engine.days import UTC

MS_THRESHOLD = 100_000_000_000  # 1e11: as seconds that is the year 5138, as milliseconds 1973
_NUMERIC_RE = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
_DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


class MappingError(ValueError):
    """The query result cannot be mapped at all (a missing column, an unusable type)."""


def resolve_columns(schema: pa.Schema, roles: dict[str, str]) -> dict[str, str]:
    """Map each mapped column name to the result's spelling: exact match, else a unique case-insensitive one.

    Warehouses disagree on case (Snowflake upper-cases unquoted names), so `user_id` finds `USER_ID`.
    """
    names = schema.names
    by_lower: dict[str, list[str]] = {}
    for name in names:
        by_lower.setdefault(name.lower(), []).append(name)
    resolved, missing = {}, []
    for column, role in roles.items():
        if column in names:
            resolved[column] = column
        elif len(by_lower.get(column.lower(), [])) == 1:
            resolved[column] = by_lower[column.lower()][0]
        else:
            missing.append(f"{column!r} (mapped as {role})")
    if missing:
        raise MappingError(f"column {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in the "
                           f"query result; the query returns: {', '.join(names) or '(no columns)'}")
    return resolved


def plain(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array with dictionary, large and view string types reduced to plain ones."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_large_string(values.type) or pa.types.is_string_view(values.type):
        values = values.cast(pa.string())
    return values


def true_mask(values: pa.Array) -> np.ndarray:
    """A boolean array as numpy, with nulls as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def null_mask(values: pa.Array) -> np.ndarray:
    return true_mask(pc.is_null(values))


_TEXT_CASTABLE = (pa.types.is_floating, pa.types.is_decimal, pa.types.is_boolean, pa.types.is_date,
                  pa.types.is_timestamp, pa.types.is_time)


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def to_strings(values: pa.Array, *, what: str, empty_is_null: bool = False, is_id: bool = False) -> pa.Array:
    """Statsig's STRING cast: integers and other scalars become their text.

    For IDs (`is_id`), a float column holding only whole numbers becomes integer text ("42", not
    "42.0"), so IDs match the ones SDKs log.
    """
    values = plain(values)
    t = values.type
    if pa.types.is_null(t):
        return pa.nulls(len(values), pa.string())
    if pa.types.is_string(t):
        out = values
    elif pa.types.is_integer(t) or (pa.types.is_decimal(t) and t.scale == 0):
        out = values.cast(pa.string())
    elif is_id and (pa.types.is_floating(t) or pa.types.is_decimal(t)):
        as_float = values.cast(pa.float64())
        integral = pc.equal(pc.floor(as_float), as_float)
        if pc.all(pc.fill_null(integral, True)).as_py() and pc.all(
                pc.fill_null(pc.less(pc.abs(as_float), 2.0**53), True)).as_py():
            out = as_float.cast(pa.int64()).cast(pa.string())
        else:
            out = values.cast(pa.string())
    elif any(check(t) for check in _TEXT_CASTABLE):
        out = values.cast(pa.string())
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        raise MappingError(f"{what} is binary ({t}); cast it to a string in the query")
    else:
        raise MappingError(f"{what} has type {t}, which Statsig cannot store as a string; "
                           "cast it in the query (or map JSON through metadata_json)")
    if empty_is_null:
        out = pc.if_else(pc.equal(out, ""), pa.scalar(None, pa.string()), out)
    return out


def to_epoch_ms(values: pa.Array, *, unit: str, naive_tz: dt.tzinfo, naive_tz_name: str,
                day_tz: dt.tzinfo, what: str) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Event time in epoch milliseconds.

    Returns (ms, invalid, wrong_unit): `invalid` marks values that are not a time at all, and
    `wrong_unit` values that look like milliseconds when seconds were mapped (or the reverse).
    """
    values = plain(values)
    t = values.type
    n = len(values)
    none = np.zeros(n, dtype=bool)
    if pa.types.is_null(t):
        return pa.nulls(n, pa.int64()), none, none
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _numeric_epoch_ms(values, unit)
    if pa.types.is_timestamp(t):
        if t.tz is None and naive_tz is not UTC and naive_tz_name.upper() != "UTC":
            values = pc.assume_timezone(values, _arrow_tz_name(naive_tz, naive_tz_name),
                                        ambiguous="earliest", nonexistent="earliest")
        per_ms = {"s": 1 / 1000, "ms": 1, "us": 1000, "ns": 1_000_000}[values.type.unit]
        raw = values.cast(pa.int64())
        ms = raw if per_ms == 1 else (pc.multiply(raw, 1000) if per_ms < 1 else _floor_div(raw, int(per_ms)))
        return ms, none, none
    if pa.types.is_date(t):
        return _dates_to_ms(values, day_tz), none, none
    if pa.types.is_string(t):
        return _strings_to_ms(values, unit, naive_tz)
    raise MappingError(f"{what} has type {t}; map epoch seconds (BIGINT), a TIMESTAMP, a DATE or ISO-8601 text")


def _floor_div(values: pa.Array, divisor: int) -> pa.Array:
    arr = values.to_numpy(zero_copy_only=False)
    mask = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out = np.floor_divide(np.where(mask, 0, arr).astype(np.int64), divisor)
    return pa.array(out, pa.int64(), mask=mask)


def _arrow_tz_name(tz: dt.tzinfo, name: str) -> str:
    if isinstance(tz, dt.timezone):
        offset = tz.utcoffset(None)
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return name


def _numeric_epoch_ms(values: pa.Array, unit: str) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    as_float = values.cast(pa.float64()) if not pa.types.is_integer(values.type) else None
    n = len(values)
    if as_float is not None:
        f = np.asarray(as_float.to_numpy(zero_copy_only=False), dtype=np.float64)
        nulls = null_mask(values)
        f = np.where(nulls, 0.0, f)
        invalid = ~np.isfinite(f) & ~nulls
        f = np.where(invalid, 0.0, f)
    else:
        nulls = null_mask(values)
        f = np.where(nulls, 0, np.asarray(values.cast(pa.int64()).to_numpy(zero_copy_only=False)))
        invalid = np.zeros(n, dtype=bool)
    big = np.abs(f) >= MS_THRESHOLD
    if unit == "s":
        wrong_unit = big & ~nulls & ~invalid
        scaled = np.where(wrong_unit, 0, f)
        ms = np.rint(scaled * 1000).astype(np.int64) if as_float is not None else scaled.astype(np.int64) * 1000
    else:
        wrong_unit = ~big & ~nulls & ~invalid
        ms = np.rint(f).astype(np.int64) if as_float is not None else f.astype(np.int64)
    return pa.array(ms, pa.int64(), mask=nulls | invalid | wrong_unit), invalid, wrong_unit


def _dates_to_ms(values: pa.Array, tz: dt.tzinfo) -> pa.Array:
    """Midnight of each date in the day's timezone, so a DATE lands on that day."""
    values = values.cast(pa.date32())
    uniques = pc.unique(values)
    epoch_ms = [
        None if d is None else int(dt.datetime.combine(d, dt.time(0), tz).timestamp() * 1000)
        for d in uniques.to_pylist()
    ]
    return pc.take(pa.array(epoch_ms, pa.int64()), pc.index_in(values, uniques))


def _strings_to_ms(values: pa.Array, unit: str, naive_tz: dt.tzinfo) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Numeric text goes the epoch way; anything else must be ISO-8601 (a rare, row-wise path)."""
    numeric = true_mask(pc.match_substring_regex(values, _NUMERIC_RE))
    out: list[int | None] = []
    invalid = np.zeros(len(values), dtype=bool)
    wrong_unit = np.zeros(len(values), dtype=bool)
    for i, text in enumerate(values.to_pylist()):
        if text is None:
            out.append(None)
            continue
        if numeric[i]:
            number = float(text)
            big = abs(number) >= MS_THRESHOLD
            if (unit == "s" and big) or (unit == "ms" and not big):
                wrong_unit[i] = True
                out.append(None)
            else:
                out.append(round(number * 1000) if unit == "s" else round(number))
            continue
        try:
            parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            invalid[i] = True
            out.append(None)
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=naive_tz)
        out.append(math.floor(parsed.timestamp() * 1000))
    return pa.array(out, pa.int64()), invalid, wrong_unit


def to_float(values: pa.Array, *, what: str) -> tuple[pa.Array, np.ndarray]:
    """Statsig's DOUBLE cast; returns (values, not_numeric) where text or NaN/inf is not a number."""
    values = plain(values)
    t = values.type
    n = len(values)
    if pa.types.is_null(t):
        return pa.nulls(n, pa.float64()), np.zeros(n, dtype=bool)
    if _is_numeric(t) or pa.types.is_boolean(t):
        out = values.cast(pa.float64())
    elif pa.types.is_string(t):
        ok = pc.match_substring_regex(values, _NUMERIC_RE)
        out = pc.if_else(ok, values, pa.scalar(None, pa.string())).cast(pa.float64())
    else:
        raise MappingError(f"{what} has type {t}; map a numeric column")
    arr = np.asarray(out.to_numpy(zero_copy_only=False), dtype=np.float64)
    given = ~null_mask(values)
    bad = given & ~np.isfinite(np.where(np.isnan(arr) & ~given, 0.0, arr))
    return pa.array(np.where(bad, np.nan, arr), pa.float64(), mask=~given | bad), bad


def to_dates(values: pa.Array, *, tz: dt.tzinfo, what: str) -> tuple[pa.Array, np.ndarray]:
    """Statsig's DATE cast (DATE, TIMESTAMP or 'YYYY-MM-DD'); returns (date32, invalid)."""
    values = plain(values)
    t = values.type
    n = len(values)
    none = np.zeros(n, dtype=bool)
    if pa.types.is_null(t):
        return pa.nulls(n, pa.date32()), none
    if pa.types.is_date(t):
        return values.cast(pa.date32()), none
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            values = pc.local_timestamp(values.cast(pa.timestamp(t.unit, tz=_arrow_tz_name(tz, str(tz)))))
        return values.cast(pa.date32()), none
    if pa.types.is_string(t):
        shaped = true_mask(pc.match_substring_regex(values, _DATE_RE))
        if shaped.sum() == n - null_mask(values).sum():
            try:
                return values.cast(pa.date32()), none
            except pa.ArrowInvalid:
                pass  # an impossible date such as 2024-02-30: find it row by row below
        out: list[dt.date | None] = []
        invalid = np.zeros(n, dtype=bool)
        for i, text in enumerate(values.to_pylist()):
            if text is None:
                out.append(None)
                continue
            try:
                out.append(dt.date.fromisoformat(text) if shaped[i] else None)
                invalid[i] = not shaped[i]
            except ValueError:
                invalid[i] = True
                out.append(None)
        return pa.array(out, pa.date32()), invalid
    raise MappingError(f"{what} has type {t}; map a DATE or 'YYYY-MM-DD' text")
