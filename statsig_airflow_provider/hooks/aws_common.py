"""What the AWS warehouse hooks share: checked options, S3 access for Arrow, and AWS error messages.

Redshift UNLOAD, Athena results and S3 source files all end up as objects in S3 read by pyarrow.
pyarrow's S3 filesystem ignores botocore's endpoint settings (`AWS_ENDPOINT_URL*`), so the
credentials, region and endpoint of the Airflow AWS connection are handed to it explicitly here,
the same ones boto3 gets from the official hook. Heavy modules (pyarrow.fs, pyarrow.dataset) are
imported only when a reader runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
import secrets
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from statsig_airflow_provider.engine.days import DayWindow
from statsig_airflow_provider.engine.options import OptionReader
from statsig_airflow_provider.engine.readers import WarehouseReader

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

# Objects that are never data: Hadoop/Spark markers and hidden files (pyarrow's own defaults),
# plus the manifests and metadata files that Redshift and Athena UNLOAD may write next to the data.
IGNORED_PREFIXES = ("_", ".")
NOT_DATA_SUFFIXES = ("manifest", ".manifest", "-manifest.csv", ".metadata", ".crc", ".json.manifest")


class Options(OptionReader):
    """`warehouse.options` of the AWS warehouses, with S3 URIs checked."""

    def s3_uri(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.get(key, str, default, required=required)
        if value is not None:
            try:
                split_s3_uri(value)
            except ValueError as exc:
                raise self.fail(key, str(exc)) from None
        return value


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix")."""
    match = re.fullmatch(r"s3a?://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(.*))?", uri.strip())
    if not match:
        raise ValueError(f"must be an S3 URI like s3://bucket/prefix/; got {uri!r}")
    return match.group(1), match.group(2) or ""


def run_prefix(base_uri: str, window_day: dt.date | None) -> str:
    """A fresh, unique folder under `base_uri` for one read (UNLOAD needs an empty target)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    day = window_day.isoformat() if window_day else "query"
    return f"{base_uri.rstrip('/')}/{day}/{stamp}-{secrets.token_hex(4)}/"


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int


class S3Access:
    """An Airflow AWS hook's identity, turned into a boto3 S3 client and a pyarrow S3 filesystem.

    Both use the hook's session (keys, role, profile), region and S3 endpoint (`endpoint_url` or
    `service_config.s3.endpoint_url` in the connection extra), so listing, reading and deleting
    all happen as the same identity against the same endpoint.
    """

    def __init__(self, hook: AwsBaseHook) -> None:
        self.hook = hook

    @cached_property
    def endpoint_url(self) -> str | None:
        return self.hook.conn_config.get_service_endpoint_url("s3")

    @cached_property
    def region(self) -> str | None:
        return self.hook.region_name

    @cached_property
    def client(self) -> Any:
        session = self.hook.get_session(region_name=self.region)
        return session.client("s3", endpoint_url=self.endpoint_url, config=self.hook.config, verify=self.hook.verify)

    @cached_property
    def filesystem(self) -> Any:
        from pyarrow import fs

        kwargs: dict[str, Any] = {}
        if self.region:
            kwargs["region"] = self.region
        if self.endpoint_url:
            kwargs["endpoint_override"] = self.endpoint_url
        credentials = self.hook.get_session(region_name=self.region).get_credentials()
        if credentials is None:
            kwargs["anonymous"] = True
        else:
            frozen = credentials.get_frozen_credentials()
            kwargs.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
        return fs.S3FileSystem(**kwargs)

    def list(self, bucket: str, prefix: str) -> list[S3Object]:
        """Every object under `prefix`, sorted by key."""
        found: list[S3Object] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.extend(S3Object(o["Key"], int(o.get("Size", 0))) for o in page.get("Contents", []))
        return sorted(found, key=lambda o: o.key)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object under `prefix` (a run's own folder); return how many were deleted."""
        if not prefix.strip("/"):
            raise ValueError("refusing to delete a whole bucket")
        keys = [o.key for o in self.list(bucket, prefix)]
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            self.client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
        return len(keys)


def is_data_object(key: str, size: int, suffixes: tuple[str, ...] = ()) -> bool:
    """Whether an object is a data file: not a folder marker, hidden file, manifest or metadata."""
    name = key.rsplit("/", 1)[-1]
    if not name or key.endswith("/") or name.startswith(IGNORED_PREFIXES):
        return False
    if suffixes:
        return name.lower().endswith(suffixes)
    return size > 0 and not name.lower().endswith(NOT_DATA_SUFFIXES)


