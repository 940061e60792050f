"""Source specs: valid files load; every mistake names the file, the source and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from statsig_airflow_provider.engine.spec import SourceSpec, SpecError, load_spec, load_specs

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples" / "sources"

MINIMAL = """
name: web_events
warehouse: {conn_id: wh}
sql: SELECT * FROM events WHERE ds = {day}
mapping:
  timestamp: ts
  event_name: name
  ids: {user_id: uid}
"""


def write(tmp_path: Path, text: str, name: str = "src.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_specs_load() -> None:
    result = load_specs(EXAMPLES)
    assert not result.errors
    assert "demo_events" in [s.name for s in result.specs]


def test_defaults_and_unit_type_aliases(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.dataset == "events"
    assert spec.mapping.ids == {"userID": "uid"}  # user_id is Statsig's userID
    assert spec.day.timezone == "statsig"
    assert (spec.reload.window_days, spec.reload.threshold) == (3, 0.05)
    assert spec.schedule.mode == "daily" and spec.schedule.hour == 10
    assert spec.uses_macros


def test_unknown_field_names_file_source_field_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("  event_name: name", "  event_nme: name\n  event_name: name"))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert str(path) in message and "'web_events'" in message and "mapping.event_nme" in message
    assert "did you mean 'event_name'" in message


@pytest.mark.parametrize(("change", "field", "words"), [
    (("  timestamp: ts\n", ""), "mapping.timestamp", "is required"),
    (("ids: {user_id: uid}", "ids: {}"), "mapping.ids", "at least one ID"),
    (("ids: {user_id: uid}", "ids: {'bad unit': uid}"), "mapping.ids.bad unit", "not a Statsig unit type"),
    (("{day}", "'{day}'"), "sql", "typed SQL literals"),
    (("{day}", "{day_begin}"), "sql", "unknown macro"),
    (("name: web_events", "name: 'web events!'"), "name", "DAG ids"),
    (("warehouse: {conn_id: wh}", "warehouse: {}"), "warehouse.conn_id", "is required"),
])
def test_field_errors(tmp_path: Path, change: tuple[str, str], field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, MINIMAL.replace(*change)))
    assert err.value.field == field
    assert words in str(err.value)


def test_dotted_metadata_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="avoid dots in metadata keys") as err:
        load_spec(write(tmp_path, MINIMAL + "  metadata: {'product.id': pid}\n"))
    assert err.value.field == "mapping.metadata.product.id"


def test_bad_timezone_and_ranges(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="unknown timezone 'Mars/Olympus'") as err:
        load_spec(write(tmp_path, MINIMAL + "day: {timezone: Mars/Olympus}\n"))
    assert err.value.field == "day.timezone"
    with pytest.raises(SpecError, match="between 0 and 23") as err:
        load_spec(write(tmp_path, MINIMAL + "schedule: {hour: 24}\n"))
    assert err.value.field == "schedule.hour"


def test_metrics_need_a_file_drop_and_complete_ratio(tmp_path: Path) -> None:
    metrics = """
name: revenue
dataset: metrics
warehouse: {conn_id: wh}
sql: SELECT * FROM m
mapping: {unit_id: u, id_type: t, date: d, metric_name: n, numerator: num}
"""
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, metrics))
    assert err.value.field == "mapping.denominator"
    fixed = metrics.replace("numerator: num}", "metric_value: v}")
    with pytest.raises(SpecError, match="no Statsig HTTP API") as err:
        load_spec(write(tmp_path, fixed))
    assert err.value.field == "delivery.file_drop_uri"
    spec = load_spec(write(tmp_path, fixed + "delivery: {file_drop_uri: /tmp/drop}\n"))
    assert spec.mapping.metric_value == "v" and spec.day_column == "d" and not spec.uses_macros


def test_folder_isolates_broken_files_and_duplicate_names(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "a.yaml")
    write(tmp_path, MINIMAL, "b.yaml")  # same name again
    write(tmp_path, "name: [oops", "c.yaml")
    write(tmp_path, """
sources:
  - name: other
    warehouse: {conn_id: wh}
    sql: SELECT * FROM events WHERE ds = {day}
    mapping: {timestamp: ts, event_name: name, ids: {stableID: sid}}
""", "d.yaml")
    result = load_specs(tmp_path)
    assert sorted(s.name for s in result.specs) == ["other", "web_events"]
    assert "source name already used" in str(result.errors[str(tmp_path / "b.yaml")])
    assert "not valid YAML at line 1" in str(result.errors[str(tmp_path / "c.yaml")])


def test_python_definition_uses_the_same_validation() -> None:
    spec = SourceSpec.from_dict({"name": "py", "warehouse": {"conn_id": "wh"}, "sql": "SELECT 1",
                                 "mapping": {"timestamp": "ts", "event_name": "n", "ids": {"stableID": "s"}}})
    assert spec.origin == "<python>" and spec.day_column == "ts"
    with pytest.raises(SpecError, match=r"<python>: source 'py': field 'delivery\.concurrency'"):
        SourceSpec.from_dict({"name": "py", "warehouse": {"conn_id": "wh"}, "sql": "SELECT 1",
                              "mapping": {"timestamp": "ts", "event_name": "n", "ids": {"stableID": "s"}},
                              "delivery": {"concurrency": 0}})
