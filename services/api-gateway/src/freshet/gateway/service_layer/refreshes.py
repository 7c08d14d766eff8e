"""Refreshes and discovery (seed 004): the gateway writes jobs and requests, the refresher and
the collector do the work, and synchronous requests wait on the catalog.

The gateway never imports the refresher: a refresh is a job in the catalog plus a
`RefreshRequested` in the outbox, in one transaction. A synchronous request then polls the
catalog until its table, job or run is done, or until `refresh_wait_timeout_s`, when it
answers with the state so far (202) — any gateway replica can be asked for it later
(`GET /refresh/{id}`, `GET /runs/{id}`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import structlog

from freshet.catalog import CollectionRun, Database, Dataset, Endpoint, RunStatus, UnitOfWork
from freshet.catalog.caches import skip_reason
from freshet.catalog.clock import utcnow
from freshet.catalog.models import RefreshItem, TableCache
from freshet.catalog.refreshes import ITEM_FINAL, JOB_OPEN, Enqueued
from freshet.catalog.schedules import ScheduleError, validate_interval
from freshet.contracts import RefreshRequested
from freshet.contracts.events import TriggerSource
from freshet.gateway import errors
from freshet.gateway.refresh_schemas import (
    CacheOut,
    CacheSettingsIn,
    ConnectionCacheIn,
    ConnectionCacheOut,
    ConnectionRefreshAccepted,
    ConnectionRefreshRequest,
    DiscoverOut,
    RefreshStatusOut,
    TableRefreshOut,
    seed_status,
)
from freshet.gateway.service_layer import collections
from freshet.gateway.service_layer.caller import Caller
from freshet.kit.refresh_metrics import REFRESH_TABLES

log = structlog.get_logger("freshet.gateway")

POLL_S = 0.05
T = TypeVar("T")
AUDIT_REFRESH = "refresh.request"
AUDIT_CACHE_SETTINGS = "cache.settings"


async def wait_for(probe: Callable[[], Awaitable[T | None]], timeout_s: float) -> T | None:
    """Poll `probe` until it returns something, or None after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        found = await probe()
        if found is not None or loop.time() >= deadline:
            return found
        await asyncio.sleep(POLL_S)


async def connection(uow: UnitOfWork, name: str) -> Endpoint:
    endpoint = await uow.endpoints.get_by_name(name)
    if endpoint is None:
        raise errors.EndpointNotFound(f"connection {name} does not exist")
    return endpoint


async def table_of(uow: UnitOfWork, endpoint: Endpoint, schema: str, table: str) -> Dataset:
    for dataset in await uow.datasets.for_endpoint(endpoint.id):
        if dataset.schema_name == schema and dataset.name == table:
            return dataset
    raise errors.TableNotFound(
        f"table {schema}.{table} is not in the catalog of connection {endpoint.name}; "
        "discover the connection first"
    )


def _audit(
    uow: UnitOfWork,
    caller: Caller,
    action: str,
    target: Dataset | Endpoint,
    outcome: str,
    reason: str,
    details: dict[str, object],
) -> None:
    uow.audit.add(
        actor=caller.principal.name,
        action=action,
        target_type="dataset" if isinstance(target, Dataset) else "endpoint",
        target_id=target.id,
        outcome=outcome,
        reason=reason,
        details=details,
        correlation_id=caller.correlation_id,
    )


# --- one table -------------------------------------------------------------------------------


async def request_table_refresh(
    uow: UnitOfWork,
    caller: Caller,
    dataset: Dataset,
    *,
    force: bool,
    trigger_source: TriggerSource = "api",
) -> Enqueued:
    """Join the table's running refresh, or start one: a job, and `RefreshRequested` in the
    outbox, in the caller's transaction (commit it). The refresh route and lazy fetches of
    queries both ask this way."""
    enqueued = await uow.refreshes.join_or_start_table(
        dataset,
        trigger_source=trigger_source,
        requested_by=caller.principal.name,
        force=force,
        correlation_id=caller.correlation_id,
    )
    if enqueued.joined:
        REFRESH_TABLES.labels("joined").inc()
    else:
        await uow.outbox.add(
            RefreshRequested(
                endpoint_id=dataset.endpoint_id,
                refresh_id=enqueued.refresh_id,
                tables=[f"{dataset.schema_name}.{dataset.name}"],
                force=force,
                trigger_source=trigger_source,
                requested_by=caller.principal.name,
            ),
            source=caller.source,
            correlation_id=caller.correlation_id,
        )
    return enqueued