def open_dataset(filesystem: Any, paths: list[str], file_format: Any) -> Any:
    """A pyarrow dataset over exactly these files, its schema unified over all of them.

    pyarrow would otherwise take the first file's schema, and a later file whose column is
    double where the first had int64 (or a column only some files have) would fail mid-day.
    """
    from pyarrow import dataset as ds

    factory = ds.FileSystemDatasetFactory(filesystem, paths, file_format)
    return factory.finish(factory.inspect(promote_options="permissive"))


def bounded_dataset(dataset: Any, *, batch_rows: int = 65_536) -> Any:
    """The same dataset, but every scan of it reads ahead one file and two batches at most.

    DuckDB scans a registered dataset through `dataset.scanner(columns=..., filter=...)` (so it
    keeps projection and filter pushdown) with pyarrow's default read-ahead of 4 files x 16
    batches, which holds whole files in memory; this subclass caps it so memory stays flat.
    """
    bounded = _bounded_dataset_class()(list(dataset.get_fragments()), dataset.schema, dataset.format,
                                       dataset.filesystem)
    bounded.batch_rows = batch_rows
    return bounded


@functools.cache
def _bounded_dataset_class() -> type:
    from pyarrow import dataset as ds

    class BoundedDataset(ds.FileSystemDataset):
        batch_rows = 65_536

        def scanner(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("batch_size", self.batch_rows)
            kwargs.setdefault("batch_readahead", 2)
            kwargs.setdefault("fragment_readahead", 1)
            return super().scanner(*args, **kwargs)

    return BoundedDataset


def parquet_batches(filesystem: Any, paths: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Stream Parquet files as record batches, reading ahead little so memory stays flat."""
    from pyarrow import dataset as ds

    if not paths:
        return
    dataset = open_dataset(filesystem, paths, ds.ParquetFileFormat())
    yield from dataset.to_batches(batch_size=batch_rows, batch_readahead=2, fragment_readahead=1)


# ------------------------------------------------------------------------------------ errors

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "UnrecognizedClientException", "InvalidClientTokenId",
    "ExpiredToken", "ExpiredTokenException", "InvalidSignatureException", "AuthFailure", "InvalidToken",
    "TokenRefreshRequired", "IncompleteSignature",
}
_PERMISSION_CODES = {"AccessDenied", "AccessDeniedException", "AllAccessDisabled", "UnauthorizedOperation",
                     "AuthorizationError", "Forbidden", "403"}
_ARROW_CODES = {  # pyarrow's S3 errors spell AWS error codes in capitals
    "INVALID_ACCESS_KEY_ID": "InvalidAccessKeyId", "SIGNATURE_DOES_NOT_MATCH": "SignatureDoesNotMatch",
    "EXPIRED_TOKEN": "ExpiredToken", "ACCESS_DENIED": "AccessDenied", "NO_SUCH_BUCKET": "NoSuchBucket",
    "NO_SUCH_KEY": "NoSuchKey", "UNRECOGNIZED_CLIENT": "UnrecognizedClientException",
}


def aws_error_code(exc: BaseException) -> str | None:
    """The AWS error code behind a boto3, pyarrow or wrapped (pyathena) exception, if any."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    text = str(exc)
    match = re.search(r"An error occurred \((\w+)\) when calling", text)
    if match:
        return match.group(1)
    for arrow_code, code in _ARROW_CODES.items():
        if f"AWS Error {arrow_code}" in text:
            return code
    if "AWS Error" in text and "HTTP status 403" in text:
        return "AccessDenied"
    return None


def explain_aws(exc: BaseException, *, what: str = "S3") -> str | None:
    """A plain-words message for a common AWS failure, or None if it is not one.

    Messages quote AWS's own text (which never carries secrets) and say what to fix.
    """
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return ("no AWS credentials were found: set a key pair, a role or a profile in the Airflow AWS "
                "connection")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return f"cannot reach {what}: {exc}"
    code = aws_error_code(exc)
    if code is None:
        text = str(exc)
        if isinstance(exc, FileNotFoundError) or "Path does not exist" in text:
            return f"{what} object not found: {text}"
        if "curlCode: 7" in text or "Couldn't connect" in text:
            return f"cannot reach {what}: {text}"
        return None
    detail = _aws_message(exc)
    if code in _CREDENTIAL_CODES:
        return (f"AWS rejected the credentials ({code}): check the key pair, session token or role of the "
                f"Airflow AWS connection (they may have expired){detail}")
    if code in _PERMISSION_CODES:
        return (f"permission denied by AWS ({code}): the connection's IAM identity lacks a permission on "
                f"{what}, e.g. s3:ListBucket on the bucket or s3:GetObject on the objects{detail}")
    if code == "NoSuchBucket":
        return f"the S3 bucket does not exist (NoSuchBucket){detail}"
    if code == "NoSuchKey":
        return f"the S3 object does not exist (NoSuchKey){detail}"
    if code in ("SlowDown", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"):
        return f"AWS throttled the requests ({code}); the task will retry{detail}"
    return None


def _aws_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        message = response.get("Error", {}).get("Message")
        if message:
            return f": {message}"
    text = str(exc)
    match = re.search(r"operation(?: \(reached max retries: \d+\))?: (.+)$", text)
    if match:
        return f": {match.group(1)}"
    return ""


@contextlib.contextmanager
def cleanup_prefix(access: S3Access, uri: str, *, keep: bool, log: Any = None) -> Iterator[None]:
    """Delete a run's S3 folder when the block ends, whether it succeeded or not."""
    try:
        yield
    finally:
        if not keep:
            bucket, prefix = split_s3_uri(uri)
            try:
                access.delete_prefix(bucket, prefix)
            except Exception as exc:  # the read's own outcome matters more than the cleanup's
                if log is not None:
                    log.warning("could not delete %s: %s", uri, explain_aws(exc) or exc)


class UnloadReader(WarehouseReader):
    """A SQL warehouse that counts the day first and reads days of `unload_threshold_rows` or more
    through UNLOAD: Parquet in a fresh S3 folder, read back with pyarrow, deleted afterwards (also
    when the read fails). Subclasses say how to count, how to word and run the UNLOAD, and which
    S3 access reads it back."""

    def __init__(self, hook: Any, options: Any, *, window: DayWindow | None = None) -> None:
        self.hook = hook
        self.options = options
        self.window = window
        self._counts: dict[str, int] = {}
        self.last_unload: str | None = None  # the UNLOAD text of the last big read (logs, tests)

    def for_day(self, window: DayWindow) -> UnloadReader:
        """A reader for one day: the UNLOAD folder is named after it, and counts are per day."""
        return type(self)(self.hook, self.options, window=window)

    @abstractmethod
    def connection_label(self) -> str:
        """How logs and errors name the connection (no secrets)."""

    def describe(self) -> str:
        text = self.connection_label()
        if self.options.unload_enabled:
            text += f" (UNLOAD from {self.options.unload_threshold_rows:,} rows)"
        return text

    @property
    @abstractmethod
    def s3(self) -> S3Access:
        """Where the UNLOAD files are read from and deleted."""

    def count(self, sql: str) -> int:
        rows = self.count_rows(sql)
        self._counts[sql] = rows
        return rows

    @abstractmethod
    def count_rows(self, sql: str) -> int:
        """The warehouse's count of `sql`'s rows."""

    @abstractmethod
    def unload_statement(self, sql: str, location: str) -> str:
        """The UNLOAD that writes `sql`'s result as Parquet under `location`."""

    @abstractmethod
    def execute_unload(self, statement: str) -> None:
        """Run the UNLOAD and wait for it."""

    def uses_unload(self, sql: str) -> bool:
        """Whether `sql` is read through UNLOAD: UNLOAD is set up and the query (counted first; the
        engine's count is reused) has at least `unload_threshold_rows` rows."""
        if not self.options.unload_enabled:
            return False
        rows = self._counts.get(sql)
        if rows is None:
            rows = self.count(sql)
        return rows >= self.options.unload_threshold_rows

    def read_unload(self, sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        assert self.options.unload_s3_uri is not None
        location = run_prefix(self.options.unload_s3_uri, self.window.day if self.window else None)
        statement = self.unload_statement(sql, location)
        self.last_unload = statement
        with cleanup_prefix(self.s3, location, keep=self.options.keep_unload_files, log=self.hook.log):
            self.execute_unload(statement)
            bucket, prefix = split_s3_uri(location)
            files = [f"{bucket}/{o.key}" for o in self.s3.list(bucket, prefix) if is_data_object(o.key, o.size)]
            self.hook.log.info("UNLOAD wrote %d file(s) under %s", len(files), location)
            yield from parquet_batches(self.s3.filesystem, files, batch_rows)
