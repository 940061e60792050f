"""StatsigSnowflakeHook: Snowflake through the official SnowflakeHook, read as Arrow result batches.

The hook (`SnowflakeHook`, connection type `snowflake`) keeps doing what users configured it for:
account, user, password / key pair / OAuth / workload identity, warehouse, database, role,
session parameters. Underneath, the day runs as one query and its result comes back through the
connector's `fetch_arrow_batches()`: each result chunk (Snowflake serves big results as many
chunks from its stage) is an Arrow table, downloaded `prefetch_threads` at a time, sliced into
record batches of the engine's size. Memory stays bounded by chunk size x prefetch window.

NUMBER columns with a scale arrive as `decimal128(p, s)` (the connector's `arrow_number_to_decimal`
is turned on), so event values and metric sums keep their exact decimal digits; the connector's
default would turn them into float64. `number_to_decimal: false` restores that.

Two things the stock hook does not forward from the connection extra are honoured: `protocol`
(`http` for a local HTTP endpoint such as fakesnow's server mode) and `network_timeout` /
`login_timeout` / `socket_timeout`.

`warehouse.options` (all optional, checked by `SnowflakeOptions.from_dict`): warehouse, role,
database, schema, query_timeout_seconds, query_tag, prefetch_threads, number_to_decimal,
session_parameters. See docs/warehouses/snowflake.md.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pyarrow as pa
from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

from statsig_airflow_provider.engine.options import parse_options
from statsig_airflow_provider.engine.readers import DEFAULT_BATCH_ROWS, WarehouseReader, open_cursor
from statsig_airflow_provider.engine.sql import count_query

DEFAULT_QUERY_TAG = "statsig_airflow_provider"
_PROTOCOLS = ("http", "https")
_EXTRA_TIMEOUTS = ("network_timeout", "login_timeout", "socket_timeout")


@dataclass(frozen=True)
class SnowflakeOptions:
    """The source's `warehouse.options` for Snowflake; unknown keys and wrong types are refused."""

    warehouse: str | None = None  # virtual warehouse that runs the query; default: the connection's
    role: str | None = None  # role to read with; default: the connection's (or the user's default role)
    database: str | None = None  # database for unqualified names; default: the connection's
    schema: str | None = None  # schema for unqualified names; default: the connection's
    query_timeout_seconds: int | None = None  # cancel the query after this long (queued + running)
    query_tag: str | None = None  # QUERY_TAG, to find (and bill) the reads; default: the connection's, else ours
    prefetch_threads: int = 4  # result chunks downloaded ahead of the one being read
    number_to_decimal: bool = True  # NUMBER(p, s>0) as decimal128 (exact) rather than float64
    session_parameters: dict[str, Any] = field(default_factory=dict)  # on top of the connection's

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> SnowflakeOptions:
        opts = parse_options(cls, options, "Snowflake", {
            "query_timeout_seconds": (int,), "prefetch_threads": (int,), "number_to_decimal": (bool,),
            "session_parameters": (dict,)})
        if opts.query_timeout_seconds is not None and opts.query_timeout_seconds <= 0:
            raise ValueError(f"query_timeout_seconds must be positive, got {opts.query_timeout_seconds}")
        if not 1 <= opts.prefetch_threads <= 32:
            raise ValueError(f"prefetch_threads must be between 1 and 32, got {opts.prefetch_threads}")
        return opts


