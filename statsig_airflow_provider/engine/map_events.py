"""Map and validate query rows as Statsig custom events, and write their `log_event` JSON.

Everything is vectorised over an Arrow batch except the one thing that is row-wise by nature:
parsing the optional metadata JSON column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from statsig_airflow_provider.engine import jsontext as jt
from statsig_airflow_provider.engine.columns import (
    MappingError,
    null_mask,
    plain,
    resolve_columns,
    to_epoch_ms,
    to_strings,
    true_mask,
)
from statsig_airflow_provider.engine.days import DayWindow, resolve_timezone
from statsig_airflow_provider.engine.rejects import BatchReasons
from statsig_airflow_provider.engine.spec import EventMapping, SourceSpec

FORBIDDEN_NAME_CHARS = r"[\\\[\]{}<>#=;&$%|\x00\n\r]"


@dataclass
class MappedEvents:
    """The valid rows of a batch as event JSON (each ending in ','), plus their identity keys."""

    rows: pa.Array  # string: `{"eventName":...},`
    identity: pa.Array  # string: time|name|ids, what makes two rows "the same event"
    reasons: BatchReasons

    def __len__(self) -> int:
        return len(self.rows)


class EventMapper:
    """Maps batches of one source's query result for one day."""

    def __init__(self, spec: SourceSpec, window: DayWindow) -> None:
        if not isinstance(spec.mapping, EventMapping):
            raise TypeError("EventMapper needs an events source")
        self.mapping: EventMapping = spec.mapping
        self.window = window
        self.validation = spec.validation
        self.naive_tz_name = spec.day.naive_timezone
        self.naive_tz = resolve_timezone(spec.day.naive_timezone)
        self.environment = spec.delivery.environment
        self._columns: dict[str, str] | None = None
        self._start_ms = window.start_epoch * 1000
        self._end_ms = window.end_epoch * 1000
        # user.userID first, the rest as customIDs, in a fixed order so identities are stable
        self._custom_units = sorted(u for u in self.mapping.ids if u != "userID")

    def reject_context(self) -> dict[str, object]:
        return {"max_len": self.validation.max_name_length, "max_metadata": self.validation.max_metadata_chars,
                "day_start": self.window.start.isoformat(), "day_end": self.window.end.isoformat()}

    def column(self, name: str) -> str:
        assert self._columns is not None
        return self._columns[name]

    def map(self, batch: pa.RecordBatch) -> MappedEvents:
        if self._columns is None:
            self._columns = resolve_columns(batch.schema, self.mapping.columns())
        m = self.mapping
        col = self.column
        get = lambda name: batch.column(col(name))  # noqa: E731
        n = batch.num_rows
        reasons = BatchReasons(n)
        max_len = self.validation.max_name_length

        name = to_strings(get(m.event_name), what=f"event_name column {col(m.event_name)!r}")
        reasons.flag(null_mask(name) | _eq(name, ""), "event_name_null", col(m.event_name))
        reasons.flag(_gt(pc.utf8_length(name), max_len), "event_name_too_long", col(m.event_name))
        reasons.flag(_match(name, FORBIDDEN_NAME_CHARS), "event_name_forbidden_char", col(m.event_name))

        ts_col = col(m.timestamp)
        raw_ts = get(m.timestamp)
        time_ms, ts_invalid, wrong_unit = to_epoch_ms(
            raw_ts, unit=m.timestamp_unit, naive_tz=self.naive_tz, naive_tz_name=self.naive_tz_name,
            day_tz=self.window.tz, what=f"timestamp column {ts_col!r}")
        reasons.flag(null_mask(raw_ts), "timestamp_null", ts_col)
        reasons.flag(ts_invalid, "timestamp_invalid", ts_col)
        reasons.flag(wrong_unit, "timestamp_milliseconds" if m.timestamp_unit == "s" else "timestamp_seconds",
                     ts_col)
        outside = pc.or_(pc.less(time_ms, self._start_ms), pc.greater_equal(time_ms, self._end_ms))
        reasons.flag(true_mask(outside), "timestamp_outside_day", ts_col)

        ids = {unit: to_strings(get(c), what=f"ID column {col(c)!r}", empty_is_null=True, is_id=True)
               for unit, c in m.ids.items()}
        no_id = np.logical_and.reduce([null_mask(v) for v in ids.values()])
        reasons.flag(no_id, "no_id", ",".join(col(c) for c in m.ids.values()))

        value_json = None
        if m.event_value:
            value_json = self._value_json(get(m.event_value), col(m.event_value), reasons)

        metadata = self._metadata_json(batch, n, reasons)

        keep = reasons.valid
        if not keep.all():
            mask = pa.array(keep)
            name, time_ms = name.filter(mask), time_ms.filter(mask)
            ids = {u: v.filter(mask) for u, v in ids.items()}
            value_json = value_json.filter(mask) if value_json is not None else None
            metadata = metadata.filter(mask) if metadata is not None else None
        time_text = time_ms.cast(pa.string())
        rows = self._rows(name, time_text, ids, value_json, metadata)
        id_parts = [part for u in ["userID", *self._custom_units] if u in ids for part in ("\x1f", ids[u])]
        identity = jt.concat_present(time_text, "\x1f", name, *id_parts)
        return MappedEvents(rows=rows, identity=identity, reasons=reasons)

    # ---------------------------------------------------------------------------------------
    def _value_json(self, raw: pa.Array, column: str, reasons: BatchReasons) -> pa.Array:
        raw = plain(raw)
        t = raw.type
        if pa.types.is_integer(t) or pa.types.is_decimal(t):
            return raw.cast(pa.string())
        if pa.types.is_floating(t):
            f = np.asarray(raw.to_numpy(zero_copy_only=False), dtype=np.float64)
            reasons.flag(~np.isfinite(f) & ~null_mask(raw), "event_value_not_finite", column)
            return raw.cast(pa.string())
        text = to_strings(raw, what=f"event_value column {column!r}")
        reasons.flag(_gt(pc.utf8_length(text), self.validation.max_name_length), "event_value_too_long", column)
        return jt.quote(text)

    def _metadata_json(self, batch: pa.RecordBatch, n: int, reasons: BatchReasons) -> pa.Array | None:
        m = self.mapping
        if not m.metadata and not m.metadata_json:
            return None
        values = {key: to_strings(batch.column(self.column(c)), what=f"metadata column {self.column(c)!r}")
                  for key, c in m.metadata.items()}
        members = [jt.string_member(key, v) for key, v in values.items()]
        if m.metadata_json:
            members.insert(0, self._json_column_members(batch, values, reasons))
        merged = jt.object_of(members, n)
        too_long = _gt(pc.utf8_length(merged), self.validation.max_metadata_chars)
        reasons.flag(too_long, "metadata_too_long", self.column(m.metadata_json) if m.metadata_json
                     else ",".join(self.column(c) for c in m.metadata.values()))
        return merged

    def _json_column_members(self, batch: pa.RecordBatch, columns: dict[str, pa.Array],
                             reasons: BatchReasons) -> pa.Array:
        """The JSON column unpacked one level deep, as `,"k":"v",...` members (nested values become
        JSON text, nulls are dropped). A key also mapped as a metadata column yields to that column
        where the column has a value."""
        column = self.column(self.mapping.metadata_json)  # type: ignore[arg-type]
        raw = to_strings(batch.column(column), what=f"metadata_json column {column!r}")
        n = len(raw)
        present = ~null_mask(raw)
        rows = np.flatnonzero(present)
        texts = raw.filter(pa.array(present))
        # Metadata JSON often repeats (a platform, a plan, an experiment arm): unpack each distinct
        # text once and spread the results, instead of parsing the same text row after row.
        uniques = pc.unique(texts)
        repeated = 2 * len(uniques) <= len(texts)
        unpacked = _unpack_json_objects((uniques if repeated else texts).to_pylist(), set(columns))
        position = (np.asarray(pc.index_in(texts, uniques).to_numpy(zero_copy_only=False)) if repeated
                    else np.arange(len(texts)))
        members = pa.array(unpacked.members, pa.binary()).take(pa.array(position))
        for kind, found in (("metadata_not_json", unpacked.not_json), ("metadata_not_object", unpacked.not_object)):
            reasons.flag(_at(rows[np.isin(position, found)], n), kind, column)
        if unpacked.shadowing:  # a JSON key also mapped as a column: the column wins where it has a value
            members = self._resolve_shadowing(members, texts, np.flatnonzero(np.isin(position, unpacked.shadowing)),
                                              rows, columns)
        return pc.replace_with_mask(pa.nulls(n, pa.string()), pa.array(present), members.cast(pa.string()))

    @staticmethod
    def _resolve_shadowing(members: pa.Array, texts: pa.Array, which: np.ndarray, rows: np.ndarray,
                           columns: dict[str, pa.Array]) -> pa.Array:
        """Re-unpack the few rows whose JSON repeats a metadata column's key, row by row."""
        column_null = {key: null_mask(v) for key, v in columns.items()}
        fixed = []
        for i in which.tolist():
            obj = _json_object(texts[i].as_py())
            for key in set(columns).intersection(obj):
                if not column_null[key][rows[i]]:
                    del obj[key]
            fixed.append(b"," + orjson.dumps(obj)[1:-1] if obj else None)
        mask = np.zeros(len(members), dtype=bool)
        mask[which] = True
        return pc.replace_with_mask(members, pa.array(mask), pa.array(fixed, pa.binary()))

    def _rows(self, name: pa.Array, time_text: pa.Array, ids: dict[str, pa.Array],
              value_json: pa.Array | None, metadata: pa.Array | None) -> pa.Array:
        n = len(name)
        user: list[pa.Array | str] = []
        if "userID" in ids:
            user.append(jt.string_member("userID", ids["userID"]))
        if self._custom_units:
            custom = jt.object_of([jt.string_member(u, ids[u]) for u in self._custom_units], n)
            user.append(jt.member("customIDs", custom))
        if self.environment:
            user.append(jt.member("statsigEnvironment", f'{{"tier":"{self.environment}"}}'))
        parts: list[pa.Array | str] = ['{"eventName":', jt.quote(name), ',"time":', time_text,
                                       ',"user":', jt.object_of(user, n)]
        if value_json is not None:
            parts.append(jt.member("value", value_json))
        if metadata is not None:
            parts.append(jt.member("metadata", metadata))
        parts.append("},")
        return jt.concat_present(*parts)


