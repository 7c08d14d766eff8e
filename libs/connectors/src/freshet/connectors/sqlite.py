"""The SQLite connector: stdlib sqlite3, read-only, run in a worker thread.

sqlite3 blocks, so every operation runs in `asyncio.to_thread` on a connection that lives and
dies inside that one thread. A progress handler enforces the statement timeout and stops the
thread early when the awaiting task is cancelled, so an abandoned query does not keep running.
"""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Literal, TypeVar

import pyarrow as pa
from pydantic import BaseModel, Field

from freshet.connectors.batches import stream_batches
from freshet.connectors.errors import ConnectorError, sanitise
from freshet.connectors.models import ColumnInfo, ForeignKeyInfo, Sample, TableInfo
from freshet.connectors.sql import check_limit, qualified_name
from freshet.connectors.values import json_safe

SCHEMA = "main"
# How many SQLite VM instructions run between deadline checks: frequent enough to stop within
# milliseconds, rare enough that the check costs nothing measurable.
_PROGRESS_EVERY = 1_000
# pragma_table_xinfo `hidden`: 1 marks virtual-table hidden columns, which `SELECT *` omits;
# 2 and 3 are generated columns, which it includes.
_HIDDEN_VIRTUAL_TABLE_COLUMN = 1

T = TypeVar("T")


class SqliteConfig(BaseModel, extra="forbid", frozen=True):
    # No NUL: the OS cannot open such a path, and pathlib raises ValueError on sight of one.
    path: str = Field(min_length=1, pattern=r"^[^\x00]+$")


class SqliteConnector:
    kind: str = "sqlite"

    def __init__(
        self, config: SqliteConfig, secrets: Mapping[str, str], *, timeout_s: float
    ) -> None:
        self._path = pathlib.Path(config.path)
        self._secrets = dict(secrets)
        self._timeout_s = timeout_s

    async def test(self) -> None:
        # Reading sqlite_master makes SQLite read the header, which is what rejects a file that
        # is not a database; merely opening it succeeds.
        await self._run(lambda session: session.query("SELECT count(*) FROM sqlite_master"))

    async def introspect(self) -> list[TableInfo]:
        return await self._run(_introspect)

    async def sample(self, schema_name: str, table: str, limit: int) -> Sample:
        check_limit(limit)
        if schema_name != SCHEMA:
            raise ConnectorError(
                sanitise(f"table not found: {schema_name}.{table}", self._secrets),
                transient=False,
            )
        sql = f"SELECT * FROM {qualified_name(SCHEMA, table)} LIMIT ?"

        def work(session: _Session) -> Sample:
            columns, rows = session.query(sql, (limit,))
            return Sample(columns=columns, rows=[[json_safe(v) for v in row] for row in rows])

        return await self._run(work, table=table)

    async def stream(
        self, schema_name: str, table: str, *, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        """Every row, in batches. SQLite values have no fixed type per column, so a first pass
        finds the storage classes each column holds and picks one Arrow type that keeps every
        value (text wins over numbers, real over integer; blobs stay binary unless mixed)."""
        if schema_name != SCHEMA:
            raise self._permanent(f"table not found: {schema_name}.{table}")
        name = qualified_name(SCHEMA, table)

        def produce(cancelled: threading.Event) -> Iterator[pa.RecordBatch]:
            if not self._path.is_file():
                raise self._permanent(f"SQLite database not found: {self._path}")
            conn = self._connect()
            conn.set_progress_handler(lambda: 1 if cancelled.is_set() else 0, _PROGRESS_EVERY)
            try:
                cursor = conn.execute(f"SELECT * FROM {name} LIMIT 0")
                columns = [str(d[0]) for d in cursor.description or ()]
                schema = _arrow_schema(conn, name, columns)
                cursor = conn.execute(f"SELECT * FROM {name}")
                empty = True
                while rows := cursor.fetchmany(batch_rows):
                    empty = False
                    yield _record_batch(rows, schema)
                if empty:
                    yield pa.RecordBatch.from_pylist([], schema=schema)
            finally:
                conn.close()

        def describe(exc: BaseException) -> ConnectorError:
            if isinstance(exc, ConnectorError):
                return exc
            if isinstance(exc, sqlite3.Error):
                return self._error(exc, None, table)
            return self._permanent(f"cannot read {SCHEMA}.{table}: {type(exc).__name__}")

        async for batch in stream_batches(produce, describe):
            yield batch

    async def _run(self, work: Callable[[_Session], T], *, table: str | None = None) -> T:
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self._run_sync, work, cancelled, table)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def _run_sync(
        self, work: Callable[[_Session], T], cancelled: threading.Event, table: str | None
    ) -> T:
        # Checked up front because SQLite's own error for a missing file is the unhelpful
        # "unable to open database file", the same as for a permissions problem.
        if not self._path.exists():
            raise self._permanent(f"SQLite database not found: {self._path}")
        if not self._path.is_file():
            raise self._permanent(f"SQLite database path is not a file: {self._path}")
        session: _Session | None = None
        try:
            session = _Session(self._connect(), self._timeout_s, cancelled)
            return work(session)
        except sqlite3.Error as exc:
            error = self._error(exc, session, table)
        except OSError as exc:
            error = self._permanent(
                f"cannot open SQLite database {self._path}: {exc.strerror or exc}"
            )
        finally:
            if session is not None:
                session.close()
        # Raised outside the `except` block so the driver's exception does not ride along as
        # `__context__`: its text is not sanitised.
        raise error

    def _connect(self) -> sqlite3.Connection:
        # mode=ro makes SQLite itself refuse writes, so no bug here can ever modify a source.
        # as_uri() percent-encodes `?`, `#` and `%` in the path, which a URI would misread.
        uri = f"{self._path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=self._timeout_s, isolation_level=None)
        # Sources are not obliged to hold valid UTF-8; one bad value must not fail a sample.
        conn.text_factory = _decode_text
        return conn

    def _error(
        self, exc: sqlite3.Error, session: _Session | None, table: str | None
    ) -> ConnectorError:
        name = exc.sqlite_errorname
        if session is not None and session.timed_out:
            return ConnectorError(f"statement timed out after {self._timeout_s:g}s", transient=True)
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return ConnectorError(
                sanitise(f"SQLite database is locked: {self._path}", self._secrets),
                transient=True,
            )
        if name.startswith("SQLITE_INTERRUPT"):
            return ConnectorError("SQLite statement was interrupted", transient=True)
        if name.startswith("SQLITE_NOTADB"):
            return self._permanent(f"not a SQLite database: {self._path}")
        # Only the sampled table itself: a view over a dropped table fails with the same
        # error naming the dropped one, which the generic message below reports better.
        if table is not None and str(exc) == f"no such table: {SCHEMA}.{table}":
            return self._permanent(f"table not found: {SCHEMA}.{table}")
        return self._permanent(f"SQLite error on {self._path}: {exc}")

    def _permanent(self, message: str) -> ConnectorError:
        return ConnectorError(sanitise(message, self._secrets), transient=False)


