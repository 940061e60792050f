"""Source specs: what to read, how to map it to Statsig, and how to schedule and deliver it.

A spec comes from YAML (one source per file, or a `sources:` list) or from Python
(`SourceSpec.from_dict`). Every problem raises `SpecError` naming the file, the source and the
field, so a broken spec is fixed from the message alone.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from statsig_airflow_provider.engine.days import resolve_timezone
from statsig_airflow_provider.engine.options import did_you_mean

Dataset = Literal["events", "metrics"]
DATASETS = ("events", "metrics")
COLUMN_TYPES = ("auto", "timestamp", "epoch_seconds", "epoch_millis", "date", "date_string")
SCHEDULE_MODES = ("daily", "api_triggered")
AMBIGUOUS_POLICIES = ("hold", "resend")
ENVIRONMENT_TIERS = ("production", "staging", "development")
SOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Statsig unit types are written userID / stableID / <customID>; accept the snake_case spellings
# that Statsig's metrics pages use, and normalise them.
UNIT_TYPE_ALIASES = {"user_id": "userID", "userid": "userID", "stable_id": "stableID", "stableid": "stableID"}
UNIT_TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
METADATA_KEY_RE = re.compile(r"^[^\x00-\x1f\"\\]{1,64}$")
MACRO_RE = re.compile(r"\{(day|day_start|day_end|day_start_utc|day_end_utc|day_start_epoch|day_end_epoch)\}")
QUOTED_MACRO_RE = re.compile(r"'\{(?:day|day_start|day_end|day_start_utc|day_end_utc|day_start_epoch|day_end_epoch)\}'")


class SpecError(ValueError):
    """A source spec is invalid. The message names the file, source and field."""

    def __init__(self, message: str, *, file: str | None = None, source: str | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.file = file
        self.source = source
        self.field = field
        super().__init__(str(self))

    def located(self, *, file: str | None = None, source: str | None = None) -> SpecError:
        return SpecError(self.message, file=self.file or file, source=self.source or source, field=self.field)

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.source:
            where.append(f"source {self.source!r}")
        if self.field:
            where.append(f"field {self.field!r}")
        return (": ".join(where) + ": " if where else "") + self.message


# --------------------------------------------------------------------------------------------
# Reading dicts with precise errors


class _Fields:
    """Reads one mapping section, remembering the path for error messages."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SpecError(f"must be a mapping, got {type(data).__name__}", field=path or None)
        self.data = dict(data)
        self.path = path
        self.seen: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                typo = difflib.get_close_matches(key, [str(k) for k in self.data if k not in self.seen], n=1)
                hint = f" (found {typo[0]!r}: did you mean {key!r}?)" if typo else ""
                raise SpecError(f"is required{hint}", field=self._name(key))
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if bool not in kinds and isinstance(value, bool):
            raise SpecError(f"must be {_kind_name(kinds)}, got {value!r}", field=self._name(key))
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise SpecError(f"must be {_kind_name(kinds)}, got {type(value).__name__} {value!r}",
                            field=self._name(key))
        if isinstance(value, str):
            value = value.strip() if key != "sql" else value
            if not value and required:
                raise SpecError("must not be empty", field=self._name(key))
        return value

    def choice(self, key: str, choices: Iterable[str], default: str) -> str:
        value = self.get(key, str, default)
        choices = tuple(choices)
        if value not in choices:
            raise SpecError(f"must be one of {', '.join(choices)}; got {value!r}", field=self._name(key))
        return value

    def section(self, key: str) -> _Fields:
        self.seen.add(key)
        return _Fields(self.data.get(key), self._name(key))

    def column(self, key: str, *, required: bool = False) -> str | None:
        value = self.get(key, str, None, required=required)
        if value is not None and not value:
            raise SpecError("must name a column of the query result", field=self._name(key))
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            key = unknown[0]
            raise SpecError(f"unknown field{did_you_mean(key, self.seen, 'fields')}", field=self._name(key))


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _check_range(value: float, low: float | None, high: float | None, field_name: str) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SpecError(f"must be {bounds}; got {value}", field=field_name)


