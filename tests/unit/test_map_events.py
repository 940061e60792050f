"""Event mapping: one bad row per rule proves the rule and its message; casts match Statsig's."""

from __future__ import annotations

import datetime as dt
import json
import math

import jsonschema_rs
import pyarrow as pa
import pytest

from statsig_airflow_provider.emulator.server import load_log_event_schema
from statsig_airflow_provider.engine.columns import MappingError
from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.map_events import EventMapper
from statsig_airflow_provider.engine.rejects import RejectTally
from statsig_airflow_provider.engine.spec import SourceSpec

DAY = dt.date(2026, 11, 30)
WINDOW = DayWindow.of(DAY, "statsig")
T0 = WINDOW.start_epoch + 3600
VALIDATE = jsonschema_rs.validator_for(load_log_event_schema(), validate_formats=False)


def spec(**overrides: object) -> SourceSpec:
    mapping = {"timestamp": "ts", "event_name": "name", "ids": {"userID": "uid", "stableID": "sid"},
               "event_value": "value", "metadata": {"page": "page"}, "metadata_json": "props"}
    mapping.update(overrides.pop("mapping", {}))  # type: ignore[arg-type]
    return SourceSpec.from_dict({"name": "web", "warehouse": {"conn_id": "wh"}, "sql": "SELECT 1 WHERE {day}",
                                 "mapping": mapping, **overrides})


def good(**values: object) -> dict[str, object]:
    row: dict[str, object] = {"ts": T0, "name": "purchase", "uid": 42, "sid": "dev-1", "value": 9.5,
                              "page": "/cart", "props": '{"coupon": "XMAS"}'}
    row.update(values)
    return row


def map_rows(rows: list[dict[str, object]], s: SourceSpec | None = None, schema: pa.Schema | None = None):
    mapper = EventMapper(s or spec(), WINDOW)
    batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    mapped = mapper.map(batch)
    tally = RejectTally(context=mapper.reject_context())
    tally.add(mapped.reasons.counts())
    events = [json.loads(r[:-1]) for r in mapped.rows.to_pylist()]
    for event in events:  # every event we build is valid under Statsig's published spec
        assert VALIDATE.is_valid({"events": [event]}), event
    return events, tally


def rejected(row: dict[str, object], s: SourceSpec | None = None, schema: pa.Schema | None = None,
             ok: dict[str, object] | None = None) -> dict:
    events, tally = map_rows([ok or good(), row], s, schema)
    assert len(events) == 1, "the good row maps, the bad one does not"
    [item] = tally.as_list()
    assert item["rows"] == 1
    return item


@pytest.mark.parametrize(("row", "reason", "column", "words"), [
    (good(name=None), "event_name_null", "name", "null or empty"),
    (good(name=""), "event_name_null", "name", "null or empty"),
    (good(name="x" * 128), "event_name_too_long", "name", "longer than 127"),
    (good(name="add to cart; promo"), "event_name_forbidden_char", "name", "Statsig drops events"),
    (good(name="line\nbreak"), "event_name_forbidden_char", "name", "control character"),
    (good(ts=None), "timestamp_null", "ts", "null"),
    (good(ts=T0 * 1000), "timestamp_milliseconds", "ts", "divide by 1000"),
    (good(ts=T0 - 86400), "timestamp_outside_day", "ts", "outside the day"),
    (good(uid=None, sid=None), "no_id", "uid,sid", "no ID"),
    (good(uid=None, sid=""), "no_id", "uid,sid", "no ID"),
    (good(props='{"coupon": XMAS}'), "metadata_not_json", "props", "not valid JSON"),
    (good(props="[1, 2]"), "metadata_not_object", "props", "not an object"),
    (good(props=json.dumps({"k": "v" * 5000})), "metadata_too_long", "props", "4096"),
])
def test_each_rule_rejects_its_row_with_reason_and_column(row: dict, reason: str, column: str, words: str) -> None:
    item = rejected(row)
    assert (item["reason"], item["column"]) == (reason, column)
    assert words in str(item["message"])


def test_every_forbidden_character_is_caught() -> None:
    for char in "\\[]{}<>#=;&$%|\x00\r\n":
        assert rejected(good(name=f"a{char}b"))["reason"] == "event_name_forbidden_char", repr(char)
    events, tally = map_rows([good(name="x" * 127), good(name="add_to-cart.v2 (beta)!")])
    assert len(events) == 2 and tally.total == 0


def test_event_value_rules() -> None:
    text = pa.schema([("ts", pa.int64()), ("name", pa.string()), ("uid", pa.int64()), ("sid", pa.string()),
                      ("value", pa.string()), ("page", pa.string()), ("props", pa.string())])
    item = rejected(good(value="v" * 128), schema=text, ok=good(value="v" * 127))
    assert item["reason"] == "event_value_too_long" and item["column"] == "value"
    item = rejected(good(value=math.nan))
    assert item["reason"] == "event_value_not_finite"


def test_unit_mismatch_the_other_way() -> None:
    item = rejected(good(ts=T0), spec(mapping={"timestamp_unit": "ms"}), ok=good(ts=T0 * 1000))
    assert item["reason"] == "timestamp_seconds" and "timestamp_unit: s" in str(item["message"])