class _Session:
    """A connection plus the per-statement deadline its progress handler enforces."""

    def __init__(
        self, conn: sqlite3.Connection, timeout_s: float, cancelled: threading.Event
    ) -> None:
        self._conn = conn
        self._timeout_s = timeout_s
        self._cancelled = cancelled
        self._deadline: float | None = None
        self.timed_out = False
        conn.set_progress_handler(self._progress, _PROGRESS_EVERY)

    def query(
        self, sql: str, params: tuple[object, ...] = ()
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and all rows of `sql`, cut off after the timeout."""
        self._deadline = time.monotonic() + self._timeout_s
        try:
            cursor = self._conn.execute(sql, params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            columns = [str(d[0]) for d in cursor.description or ()]
        finally:
            self._deadline = None
        return columns, rows

    @property
    def aborted(self) -> bool:
        """Whether the last statement was stopped by the timeout or by cancellation."""
        return self.timed_out or self._cancelled.is_set()

    def close(self) -> None:
        self._conn.close()

    def _progress(self) -> int:
        # A non-zero return makes SQLite abort the running statement with SQLITE_INTERRUPT.
        if self._cancelled.is_set():
            return 1
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.timed_out = True
            return 1
        return 0


def _arrow_schema(conn: sqlite3.Connection, name: str, columns: list[str]) -> pa.Schema:
    """One pass over the table: which storage classes each column holds."""
    if not columns:
        return pa.schema([])
    probes = ", ".join(
        f"max(typeof(c{i}) = '{kind}')"
        for i in range(len(columns))
        for kind in ("integer", "real", "text", "blob")
    )
    aliases = ", ".join(f"column{i + 1} AS c{i}" for i in range(len(columns)))
    nulls = ", ".join(["NULL"] * len(columns))
    # Columns by position (VALUES names them column1..N and the union keeps those names), so
    # a view's duplicate or odd column names need no quoting.
    rows = f"VALUES ({nulls}) UNION ALL SELECT * FROM {name}"
    row = conn.execute(f"SELECT {probes} FROM (SELECT {aliases} FROM ({rows}))").fetchone() or ()
    fields = []
    for i, column in enumerate(columns):
        integer, real, text, blob = (bool(v) for v in row[i * 4 : i * 4 + 4])
        if text or (blob and (integer or real)):
            kind: pa.DataType = pa.string()
        elif blob:
            kind = pa.binary()
        elif real:
            kind = pa.float64()
        else:
            kind = pa.int64()
        fields.append(pa.field(column, kind))
    return pa.schema(fields)


def _record_batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for i, field in enumerate(schema):
        values = [row[i] for row in rows]
        if field.type == pa.string():
            values = [_as_text(v) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _introspect(session: _Session) -> list[TableInfo]:
    # One read transaction, so every statement sees the same schema even while another process
    # alters it. It is never committed: closing the connection ends it.
    session.query("BEGIN")
    _, objects = session.query(
        "SELECT name, type FROM main.sqlite_master"
        " WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    )
    tables: list[TableInfo] = []
    primary_keys: dict[str, list[str]] = {}
    for name, kind in objects:
        try:
            tables.append(_table_info(session, str(name), kind, primary_keys))
        except sqlite3.OperationalError:
            if session.aborted:
                raise
            # A view over a dropped table, or a virtual table whose module is not loaded,
            # cannot even be described; it cannot be sampled either, so it is left out.
            continue
    return sorted(tables, key=lambda t: (t.schema_name, t.name))


def _table_info(
    session: _Session,
    name: str,
    kind: Literal["table", "view"],
    primary_keys: dict[str, list[str]],
) -> TableInfo:
    _, raw_columns = session.query(
        'SELECT name, type, "notnull", pk, hidden FROM pragma_table_xinfo(?, ?) ORDER BY cid',
        (name, SCHEMA),
    )
    visible = [c for c in raw_columns if c[4] != _HIDDEN_VIRTUAL_TABLE_COLUMN]
    primary_key = [str(c[0]) for c in sorted((c for c in visible if c[3]), key=lambda c: c[3])]
    columns = [
        ColumnInfo(
            name=str(col_name),
            data_type=str(col_type or ""),
            # SQLite lets rowid tables store NULL in a non-INTEGER primary key, but that is a
            # documented legacy bug; catalogs treat key columns as required.
            nullable=not notnull and not pk,
            ordinal=position,
            is_primary_key=bool(pk),
        )
        for position, (col_name, col_type, notnull, pk, _hidden) in enumerate(visible, start=1)
    ]
    foreign_keys = _foreign_keys(session, name, primary_keys) if kind == "table" else []
    return TableInfo(
        schema_name=SCHEMA,
        name=name,
        kind=kind,
        columns=columns,
        primary_key=primary_key,
        foreign_keys=foreign_keys,
        # Counting rows would scan the whole table, and SQLite keeps no estimate.
        row_estimate=None,
    )


def _foreign_keys(
    session: _Session, table: str, primary_keys: dict[str, list[str]]
) -> list[ForeignKeyInfo]:
    _, rows = session.query(
        'SELECT id, "table", "from", "to" FROM pragma_foreign_key_list(?, ?) ORDER BY id, seq',
        (table, SCHEMA),
    )
    grouped: dict[int, tuple[str, list[str], list[str | None]]] = {}
    for fk_id, referred, column, referred_column in rows:
        _, columns, referred_columns = grouped.setdefault(int(fk_id), (str(referred), [], []))
        columns.append(str(column))
        referred_columns.append(None if referred_column is None else str(referred_column))
    result: list[ForeignKeyInfo] = []
    for referred, columns, referred_columns in grouped.values():
        if any(c is None for c in referred_columns):
            # `REFERENCES parent` without a column list means the parent's primary key.
            referred_columns = list(_primary_key(session, referred, primary_keys))
        result.append(
            ForeignKeyInfo(
                columns=columns,
                referred_schema=SCHEMA,
                referred_table=referred,
                referred_columns=[str(c) for c in referred_columns],
            )
        )
    return result


def _primary_key(session: _Session, table: str, cache: dict[str, list[str]]) -> list[str]:
    if table not in cache:
        _, rows = session.query(
            "SELECT name FROM pragma_table_info(?, ?) WHERE pk > 0 ORDER BY pk", (table, SCHEMA)
        )
        cache[table] = [str(r[0]) for r in rows]
    return cache[table]