@dataclass
class _Unpacked:
    members: list[bytes | None]  # per text: `,"k":"v",...`, or None
    not_json: list[int]
    not_object: list[int]
    shadowing: list[int]  # texts with a key that is also mapped as a metadata column


def _json_object(text: str) -> dict[str, str]:
    """One level deep: nested values become their JSON text, nulls are dropped."""
    dumps = orjson.dumps
    return {k: v if type(v) is str else dumps(v).decode() for k, v in orjson.loads(text).items() if v is not None}


def _unpack_json_objects(texts: list[str], shadowed: set[str]) -> _Unpacked:
    """Unpack each JSON text. Row-wise by nature, so kept as lean as possible."""
    loads, dumps, decode_error = orjson.loads, orjson.dumps, orjson.JSONDecodeError
    result = _Unpacked([], [], [], [])
    out = result.members
    for i, text in enumerate(texts):
        try:
            parsed = loads(text)
        except decode_error:
            result.not_json.append(i)
            out.append(None)
            continue
        if type(parsed) is not dict:
            result.not_object.append(i)
            out.append(None)
            continue
        obj = {k: v if type(v) is str else dumps(v).decode() for k, v in parsed.items() if v is not None}
        if shadowed and not shadowed.isdisjoint(obj):
            result.shadowing.append(i)
        out.append(b"," + dumps(obj)[1:-1] if obj else None)
    return result


def _at(indices: list[int], length: int) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    mask[indices] = True
    return mask


def _eq(values: pa.Array, text: str) -> np.ndarray:
    return true_mask(pc.equal(values, text))


def _gt(values: pa.Array, limit: int) -> np.ndarray:
    return true_mask(pc.greater(values, limit))


def _match(values: pa.Array, pattern: str) -> np.ndarray:
    return true_mask(pc.match_substring_regex(values, pattern))


__all__ = ["EventMapper", "MappedEvents", "MappingError"]