class StatsigSnowflakeHook(SnowflakeHook):
    """SnowflakeHook with an Arrow read path for the ingestion engine.

    `connector_options` are extra `snowflake.connector.connect` arguments and
    `extra_session_parameters` are merged over the connection's session parameters; the reader
    uses both, a plain `get_conn()` gets the connection as configured.
    """

    hook_name = "Snowflake (Statsig provider)"

    def __init__(self, *args: Any, connector_options: Mapping[str, Any] | None = None,
                 extra_session_parameters: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connector_options = dict(connector_options or {})
        self.extra_session_parameters = dict(extra_session_parameters or {})

    @cached_property
    def _connection_extra(self) -> dict[str, Any]:
        return dict(self.get_connection(self.get_conn_id()).extra_dejson)

    def _get_conn_params(self) -> dict[str, Any]:
        """The stock parameters, plus what the stock hook drops (protocol, timeouts) and the reader's."""
        params: dict[str, Any] = dict(super()._get_conn_params())
        extra = self._connection_extra
        protocol = extra.get("protocol")
        if protocol:
            if str(protocol).lower() not in _PROTOCOLS:
                raise ValueError(f"the Snowflake connection extra 'protocol' must be http or https, got {protocol!r}")
            params["protocol"] = str(protocol).lower()
        for key in _EXTRA_TIMEOUTS:
            if extra.get(key) not in (None, ""):
                params[key] = int(extra[key])
        if self.extra_session_parameters:
            params["session_parameters"] = {**(params.get("session_parameters") or {}),
                                            **self.extra_session_parameters}
        params.update(self.connector_options)
        return params

    def warehouse_reader(self, options: Mapping[str, Any] | None = None) -> SnowflakeReader:
        """The engine's reader for this connection, configured by the source's `warehouse.options`."""
        opts = SnowflakeOptions.from_dict(options)
        configured = self._connection_extra.get("session_parameters") or {}
        tag = opts.query_tag or (None if "QUERY_TAG" in configured else DEFAULT_QUERY_TAG)
        session = {**({"QUERY_TAG": tag} if tag else {}), **opts.session_parameters}
        hook = type(self)(
            snowflake_conn_id=self.get_conn_id(),
            warehouse=opts.warehouse or self.warehouse, role=opts.role or self.role,
            database=opts.database or self.database, schema=opts.schema or self.schema,
            connector_options={"arrow_number_to_decimal": opts.number_to_decimal,
                               "client_prefetch_threads": opts.prefetch_threads},
            extra_session_parameters=session,
        )
        return SnowflakeReader(hook.get_conn, description=hook.describe_connection(),
                               query_timeout_seconds=opts.query_timeout_seconds,
                               number_to_decimal=opts.number_to_decimal)

    def describe_connection(self) -> str:
        """Account, warehouse, database and role: enough to find the source, never a credential."""
        params = self._get_static_conn_params
        parts = [f"account {params.get('account') or '?'}"]
        for key in ("warehouse", "database", "schema", "role"):
            if params.get(key):
                parts.append(f"{key} {params[key]}")
        return f"snowflake connection {self.get_conn_id()!r} ({', '.join(parts)})"


class SnowflakeReader(WarehouseReader):
    """One Snowflake query per call, its result streamed as Arrow through the connector's result batches."""

    dialect = "snowflake"

    def __init__(self, connect: Callable[[], Any], *, description: str = "snowflake",
                 query_timeout_seconds: int | None = None, number_to_decimal: bool = True) -> None:
        self._connect = connect
        self._description = description
        self.query_timeout_seconds = query_timeout_seconds
        self.number_to_decimal = number_to_decimal

    def describe(self) -> str:
        return self._description

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        with open_cursor(self._connect()) as cursor:
            yield cursor

    def _execute(self, cursor: Any, sql: str) -> None:
        # The connector's timeout covers queueing and running, and cancels the query server-side.
        cursor.execute(sql, timeout=self.query_timeout_seconds)

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        with self._cursor() as cursor:
            self._execute(cursor, sql)
            # One pyarrow.Table per result chunk (the connector checks the rows add up to the total);
            # each is sliced without copying so the engine sees batches of its own size.
            for table in cursor.fetch_arrow_batches():
                for batch in table.to_batches(max_chunksize=batch_rows):
                    if batch.num_rows:
                        yield batch

    def count(self, sql: str) -> int:
        with self._cursor() as cursor:
            self._execute(cursor, count_query(sql))
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    def schema(self, sql: str) -> pa.Schema:
        """The result's schema from a describe-only request: compiled, not run, no warehouse time."""
        with self._cursor() as cursor:
            metadata = cursor.describe(sql)
        return pa.schema([pa.field(m.name, snowflake_arrow_type(m, self.number_to_decimal)) for m in metadata])

    def explain(self, exc: BaseException) -> str:
        return explain_snowflake_error(exc)


def snowflake_arrow_type(metadata: Any, number_to_decimal: bool = True) -> pa.DataType:
    """The Arrow type `fetch_arrow_batches` gives a column, from its cursor description.

    The connector's own empty-result schema loses the time zone of TIMESTAMP_TZ/LTZ and the scale
    of NUMBER, and those decide how a day is filtered, so the mapping is done here.
    """
    from snowflake.connector.constants import FIELD_ID_TO_NAME

    name = FIELD_ID_TO_NAME.get(metadata.type_code, "")
    if name == "FIXED":
        scale = metadata.scale or 0
        if scale <= 0:
            return pa.int64()
        return pa.decimal128(metadata.precision or 38, scale) if number_to_decimal else pa.float64()
    simple: dict[str, pa.DataType] = {
        "REAL": pa.float64(), "TEXT": pa.string(), "DATE": pa.date32(), "BOOLEAN": pa.bool_(),
        "BINARY": pa.binary(), "TIME": pa.time64("ns"), "TIMESTAMP_NTZ": pa.timestamp("ns"),
        "TIMESTAMP_LTZ": pa.timestamp("ns", tz="UTC"), "TIMESTAMP_TZ": pa.timestamp("ns", tz="UTC"),
    }
    return simple.get(name, pa.string())  # VARIANT, OBJECT, ARRAY, GEOGRAPHY... arrive as JSON/WKT text


# Snowflake error numbers (the connector's `errno`): server codes and the connector's own.
_BAD_CREDENTIALS = {390100, 390101, 390102, 390103, 390144, 390190, 390191, 390195, 390318, 390420, 390432, 394304}
_NOT_GRANTED = {3001, 3003, 390189, 390186}
_NO_WAREHOUSE = {606, 390201}
_TIMEOUTS = {630, 604, 251011, 251012}
_NETWORK = {250001, 250003, 251001, 253003}
_CODE_PREFIX = re.compile(r"^(\d{6} \([0-9A-Z]{5}\): )+")


def explain_snowflake_error(exc: BaseException) -> str:
    """Words a user can act on for the Snowflake failures seen in practice; the driver's text follows."""
    errno = getattr(exc, "errno", None)
    errno = errno if isinstance(errno, int) and errno > 0 else None
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    text = " ".join(str(getattr(exc, "raw_msg", None) or exc).split())  # raw_msg: without the code prefix...
    text = _CODE_PREFIX.sub("", text)  # ...which some server messages carry all the same
    lower = text.lower()
    code = f" {errno:06d}" + (f" ({sqlstate})" if sqlstate not in ("", "n/a") else "") if errno else ""
    query_id = f" [query id {exc.sfqid}]" if getattr(exc, "sfqid", None) else ""
    detail = f"{type(exc).__name__}{code}: {text}{query_id}"
    if errno in _BAD_CREDENTIALS or sqlstate == "28000" or "incorrect username or password" in lower:
        headline = ("Snowflake refused the credentials: check the connection's login and password (or key pair / "
                    "OAuth settings) and that the user is not locked or disabled")
    elif errno in _TIMEOUTS or "timeout" in lower or "timed out" in lower:
        headline = ("the Snowflake query timed out and was cancelled: raise warehouse.options.query_timeout_seconds "
                    "(or the account's STATEMENT_TIMEOUT_IN_SECONDS), use a bigger warehouse, or narrow the query")
    elif errno in _NO_WAREHOUSE or "no active warehouse" in lower:
        headline = ("no usable Snowflake warehouse: set 'warehouse' in the connection extra or warehouse.options and "
                    "GRANT USAGE ON WAREHOUSE to the role")
    elif errno == 2003 or "does not exist or not authorized" in lower:
        headline = ("Snowflake cannot find the table or view, or the role may not read it (Snowflake does not say "
                    "which): check the name, database and schema, and GRANT USAGE on the database and schema and "
                    "SELECT on the table to the role")
    elif errno in _NOT_GRANTED or "insufficient privileges" in lower or "not granted" in lower:
        headline = ("the Snowflake role lacks a privilege: GRANT USAGE on the database and schema and SELECT on the "
                    "table (or view) to the role the connection uses")
    elif errno in _NETWORK or (errno is not None and 250000 <= errno < 260000):
        headline = ("could not reach Snowflake: check the account identifier (and host/port/protocol in the "
                    "connection extra), proxies and network access")
    else:
        return detail
    return f"{headline} ({detail})"
