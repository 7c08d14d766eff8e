"""Running a checked query: one private DuckDB instance per query that can read exactly that
query's cache files and nothing else.

Why an instance per query, not cursors on one long-lived instance: DuckDB's confinement
settings (`allowed_paths`, `enable_external_access`, `lock_configuration`) are per instance,
and once external access is off they can no longer be changed. Only an instance of its own lets
a query be confined to *its* files; a shared one could at best be confined to the whole cache
root. Opening an instance costs ~10 ms (FACTS.md), so a few are opened ahead of need by a
background thread (`spares`) and a query only pays for configuring one (well under 1 ms).

Setup of an instance, in this order, before a byte of the user's SQL runs:
1. `allowed_paths` = the query's local cache files, then `enable_external_access = false`,
   `lock_configuration = true` (extension autoload/autoinstall and spilling were off from
   the start): from here DuckDB opens no other file, attaches no file, loads no extension
   and changes no setting, whatever the SQL says — even `COPY … TO` into an allowed path is
   refused, since writes need external access too;
2. the three-part names bound as DuckDB itself names tables: an in-memory catalog per
   endpoint (`ATTACH ':memory:' AS "<endpoint>"`), a schema per schema, and a view per table
   over `read_parquet('<its file>')`. The SQL then runs exactly as sent (no rewriting), and
   hostile names are only ever quoted identifiers and a quoted path;
3. S3 caches are read through pyarrow's filesystem (the cache store's own, with its
   credentials), as a dataset registered with DuckDB: DuckDB gets no credentials and no
   network access of its own. Local files whose path DuckDB would take for a glob pattern go
   the same way.

A statement timeout interrupts DuckDB from the session's watchdog (`duckdb_session.Session`);
the result is cut at the row limit (`limit + 1` rows are asked for, so truncation is known).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import structlog

from freshet.cachestore import CacheStore
from freshet.catalog.caches import TableRef
from freshet.connectors.duckdb_session import CONNECT_CONFIG, Session, first_line, run_in_thread
from freshet.connectors.sql import quote_ident, quote_literal
from freshet.gateway import errors
from freshet.gateway.query.gate import display_name
from freshet.kit.redaction import redact_text

log = structlog.get_logger("freshet.gateway.query")

# DuckDB's own catalog names: an endpoint called so cannot be attached under its name.
RESERVED_CATALOGS = frozenset({"system", "temp"})
_GLOB = frozenset("*?[]{}")


@dataclass(frozen=True)
class CacheFile:
    """A table a query reads, and the version (file) its reader lease holds."""

    ref: TableRef
    uri: str


@dataclass(frozen=True)
class EngineResult:
    table: pa.Table
    # DuckDB's type of each column (the Arrow schema says less, e.g. for DECIMAL and JSON).
    types: list[str]
    truncated: bool
    setup_ms: float
    execute_ms: float


class Stopped(Exception):
    """The query was stopped from outside (its reader lease lapsed, or the caller left)."""


@dataclass(frozen=True)
class EngineLimits:
    threads: int
    memory_limit: str
    max_concurrent: int
    spares: int


class QueryEngine:
    """Runs queries on the cache store's files, at most `max_concurrent` at a time."""

    def __init__(self, store: CacheStore, limits: EngineLimits) -> None:
        self.store = store
        self.limits = limits
        self._config: dict[str, str | bool | int | float | list[str]] = {
            **CONNECT_CONFIG,
            "threads": limits.threads,
            "memory_limit": limits.memory_limit,
            "python_enable_replacements": False,
            "allow_community_extensions": False,
        }
        self._spares = _Spares(self._open, limits.spares)
        self._slots = asyncio.Semaphore(limits.max_concurrent)

    def _open(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(":memory:", config=dict(self._config))

    def close(self) -> None:
        self._spares.close()

    async def run(
        self,
        sql: str,
        files: Sequence[CacheFile],
        *,
        limit: int,
        timeout_s: float,
        stop: threading.Event,
    ) -> EngineResult:
        """Run `sql` (checked by the gate) over `files`; at most `limit` rows come back."""
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout_s)
        except TimeoutError:
            raise errors.QueryBusy(
                f"{self.limits.max_concurrent} queries are running; none ended within "
                f"{timeout_s:g} s. Try again later"
            ) from None
        try:
            return await run_in_thread(
                lambda cancelled: self._execute(sql, files, limit, timeout_s, cancelled), stop
            )
        finally:
            self._slots.release()

    # --- in the worker thread ----------------------------------------------------------------

    def _execute(
        self,
        sql: str,
        files: Sequence[CacheFile],
        limit: int,
        timeout_s: float,
        stop: threading.Event,
    ) -> EngineResult:
        started = time.perf_counter()
        sources = [self._source(f) for f in files]
        session = Session(self._spares.take(), timeout_s, stop)
        try:
            conn = session.connection
            local = [path for _, path, arrow in sources if arrow is None]
            session.configure(
                [
                    (f"SET allowed_paths = [{', '.join(quote_literal(p) for p in local)}]", ()),
                    ("SET enable_external_access = false", ()),
                    ("SET lock_configuration = true", ()),
                ]
            )
            _bind(session, sources)
            bound = time.perf_counter()
            with session.statement():
                relation = conn.sql(sql)
                if relation is None:
                    # Only a statement that is no query has no relation (the gate lets none
                    # through; this is the second wall).
                    raise errors.QueryNotSelect("only a single SELECT may run here")
                types = [str(t) for t in relation.types]
                table = relation.limit(limit + 1).to_arrow_table()
            finished = time.perf_counter()
        except duckdb.Error as exc:
            raise self._failure(exc, session, files, timeout_s) from None
        finally:
            session.stop_watchdog()
            # Closing an instance takes ~3 ms: the spares thread does it, off the query's path.
            self._spares.discard(session.connection)
        truncated = table.num_rows > limit
        return EngineResult(
            table=table.slice(0, limit) if truncated else table,
            types=types,
            truncated=truncated,
            setup_ms=(bound - started) * 1000,
            execute_ms=(finished - bound) * 1000,
        )

    def _source(self, file: CacheFile) -> tuple[TableRef, str, pads.Dataset | None]:
        """(table, path, dataset): DuckDB reads the path itself, or pyarrow's dataset."""
        try:
            path = self.store.path_of(file.uri)
        except ValueError:
            raise errors.QueryCacheUnavailable(
                f"the cache of {display_name(file.ref)} is not in the configured cache store"
            ) from None
        if self.store.scheme == "file" and not _GLOB.intersection(path):
            if not os.path.isfile(path):
                # The lease keeps Freshet from deleting it; something else did.
                log.error("leased cache file missing", table=display_name(file.ref))
                raise errors.QueryCacheUnavailable(
                    f"the cache of {display_name(file.ref)} is missing; refresh the table"
                )
            return file.ref, path, None
        try:
            dataset = pads.dataset(path, format="parquet", filesystem=self.store.filesystem)
        except (OSError, pa.ArrowException) as exc:
            log.warning("cache file unreadable", table=display_name(file.ref), error=str(exc))
            raise errors.QueryCacheUnavailable(
                f"the cache of {display_name(file.ref)} could not be opened"
            ) from None
        return file.ref, path, dataset

    def _failure(
        self, exc: duckdb.Error, session: Session, files: Sequence[CacheFile], timeout_s: float
    ) -> Exception:
        if isinstance(exc, duckdb.InterruptException):
            if session.timed_out:
                return errors.QueryTimeout(
                    f"the query ran longer than {timeout_s:g} s and was stopped",
                    details={"timeout_s": timeout_s},
                )
            return Stopped()
        message = self._sanitise(first_line(exc), files)
        if isinstance(exc, duckdb.ParserException):
            return errors.QuerySyntax(message)
        if isinstance(exc, duckdb.BinderException | duckdb.CatalogException):
            return errors.QueryInvalid(message)
        if isinstance(exc, duckdb.PermissionException):
            return errors.QuerySandbox(message)
        if isinstance(exc, duckdb.OutOfMemoryException):
            return errors.QueryResources(
                f"the query needs more memory than a query may use: {message}"
            )
        if isinstance(exc, duckdb.IOException | duckdb.HTTPException):
            log.warning("cache file unreadable", error=message)
            return errors.QueryCacheUnavailable(message)
        return errors.QueryFailed(message)

    def _sanitise(self, message: str, files: Sequence[CacheFile]) -> str:
        """DuckDB's message without file paths, URIs or the cache root (nor credentials)."""
        for file in files:
            shown = display_name(file.ref)
            message = message.replace(file.uri, shown)
            with contextlib.suppress(ValueError):
                message = message.replace(self.store.path_of(file.uri), shown)
        message = message.replace(self.store.root, "<cache>")
        return redact_text(message)