# --------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class EventMapping:
    """Query columns → Statsig custom-event fields (Statsig's Console API names)."""

    timestamp: str
    event_name: str
    ids: dict[str, str]
    event_value: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    metadata_json: str | None = None
    timestamp_unit: Literal["s", "ms"] = "s"

    @property
    def day_column(self) -> str:
        return self.timestamp

    def columns(self) -> dict[str, str]:
        """Every mapped column with the role it plays, for error messages."""
        roles = {self.timestamp: "timestamp", self.event_name: "event_name"}
        roles.update({col: f"ids.{unit}" for unit, col in self.ids.items()})
        if self.event_value:
            roles[self.event_value] = "event_value"
        roles.update({col: f"metadata.{key}" for key, col in self.metadata.items()})
        if self.metadata_json:
            roles[self.metadata_json] = "metadata_json"
        return roles


@dataclass(frozen=True)
class MetricMapping:
    """Query columns → Statsig precomputed-metric fields."""

    unit_id: str
    id_type: str
    date: str
    metric_name: str
    metric_value: str | None = None
    numerator: str | None = None
    denominator: str | None = None

    @property
    def day_column(self) -> str:
        return self.date

    def columns(self) -> dict[str, str]:
        roles = {self.unit_id: "unit_id", self.id_type: "id_type", self.date: "date",
                 self.metric_name: "metric_name"}
        for role in ("metric_value", "numerator", "denominator"):
            if getattr(self, role):
                roles[getattr(self, role)] = role
        return roles


@dataclass(frozen=True)
class DayScope:
    """How the query is limited to one day."""

    timezone: str = "statsig"
    column: str | None = None  # default: the mapped timestamp (events) or date (metrics)
    column_type: str = "auto"
    naive_timezone: str = "UTC"  # zone of TIMESTAMP columns that carry none


@dataclass(frozen=True)
class Schedule:
    mode: str = "daily"
    hour: int = 10
    minute: int = 0
    timezone: str = "statsig"
    presence_checks: int = 2  # consecutive equal non-zero counts that mean "data is present"
    presence_interval_minutes: float = 15.0
    presence_timeout_hours: float = 12.0


@dataclass(frozen=True)
class ReloadPolicy:
    window_days: int = 3
    threshold: float = 0.05


@dataclass(frozen=True)
class ValidationPolicy:
    max_reject_ratio: float = 0.01
    sample_rows: int = 1000
    max_name_length: int = 127  # Statsig: event_name / metric_name / event_value "< 128 characters"
    max_metadata_chars: int = 4096  # Statsig HTTP API: object fields ≤ 4096 characters once stringified
    id_types: tuple[str, ...] | None = None  # metrics: the project's ID types (case-sensitive)


@dataclass(frozen=True)
class Delivery:
    statsig_conn_id: str = "statsig_default"
    max_events_per_request: int = 2000
    max_body_bytes: int = 9_000_000  # uncompressed; Statsig drops requests over 10 MB
    concurrency: int = 4
    gzip_level: int = 1
    ambiguous: str = "hold"
    environment: str | None = None
    timeout_seconds: float = 60.0
    max_attempts: int = 8
    file_drop_uri: str | None = None  # metrics: <uri>/metrics/<YYYY-MM-DD>/*.parquet
    file_drop_conn_id: str | None = None
    mark_data_ready: bool = False


@dataclass(frozen=True)
class SourceSpec:
    name: str
    dataset: str
    warehouse_conn_id: str
    sql: str
    mapping: EventMapping | MetricMapping
    day: DayScope = field(default_factory=DayScope)
    # Warehouse-specific reading options (e.g. an UNLOAD threshold, a file layout); each warehouse
    # hook documents and checks its own.
    warehouse_options: dict[str, Any] = field(default_factory=dict)
    schedule: Schedule = field(default_factory=Schedule)
    reload: ReloadPolicy = field(default_factory=ReloadPolicy)
    validation: ValidationPolicy = field(default_factory=ValidationPolicy)
    delivery: Delivery = field(default_factory=Delivery)
    description: str = ""
    origin: str = "<python>"

    @property
    def day_column(self) -> str:
        return self.day.column or self.mapping.day_column

    @property
    def uses_macros(self) -> bool:
        return bool(MACRO_RE.search(self.sql))

    def fingerprint(self) -> str:
        """A short hash of everything that decides which rows are read and how they map."""
        material = {"dataset": self.dataset, "sql": self.sql, "mapping": asdict(self.mapping),
                    "day": asdict(self.day)}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "<python>") -> SourceSpec:
        source = data.get("name") if isinstance(data, Mapping) else None
        source_label = source if isinstance(source, str) else None
        try:
            return _parse_source(data, origin)
        except SpecError as exc:
            raise exc.located(file=origin, source=source_label) from None


