"""The PostgreSQL connector: asyncpg, one short-lived read-only connection per operation."""

from __future__ import annotations

import contextlib
import math
import ssl
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from typing import Any, Literal, TypeVar

import asyncpg
import duckdb
import pyarrow as pa
from pydantic import BaseModel, Field

from freshet.connectors.batches import (
    duckdb_batches,
    new_duckdb,
    postgres_extension_path,
    stream_batches,
)
from freshet.connectors.duckdb_session import first_line
from freshet.connectors.errors import ConnectorError, sanitise
from freshet.connectors.models import ColumnInfo, ForeignKeyInfo, Sample, TableInfo
from freshet.connectors.sql import check_limit, qualified_name, quote_literal
from freshet.connectors.values import json_safe

T = TypeVar("T")

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

# The client-side timeout only backs up the server's statement_timeout (for a server that stops
# answering); the grace keeps it from firing first and hiding the server's clearer error.
_CLIENT_TIMEOUT_GRACE_S = 2.0
# SQLSTATE classes where trying again later may succeed: connection exceptions, insufficient
# resources (too many connections, disk full), operator intervention (shutdown, cancel, server
# starting up) and transaction rollbacks (serialisation failures, deadlocks).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "40")

# asyncpg hands PostgreSQL's one-byte "char" (relkind, contype) over as bytes; the ::text casts
# keep the Python side comparing plain strings.
#
# Relations the connecting role can read. Partitions are left out because their parent already
# covers their rows; every schema starting `pg_` is reserved for the system (pg_catalog,
# pg_toast, pg_temp_N, ...). The explicit privilege checks mirror information_schema, which only
# lists what the role may use, so every listed table can also be sampled.
_RELATIONS_SQL = r"""
SELECT c.oid, n.nspname, c.relname, c.relkind::text AS relkind, c.reltuples
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm')
  AND NOT c.relispartition
  AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\_%'
  AND ($1::text[] IS NULL OR n.nspname = ANY($1::text[]))
  AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
  AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_catalog.pg_attribute AS a
WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

# conkey/confkey are attribute numbers in constraint order; WITH ORDINALITY keeps the pairing of
# multi-column foreign keys. conparentid <> 0 marks the clones PostgreSQL adds for every partition
# of a referenced partitioned table; the original constraint already says everything.
_CONSTRAINTS_SQL = """
SELECT con.conrelid, con.contype::text AS contype,
       ARRAY(SELECT att.attname
             FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute AS att
               ON att.attrelid = con.conrelid AND att.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       rn.nspname AS referred_schema,
       rc.relname AS referred_table,
       ARRAY(SELECT att.attname
             FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute AS att
               ON att.attrelid = con.confrelid AND att.attnum = k.attnum
             ORDER BY k.ord) AS referred_columns
FROM pg_catalog.pg_constraint AS con
LEFT JOIN pg_catalog.pg_class AS rc ON rc.oid = con.confrelid
LEFT JOIN pg_catalog.pg_namespace AS rn ON rn.oid = rc.relnamespace
WHERE con.conrelid = ANY($1::oid[]) AND con.contype IN ('p', 'f') AND con.conparentid = 0
ORDER BY con.conrelid, con.conname
"""


class PostgresConfig(BaseModel, extra="forbid", frozen=True):
    host: str = Field(min_length=1)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(min_length=1)
    user: str = Field(min_length=1)
    sslmode: SslMode | None = None
    # An empty list would silently hide every table, which is never what was meant.
    schemas: list[str] | None = Field(default=None, min_length=1)


class PostgresConnector:
    kind: str = "postgres"

    def __init__(
        self, config: PostgresConfig, secrets: Mapping[str, str], *, timeout_s: float
    ) -> None:
        self._config = config
        self._secrets = dict(secrets)
        self._timeout_s = timeout_s

    async def test(self) -> None:
        async def probe() -> None:
            async with self._connection() as conn:
                await conn.fetchval("SELECT 1")

        await self._guarded(probe())

    async def introspect(self) -> list[TableInfo]:
        async def read_catalog() -> list[TableInfo]:
            # One snapshot for all three queries, so a concurrent ALTER cannot produce a table
            # whose columns and constraints disagree.
            async with (
                self._connection() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                relations = await conn.fetch(_RELATIONS_SQL, self._config.schemas)
                oids = [r["oid"] for r in relations]
                columns = await conn.fetch(_COLUMNS_SQL, oids)
                constraints = await conn.fetch(_CONSTRAINTS_SQL, oids)
            return _assemble(relations, columns, constraints)

        return await self._guarded(read_catalog())

    async def sample(self, schema_name: str, table: str, limit: int) -> Sample:
        check_limit(limit)
        sql = f"SELECT * FROM {qualified_name(schema_name, table)} LIMIT $1"

        async def read_rows() -> Sample:
            async with self._connection() as conn:
                # Preparing first gives the column names even when there are no rows.
                statement = await conn.prepare(sql)
                names = [str(attribute.name) for attribute in statement.get_attributes()]
                records = await statement.fetch(limit)
            return Sample(
                columns=names,
                rows=[[json_safe(value) for value in record.values()] for record in records],
            )

        return await self._guarded(read_rows(), table=(schema_name, table))

    async def stream(
        self, schema_name: str, table: str, *, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        """Every row, in batches, through DuckDB's postgres scanner (binary COPY, parallel
        ranges of one exported snapshot): as fast as reading the raw COPY output here."""
        source = f"pg.{qualified_name(schema_name, table)}"

        def produce(cancelled: threading.Event) -> Iterator[pa.RecordBatch]:
            conn = new_duckdb()
            try:
                conn.execute(f"LOAD {quote_literal(str(postgres_extension_path()))}")
                conn.execute(
                    f"ATTACH {quote_literal(self._libpq())} AS pg (TYPE postgres, READ_ONLY)"
                )
            except BaseException:
                conn.close()
                raise
            yield from duckdb_batches(conn, f"SELECT * FROM {source}", [], batch_rows, cancelled)

        async for batch in stream_batches(
            produce, lambda exc: self._stream_error(exc, (schema_name, table))
        ):
            yield batch

    def _libpq(self) -> str:
        """A libpq connection string (the scanner's): read-only sessions, as `_connection`."""
        cfg = self._config
        pairs: dict[str, str] = {
            "host": cfg.host,
            "port": str(cfg.port),
            "dbname": cfg.database,
            "user": cfg.user,
            "password": self._secrets.get("password", ""),
            "connect_timeout": str(max(1, math.ceil(self._timeout_s))),
            "application_name": "freshet",
            "options": "-c default_transaction_read_only=on",
        }
        if cfg.sslmode is not None:
            pairs["sslmode"] = cfg.sslmode
        return " ".join(f"{key}={_libpq_value(value)}" for key, value in pairs.items())

    def _stream_error(self, exc: BaseException, table: tuple[str, str]) -> ConnectorError:
        if isinstance(exc, ConnectorError):
            return exc
        cfg = self._config
        where = f"{cfg.host}:{cfg.port}/{cfg.database}"
        text = first_line(exc)
        if isinstance(exc, duckdb.CatalogException):
            return ConnectorError(
                f"table not found: {table[0]}.{table[1]} on {where}", transient=False
            )
        if isinstance(exc, duckdb.InterruptException):
            return ConnectorError(f"reading {where} was cancelled", transient=True)
        if isinstance(exc, duckdb.IOException) and "Unable to connect" in text:
            # The scanner's message quotes the whole connection string; only the reason stays.
            reason = text.rsplit(":", 1)[-1].strip()
            return ConnectorError(
                sanitise(f"could not connect to {cfg.host}:{cfg.port}: {reason}", self._secrets),
                transient=True,
            )
        if isinstance(exc, duckdb.OutOfMemoryException):
            return ConnectorError(f"out of memory reading {where}", transient=True)
        return ConnectorError(
            sanitise(f"error reading {table[0]}.{table[1]} on {where}: {text}", self._secrets),
            transient=isinstance(exc, duckdb.IOException | OSError),
        )

    async def _guarded(
        self, operation: Coroutine[Any, Any, T], *, table: tuple[str, str] | None = None
    ) -> T:
        """Await `operation`, turning every failure into a ConnectorError.

        The ConnectorError is raised outside the `except` block on purpose: raised inside it,
        the driver's exception would ride along as `__context__`, and its text may hold secrets.
        """
        try:
            return await operation
        except ConnectorError:
            raise
        except Exception as exc:
            error = self._error(exc, table)
        raise error

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        cfg = self._config
        conn = await asyncpg.connect(
            host=cfg.host,
            port=cfg.port,
            user=cfg.user,
            database=cfg.database,
            # Never None: asyncpg would then fall back to PGPASSWORD and ~/.pgpass, handing
            # Freshet's own credentials to whatever host an endpoint names.
            password=self._secrets.get("password", ""),
            ssl=cfg.sslmode,
            timeout=self._timeout_s,
            command_timeout=self._timeout_s + _CLIENT_TIMEOUT_GRACE_S,
            server_settings={
                "statement_timeout": str(max(1, math.ceil(self._timeout_s * 1000))),
                # Freshet only reads; the server enforces that even if a query tried more.
                "default_transaction_read_only": "on",
                "application_name": "freshet",
            },
        )
        try:
            yield conn
        except BaseException:
            # After a failure or cancellation the session state is unknown; drop the socket
            # rather than wait on a polite goodbye.
            conn.terminate()
            raise
        try:
            await conn.close(timeout=self._timeout_s)
        except Exception:
            conn.terminate()

    def _error(self, exc: Exception, table: tuple[str, str] | None) -> ConnectorError:
        """`exc` as a ConnectorError; the original is dropped, as its text may hold secrets."""
        message, transient = self._classify(exc, table)
        return ConnectorError(sanitise(message, self._secrets), transient=transient)

    def _classify(self, exc: Exception, table: tuple[str, str] | None) -> tuple[str, bool]:
        cfg = self._config
        where = f"{cfg.host}:{cfg.port}/{cfg.database}"
        if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
            return f"authentication failed for user {cfg.user} on {where}: {exc}", False
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            return f"database not found: {where}", False
        if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.InvalidSchemaNameError):
            if table is not None:
                return f"table not found: {table[0]}.{table[1]} on {where}", False
            return f"{exc} on {where}", False
        if isinstance(exc, asyncpg.InsufficientPrivilegeError):
            return f"permission denied on {where}: {exc}", False
        if isinstance(exc, asyncpg.QueryCanceledError):
            if "statement timeout" in str(exc):
                return f"statement timed out after {self._timeout_s:g}s on {where}", True
            return f"statement was cancelled on {where}", True
        if isinstance(exc, asyncpg.PostgresError):
            sqlstate = str(getattr(exc, "sqlstate", "") or "")
            transient = sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES)
            return f"PostgreSQL error {sqlstate} on {where}: {exc}", transient
        if isinstance(exc, asyncpg.ClientConfigurationError):
            return f"invalid connection settings for {where}: {exc}", False
        if isinstance(exc, asyncpg.InterfaceError):
            return f"PostgreSQL client error on {where}: {exc}", False
        # TimeoutError subclasses OSError, and a certificate problem is an OSError too, but
        # neither is a refused connection; so both are checked before the OSError catch-all.
        if isinstance(exc, TimeoutError):
            return f"timed out after {self._timeout_s:g}s talking to {where}", True
        if isinstance(exc, ssl.SSLError):
            return f"TLS failure connecting to {where}: {exc}", False
        if isinstance(exc, ConnectionError) and "rejected SSL upgrade" in str(exc):
            # asyncpg's way of saying sslmode demands TLS the server does not offer: a
            # settings mismatch that no retry fixes.
            return f"server {cfg.host}:{cfg.port} does not support TLS (sslmode)", False
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc)
            return f"could not connect to {cfg.host}:{cfg.port}: {reason}", True
        return f"unexpected {type(exc).__name__} on {where}: {exc}", False