async def refresh_table(
    uow: UnitOfWork,
    caller: Caller,
    db: Database,
    name: str,
    schema: str,
    table: str,
    *,
    force: bool,
    wait: bool,
    trigger_source: TriggerSource = "api",
) -> tuple[int, TableRefreshOut]:
    """Start (or join) a refresh of one table; with `wait`, until it ends. (HTTP status, body).
    `trigger_source`: "api", or "manual" from the web UI."""
    endpoint = await connection(uow, name)
    dataset = await table_of(uow, endpoint, schema, table)
    cache = await uow.caches.get(dataset.id)
    min_interval = timedelta(seconds=caller.settings.refresh_min_interval_s)
    reason = skip_reason(cache, utcnow(), min_interval=min_interval, force=force)
    out = TableRefreshOut(
        refresh_id=None,
        connection=endpoint.name,
        schema_name=schema,
        table=table,
        status="skipped",
        joined=False,
        started_at=None,
        last_synced_at=cache.synced_at if cache else None,
    )
    if reason is not None:
        _audit(uow, caller, AUDIT_REFRESH, dataset, "skipped", reason, {"force": force})
        await uow.commit()
        REFRESH_TABLES.labels("skipped").inc()
        out.reason = reason
        return 200, out
    enqueued = await request_table_refresh(
        uow, caller, dataset, force=force, trigger_source=trigger_source
    )
    job = await uow.refreshes.get(enqueued.refresh_id)
    _audit(
        uow,
        caller,
        AUDIT_REFRESH,
        dataset,
        "joined" if enqueued.joined else "requested",
        f"refresh of {schema}.{table}",
        {"refreshId": str(enqueued.refresh_id), "force": force},
    )
    await uow.commit()
    log.info(
        "table refresh requested",
        refresh_id=str(enqueued.refresh_id),
        joined=enqueued.joined,
        table=f"{schema}.{table}",
    )
    out.refresh_id = enqueued.refresh_id
    out.joined = enqueued.joined
    out.status = "in_progress"
    out.started_at = job.started_at or job.requested_at if job else utcnow()
    if not wait:
        return 202, out

    async def finished() -> RefreshItem | None:
        async with UnitOfWork(db, read_only=True) as reader:
            item = await reader.refreshes.item(enqueued.refresh_id, dataset.id)
        return item if item is None or item.status in ITEM_FINAL else None

    item = await wait_for(finished, caller.settings.refresh_wait_timeout_s)
    if item is None:
        return 202, out
    out.status = "completed" if item.status == "succeeded" else item.status
    out.started_at = item.started_at or out.started_at
    out.completed_at = item.completed_at
    out.rows_synced = item.rows
    out.bytes = item.bytes
    out.duration_ms = item.duration_ms
    if job is not None and item.started_at is not None:
        out.queued_ms = max(0, int((item.started_at - job.requested_at).total_seconds() * 1000))
    out.reason = item.reason
    out.error = item.error
    if item.status == "failed":
        raise errors.RefreshFailed(
            f"refresh of {schema}.{table} failed: {item.error}",
            details={"refresh_id": str(enqueued.refresh_id), "table": f"{schema}.{table}"},
        )
    return 200, out


# --- a connection ----------------------------------------------------------------------------


async def refresh_connection(
    uow: UnitOfWork,
    caller: Caller,
    db: Database,
    name: str,
    request: ConnectionRefreshRequest,
    *,
    force: bool,
    wait: bool,
    trigger_source: TriggerSource = "api",
) -> tuple[int, RefreshStatusOut | ConnectionRefreshAccepted]:
    """Refresh the listed tables, every cached one, or (all_tables) every discovered one, each
    joining a refresh already under way."""
    endpoint = await connection(uow, name)
    datasets = await uow.datasets.for_endpoint(endpoint.id)
    if request.tables is not None:
        by_key = {f"{d.schema_name}.{d.name}": d for d in datasets}
        unknown = [t for t in request.tables if t not in by_key]
        if unknown:
            raise errors.TableNotFound(
                f"not in the catalog of connection {name}: {', '.join(unknown[:20])}",
                details={"tables": unknown[:200]},
            )
        chosen = [by_key[t] for t in dict.fromkeys(request.tables)]
    elif request.all_tables:
        chosen = datasets
    else:
        cached = {
            c.dataset_id for c in await uow.caches.for_endpoint(endpoint.id, cached_only=True)
        }
        chosen = [d for d in datasets if d.id in cached]
    concurrency = request.concurrency or caller.settings.refresh_default_concurrency
    job = await uow.refreshes.start_job(
        endpoint.id,
        chosen,
        scope="connection",
        trigger_source=trigger_source,
        requested_by=caller.principal.name,
        force=force,
        concurrency=concurrency,
        correlation_id=caller.correlation_id,
    )
    if job.status in JOB_OPEN:
        await uow.outbox.add(
            RefreshRequested(
                endpoint_id=endpoint.id,
                refresh_id=job.id,
                tables=[f"{d.schema_name}.{d.name}" for d in chosen],
                force=force,
                trigger_source=trigger_source,
                requested_by=caller.principal.name,
                concurrency=concurrency,
            ),
            source=caller.source,
            correlation_id=caller.correlation_id,
        )
    progress = await uow.refreshes.progress(job.id)
    REFRESH_TABLES.labels("joined").inc(progress.waiting)
    which = "listed" if request.tables is not None else "all" if request.all_tables else "cached"
    _audit(
        uow,
        caller,
        AUDIT_REFRESH,
        endpoint,
        "requested",
        f"refresh of {len(chosen)} {which} table(s) of {endpoint.name}",
        {
            "refreshId": str(job.id),
            "tables": len(chosen),
            "joined": progress.waiting,
            "concurrency": concurrency,
            "force": force,
        },
    )
    await uow.commit()
    log.info("connection refresh requested", refresh_id=str(job.id), tables=len(chosen))
    if not wait:
        return 202, ConnectionRefreshAccepted(
            refresh_id=job.id,
            connection=endpoint.name,
            status=seed_status(job.status),
            tables_total=progress.total,
            tables_queued=progress.open,
            started_at=job.requested_at,
        )

    async def finished() -> bool | None:
        async with UnitOfWork(db, read_only=True) as reader:
            current = await reader.refreshes.get(job.id)
        return True if current is None or current.status not in JOB_OPEN else None

    done = await wait_for(finished, caller.settings.refresh_wait_timeout_s)
    async with UnitOfWork(db, read_only=True) as reader:
        status = await refresh_status(reader, job.id)
    return (200 if done else 202), status


