"""Rejected rows: why each row was refused, how many per reason, and the rejects file.

A row is never dropped silently: it is delivered, or it is rejected here with a reason code and
the column at fault, counted, and written (with its original values) to a Parquet file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REASONS: dict[str, str] = {
    "event_name_null": "event_name is null or empty",
    "event_name_too_long": "event_name is longer than {max_len} characters (Statsig needs fewer than 128)",
    "event_name_forbidden_char": ("event_name contains a character Statsig drops events for "
                                  "(\\ [ ] {{ }} < > # = ; & $ % | or a control character)"),
    "timestamp_null": "timestamp is null",
    "timestamp_invalid": "timestamp is not epoch seconds, a TIMESTAMP, a DATE or ISO-8601 text",
    "timestamp_milliseconds": ("timestamp looks like epoch milliseconds but Statsig expects epoch seconds: "
                               "divide by 1000 in the query, or set mapping.timestamp_unit: ms"),
    "timestamp_seconds": ("timestamp looks like epoch seconds but mapping.timestamp_unit is ms: "
                          "set timestamp_unit: s"),
    "timestamp_outside_day": "timestamp falls outside the day being loaded ({day_start} to {day_end})",
    "no_id": "the row has no ID: every mapped ID column is null or empty",
    "event_value_too_long": "event_value is longer than {max_len} characters (Statsig needs fewer than 128)",
    "event_value_not_finite": "event_value is NaN or infinite",
    "metadata_not_json": "metadata_json is not valid JSON",
    "metadata_not_object": "metadata_json is JSON but not an object ({{...}})",
    "metadata_too_long": "metadata is longer than {max_metadata} characters once stringified",
    "unit_id_null": "unit_id is null or empty",
    "id_type_null": "id_type is null or empty",
    "id_type_unknown": "id_type is not one of the project's ID types {id_types} (it is case-sensitive)",
    "date_null": "date is null",
    "date_invalid": "date is not a DATE or 'YYYY-MM-DD' text",
    "date_outside_day": "date is not the day being loaded ({day})",
    "metric_name_null": "metric_name is null or empty",
    "metric_name_too_long": "metric_name is longer than {max_len} characters (Statsig needs fewer than 128)",
    "metric_value_not_numeric": "a metric value is not a number (or is NaN/infinite)",
    "metric_value_missing": "the row has neither metric_value nor numerator and denominator",
    "ratio_incomplete": "the row has only one of numerator and denominator",
}


@dataclass(frozen=True)
class RejectLabel:
    code: str
    column: str


class BatchReasons:
    """The first failing rule for every row of one batch (0 = the row is valid)."""

    def __init__(self, length: int) -> None:
        self.codes = np.zeros(length, dtype=np.int16)
        self.labels: list[RejectLabel | None] = [None]

    def flag(self, bad: np.ndarray, code: str, column: str) -> None:
        hit = bad & (self.codes == 0)
        if hit.any():
            self.labels.append(RejectLabel(code, column))
            self.codes[hit] = len(self.labels) - 1

    @property
    def valid(self) -> np.ndarray:
        return self.codes == 0

    def rejected_indices(self) -> np.ndarray:
        return np.flatnonzero(self.codes)

    def counts(self) -> dict[RejectLabel, int]:
        if not self.codes.any():
            return {}
        counts = np.bincount(self.codes, minlength=len(self.labels))
        return {label: int(counts[i]) for i, label in enumerate(self.labels) if label and counts[i]}


@dataclass
class RejectTally:
    """Rejected rows for a whole day, by reason and column."""

    counts: dict[RejectLabel, int] = field(default_factory=dict)
    context: dict[str, object] = field(default_factory=dict)

    def add(self, counts: dict[RejectLabel, int]) -> None:
        for label, n in counts.items():
            self.counts[label] = self.counts.get(label, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def message(self, code: str) -> str:
        try:
            return REASONS[code].format(**self.context)
        except (KeyError, IndexError):
            return REASONS.get(code, code)

    def as_list(self) -> list[dict[str, object]]:
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0].code, kv[0].column))
        return [{"reason": label.code, "column": label.column, "rows": n, "message": self.message(label.code)}
                for label, n in ordered]

    def describe(self) -> str:
        return "; ".join(f"{item['reason']} on column {item['column']!r}: {item['rows']:,} rows — {item['message']}"
                         for item in self.as_list())


REJECT_COLUMNS = ("statsig_reject_reason", "statsig_reject_column", "statsig_reject_message")


class RejectsWriter:
    """Writes rejected rows, with their original values as text, to one Parquet file per run."""

    def __init__(self, path: Path, tally: RejectTally) -> None:
        self.path = path
        self.tally = tally
        self._writer: pq.ParquetWriter | None = None
        self._columns: list[str] | None = None

    def write(self, batch: pa.RecordBatch, reasons: BatchReasons) -> None:
        rows = reasons.rejected_indices()
        if not len(rows):
            return
        picked = batch.take(pa.array(rows))
        if self._columns is None:
            self._columns = list(batch.schema.names)
        arrays = [_as_text(picked.column(name)) if name in picked.schema.names else pa.nulls(len(rows), pa.string())
                  for name in self._columns]
        labels = [reasons.labels[c] for c in reasons.codes[rows]]
        arrays += [pa.array([lab.code for lab in labels]), pa.array([lab.column for lab in labels]),
                   pa.array([self.tally.message(lab.code) for lab in labels])]
        table = pa.Table.from_arrays(arrays, names=[*self._columns, *REJECT_COLUMNS])
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table)

    def close(self) -> Path | None:
        if self._writer is None:
            return None
        self._writer.close()
        self._writer = None
        return self.path


def _as_text(values: pa.Array) -> pa.Array:
    try:
        return pc.cast(values, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if v is None else str(v) for v in values.to_pylist()], pa.string())
