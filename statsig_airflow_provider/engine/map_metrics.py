"""Map and validate query rows as Statsig precomputed metrics (one value per unit per day)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from statsig_airflow_provider.engine.columns import (
    null_mask,
    resolve_columns,
    to_dates,
    to_float,
    to_strings,
    true_mask,
)
from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.rejects import BatchReasons
from statsig_airflow_provider.engine.spec import MetricMapping, SourceSpec

METRICS_SCHEMA = pa.schema([
    ("unit_id", pa.string()), ("id_type", pa.string()), ("date", pa.date32()), ("metric_name", pa.string()),
    ("metric_value", pa.float64()), ("numerator", pa.float64()), ("denominator", pa.float64()),
])


@dataclass
class MappedMetrics:
    table: pa.Table  # METRICS_SCHEMA, valid rows only
    reasons: BatchReasons

    def __len__(self) -> int:
        return self.table.num_rows


@dataclass
class MetricKinds:
    """Per metric: rows with a value only, and rows with numerator and denominator.

    Statsig treats a metric as a ratio as soon as one of its rows has both, and then ignores its
    value-only rows; a day that mixes the two is reported, not hidden.
    """

    value_rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ratio_rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def mixed(self) -> dict[str, int]:
        return {name: n for name, n in self.value_rows.items() if self.ratio_rows.get(name)}


class MetricMapper:
    def __init__(self, spec: SourceSpec, window: DayWindow) -> None:
        if not isinstance(spec.mapping, MetricMapping):
            raise TypeError("MetricMapper needs a metrics source")
        self.mapping: MetricMapping = spec.mapping
        self.window = window
        self.validation = spec.validation
        self.kinds = MetricKinds()
        self._columns: dict[str, str] | None = None

    def reject_context(self) -> dict[str, object]:
        return {"max_len": self.validation.max_name_length, "day": self.window.day.isoformat(),
                "id_types": list(self.validation.id_types or [])}

    def map(self, batch: pa.RecordBatch) -> MappedMetrics:
        if self._columns is None:
            self._columns = resolve_columns(batch.schema, self.mapping.columns())
        m = self.mapping
        col = self._columns.__getitem__
        n = batch.num_rows
        reasons = BatchReasons(n)

        unit_id = to_strings(batch.column(col(m.unit_id)), what=f"unit_id column {col(m.unit_id)!r}",
                             empty_is_null=True, is_id=True)
        reasons.flag(null_mask(unit_id), "unit_id_null", col(m.unit_id))

        id_type = to_strings(batch.column(col(m.id_type)), what=f"id_type column {col(m.id_type)!r}",
                             empty_is_null=True)
        reasons.flag(null_mask(id_type), "id_type_null", col(m.id_type))
        if self.validation.id_types:
            known = pa.array(self.validation.id_types)
            reasons.flag(~true_mask(pc.is_in(id_type, known)) & ~null_mask(id_type), "id_type_unknown",
                         col(m.id_type))

        dates, bad_date = to_dates(batch.column(col(m.date)), tz=self.window.tz, what=f"date column {col(m.date)!r}")
        reasons.flag(null_mask(batch.column(col(m.date))), "date_null", col(m.date))
        reasons.flag(bad_date, "date_invalid", col(m.date))
        reasons.flag(true_mask(pc.not_equal(dates, pa.scalar(self.window.day, pa.date32()))), "date_outside_day",
                     col(m.date))

        name = to_strings(batch.column(col(m.metric_name)), what=f"metric_name column {col(m.metric_name)!r}",
                          empty_is_null=True)
        reasons.flag(null_mask(name), "metric_name_null", col(m.metric_name))
        reasons.flag(true_mask(pc.greater(pc.utf8_length(name), self.validation.max_name_length)),
                     "metric_name_too_long", col(m.metric_name))

        numbers: dict[str, pa.Array] = {}
        for role in ("metric_value", "numerator", "denominator"):
            column = getattr(m, role)
            if column is None:
                numbers[role] = pa.nulls(n, pa.float64())
                continue
            numbers[role], bad = to_float(batch.column(col(column)), what=f"{role} column {col(column)!r}")
            reasons.flag(bad, "metric_value_not_numeric", col(column))
        has_value = ~null_mask(numbers["metric_value"])
        has_num, has_den = ~null_mask(numbers["numerator"]), ~null_mask(numbers["denominator"])
        ratio = has_num & has_den
        value_columns = [col(c) for c in (m.metric_value, m.numerator, m.denominator) if c]
        reasons.flag(~has_value & (has_num ^ has_den), "ratio_incomplete", ",".join(value_columns[-2:]))
        reasons.flag(~has_value & ~has_num & ~has_den, "metric_value_missing", ",".join(value_columns))

        keep = reasons.valid
        table = pa.Table.from_arrays(
            [unit_id, id_type, dates, name, numbers["metric_value"], numbers["numerator"], numbers["denominator"]],
            schema=METRICS_SCHEMA,
        )
        if not keep.all():
            table = table.filter(pa.array(keep))
        self._count_kinds(name, ratio & keep, has_value & ~ratio & keep)
        return MappedMetrics(table=table, reasons=reasons)

    def _count_kinds(self, names: pa.Array, ratio: np.ndarray, value_only: np.ndarray) -> None:
        for mask, target in ((ratio, self.kinds.ratio_rows), (value_only, self.kinds.value_rows)):
            if mask.any():
                counts = pc.value_counts(names.filter(pa.array(mask)))
                for item in counts.to_pylist():
                    target[item["values"]] += item["counts"]
