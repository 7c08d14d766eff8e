"""The DuckDB connector: one DuckDB database file, opened read-only in a worker thread.

The file is opened with `read_only=True`, so DuckDB itself refuses every write and never creates
a missing file, and with external access disabled, so a view stored in the file that reads
`read_csv('/etc/passwd')` or a URL fails instead of reaching past the database. Spilling to disk
is off, so nothing is ever written next to the source.

Every table and view of the file's own catalog is listed, in every schema except the system
ones (information_schema, pg_catalog). Timeouts and cancellation work as described in
`duckdb_session`: a watchdog interrupts the statement.
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
from pydantic import BaseModel, Field

from freshet.connectors.batches import duckdb_batches, new_duckdb, stream_batches
from freshet.connectors.duckdb_session import (
    CONNECT_CONFIG,
    Session,
    first_line,
    run_in_thread,
)
from freshet.connectors.errors import ConnectorError, sanitise
from freshet.connectors.models import ColumnInfo, ForeignKeyInfo, Sample, TableInfo
from freshet.connectors.sql import check_limit, qualified_name, quote_ident, quote_literal

T = TypeVar("T")

# A DuckDB file starts with an 8-byte checksum followed by this magic.
_MAGIC = b"DUCK"
_MAGIC_OFFSET = 8

# User tables and views of the attached file: `internal` marks DuckDB's own catalog views (which
# live in `main` too), and the temp catalog is another database anyway.
_OBJECTS_SQL = """
SELECT schema_name, table_name AS name, 'table' AS kind, estimated_size AS row_estimate
FROM duckdb_tables()
WHERE database_name = current_database() AND NOT internal AND NOT temporary
  AND schema_name NOT IN ('information_schema', 'pg_catalog')
UNION ALL
SELECT schema_name, view_name AS name, 'view' AS kind, NULL AS row_estimate
FROM duckdb_views()
WHERE database_name = current_database() AND NOT internal AND NOT temporary
  AND schema_name NOT IN ('information_schema', 'pg_catalog')
"""

_COLUMNS_SQL = """
SELECT schema_name, table_name, column_name, data_type, is_nullable
FROM duckdb_columns()
WHERE database_name = current_database()
ORDER BY schema_name, table_name, column_index
"""

_CONSTRAINTS_SQL = """
SELECT schema_name, table_name, constraint_type, constraint_column_names,
       referenced_table, referenced_column_names
FROM duckdb_constraints()
WHERE database_name = current_database()
  AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')
