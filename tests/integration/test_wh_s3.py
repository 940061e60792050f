"""S3 files as a source, against moto server (the real S3 REST API; real files, real reads).

Exercised for real: S3Hook credentials and endpoint from the Airflow connection, listing the
day's prefix, pyarrow.dataset reading Parquet / CSV / NDJSON from moto, DuckDB running the source's
SQL over the `day_files` view, the engine delivering into the emulator. Not exercised: real AWS
(IAM policies, KMS-encrypted objects, requester-pays buckets, S3's request rate limits).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from statsig_airflow_provider.engine import ledger as L
from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.options import OptionError
from statsig_airflow_provider.engine.pipeline import IngestionError
from statsig_airflow_provider.engine.spec import load_spec
from statsig_airflow_provider.engine.sql import day_query
from statsig_airflow_provider.hooks.s3 import S3FilesOptions, S3FilesReader, render_day_prefix
from statsig_airflow_provider.hooks.warehouse import warehouse_reader
from tests.conftest import DAY, ROOT, EmulatorProcess, assert_exactly_once
from tests.integration.aws_support import (
    BOUNDARY_INSIDE,
    RENDER_COLUMNS,
    RENDER_MACROS,
    RENDER_TIMEZONES,
    aws_connection,
    boundary_rows,
    demo_table,
    ingest,
    new_bucket,
    put_table,
    render_spec,
    spec_with,
)
from tests.integration.test_pipeline import SPEC_DICT

DAY_SQL = SPEC_DICT["sql"].replace("FROM events", "FROM day_files")  # type: ignore[union-attr]
OTHER_DAY = "2026-11-29"


@pytest.fixture
def s3_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    aws_connection(monkeypatch, "wh_s3")
    return "wh_s3"


@pytest.fixture
def statsig_layout(s3_conn: str, demo_warehouse: Path) -> str:
    """Statsig's layout <prefix>/events/<YYYY-MM-DD>/: the day in two Parquet files, a _SUCCESS
    marker, and a neighbouring day that must not be read."""
    bucket = new_bucket(s3_conn, "wh-s3")
    table = demo_table(demo_warehouse)
    half = table.num_rows // 2
    put_table(s3_conn, bucket, f"exports/events/{DAY}/part-0000.parquet", table.slice(0, half))
    put_table(s3_conn, bucket, f"exports/events/{DAY}/part-0001.parquet", table.slice(half))
    put_table(s3_conn, bucket, f"exports/events/{DAY}/_SUCCESS", table.slice(0, 0))
    put_table(s3_conn, bucket, f"exports/events/{OTHER_DAY}/part-0000.parquet", table.slice(0, 500))
    put_table(s3_conn, bucket, f"exports/events/{DAY}-backup/part-0000.parquet", table.slice(0, 700))
    return f"s3://{bucket}/exports"


def test_statsig_layout_parquet_day_lands_exactly_once(statsig_layout: str, s3_conn: str, demo_warehouse: Path,
                                                       statsig: EmulatorProcess, tmp_path: Path) -> None:
    options = {"prefix": statsig_layout, "dataset": "events", "format": "parquet"}
    reader = warehouse_reader(s3_conn, options)
    assert isinstance(reader, S3FilesReader) and reader.dialect == "duckdb"
    report = ingest(spec_with(DAY_SQL, s3_conn, options), reader, statsig, tmp_path)
    assert report.status == L.INGESTED
    assert report.warehouse_count == report.rows_read == demo_table(demo_warehouse).num_rows
    assert_exactly_once(demo_warehouse, statsig)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_templated_prefix_csv_and_ndjson_land_exactly_once(fmt: str, s3_conn: str, demo_warehouse: Path,
                                                           statsig: EmulatorProcess, tmp_path: Path) -> None:
    bucket = new_bucket(s3_conn, f"wh-{fmt}")
    table = demo_table(demo_warehouse).set_column(0, "ds", demo_table(demo_warehouse)["ds"].cast(pa.string()))
    ext = "csv" if fmt == "csv" else "ndjson"
    # A Hive-style day folder with the date spelled without dashes, two files, and an unrelated object.
    put_table(s3_conn, bucket, f"raw/events/dt=20261130/a.{ext}", table.slice(0, 7_000), fmt)
    put_table(s3_conn, bucket, f"raw/events/dt=20261130/b.{ext}", table.slice(7_000), fmt)
    put_table(s3_conn, bucket, "raw/events/dt=20261130/manifest.txt", table.slice(0, 3), "csv")
    options = {"day_prefix": f"s3://{bucket}/raw/events/dt={{yyyymmdd}}/", "format": fmt,
               "column_types": {"ds": "date32", "user_id": "int64", "value": "float64"}}
    reader = warehouse_reader(s3_conn, options)
    assert reader.for_day(DayWindow.of(DAY, "statsig")).file_rows() == table.num_rows  # type: ignore[attr-defined]
    report = ingest(spec_with(DAY_SQL, s3_conn, options), reader, statsig, tmp_path)
    assert report.status == L.INGESTED and report.rows_read == table.num_rows
    assert_exactly_once(demo_warehouse, statsig)


def test_count_is_the_rows_in_the_day_files_and_an_empty_day_is_no_data(
        statsig_layout: str, s3_conn: str, demo_warehouse: Path, statsig: EmulatorProcess, tmp_path: Path) -> None:
    options = {"prefix": statsig_layout}
    reader = warehouse_reader(s3_conn, options)
    day = reader.for_day(DayWindow.of(DAY, "statsig"))
    assert isinstance(day, S3FilesReader)
    expected = demo_table(demo_warehouse).num_rows
    assert [o.key.rsplit("/", 1)[-1] for o in day.files] == ["part-0000.parquet", "part-0001.parquet"]
    assert day.file_rows() == expected == day.count("SELECT * FROM day_files")
    assert day.count("SELECT * FROM day_files WHERE event_name = 'purchase'") == int(
        pa.compute.sum(pa.compute.equal(demo_table(demo_warehouse)["event_name"], "purchase")).as_py())
    assert reader.for_day(DayWindow.of("2026-11-28", "statsig")).count("SELECT * FROM day_files") == 0

    # A day whose folder does not exist yet reads as "no data" (the presence check waits), not a failure.
    empty_day = {**spec_with("SELECT * FROM day_files", s3_conn, options), "day": {"column_type": "epoch_seconds"}}
    result = ingest(empty_day, reader, statsig, tmp_path, day="2026-11-28")
    assert result.status == L.NO_DATA and result.warehouse_count == 0


@pytest.mark.parametrize("tz", RENDER_TIMEZONES)
def test_day_rendering_runs_on_the_files(tz: str, s3_conn: str) -> None:
    """Timestamp (naive, Tokyo wall clock), timestamptz, epoch-seconds and date columns, and the
    macros, each select exactly the day's rows on DuckDB over the files in moto."""
    bucket = new_bucket(s3_conn, "wh-render")
    put_table(s3_conn, bucket, f"render/{DAY}/rows.parquet", boundary_rows(tz))
    reader = warehouse_reader(s3_conn, {"day_prefix": f"s3://{bucket}/render/{{day}}/"})
    window = DayWindow.of(DAY, tz)
    day = reader.for_day(window)
    schema = day.schema("SELECT * FROM day_files")
    for column, column_type in RENDER_COLUMNS:
        for kind in (column_type, "auto"):
            spec = render_spec("SELECT * FROM day_files", column, kind, tz)
            query = day_query(spec, window, "duckdb", column=column, column_arrow_type=schema.field(column).type)
            assert day.count(query.sql) == BOUNDARY_INSIDE, (column, kind, query.sql)
    for sql in RENDER_MACROS:
        query = day_query(render_spec(sql.replace("{table}", "day_files"), None, "auto", tz), window, "duckdb")
        assert day.count(query.sql) == BOUNDARY_INSIDE, query.sql