async def refresh_status(uow: UnitOfWork, refresh_id: uuid.UUID) -> RefreshStatusOut:
    job = await uow.refreshes.get(refresh_id)
    if job is None:
        raise errors.RefreshNotFound(f"refresh {refresh_id} does not exist")
    endpoint = await uow.endpoints.get(job.endpoint_id)
    return RefreshStatusOut.of(
        job,
        endpoint.name if endpoint else str(job.endpoint_id),
        await uow.refreshes.progress(job.id),
        await uow.refreshes.items(job.id),
    )


# --- discovery -------------------------------------------------------------------------------


async def discover(
    uow: UnitOfWork,
    caller: Caller,
    db: Database,
    name: str,
    *,
    invalidate_changed: bool,
) -> tuple[int, DiscoverOut]:
    """Re-introspect the connection: a collection run (the collector's own code), joined when
    one is already under way, then its diff. With `invalidate_changed`, the run drops the
    cache pointer of every table whose schema changed, in the transaction that records the
    change."""
    endpoint = await connection(uow, name)
    run = await _run_for_discovery(uow, caller, endpoint, invalidate_changed)

    async def finished() -> CollectionRun | None:
        async with UnitOfWork(db, read_only=True) as reader:
            current = await reader.runs.get(run.id)
        return current if current is None or RunStatus(current.status).is_final else None

    done = await wait_for(finished, caller.settings.refresh_wait_timeout_s)
    if done is None:
        async with UnitOfWork(db, read_only=True) as reader:
            current = await reader.runs.get(run.id)
        return 202, _discovery(endpoint.name, current or run, invalidate_changed, [])
    late: list[str] = []
    if invalidate_changed and not done.invalidate_changed:
        # Joined a run that finished before it could be asked: drop the pointers now.
        late = await _invalidate_late(db, caller, done)
    return 200, _discovery(endpoint.name, done, invalidate_changed, late)


async def _run_for_discovery(
    uow: UnitOfWork, caller: Caller, endpoint: Endpoint, invalidate_changed: bool
) -> CollectionRun:
    try:
        return await collections.trigger_endpoint_collection(
            uow, caller, endpoint.id, invalidate_changed=invalidate_changed
        )
    except errors.CollectionInProgress:
        pass
    collection = await uow.collections.for_endpoint(endpoint.id)
    active = await uow.runs.active_for(collection.id) if collection else None
    if active is None:
        # It ended between the two looks: the next request starts a run of its own.
        raise errors.CollectionInProgress(f"connection {endpoint.name} is being discovered")
    if invalidate_changed:
        await uow.runs.request_invalidation(active.id)
    await uow.commit()
    log.info("discovery joined the active run", run_id=str(active.id))
    return active


async def _invalidate_late(db: Database, caller: Caller, run: CollectionRun) -> list[str]:
    changed = [tuple(n) for n in (run.diff or {}).get("schema_changed", [])]
    if not changed:
        return []
    async with UnitOfWork(db) as uow:
        datasets = {
            (d.schema_name, d.name): d for d in await uow.datasets.for_endpoint(run.endpoint_id)
        }
        ids = [datasets[key].id for key in changed if key in datasets]
        dropped = await uow.caches.invalidate(
            ids, utcnow(), grace=timedelta(seconds=caller.settings.cache_grace_s)
        )
        await uow.commit()
    return [f"{d.schema_name}.{d.name}" for d in datasets.values() if d.id in set(dropped)]


