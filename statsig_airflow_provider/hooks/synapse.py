"""StatsigSynapseHook: Azure Synapse SQL pools (dedicated and serverless, T-SQL) through OdbcHook.

Why ODBC and not MsSqlHook (pymssql): Synapse is mostly reached with Azure AD (service principal,
managed identity), which Microsoft's ODBC Driver 18 supports (`Authentication=ActiveDirectory...`
in the connection extra) and pymssql does not; Driver 18 also encrypts by default, which Synapse
requires. `mssql` connections are accepted too: their fields (host, port, schema, login,
password) mean the same and are read through the same ODBC path.

The connection string is built here rather than by OdbcHook because OdbcHook writes
`SERVER=host;PORT=n`, and the Microsoft driver ignores `PORT` (it only honours `SERVER=host,port`;
FreeTDS honours both), and because values holding `;` or `}` (passwords) must be braced.

Read path: pyodbc `fetchmany` into Arrow batches, column types taken from the cursor description
so every batch of a day has the same schema. (Microsoft's `mssql-python` driver has native Arrow
fetch, but no Airflow hook uses it and nothing here could test it against a server; the bulk
path for very big days would be CETAS to ADLS Parquet, not implemented.)

`warehouse.options`: driver, login_timeout_seconds, query_timeout_seconds. See docs/warehouses/synapse.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import re
import struct
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from airflow.providers.odbc.hooks.odbc import OdbcHook

from statsig_airflow_provider.engine.options import OptionError, parse_options
from statsig_airflow_provider.engine.readers import DEFAULT_BATCH_ROWS, WarehouseReader, open_cursor, rows_to_batch
from statsig_airflow_provider.engine.sql import probe_query

DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"
SQL_SS_TIMESTAMPOFFSET = -155  # DATETIMEOFFSET, which pyodbc cannot convert without help
# Connection-extra keys that are settings of the hook, not ODBC keywords.
_NOT_ODBC = {"driver", "dsn", "connect_kwargs", "sqlalchemy_scheme", "placeholder"}


@dataclass(frozen=True)
class SynapseOptions:
    """The source's `warehouse.options` for Synapse; unknown keys and wrong types are refused."""

    driver: str | None = None  # ODBC driver name or path; default "ODBC Driver 18 for SQL Server"
    login_timeout_seconds: int = 30  # the driver's own default is 15 s, and the extra keyword is ignored
    query_timeout_seconds: int = 3600  # 0 = no limit

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> SynapseOptions:
        for key in ("login_timeout_seconds", "query_timeout_seconds"):
            value = (options or {}).get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise OptionError(f"Synapse warehouse option {key!r} must be an integer >= 0, got {value!r}")
        return parse_options(cls, options, "Synapse",
                             {"login_timeout_seconds": (int,), "query_timeout_seconds": (int,)})


def odbc_value(value: object) -> str:
    """An ODBC connection-string value, braced when it holds characters the syntax reserves."""
    text = str(value)
    if re.search(r"[;{}]|^\s|\s$", text):
        return "{" + text.replace("}", "}}") + "}"
    return text