def test_missing_bucket_and_wrong_table_fail_with_clear_messages(s3_conn: str, statsig_layout: str,
                                                                 statsig: EmulatorProcess, tmp_path: Path) -> None:
    missing = {"prefix": "s3://no-such-bucket-statsig/exports"}
    with pytest.raises(IngestionError) as err:
        ingest(spec_with(DAY_SQL, s3_conn, missing), warehouse_reader(s3_conn, missing), statsig, tmp_path)
    message = str(err.value)
    assert message.startswith(f"source 'demo_events' day {DAY}: ")
    assert "the S3 bucket does not exist (NoSuchBucket)" in message and "testing" not in message

    options = {"prefix": statsig_layout}
    with pytest.raises(IngestionError, match=r"an S3 source's sql reads the day's files from the view 'day_files'"):
        ingest(spec_with(SPEC_DICT["sql"], s3_conn, options), warehouse_reader(s3_conn, options), statsig,  # type: ignore[arg-type]
               tmp_path, ledger_name="second")


def test_credential_and_permission_errors_are_explained() -> None:
    """moto accepts any key, so these are checked on the errors boto3 and pyarrow raise for them."""
    from botocore.exceptions import ClientError

    from statsig_airflow_provider.hooks.aws_common import explain_aws

    def client_error(code: str, message: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "ListObjectsV2")

    assert explain_aws(client_error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist")
                       ).startswith("AWS rejected the credentials (InvalidAccessKeyId)")  # type: ignore[union-attr]
    assert explain_aws(client_error("AccessDenied", "Access Denied")).startswith(  # type: ignore[union-attr]
        "permission denied by AWS (AccessDenied)")
    arrow = OSError("When listing objects under key 'x' in bucket 'b': AWS Error ACCESS_DENIED during "
                    "ListObjectsV2 operation: Access Denied")
    assert explain_aws(arrow) == ("permission denied by AWS (AccessDenied): the connection's IAM identity lacks a "
                                  "permission on S3, e.g. s3:ListBucket on the bucket or s3:GetObject on the "
                                  "objects: Access Denied")
    assert explain_aws(ValueError("unrelated")) is None