def _parse_source(data: Mapping[str, Any], origin: str) -> SourceSpec:
    top = _Fields(data, "")
    name = top.get("name", str, required=True)
    if not SOURCE_NAME_RE.match(name):
        raise SpecError("must start with a letter or digit and use only letters, digits, '_', '.', '-' "
                        f"(at most 100 characters; it becomes part of DAG ids); got {name!r}", field="name")
    dataset = top.choice("dataset", DATASETS, "events")
    description = top.get("description", str, "")
    sql = top.get("sql", str, required=True)
    _check_sql(sql)

    wh = top.section("warehouse")
    conn_id = wh.get("conn_id", str, required=True)
    options = wh.get("options", dict, {})
    wh.finish()

    mapping_section = top.section("mapping")
    mapping: EventMapping | MetricMapping = (
        _parse_event_mapping(mapping_section) if dataset == "events" else _parse_metric_mapping(mapping_section)
    )
    mapping_section.finish()

    day = _parse_day_scope(top.section("day"))
    schedule = _parse_schedule(top.section("schedule"))
    reload = _parse_reload(top.section("reload"))
    validation = _parse_validation(top.section("validation"), dataset)
    delivery = _parse_delivery(top.section("delivery"), dataset)
    top.finish()

    if not MACRO_RE.search(sql) and day.column is None and not mapping.day_column:
        raise SpecError("the query has no day macros and no day column to filter on", field="day.column")
    return SourceSpec(name=name, dataset=dataset, warehouse_conn_id=conn_id, warehouse_options=options,
                      sql=sql, mapping=mapping,
                      day=day, schedule=schedule, reload=reload, validation=validation, delivery=delivery,
                      description=description, origin=origin)


def _check_sql(sql: str) -> None:
    if QUOTED_MACRO_RE.search(sql):
        raise SpecError("day macros render as typed SQL literals; write {day}, not '{day}'", field="sql")
    unknown = re.findall(r"\{(day[a-z_]*)\}", sql)
    bad = [m for m in unknown if not MACRO_RE.fullmatch("{" + m + "}")]
    if bad:
        raise SpecError(f"unknown macro {{{bad[0]}}}; known macros: {{day}}, {{day_start}}, {{day_end}}, "
                        "{day_start_utc}, {day_end_utc}, {day_start_epoch}, {day_end_epoch}", field="sql")


def _parse_event_mapping(m: _Fields) -> EventMapping:
    timestamp = m.column("timestamp", required=True)
    event_name = m.column("event_name", required=True)
    raw_ids = m.get("ids", dict, required=True)
    if not raw_ids:
        raise SpecError("map at least one ID column, e.g. {userID: user_id}", field="mapping.ids")
    ids: dict[str, str] = {}
    for unit, column in raw_ids.items():
        unit_name = UNIT_TYPE_ALIASES.get(str(unit).lower(), str(unit))
        if not UNIT_TYPE_RE.match(unit_name):
            raise SpecError(f"{unit!r} is not a Statsig unit type (userID, stableID or a custom ID name)",
                            field=f"mapping.ids.{unit}")
        if not isinstance(column, str) or not column.strip():
            raise SpecError("must name a column of the query result", field=f"mapping.ids.{unit}")
        if unit_name in ids:
            raise SpecError(f"unit type {unit_name} is mapped twice", field=f"mapping.ids.{unit}")
        ids[unit_name] = column.strip()
    metadata: dict[str, str] = {}
    for key, column in (m.get("metadata", dict, {}) or {}).items():
        if not METADATA_KEY_RE.match(str(key)):
            raise SpecError("metadata keys are 1-64 characters without quotes, backslashes or control "
                            "characters", field=f"mapping.metadata.{key}")
        if "." in str(key):
            raise SpecError("avoid dots in metadata keys: Statsig reads a dot as a nested path and the "
                            "value can turn NULL; rename the key", field=f"mapping.metadata.{key}")
        if not isinstance(column, str) or not column.strip():
            raise SpecError("must name a column of the query result", field=f"mapping.metadata.{key}")
        metadata[str(key)] = column.strip()
    unit = m.choice("timestamp_unit", ("s", "ms"), "s")
    return EventMapping(timestamp=timestamp, event_name=event_name, ids=ids,
                        event_value=m.column("event_value"), metadata=metadata,
                        metadata_json=m.column("metadata_json"), timestamp_unit=unit)  # type: ignore[arg-type]