def _bind(session: Session, sources: Sequence[tuple[TableRef, str, pads.Dataset | None]]) -> None:
    """Give every table its three-part name: a catalog per endpoint, its schemas, a view."""
    default = str(session.query("SELECT current_database()")[1][0][0]).lower()
    attached = {default}
    # DuckDB compares names without case: two names equal but for case cannot both be bound.
    catalogs: dict[str, str] = {}
    schemas: dict[tuple[str, str], str] = {}
    views: dict[tuple[str, str, str], TableRef] = {}
    for n, (ref, path, dataset) in enumerate(sources):
        endpoint, schema = ref.endpoint, ref.schema_name
        key = endpoint.lower()
        if key in RESERVED_CATALOGS:
            raise errors.QueryNameUnsupported(
                f"the connection {endpoint} cannot be queried by that name (DuckDB reserves "
                "it); rename the connection",
                details={"table": display_name(ref)},
            )
        if catalogs.setdefault(key, endpoint) != endpoint:
            raise _case_clash(ref, "connection")
        if key not in attached:
            session.query(f"ATTACH ':memory:' AS {quote_ident(endpoint)}")
            attached.add(key)
        schema_key = (key, schema.lower())
        if schema_key not in schemas:
            session.query(
                f"CREATE SCHEMA IF NOT EXISTS {quote_ident(endpoint)}.{quote_ident(schema)}"
            )
            schemas[schema_key] = schema
        elif schemas[schema_key] != schema:
            raise _case_clash(ref, "schema")
        if views.setdefault((*schema_key, ref.table.lower()), ref) != ref:
            raise _case_clash(ref, "table")
        if dataset is None:
            source = f"read_parquet({quote_literal(path)})"
        else:
            name = f"__freshet_arrow_{n}"
            session.connection.register(name, dataset)
            source = f"temp.main.{quote_ident(name)}"
        session.query(f"CREATE VIEW {display_name(ref)} AS SELECT * FROM {source}")