def test_options_are_checked_and_templates_render() -> None:
    assert render_day_prefix("s3://bkt/events/{day}", DAY) == "s3://bkt/events/2026-11-30/"
    assert render_day_prefix("s3://bkt/{yyyy}/{mm}/{dd}/", DAY) == "s3://bkt/2026/11/30/"
    assert render_day_prefix("s3://bkt/x/events_{yyyymmdd}*", DAY) == "s3://bkt/x/events_20261130"
    assert S3FilesOptions.parse({"prefix": "s3://bkt/p/", "dataset": "metrics"}).day_prefix == "s3://bkt/p/metrics/{day}/"
    for bad, match in [({}, "either `prefix`"), ({"prefix": "s3://bkt/p", "day_prefix": "s3://bkt/{day}"}, "not both"),
                       ({"day_prefix": "s3://bkt/events/"}, "must name the day"),
                       ({"day_prefix": "s3://bkt/{date}/"}, "unknown placeholder"),
                       ({"day_prefix": "s3://{day}/x"}, "S3 URI|bucket"),
                       ({"prefix": "s3://bkt/p", "fromat": "csv"}, "did you mean 'format'"),
                       ({"prefix": "s3://bkt/p", "format": "xlsx"}, "must be one of"),
                       ({"prefix": "s3://bkt/p", "format": "csv", "column_types": {"a": "int65"}}, "unknown type")]:
        with pytest.raises(OptionError, match=match):
            S3FilesOptions.parse(bad)  # type: ignore[arg-type]


def test_example_source_parses() -> None:
    spec = load_spec(ROOT / "dags_examples" / "sources" / "warehouses" / "s3_events.yaml")
    assert spec.name == "s3_events" and spec.warehouse_conn_id
    S3FilesOptions.parse(spec.warehouse_options)
