"""SQL over the parquet caches: `POST /query` (and, later, the web UI's query console).

One query, start to end:
1. the Accept header picks a format (406 before any work when none fits) and the SQL gate
   (`freshet.gateway.query.gate`) checks the statement and lists the three-part tables;
2. `caches.read` resolves the current pointer of every table and registers a reader lease on
   the files, in one transaction: from its commit no refresh can have those files deleted
   under the query, and a refresh that completes later does not change what this query reads;
3. a table with no cache, or whose cache was written with another schema than the catalog's
   (`schema_current` false), is never read: with lazy fetch on (the table's setting, else the
   connection's) the lease is let go, a refresh is started or joined
   (`refreshes.join_or_start_table` plus `RefreshRequested` in the outbox, as the table
   refresh route does), the query waits for it on the catalog, then resolves again; with
   lazy fetch off it fails with E_QUERY_NOT_CACHED / E_QUERY_SCHEMA_STALE;
4. the engine runs the statement on the leased files (its own DuckDB instance, confined to
   them), while a task renews the lease every third of its TTL; a lease that lapsed stops
   the query (its files may be deleted);
5. the lease is released, the metrics counted and one log line written.

The log line has the correlation id, query id, caller, tables, rows, duration and outcome,
the statement's digest and its *shape* (every literal replaced by '?'), never the SQL text:
literals in a WHERE clause can be personal data or secrets.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyarrow as pa
import structlog

from freshet.catalog import Database, UnitOfWork
from freshet.catalog.caches import CacheRead, ResolvedTable, TableRef
from freshet.catalog.models import RefreshItem
from freshet.catalog.refreshes import ITEM_FINAL
from freshet.gateway import errors
from freshet.gateway.query.engine import CacheFile, EngineResult, QueryEngine, Stopped
from freshet.gateway.query.formats import Format, negotiate
from freshet.gateway.query.gate import SqlGate, display_name
from freshet.gateway.query.metrics import (
    QUERIES,
    QUERY_LAZY_FETCHES,
    QUERY_RESOLVE_SECONDS,
    QUERY_ROWS,
    QUERY_SECONDS,
    outcome_of,
)
from freshet.gateway.query.schemas import QueryIn
from freshet.gateway.service_layer.caller import Caller
from freshet.gateway.service_layer.refreshes import request_table_refresh, wait_for

log = structlog.get_logger("freshet.gateway.query")

# Rounds of resolve -> fetch: a joined refresh may end skipped (it did not force), or a schema
# may change again meanwhile; a third look that still finds no usable cache gives up.
_ROUNDS = 3


@dataclass
class Fetch:
    refresh_id: uuid.UUID
    joined: bool


@dataclass
class QueryResult:
    query_id: uuid.UUID
    format: Format
    table: pa.Table
    types: list[str]
    truncated: bool
    limit: int
    tables: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "row_count": self.table.num_rows,
            "truncated": self.truncated,
            "limit": self.limit,
            "tables": self.tables,
            "timings": self.timings,
        }


@dataclass
class _Trace:
    """What the query's log line says, filled in as it goes."""

    query_id: uuid.UUID
    started: float = field(default_factory=time.perf_counter)
    fields: dict[str, Any] = field(default_factory=dict)


async def run_query(
    db: Database,
    engine: QueryEngine,
    gate: SqlGate,
    caller: Caller,
    request: QueryIn,
    accept: str | None,
) -> QueryResult:
    """Run one SELECT over the caches; ApiErrors with stable codes for everything refused."""
    trace = _Trace(uuid.uuid4())
    outcome, code = "error", None
    try:
        result = await _run(db, engine, gate, caller, request, accept, trace)
        outcome = "succeeded"
        return result
    except errors.ApiError as exc:
        outcome, code = outcome_of(exc.code), exc.code
        raise
    finally:
        elapsed = time.perf_counter() - trace.started
        QUERY_SECONDS.observe(elapsed)
        QUERIES.labels(outcome).inc()
        log.info(
            "query",
            query_id=str(trace.query_id),
            requested_by=caller.principal.name,
            outcome=outcome,
            code=code,
            ms=round(elapsed * 1000, 1),
            **trace.fields,
        )