_DISCOVERY_STATUS = {"SUCCEEDED": "success", "FAILED": "failed", "SKIPPED": "skipped"}


def _discovery(
    name: str, run: CollectionRun, invalidate_changed: bool, late: list[str]
) -> DiscoverOut:
    diff = run.diff or {}

    def names(key: str) -> list[str]:
        return [f"{schema}.{table}" for schema, table in diff.get(key, [])]

    status = RunStatus(run.status)
    return DiscoverOut(
        name=name,
        run_id=run.id,
        discovery_status=_DISCOVERY_STATUS.get(status.value, status.value.lower())
        if status.is_final
        else "in_progress",
        tables_discovered=run.datasets_total,
        tables_added=run.datasets_added,
        tables_removed=run.datasets_removed,
        tables_schema_changed=run.datasets_changed,
        added=names("added"),
        removed=names("removed"),
        schema_changed=names("schema_changed"),
        invalidate_changed=invalidate_changed,
        caches_invalidated=sorted({*names("caches_invalidated"), *late}),
        error=run.error,
    )


# --- settings --------------------------------------------------------------------------------


async def table_cache(uow: UnitOfWork, name: str, schema: str, table: str) -> CacheOut:
    endpoint = await connection(uow, name)
    dataset = await table_of(uow, endpoint, schema, table)
    cache = await uow.caches.get(dataset.id)
    return CacheOut.of(endpoint.name, schema, table, dataset.id, dataset.fingerprint, cache)


async def set_table_cache(
    uow: UnitOfWork, caller: Caller, name: str, schema: str, table: str, data: CacheSettingsIn
) -> CacheOut:
    """Mark a table cached (or not), its lazy fetch and its refresh interval; the scheduler's
    table-refresh schedule follows in the same transaction."""
    endpoint = await connection(uow, name)
    dataset = await table_of(uow, endpoint, schema, table)
    sent = data.model_fields_set
    if data.refresh_interval_s is not None:
        try:
            validate_interval(
                data.refresh_interval_s,
                min_interval=timedelta(seconds=caller.settings.min_schedule_interval_s),
                field="refresh_interval_s",
            )
        except ScheduleError as exc:
            raise errors.ValidationFailed(
                f"{exc.field} {exc.message}",
                details=[{"loc": ["body", exc.field], "msg": exc.message}],
            ) from None
    before = _cache_settings(await uow.caches.get(dataset.id))
    cache = await uow.caches.configure(
        dataset,
        utcnow(),
        cached=data.cached,
        lazy_fetch=data.lazy_fetch,
        set_lazy_fetch="lazy_fetch" in sent,
        refresh_interval_s=data.refresh_interval_s,
        set_refresh_interval="refresh_interval_s" in sent,
    )
    after = _cache_settings(cache)
    if after != before:
        _audit(
            uow,
            caller,
            AUDIT_CACHE_SETTINGS,
            dataset,
            "changed",
            f"cache settings of {schema}.{table}",
            {"before": before, "after": after},
        )
    await uow.commit()
    log.info("table cache settings changed", table=f"{schema}.{table}", fields=sorted(sent))
    return CacheOut.of(endpoint.name, schema, table, dataset.id, dataset.fingerprint, cache)


def _cache_settings(cache: TableCache | None) -> dict[str, object]:
    if cache is None:
        return {"cached": False, "lazyFetch": None, "refreshIntervalS": None}
    return {
        "cached": cache.cached,
        "lazyFetch": cache.lazy_fetch,
        "refreshIntervalS": cache.refresh_interval_s,
    }


async def set_connection_cache(
    uow: UnitOfWork, caller: Caller, name: str, data: ConnectionCacheIn
) -> ConnectionCacheOut:
    endpoint = await connection(uow, name)
    before = {
        "schemaChangePolicy": endpoint.schema_change_policy,
        "lazyFetch": endpoint.cache_lazy_fetch,
    }
    if data.schema_change_policy is not None:
        endpoint.schema_change_policy = data.schema_change_policy
    if data.lazy_fetch is not None:
        endpoint.cache_lazy_fetch = data.lazy_fetch
    endpoint.updated_at = utcnow()
    after = {
        "schemaChangePolicy": endpoint.schema_change_policy,
        "lazyFetch": endpoint.cache_lazy_fetch,
    }
    if after != before:
        _audit(
            uow,
            caller,
            AUDIT_CACHE_SETTINGS,
            endpoint,
            "changed",
            f"cache policy of {endpoint.name}",
            {"before": before, "after": after},
        )
    await uow.commit()
    return ConnectionCacheOut(
        connection=endpoint.name,
        schema_change_policy=endpoint.schema_change_policy,
        lazy_fetch=endpoint.cache_lazy_fetch,
    )