ORDER BY schema_name, table_name, constraint_index
"""


class DuckdbConfig(BaseModel, extra="forbid", frozen=True):
    # No NUL: the OS cannot open such a path, and pathlib raises ValueError on sight of one.
    path: str = Field(min_length=1, pattern=r"^[^\x00]+$")


class DuckdbConnector:
    kind: str = "duckdb"

    def __init__(
        self, config: DuckdbConfig, secrets: Mapping[str, str], *, timeout_s: float
    ) -> None:
        self._path = pathlib.Path(config.path)
        self._secrets = dict(secrets)
        self._timeout_s = timeout_s

    async def test(self) -> None:
        await self._run(lambda session: session.query("SELECT 1"))

    async def introspect(self) -> list[TableInfo]:
        return await self._run(_introspect)

    async def sample(self, schema_name: str, table: str, limit: int) -> Sample:
        check_limit(limit)
        name = qualified_name(schema_name, table)

        def work(session: Session) -> Sample:
            # Looked up first rather than read from DuckDB's error: the same "does not exist"
            # comes back for a view over a dropped table, and error texts are no API.
            _, rows = session.query(
                f"SELECT current_database(), count(*) FROM ({_OBJECTS_SQL})"
                " WHERE schema_name = ? AND name = ?",
                (schema_name, table),
            )
            catalog, found = rows[0]
            if not found:
                raise self._permanent(f"table not found: {schema_name}.{table}")
            # Catalog-qualified, so a schema that shares a name with a catalog (`temp`,
            # `system`) still means the schema in this file.
            return session.sample(f"{quote_ident(str(catalog))}.{name}", (), limit)

        return await self._run(work)

    async def stream(
        self, schema_name: str, table: str, *, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        name = qualified_name(schema_name, table)

        def produce(cancelled: threading.Event) -> Iterator[pa.RecordBatch]:
            problem = self._check_file()
            if problem is not None:
                raise problem
            conn = new_duckdb()
            try:
                conn.execute(
                    f"ATTACH {quote_literal(str(self._path.resolve()))} AS src (READ_ONLY)"
                )
                conn.execute("SET enable_external_access = false")
                found = conn.execute(
                    "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'src'"
                    " AND schema_name = ? AND table_name = ? UNION ALL "
                    "SELECT count(*) FROM duckdb_views() WHERE database_name = 'src'"
                    " AND schema_name = ? AND view_name = ?",
                    [schema_name, table, schema_name, table],
                ).fetchall()
                if not any(count for (count,) in found):
                    raise self._permanent(f"table not found: {schema_name}.{table}")
            except BaseException:
                conn.close()
                raise
            yield from duckdb_batches(conn, f"SELECT * FROM src.{name}", [], batch_rows, cancelled)

        def describe(exc: BaseException) -> ConnectorError:
            if isinstance(exc, ConnectorError):
                return exc
            if isinstance(exc, duckdb.Error):
                return self._error(exc, None)
            return self._permanent(f"cannot read {self._path}: {type(exc).__name__}")

        async for batch in stream_batches(produce, describe):
            yield batch

    async def _run(self, work: Callable[[Session], T]) -> T:
        return await run_in_thread(lambda cancelled: self._run_sync(work, cancelled))

    def _run_sync(self, work: Callable[[Session], T], cancelled: threading.Event) -> T:
        problem = self._check_file()
        if problem is not None:
            raise problem
        session: Session | None = None
        try:
            # Resolved, so DuckDB never reads the path as `:memory:` or an `md:`/`s3://` URL.
            conn = duckdb.connect(
                str(self._path.resolve()), read_only=True, config=dict(CONNECT_CONFIG)
            )
            session = Session(conn, self._timeout_s, cancelled)
            # Set after connecting: in the connect config it can forbid setting temp_directory,
            # depending on the order DuckDB applies them. Opening the file reads no view, so
            # nothing external can run before this.
            session.configure([("SET enable_external_access = false", [])])
            return work(session)
        except duckdb.Error as exc:
            error = self._error(exc, session)
        finally:
            if session is not None:
                session.close()
        # Raised outside the `except` block so the driver's exception does not ride along as
        # `__context__`: its text is not sanitised.
        raise error

    def _check_file(self) -> ConnectorError | None:
        """Why the path cannot be a DuckDB database, checked up front for clear messages.

        DuckDB's own errors are confusing here (a CSV file reports "Cannot launch in-memory
        database in read-only mode!"), and read-write mode would create a missing file.
        """
        if not self._path.exists():
            return self._permanent(f"database file not found: {self._path}")
        if not self._path.is_file():
            return self._permanent(f"database path is not a file: {self._path}")
        try:
            with self._path.open("rb") as file:
                header = file.read(_MAGIC_OFFSET + len(_MAGIC))
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
        else:
            if header[_MAGIC_OFFSET:] != _MAGIC:
                return self._permanent(f"not a DuckDB database: {self._path}")
            return None
        return self._permanent(f"cannot open DuckDB database {self._path}: {reason}")

    def _error(self, exc: duckdb.Error, session: Session | None) -> ConnectorError:
        if session is not None and session.timed_out:
            return ConnectorError(f"statement timed out after {self._timeout_s:g}s", transient=True)
        if isinstance(exc, duckdb.InterruptException):
            return ConnectorError("DuckDB statement was interrupted", transient=True)
        text = first_line(exc)
        if isinstance(exc, duckdb.IOException) and "lock" in text.lower():
            # Another process has the file open for writing.
            return self._transient(f"DuckDB database is locked: {self._path}")
        if isinstance(exc, duckdb.ConnectionException) and "configuration" in text:
            # This process already has the file open with other settings (read-write, say);
            # DuckDB allows only one configuration per file and process.
            return self._transient(f"DuckDB database is in use by this process: {self._path}")
        if isinstance(exc, duckdb.OutOfMemoryException):
            return self._transient(f"DuckDB ran out of memory on {self._path}")
        return self._permanent(f"DuckDB error on {self._path}: {text}")

    def _permanent(self, message: str) -> ConnectorError:
        return ConnectorError(sanitise(message, self._secrets), transient=False)

    def _transient(self, message: str) -> ConnectorError:
        return ConnectorError(sanitise(message, self._secrets), transient=True)


def _introspect(session: Session) -> list[TableInfo]:
    # No transaction needed for a consistent view: the file is open read-only, and DuckDB lets
    # no other process write to it meanwhile.
    _, objects = session.query(_OBJECTS_SQL)
    _, columns = session.query(_COLUMNS_SQL)
    _, constraints = session.query(_CONSTRAINTS_SQL)

    columns_by_table: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for column in columns:
        columns_by_table.setdefault((str(column[0]), str(column[1])), []).append(column)
    primary_keys: dict[tuple[str, str], list[str]] = {}
    foreign_keys: dict[tuple[str, str], list[ForeignKeyInfo]] = {}
    for schema, table, kind, names, referred_table, referred_names in constraints:
        key = (str(schema), str(table))
        if kind == "PRIMARY KEY":
            primary_keys[key] = [str(n) for n in names]
        elif referred_table is not None:
            foreign_keys.setdefault(key, []).append(
                ForeignKeyInfo(
                    columns=[str(n) for n in names],
                    # DuckDB refuses foreign keys across schemas, so the parent is a sibling.
                    referred_schema=str(schema),
                    referred_table=str(referred_table),
                    referred_columns=[str(n) for n in referred_names],
                )
            )

    tables: list[TableInfo] = []
    for schema, name, kind, row_estimate in objects:
        key = (str(schema), str(name))
        primary_key = primary_keys.get(key, [])
        tables.append(
            TableInfo(
                schema_name=key[0],
                name=key[1],
                kind="view" if kind == "view" else "table",
                columns=[
                    ColumnInfo(
                        name=str(col_name),
                        data_type=str(data_type),
                        nullable=bool(is_nullable),
                        ordinal=position,
                        is_primary_key=str(col_name) in primary_key,
                    )
                    for position, (_, _, col_name, data_type, is_nullable) in enumerate(
                        columns_by_table.get(key, []), start=1
                    )
                ],
                primary_key=primary_key,
                foreign_keys=foreign_keys.get(key, []),
                row_estimate=None if row_estimate is None else int(row_estimate),
            )
        )
    return sorted(tables, key=lambda t: (t.schema_name, t.name))