async def _run(
    db: Database,
    engine: QueryEngine,
    gate: SqlGate,
    caller: Caller,
    request: QueryIn,
    accept: str | None,
    trace: _Trace,
) -> QueryResult:
    fmt = negotiate(accept)
    limit, timeout_s = _limits(request, caller)
    checked = await asyncio.to_thread(gate.check, request.sql)
    trace.fields.update(
        sql_digest=checked.digest,
        sql_shape=checked.shape,
        tables=[display_name(t) for t in checked.tables],
        format=fmt.name,
    )
    timings: dict[str, float] = {}
    if not checked.tables:
        # Nothing cached is read (SELECT 1, range()): no pointers, no lease.
        result = await engine.run(
            checked.sql, [], limit=limit, timeout_s=timeout_s, stop=threading.Event()
        )
        return _result(trace, fmt, result, limit, [], timings)
    read, fetches = await _acquire(db, caller, checked.tables, trace.query_id, timings)
    stop = threading.Event()
    ttl = timedelta(seconds=caller.settings.query_lease_ttl_s)
    keeper = asyncio.create_task(_keep(db, read.lease_id, ttl, stop))
    try:
        files = [CacheFile(t.ref, t.pointer.uri) for t in read.tables.values() if t.pointer]
        try:
            result = await engine.run(
                checked.sql, files, limit=limit, timeout_s=timeout_s, stop=stop
            )
        except Stopped:
            raise errors.QueryCacheUnavailable(
                "the query was stopped: its hold on the cache files lapsed; run it again"
            ) from None
    finally:
        keeper.cancel()
        released = time.perf_counter()
        await _release(db, read.lease_id)
        timings["release"] = (time.perf_counter() - released) * 1000
    tables = [_table_read(t, fetches.get(t.ref)) for t in read.tables.values()]
    return _result(trace, fmt, result, limit, tables, timings)


def _result(
    trace: _Trace,
    fmt: Format,
    result: EngineResult,
    limit: int,
    tables: list[dict[str, Any]],
    timings: dict[str, float],
) -> QueryResult:
    QUERY_ROWS.inc(result.table.num_rows)
    timings.update(setup=result.setup_ms, execute=result.execute_ms)
    timings["total"] = (time.perf_counter() - trace.started) * 1000
    trace.fields.update(rows=result.table.num_rows, truncated=result.truncated)
    return QueryResult(
        query_id=trace.query_id,
        format=fmt,
        table=result.table,
        types=result.types,
        truncated=result.truncated,
        limit=limit,
        tables=tables,
        timings={k: round(v, 2) for k, v in timings.items()},
    )


def _limits(request: QueryIn, caller: Caller) -> tuple[int, float]:
    settings = caller.settings
    limit = request.limit or settings.query_default_row_limit
    if limit > settings.query_max_row_limit:
        raise _too_large("limit", settings.query_max_row_limit)
    timeout_s = request.timeout_s or settings.query_timeout_s
    if timeout_s > settings.query_timeout_s:
        raise _too_large("timeout_s", settings.query_timeout_s)
    return limit, timeout_s


def _too_large(name: str, most: float) -> errors.ApiError:
    message = f"must be at most {most:g}"
    return errors.ValidationFailed(
        f"{name} {message}", details=[{"loc": ["body", name], "msg": message}]
    )


# --- pointers, leases and lazy fetches --------------------------------------------------------


