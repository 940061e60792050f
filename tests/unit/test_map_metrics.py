"""Precomputed-metric mapping: each rule has a bad row, casts follow Statsig's."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.map_metrics import MetricMapper
from statsig_airflow_provider.engine.rejects import RejectTally
from statsig_airflow_provider.engine.spec import SourceSpec

DAY = dt.date(2026, 11, 30)


def spec(ratio: bool = True, id_types: list[str] | None = None) -> SourceSpec:
    mapping = {"unit_id": "unit", "id_type": "kind", "date": "ds", "metric_name": "metric", "metric_value": "v"}
    if ratio:
        mapping.update(numerator="num", denominator="den")
    validation = {"id_types": id_types} if id_types else {}
    return SourceSpec.from_dict({"name": "m", "dataset": "metrics", "warehouse": {"conn_id": "wh"}, "sql": "SELECT 1",
                                 "mapping": mapping, "validation": validation,
                                 "delivery": {"file_drop_uri": "/tmp/x"}})


def row(**values: object) -> dict[str, object]:
    base: dict[str, object] = {"unit": 17, "kind": "user_id", "ds": "2026-11-30", "metric": "revenue", "v": "3.5",
                               "num": None, "den": None}
    base.update(values)
    return base


SCHEMA = pa.schema([("unit", pa.int64()), ("kind", pa.string()), ("ds", pa.string()), ("metric", pa.string()),
                    ("v", pa.string()), ("num", pa.float64()), ("den", pa.float64())])


def run(rows: list[dict], s: SourceSpec | None = None):
    mapper = MetricMapper(s or spec(id_types=["user_id", "stable_id", "companyID"]), DayWindow.of(DAY, "statsig"))
    mapped = mapper.map(pa.RecordBatch.from_pylist(rows, schema=SCHEMA))
    tally = RejectTally(context=mapper.reject_context())
    tally.add(mapped.reasons.counts())
    return mapped.table.to_pylist(), tally, mapper


@pytest.mark.parametrize(("bad", "reason", "column"), [
    (row(unit=None), "unit_id_null", "unit"),
    (row(kind=None), "id_type_null", "kind"),
    (row(kind="User_ID"), "id_type_unknown", "kind"),
    (row(ds=None), "date_null", "ds"),
    (row(ds="30/11/2026"), "date_invalid", "ds"),
    (row(ds="2026-02-30"), "date_invalid", "ds"),
    (row(ds="2026-11-29"), "date_outside_day", "ds"),
    (row(metric=None), "metric_name_null", "metric"),
    (row(metric="m" * 128), "metric_name_too_long", "metric"),
    (row(v="three"), "metric_value_not_numeric", "v"),
    (row(v=None), "metric_value_missing", "v,num,den"),
    (row(v=None, num=1.0), "ratio_incomplete", "num,den"),
])
def test_each_rule(bad: dict, reason: str, column: str) -> None:
    rows, tally, _ = run([row(), bad])
    assert len(rows) == 1
    [item] = tally.as_list()
    assert (item["reason"], item["column"], item["rows"]) == (reason, column, 1)


def test_unknown_id_type_message_lists_the_project_types() -> None:
    _, tally, _ = run([row(kind="userID")])
    assert "['user_id', 'stable_id', 'companyID']" in tally.describe() and "case-sensitive" in tally.describe()


def test_casts_and_output_shape() -> None:
    rows, tally, mapper = run([row(v="4.25"), row(v=None, num=3.0, den=4.0, metric="ctr")])
    assert tally.total == 0
    assert rows == [
        {"unit_id": "17", "id_type": "user_id", "date": DAY, "metric_name": "revenue", "metric_value": 4.25,
         "numerator": None, "denominator": None},
        {"unit_id": "17", "id_type": "user_id", "date": DAY, "metric_name": "ctr", "metric_value": None,
         "numerator": 3.0, "denominator": 4.0},
    ]
    assert mapper.kinds.mixed() == {}


def test_mixed_ratio_and_value_rows_are_reported() -> None:
    _, _, mapper = run([row(metric="ctr", v="1"), row(metric="ctr", v=None, num=1.0, den=2.0)])
    assert mapper.kinds.mixed() == {"ctr": 1}