def _parse_metric_mapping(m: _Fields) -> MetricMapping:
    mapping = MetricMapping(
        unit_id=m.column("unit_id", required=True), id_type=m.column("id_type", required=True),
        date=m.column("date", required=True), metric_name=m.column("metric_name", required=True),
        metric_value=m.column("metric_value"), numerator=m.column("numerator"),
        denominator=m.column("denominator"),
    )
    if bool(mapping.numerator) != bool(mapping.denominator):
        missing = "denominator" if mapping.numerator else "numerator"
        raise SpecError("a ratio metric needs both numerator and denominator", field=f"mapping.{missing}")
    if not mapping.metric_value and not (mapping.numerator and mapping.denominator):
        raise SpecError("map metric_value, or both numerator and denominator", field="mapping.metric_value")
    return mapping


def _parse_day_scope(d: _Fields) -> DayScope:
    scope = DayScope(timezone=d.get("timezone", str, "statsig"), column=d.column("column"),
                     column_type=d.choice("column_type", COLUMN_TYPES, "auto"),
                     naive_timezone=d.get("naive_timezone", str, "UTC"))
    for key in ("timezone", "naive_timezone"):
        try:
            resolve_timezone(getattr(scope, key))
        except ValueError as exc:
            raise SpecError(str(exc), field=f"day.{key}") from None
    d.finish()
    return scope


def _parse_schedule(s: _Fields) -> Schedule:
    schedule = Schedule(
        mode=s.choice("mode", SCHEDULE_MODES, "daily"), hour=s.get("hour", int, 10),
        minute=s.get("minute", int, 0), timezone=s.get("timezone", str, "statsig"),
        presence_checks=s.get("presence_checks", int, 2),
        presence_interval_minutes=s.get("presence_interval_minutes", float, 15.0),
        presence_timeout_hours=s.get("presence_timeout_hours", float, 12.0),
    )
    _check_range(schedule.hour, 0, 23, "schedule.hour")
    _check_range(schedule.minute, 0, 59, "schedule.minute")
    _check_range(schedule.presence_checks, 1, 10, "schedule.presence_checks")
    _check_range(schedule.presence_interval_minutes, 0.01, 24 * 60, "schedule.presence_interval_minutes")
    _check_range(schedule.presence_timeout_hours, 0, 72, "schedule.presence_timeout_hours")
    try:
        resolve_timezone(schedule.timezone)
    except ValueError as exc:
        raise SpecError(str(exc), field="schedule.timezone") from None
    s.finish()
    return schedule


def _parse_reload(r: _Fields) -> ReloadPolicy:
    policy = ReloadPolicy(window_days=r.get("window_days", int, 3), threshold=r.get("threshold", float, 0.05))
    _check_range(policy.window_days, 0, 60, "reload.window_days")
    _check_range(policy.threshold, 0.0, 10.0, "reload.threshold")
    r.finish()
    return policy


def _parse_validation(v: _Fields, dataset: str) -> ValidationPolicy:
    id_types = v.get("id_types", list, None)
    if id_types is not None:
        if dataset != "metrics":
            raise SpecError("id_types applies to metrics sources only", field="validation.id_types")
        if not id_types or not all(isinstance(t, str) and t for t in id_types):
            raise SpecError("must be a non-empty list of ID type names", field="validation.id_types")
        id_types = tuple(id_types)
    policy = ValidationPolicy(
        max_reject_ratio=v.get("max_reject_ratio", float, 0.01), sample_rows=v.get("sample_rows", int, 1000),
        max_name_length=v.get("max_name_length", int, 127),
        max_metadata_chars=v.get("max_metadata_chars", int, 4096), id_types=id_types,
    )
    _check_range(policy.max_reject_ratio, 0.0, 1.0, "validation.max_reject_ratio")
    _check_range(policy.sample_rows, 0, 1_000_000, "validation.sample_rows")
    _check_range(policy.max_name_length, 1, 127, "validation.max_name_length")
    _check_range(policy.max_metadata_chars, 2, 1_000_000, "validation.max_metadata_chars")
    v.finish()
    return policy