def _case_clash(ref: TableRef, what: str) -> errors.ApiError:
    return errors.QueryNameUnsupported(
        f"{display_name(ref)}: the query names two {what}s that differ only in case, which "
        "DuckDB cannot tell apart; query them separately",
        details={"table": display_name(ref)},
    )


class _Spares:
    """Fresh DuckDB instances opened ahead of need by a background thread (opening one costs
    ~10 ms; configuring a ready one well under 1 ms). With `size` 0 each query opens its own.
    A spare is unconfigured: the query that takes it confines it before anything else."""

    def __init__(self, open_instance: Callable[[], duckdb.DuckDBPyConnection], size: int) -> None:
        self._open = open_instance
        self._queue: queue.Queue[duckdb.DuckDBPyConnection] = queue.Queue(maxsize=max(size, 1))
        self._size = size
        self._used: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def take(self) -> duckdb.DuckDBPyConnection:
        self._start()
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return self._open()

    def _start(self) -> None:
        if self._size == 0:
            return
        with self._lock:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(
                    target=self._fill, name="freshet-query-spares", daemon=True
                )
                self._thread.start()

    def discard(self, instance: duckdb.DuckDBPyConnection) -> None:
        """An instance a query is done with: closed by the thread, or here without one."""
        if self._size == 0 or self._closed.is_set():
            instance.close()
        else:
            self._used.put(instance)

    def _close_used(self) -> None:
        while True:
            try:
                self._used.get_nowait().close()
            except queue.Empty:
                return

    def _fill(self) -> None:
        while not self._closed.is_set():
            self._close_used()
            instance = self._open()
            while not self._closed.is_set():
                try:
                    self._queue.put(instance, timeout=0.1)
                    break
                except queue.Full:
                    self._close_used()
            else:
                instance.close()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self._close_used()
        while True:
            try:
                self._queue.get_nowait().close()
            except queue.Empty:
                return