def datetimeoffset_to_datetime(value: bytes | None) -> dt.datetime | None:
    """pyodbc output converter for DATETIMEOFFSET (SQL_SS_TIMESTAMPOFFSET): an aware datetime."""
    if value is None:
        return None
    year, month, day, hour, minute, second, fraction_ns, tz_hour, tz_minute = struct.unpack("<6hI2h", value)
    zone = dt.timezone(dt.timedelta(hours=tz_hour, minutes=tz_minute))
    return dt.datetime(year, month, day, hour, minute, second, fraction_ns // 1000, tzinfo=zone)


class StatsigSynapseHook(OdbcHook):
    """OdbcHook for Synapse SQL pools, with a port-safe connection string and an Arrow read path."""

    hook_name = "Azure Synapse SQL (Statsig provider)"

    def __init__(self, *args: Any, driver: str | None = None, login_timeout_seconds: int = 30,
                 query_timeout_seconds: int = 3600, **kwargs: Any) -> None:
        super().__init__(*args, driver=driver, **kwargs)
        self.login_timeout_seconds = login_timeout_seconds
        self.query_timeout_seconds = query_timeout_seconds

    @property
    def driver(self) -> str | None:
        """Hook argument, else the extra's `driver` when [providers.odbc] allow_driver_in_extra, else Driver 18.

        (OdbcHook's own property warns on every call, even when the extra names no driver.)
        """
        chosen = self._driver
        extra_driver = self.connection_extra_lower.get("driver")
        if not chosen and extra_driver:
            from airflow.providers.common.compat.sdk import conf

            if conf.getboolean("providers.odbc", "allow_driver_in_extra", fallback=False):
                chosen = extra_driver
            else:
                self.log.warning("the connection extra names an ODBC driver, which Airflow ignores unless "
                                 "[providers.odbc] allow_driver_in_extra = True; using %s (or set "
                                 "warehouse.options.driver)", DEFAULT_DRIVER)
        chosen = chosen or self.default_driver or DEFAULT_DRIVER
        return chosen.strip().lstrip("{").rstrip("}").strip()

    @property
    def odbc_connection_string(self) -> str:
        """DRIVER, SERVER=host,port, DATABASE, UID, PWD, Encrypt=yes unless the extra says otherwise, extras."""
        if self._conn_str:
            return self._conn_str
        conn = self.connection
        parts: dict[str, str] = {"DRIVER": "{" + (self.driver or DEFAULT_DRIVER) + "}"}
        if self.dsn:
            parts["DSN"] = odbc_value(self.dsn)
        if conn.host:
            host = conn.host.strip()
            parts["SERVER"] = odbc_value(f"{host},{conn.port}" if conn.port and "," not in host else host)
        if self.database:
            parts["DATABASE"] = odbc_value(self.database)
        if conn.login:
            parts["UID"] = odbc_value(conn.login)
        if conn.password:
            parts["PWD"] = odbc_value(conn.password)
        extras = {k: v for k, v in self.connection_extra.items() if k.lower() not in _NOT_ODBC}
        if not any(k.lower() in ("encrypt", "encryption") for k in extras):
            parts["Encrypt"] = "yes"  # Synapse refuses unencrypted sessions; Driver 18 defaults to it too
        text = "".join(f"{k}={v};" for k, v in parts.items())
        text += "".join(f"{k}={odbc_value(v)};" for k, v in extras.items())
        self._conn_str = text
        return text

    def get_conn(self) -> Any:
        """A pyodbc connection with a login timeout, a query timeout and a DATETIMEOFFSET converter."""
        import pyodbc

        kwargs = {"timeout": self.login_timeout_seconds, **self.connect_kwargs}
        conn = pyodbc.connect(self.odbc_connection_string, **kwargs)
        conn.timeout = self.query_timeout_seconds
        conn.add_output_converter(SQL_SS_TIMESTAMPOFFSET, datetimeoffset_to_datetime)
        return conn

    def warehouse_reader(self, options: Mapping[str, Any] | None = None) -> SynapseReader:
        opts = SynapseOptions.from_dict(options)
        if opts.driver:
            self._driver = opts.driver
        self.login_timeout_seconds = opts.login_timeout_seconds
        self.query_timeout_seconds = opts.query_timeout_seconds
        self._conn_str = None
        conn = self.connection
        secrets = [s for s in (conn.password,) if s]
        where = f"{conn.conn_type} connection {self.get_conn_id()!r} ({conn.host or 'DSN'}"
        where += f", database {self.database})" if self.database else ")"
        return SynapseReader(self.get_conn, description=where, secrets=secrets, driver=self.driver or DEFAULT_DRIVER,
                             query_timeout_seconds=opts.query_timeout_seconds)


class SynapseReader(WarehouseReader):
    """T-SQL over a DB-API connection: `fetchmany` rows into Arrow batches with a stable schema."""

    dialect = "tsql"

    def __init__(self, connect: Callable[[], Any], *, description: str, secrets: list[str] | None = None,
                 driver: str = DEFAULT_DRIVER, query_timeout_seconds: int = 0) -> None:
        self._connect = connect
        self._description = description
        self._secrets = [s for s in (secrets or []) if s]
        self.driver = driver
        self.query_timeout_seconds = query_timeout_seconds

    def describe(self) -> str:
        return self._description

    @contextlib.contextmanager
    def _cursor(self, sql: str) -> Iterator[Any]:
        with open_cursor(self._connect()) as cursor:
            cursor.execute(sql)
            yield cursor

    def read_batches(self, sql: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        with self._cursor(sql) as cursor:
            names = [d[0] for d in cursor.description]
            types = description_types(cursor.description)
            while True:
                rows = cursor.fetchmany(batch_rows)
                if not rows:
                    break
                _note_aware_datetimes(rows, types)
                yield rows_to_batch(rows, names, types)

    def count(self, sql: str) -> int:
        """COUNT_BIG: T-SQL's COUNT(*) is an INT and overflows past 2^31 rows."""
        body = sql.strip().rstrip(";")
        with self._cursor(f"SELECT COUNT_BIG(*) AS statsig_rows FROM (\n{body}\n) AS statsig_day") as cursor:
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    def schema(self, sql: str) -> pa.Schema:
        """From the cursor description of a zero-row probe: no row has to come back."""
        with self._cursor(probe_query(sql)) as cursor:
            types = description_types(cursor.description)
            rows = cursor.fetchmany(1)
            if rows:
                _note_aware_datetimes(rows, types)
            return pa.schema([pa.field(d[0], t or pa.null()) for d, t in zip(cursor.description, types,
                                                                                strict=True)])

    def explain(self, exc: BaseException) -> str:
        return self._scrub(explain_odbc_error(exc, self.driver, self.query_timeout_seconds))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return re.sub(r"(?i)\b(PWD|Password)=(\{(?:[^}]|\}\})*\}|[^;]*)", r"\1=***", text)


def description_types(description: Any) -> list[pa.DataType | None]:
    """Arrow types for a pyodbc cursor description (type_code is the Python type pyodbc returns)."""
    out: list[pa.DataType | None] = []
    for entry in description:
        code, precision, scale = entry[1], entry[4], entry[5]
        if code is bool:
            out.append(pa.bool_())
        elif code is int:
            out.append(pa.int64())
        elif code is float:
            out.append(pa.float64())
        elif code is decimal.Decimal and precision and 0 < precision <= 38:
            out.append(pa.decimal128(precision, scale or 0))
        elif code is str and scale and 1 <= scale <= 7 and precision == 27 + scale:
            # DATETIMEOFFSET(n): pyodbc has no Python type for SQL type -155 and describes it as
            # text of column size 27 + n with n decimal digits; the output converter makes it aware.
            out.append(pa.timestamp("us", tz="UTC"))
        elif code is str or code is uuid.UUID:
            out.append(pa.string())
        elif code in (bytes, bytearray):
            out.append(pa.binary())
        elif code is dt.datetime:
            out.append(pa.timestamp("us"))
        elif code is dt.date:
            out.append(pa.date32())
        elif code is dt.time:
            out.append(pa.time64("us"))
        else:
            out.append(None)  # inferred from the values
    return out


def _note_aware_datetimes(rows: list[Any], types: list[pa.DataType | None]) -> None:
    """DATETIMEOFFSET values (aware, via the converter) make their column a UTC timestamp."""
    for i, known in enumerate(types):
        if known is not None and not pa.types.is_timestamp(known) and not pa.types.is_string(known):
            continue
        if known is not None and pa.types.is_timestamp(known) and known.tz:
            continue
        first = next((row[i] for row in rows if row[i] is not None), None)
        if isinstance(first, dt.datetime) and first.tzinfo is not None:
            types[i] = pa.timestamp("us", tz="UTC")


def _odbc_parts(exc: BaseException) -> tuple[str, str]:
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        return args[0], args[1]
    return "", str(exc)


def explain_odbc_error(exc: BaseException, driver: str, query_timeout_s: int) -> str:
    """Words a user can act on for SQL Server / Synapse's common failures (SQLSTATE + native message)."""
    state, message = _odbc_parts(exc)
    text = re.sub(r"\s*\(\d+\)\s*\(SQL\w+\)", "", message.strip()).strip()  # drop "(208) (SQLExecDirectW)"
    lowered = text.lower()
    if state == "IM002" or "can't open lib" in lowered or ("file not found" in lowered and "driver" in lowered):
        return (f"ODBC driver {driver!r} is not installed or not registered with unixODBC ({text}); install "
                "Microsoft ODBC Driver 18 (msodbcsql18) or set warehouse.options.driver")
    if state == "28000" or "login failed" in lowered:
        return (f"bad credentials: {text}. Check the connection's login and password (or the Azure AD "
                "Authentication= keyword in its extra)")
    if state in ("HYT00", "HYT01") and "login" in lowered:
        return (f"cannot reach the SQL endpoint in time ({text}): check the host, port 1433, the workspace "
                "firewall rules for this worker's IP, and that the pool is online (dedicated pools can be paused)")
    if state in ("HYT00", "HYT01") or "query timeout" in lowered:
        return (f"query timeout: the query ran longer than {query_timeout_s}s "
                "(warehouse.options.query_timeout_seconds); narrow it or raise the limit")
    if state == "42S02" or "invalid object name" in lowered:
        return (f"missing table or view: {text}. Check the schema-qualified name (e.g. dbo.events) and the "
                "connection's database")
    if "permission was denied" in lowered or "cannot open database" in lowered or (state == "42000" and (
            "denied" in lowered)):
        return (f"missing permission: {text}. The login needs CONNECT on the database and SELECT on the "
                "tables the query reads (e.g. GRANT SELECT ON SCHEMA::dbo TO <user>)")
    if state.startswith("08") or "is not allowed to access the server" in lowered:
        return (f"cannot connect ({state}: {text}); check the host and port (SERVER=host,port), TLS "
                "(Encrypt/TrustServerCertificate) and the workspace firewall")
    return f"{type(exc).__name__}: {state + ' ' if state else ''}{text}"