def _parse_delivery(d: _Fields, dataset: str) -> Delivery:
    environment = d.get("environment", str, None)
    if environment is not None and environment not in ENVIRONMENT_TIERS:
        raise SpecError(f"must be one of {', '.join(ENVIRONMENT_TIERS)}", field="delivery.environment")
    delivery = Delivery(
        statsig_conn_id=d.get("statsig_conn_id", str, "statsig_default"),
        max_events_per_request=d.get("max_events_per_request", int, 2000),
        max_body_bytes=d.get("max_body_bytes", int, 9_000_000),
        concurrency=d.get("concurrency", int, 4), gzip_level=d.get("gzip_level", int, 1),
        ambiguous=d.choice("ambiguous", AMBIGUOUS_POLICIES, "hold"), environment=environment,
        timeout_seconds=d.get("timeout_seconds", float, 60.0), max_attempts=d.get("max_attempts", int, 8),
        file_drop_uri=d.get("file_drop_uri", str, None), file_drop_conn_id=d.get("file_drop_conn_id", str, None),
        mark_data_ready=d.get("mark_data_ready", bool, False),
    )
    _check_range(delivery.max_events_per_request, 1, 10_000, "delivery.max_events_per_request")
    _check_range(delivery.max_body_bytes, 10_000, 10_000_000, "delivery.max_body_bytes")
    _check_range(delivery.concurrency, 1, 32, "delivery.concurrency")
    _check_range(delivery.gzip_level, 1, 9, "delivery.gzip_level")
    _check_range(delivery.timeout_seconds, 1, 600, "delivery.timeout_seconds")
    _check_range(delivery.max_attempts, 1, 50, "delivery.max_attempts")
    if dataset == "metrics" and not delivery.file_drop_uri:
        raise SpecError("metrics have no Statsig HTTP API; set delivery.file_drop_uri to the Statsig "
                        "S3/GCS/local prefix that receives <prefix>/metrics/<YYYY-MM-DD>/*.parquet",
                        field="delivery.file_drop_uri")
    d.finish()
    return delivery


# --------------------------------------------------------------------------------------------
# Files


@dataclass
class LoadResult:
    """Specs that loaded, and per-file errors for the ones that did not."""

    specs: list[SourceSpec] = field(default_factory=list)
    errors: dict[str, SpecError] = field(default_factory=dict)

    def raise_first(self) -> None:
        if self.errors:
            raise next(iter(self.errors.values()))


def spec_files(path: str | Path) -> list[Path]:
    """The YAML files a path names: itself, or every *.yaml / *.yml below a folder, sorted."""
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file())
    if not p.exists():
        raise SpecError("no such file or folder", file=str(p))
    return [p]


def parse_spec_file(path: Path) -> list[SourceSpec]:
    """Parse one YAML file holding one source, or several under `sources:`."""
    label = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"is not valid YAML{where}: {getattr(exc, 'problem', exc)}", file=label) from None
    if doc is None:
        return []
    if isinstance(doc, Mapping) and "sources" in doc:
        extra = sorted(set(doc) - {"sources"})
        if extra:
            raise SpecError(f"a file with 'sources:' holds nothing else; found {extra}", file=label)
        items = doc["sources"]
        if not isinstance(items, list):
            raise SpecError("'sources' must be a list of source specs", file=label)
    elif isinstance(doc, Mapping):
        items = [doc]
    else:
        raise SpecError("must hold a source spec (a mapping) or a 'sources:' list", file=label)
    specs = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise SpecError(f"sources[{i}] must be a mapping", file=label)
        specs.append(SourceSpec.from_dict(item, origin=label))
    return specs


def load_specs(path: str | Path) -> LoadResult:
    """Load every spec under `path`, keeping going past broken files (their errors are collected)."""
    result = LoadResult()
    seen: dict[str, str] = {}
    for f in spec_files(path):
        try:
            specs = parse_spec_file(f)
        except SpecError as exc:
            result.errors[str(f)] = exc
            continue
        for spec in specs:
            if spec.name in seen:
                result.errors[str(f)] = SpecError(f"source name already used in {seen[spec.name]}",
                                                  file=str(f), source=spec.name, field="name")
                continue
            seen[spec.name] = str(f)
            result.specs.append(spec)
    return result


def load_spec(path: str | Path, name: str | None = None) -> SourceSpec:
    """Load exactly one spec (by name when the path holds several); raise on any error."""
    result = load_specs(path)
    result.raise_first()
    if name is None:
        if len(result.specs) != 1:
            raise SpecError(f"holds {len(result.specs)} sources; name the one to use", file=str(path))
        return result.specs[0]
    for spec in result.specs:
        if spec.name == name:
            return spec
    raise SpecError(f"no source named {name!r} (found: {', '.join(s.name for s in result.specs)})",
                    file=str(path))