async def _acquire(
    db: Database,
    caller: Caller,
    refs: tuple[TableRef, ...],
    query_id: uuid.UUID,
    timings: dict[str, float],
) -> tuple[CacheRead, dict[TableRef, Fetch]]:
    """The tables' current versions under a reader lease, fetched first where needed."""
    ttl = timedelta(seconds=caller.settings.query_lease_ttl_s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + caller.settings.query_fetch_timeout_s
    fetches: dict[TableRef, Fetch] = {}
    for round_ in range(_ROUNDS):
        started = time.perf_counter()
        async with UnitOfWork(db) as uow:
            read = await uow.caches.read(refs, holder=f"query:{query_id}", ttl=ttl)
            await uow.commit()
        elapsed = time.perf_counter() - started
        QUERY_RESOLVE_SECONDS.observe(elapsed)
        timings["resolve"] = elapsed * 1000
        missing = [r for r in refs if r not in read.tables]
        unready = [t for t in read.tables.values() if t.pointer is None or not t.schema_current]
        if not missing and not unready:
            return read, fetches
        await _release(db, read.lease_id)
        if missing:
            names = [display_name(r) for r in missing]
            raise errors.TableNotFound(
                f"not in the catalog: {', '.join(names[:20])} (tables are named "
                '"<connection>"."<schema>"."<table>", exactly as discovered)',
                details={"tables": names},
            )
        _refuse_without_lazy_fetch(unready)
        if round_ == _ROUNDS - 1:
            break
        started = time.perf_counter()
        await _fetch(db, caller, unready, fetches, deadline - loop.time())
        timings["fetch"] = timings.get("fetch", 0.0) + (time.perf_counter() - started) * 1000
    names = [display_name(t.ref) for t in unready]
    raise errors.QueryCacheUnavailable(
        f"no usable cache of {', '.join(names[:20])} after fetching it; try again",
        details={"tables": names},
    )


def _refuse_without_lazy_fetch(unready: list[ResolvedTable]) -> None:
    off = [t for t in unready if not t.lazy_fetch]
    missing = [display_name(t.ref) for t in off if t.pointer is None]
    if missing:
        raise errors.QueryNotCached(
            f"not cached, and lazy fetch is off for: {', '.join(missing[:20])}; refresh the "
            "table first or turn lazy fetch on",
            details={"tables": missing},
        )
    stale = [display_name(t.ref) for t in off]
    if stale:
        raise errors.QuerySchemaStale(
            f"the cache was written with an older schema than the catalog's, and lazy fetch "
            f"is off, for: {', '.join(stale[:20])}; refresh the table first",
            details={"tables": stale},
        )


async def _fetch(
    db: Database,
    caller: Caller,
    unready: list[ResolvedTable],
    fetches: dict[TableRef, Fetch],
    timeout_s: float,
) -> None:
    """Start or join a refresh of each table, then wait until all have ended."""
    waiting: list[tuple[ResolvedTable, uuid.UUID]] = []
    async with UnitOfWork(db) as uow:
        for table in unready:
            dataset = await uow.datasets.get(table.dataset_id)
            if dataset is None or dataset.removed_at is not None:
                raise errors.TableNotFound(f"{display_name(table.ref)} is no longer catalogued")
            # A stale version must be replaced even if it was synced a moment ago.
            force = table.pointer is not None
            enqueued = await request_table_refresh(uow, caller, dataset, force=force)
            QUERY_LAZY_FETCHES.labels("joined" if enqueued.joined else "started").inc()
            fetches[table.ref] = Fetch(enqueued.refresh_id, enqueued.joined)
            waiting.append((table, enqueued.refresh_id))
        await uow.commit()
    log.info(
        "query fetches tables first",
        tables=[display_name(t.ref) for t, _ in waiting],
        refresh_ids=[str(r) for _, r in waiting],
    )

    async def ended() -> list[RefreshItem | None] | None:
        async with UnitOfWork(db, read_only=True) as reader:
            items = [await reader.refreshes.item(r, t.dataset_id) for t, r in waiting]
        return items if all(i is None or i.status in ITEM_FINAL for i in items) else None

    items = await wait_for(ended, max(timeout_s, 0.0))
    if items is None:
        QUERY_LAZY_FETCHES.labels("timeout").inc(len(waiting))
        raise errors.QueryFetchTimeout(
            f"fetching {', '.join(display_name(t.ref) for t, _ in waiting)} took longer than "
            f"{caller.settings.query_fetch_timeout_s:g} s; it goes on: query again later",
            details={"refresh_ids": [str(r) for _, r in waiting]},
        )
    for (table, refresh_id), item in zip(waiting, items, strict=True):
        if item is not None and item.status == "failed":
            QUERY_LAZY_FETCHES.labels("failed").inc()
            raise errors.QueryFetchFailed(
                f"fetching {display_name(table.ref)} failed: {item.error}",
                details={"table": display_name(table.ref), "refresh_id": str(refresh_id)},
            )
        QUERY_LAZY_FETCHES.labels("succeeded").inc()


async def _keep(db: Database, lease_id: uuid.UUID, ttl: timedelta, stop: threading.Event) -> None:
    """Renew the reader lease every third of its TTL; stop the query if it lapsed."""
    while True:
        await asyncio.sleep(ttl.total_seconds() / 3)
        try:
            async with UnitOfWork(db) as uow:
                alive = await uow.caches.renew_readers(lease_id, ttl)
                await uow.commit()
        except Exception as exc:  # the next attempt may work; the lease has time left
            log.warning("reader lease not renewed", lease_id=str(lease_id), error=str(exc))
            continue
        if not alive:
            log.warning("reader lease lapsed; stopping the query", lease_id=str(lease_id))
            stop.set()
            return


async def _release(db: Database, lease_id: uuid.UUID) -> None:
    try:
        async with UnitOfWork(db) as uow:
            await uow.caches.release_readers(lease_id)
            await uow.commit()
    except Exception as exc:  # it expires on its own
        log.warning("reader lease not released", lease_id=str(lease_id), error=str(exc))


def _table_read(table: ResolvedTable, fetch: Fetch | None) -> dict[str, Any]:
    pointer = table.pointer
    assert pointer is not None
    return {
        "name": display_name(table.ref),
        "connection": table.ref.endpoint,
        "schema": table.ref.schema_name,
        "table": table.ref.table,
        "version": pointer.version,
        "synced_at": pointer.synced_at.isoformat(),
        "rows": pointer.rows,
        "fetched": fetch is not None,
        "refresh_id": str(fetch.refresh_id) if fetch else None,
        "joined": bool(fetch and fetch.joined),
    }