def _libpq_value(value: str) -> str:
    """A libpq connection-string value: quoted, with quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _assemble(relations: list[Any], columns: list[Any], constraints: list[Any]) -> list[TableInfo]:
    columns_by_oid: dict[int, list[Any]] = {}
    for column in columns:
        columns_by_oid.setdefault(int(column["attrelid"]), []).append(column)
    primary_keys: dict[int, list[str]] = {}
    foreign_keys: dict[int, list[ForeignKeyInfo]] = {}
    for con in constraints:
        oid = int(con["conrelid"])
        if con["contype"] == "p":
            primary_keys[oid] = [str(c) for c in con["columns"]]
        else:
            foreign_keys.setdefault(oid, []).append(
                ForeignKeyInfo(
                    columns=[str(c) for c in con["columns"]],
                    referred_schema=str(con["referred_schema"]),
                    referred_table=str(con["referred_table"]),
                    referred_columns=[str(c) for c in con["referred_columns"]],
                )
            )
    tables: list[TableInfo] = []
    for rel in relations:
        oid = int(rel["oid"])
        is_view = rel["relkind"] in ("v", "m")
        primary_key = primary_keys.get(oid, [])
        reltuples = float(rel["reltuples"])
        tables.append(
            TableInfo(
                schema_name=str(rel["nspname"]),
                name=str(rel["relname"]),
                kind="view" if is_view else "table",
                columns=[
                    ColumnInfo(
                        name=str(col["attname"]),
                        data_type=str(col["format_type"]),
                        nullable=not col["attnotnull"],
                        ordinal=position,
                        is_primary_key=str(col["attname"]) in primary_key,
                    )
                    for position, col in enumerate(columns_by_oid.get(oid, []), start=1)
                ],
                primary_key=primary_key,
                foreign_keys=foreign_keys.get(oid, []),
                # A plain view has no statistics; -1 means "never analysed" (PostgreSQL 14+).
                row_estimate=(None if rel["relkind"] == "v" or reltuples < 0 else round(reltuples)),
            )
        )
    return sorted(tables, key=lambda t: (t.schema_name, t.name))