def test_unparseable_text_timestamp() -> None:
    schema = pa.schema([("ts", pa.string()), ("name", pa.string()), ("uid", pa.int64()), ("sid", pa.string()),
                        ("value", pa.float64()), ("page", pa.string()), ("props", pa.string())])
    events, tally = map_rows([good(ts="2026-11-30T12:00:00Z"), good(ts=str(T0)), good(ts="yesterday")],
                             schema=schema)
    assert [e["time"] for e in events] == [int(dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc).timestamp()
                                               * 1000), T0 * 1000]
    assert [(i["reason"], i["rows"]) for i in tally.as_list()] == [("timestamp_invalid", 1)]


def test_event_shape_and_casts() -> None:
    events, _ = map_rows([good(props='{"coupon": "XMAS", "cart": {"items": 3}, "n": 2, "gone": null, '
                                     '"page": "shadowed"}')])
    assert events == [{
        "eventName": "purchase", "time": T0 * 1000,
        "user": {"userID": "42", "customIDs": {"stableID": "dev-1"}},  # integer ID sent as a string
        "value": 9.5,
        "metadata": {"coupon": "XMAS", "cart": '{"items":3}', "n": "2", "page": "/cart"},
    }]


def test_timestamp_and_date_columns_become_epoch_milliseconds() -> None:
    at = dt.datetime(2026, 11, 30, 12, 30, tzinfo=dt.timezone.utc)
    schema = pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("name", pa.string()), ("uid", pa.int64()),
                        ("sid", pa.string()), ("value", pa.float64()), ("page", pa.string()), ("props", pa.string())])
    events, _ = map_rows([good(ts=at)], schema=schema)
    assert events[0]["time"] == int(at.timestamp() * 1000)
    schema = schema.set(0, pa.field("ts", pa.date32()))
    events, _ = map_rows([good(ts=DAY)], schema=schema)
    assert events[0]["time"] == WINDOW.start_epoch * 1000  # midnight in the day's zone, so it lands on DAY
    schema = schema.set(0, pa.field("ts", pa.timestamp("ms")))  # naive: read as UTC by default
    events, _ = map_rows([good(ts=at.replace(tzinfo=None))], schema=schema)
    assert events[0]["time"] == int(at.timestamp() * 1000)


def test_escaping_and_unicode_round_trip() -> None:
    tricky = 'say "hi" \\ tab\there é ✓'
    events, _ = map_rows([good(page=tricky, sid="dev\u00e9\"1", props=None, value=None, uid=None)])
    assert events[0]["metadata"] == {"page": tricky}
    assert events[0]["user"] == {"customIDs": {"stableID": "dev\u00e9\"1"}}
    assert "value" not in events[0]


def test_environment_tier_and_float_ids() -> None:
    schema = pa.schema([("ts", pa.int64()), ("name", pa.string()), ("uid", pa.float64()), ("sid", pa.string()),
                        ("value", pa.float64()), ("page", pa.string()), ("props", pa.string())])
    events, _ = map_rows([good(uid=7.0)], spec(delivery={"environment": "staging"}), schema=schema)
    assert events[0]["user"] == {"userID": "7", "customIDs": {"stableID": "dev-1"},
                                 "statsigEnvironment": {"tier": "staging"}}


def test_missing_column_names_the_column_and_role() -> None:
    batch = pa.RecordBatch.from_pylist([{"ts": T0, "name": "a", "uid": 1, "sid": "s", "value": 1.0, "page": "p"}])
    with pytest.raises(MappingError, match=r"'props' \(mapped as metadata_json\) is not in the query result"):
        EventMapper(spec(), WINDOW).map(batch)


def test_columns_match_case_insensitively() -> None:
    batch = pa.RecordBatch.from_pylist([{k.upper(): v for k, v in good().items()}])
    mapped = EventMapper(spec(), WINDOW).map(batch)
    assert len(mapped) == 1


def test_unusable_type_is_a_clear_error() -> None:
    schema = pa.schema([("ts", pa.int64()), ("name", pa.string()), ("uid", pa.int64()), ("sid", pa.string()),
                        ("value", pa.float64()), ("page", pa.list_(pa.string())), ("props", pa.string())])
    with pytest.raises(MappingError, match="metadata column 'page' has type list<item: string>"):
        EventMapper(spec(), WINDOW).map(pa.RecordBatch.from_pylist([good(page=["a"])], schema=schema))


def test_tally_message_names_reason_column_and_count() -> None:
    _, tally = map_rows([good(), good(ts=T0 * 1000), good(ts=T0 * 1000), good(name=None)])
    assert tally.total == 3
    assert tally.describe().startswith("timestamp_milliseconds on column 'ts': 2 rows")


def test_repeated_json_is_unpacked_once_but_resolved_per_row() -> None:
    """Identical JSON texts share one unpacking; a key shadowed by a metadata column still depends on
    each row's column value, and bad JSON is still rejected on every row that carries it."""
    props = '{"coupon": "XMAS", "page": "from-json", "n": 2}'
    rows = [good(props=props, page="/cart"), good(props=props, page=None), good(props=props, page="/home"),
            good(props="{oops"), good(props="{oops"), good(props=props, page=None)]
    events, tally = map_rows(rows)
    assert [e["metadata"] for e in events] == [
        {"coupon": "XMAS", "n": "2", "page": "/cart"},
        {"coupon": "XMAS", "page": "from-json", "n": "2"},
        {"coupon": "XMAS", "n": "2", "page": "/home"},
        {"coupon": "XMAS", "page": "from-json", "n": "2"},
    ]
    assert [(i["reason"], i["rows"]) for i in tally.as_list()] == [("metadata_not_json", 2)]
