"""Collections: create, change, delete, list, and trigger runs (seed 003's mutations)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError

from freshet.catalog import Collection, CollectionRun, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.schedules import ScheduleError, validate_schedule
from freshet.contracts import CollectionChanged, CollectionRequested, RunFilters
from freshet.gateway import errors
from freshet.gateway.schemas import CollectionCreate, CollectionUpdate
from freshet.gateway.service_layer import runs
from freshet.gateway.service_layer.caller import Caller
from freshet.gateway.service_layer.checks import refuse_nul

log = structlog.get_logger("freshet.gateway")


async def announce(
    uow: UnitOfWork, caller: Caller, collection: Collection, *, deleted: bool = False
) -> None:
    """Tell the scheduler (and anyone else) about the collection's schedule and state."""
    await uow.outbox.add(
        CollectionChanged(
            collection_id=collection.id,
            endpoint_id=collection.endpoint_id,
            schedule_cron=None if deleted else collection.schedule_cron,
            schedule_timezone=collection.schedule_timezone,
            schedule_jitter_s=collection.schedule_jitter_s,
            is_enabled=collection.is_enabled and not deleted,
            deleted=deleted,
            changed_at=utcnow(),
        ),
        source=caller.source,
        correlation_id=caller.correlation_id,
    )


def _check_schedule(caller: Caller, cron: str | None, timezone: str) -> None:
    try:
        validate_schedule(
            cron,
            timezone,
            min_interval=timedelta(seconds=caller.settings.min_schedule_interval_s),
        )
    except ScheduleError as exc:
        raise errors.ValidationFailed(
            f"{exc.field} {exc.message}",
            details=[{"loc": ["input", exc.field], "msg": exc.message}],
        ) from None


async def get_collection(uow: UnitOfWork, collection_id: uuid.UUID) -> Collection:
    collection = await uow.collections.get(collection_id)
    if collection is None:
        raise errors.CollectionNotFound(f"collection {collection_id} does not exist")
    return collection


async def list_collections(
    uow: UnitOfWork,
    *,
    endpoint_id: uuid.UUID | None = None,
    is_enabled: bool | None = None,
    first: int = 50,
    after: str | None = None,
) -> list[Collection]:
    runs.check_cursor(after)
    try:
        return await uow.collections.page(
            endpoint_id=endpoint_id, is_enabled=is_enabled, first=first, after=after
        )
    except ValueError:
        raise errors.ValidationFailed(
            "after is not a cursor from this list",
            details=[{"loc": ["input", "after"], "msg": "invalid cursor"}],
        ) from None


async def create_collection(uow: UnitOfWork, caller: Caller, data: CollectionCreate) -> Collection:
    """One collection per endpoint (seed 003, Q1): a second one is a validation error."""
    if await uow.endpoints.get(data.endpoint_id) is None:
        raise errors.EndpointNotFound(f"endpoint {data.endpoint_id} does not exist")
    _check_schedule(caller, data.schedule_cron, data.schedule_timezone)
    existing = await uow.collections.for_endpoint(data.endpoint_id)
    if existing is not None:
        raise errors.ValidationFailed(
            f"endpoint {data.endpoint_id} already has collection {existing.id}; "
            "an endpoint has at most one collection",
            details=[{"loc": ["input", "endpoint_id"], "msg": "already has a collection"}],
        )
    collection = await _add(
        uow,
        endpoint_id=data.endpoint_id,
        schedule_cron=data.schedule_cron,
        schedule_timezone=data.schedule_timezone,
        is_enabled=data.is_enabled,
        schedule_jitter_s=data.schedule_jitter_s,
    )
    if collection is None:
        # A concurrent request created the endpoint's collection first.
        if await uow.collections.for_endpoint(data.endpoint_id) is None:
            raise errors.EndpointNotFound(f"endpoint {data.endpoint_id} does not exist")
        raise errors.ValidationFailed(
            f"endpoint {data.endpoint_id} already has a collection; "
            "an endpoint has at most one collection",
            details=[{"loc": ["input", "endpoint_id"], "msg": "already has a collection"}],
        )
    await announce(uow, caller, collection)
    await uow.commit()
    log.info("collection created", collection_id=str(collection.id))
    return collection


async def update_collection(
    uow: UnitOfWork, caller: Caller, collection_id: uuid.UUID, data: CollectionUpdate
) -> Collection:
    collection = await get_collection(uow, collection_id)
    sent = data.model_fields_set
    cron = data.schedule_cron if "schedule_cron" in sent else collection.schedule_cron
    # Not `or`: an empty zone sent is refused like any other that is not a zone name.
    timezone = (
        collection.schedule_timezone if data.schedule_timezone is None else data.schedule_timezone
    )
    enabled = collection.is_enabled if data.is_enabled is None else data.is_enabled
    _check_schedule(caller, cron, timezone)
    await uow.collections.update(
        collection,
        schedule_cron=cron,
        schedule_timezone=timezone,
        is_enabled=enabled,
        schedule_jitter_s=data.schedule_jitter_s,
    )
    await announce(uow, caller, collection)
    await uow.commit()
    log.info("collection updated", collection_id=str(collection.id), fields=sorted(sent))
    return collection


async def delete_collection(uow: UnitOfWork, caller: Caller, collection_id: uuid.UUID) -> bool:
    """Delete the collection and its schedule; active runs are cancelled, history stays."""
    # Locked, so that of concurrent deletes one finds it and the others find nothing (404)
    # instead of each deleting it again and announcing it twice (PostgreSQL).
    collection = await uow.session.get(Collection, collection_id, with_for_update=True)
    if collection is None:
        raise errors.CollectionNotFound(f"collection {collection_id} does not exist")
    active = await uow.runs.active_for(collection.id)
    if active is not None:
        await runs.cancel(uow, caller, active, reason="collection deleted")
    await announce(uow, caller, collection, deleted=True)
    await uow.collections.delete(collection)
    await uow.commit()
    log.info("collection deleted", collection_id=str(collection_id))
    return True


async def trigger_collection(
    uow: UnitOfWork,
    caller: Caller,
    collection_id: uuid.UUID,
    *,
    trigger_source: str = "api",
    filters: RunFilters | None = None,
) -> CollectionRun:
    """Queue a run and its CollectionRequested in one transaction.

    Disabled means no runs at all (seed 003, Q2). While the collection has a QUEUED or
    RUNNING run, the database refuses a second one: E_COLLECTION_IN_PROGRESS.
    """
    collection = await get_collection(uow, collection_id)
    return await _trigger(uow, caller, collection, trigger_source, filters)


async def trigger_endpoint_collection(
    uow: UnitOfWork,
    caller: Caller,
    endpoint_id: uuid.UUID,
    *,
    trigger_source: str = "api",
    filters: RunFilters | None = None,
    invalidate_changed: bool = False,
) -> CollectionRun:
    """Trigger the endpoint's collection, creating a manual-only one if it has none."""
    if await uow.endpoints.get(endpoint_id) is None:
        raise errors.EndpointNotFound(f"endpoint {endpoint_id} does not exist")
    collection = await uow.collections.for_endpoint(endpoint_id)
    if collection is None:
        collection = await _add(uow, endpoint_id=endpoint_id)
        if collection is None:
            # A concurrent trigger created it first: this trigger meets its run (409).
            collection = await uow.collections.for_endpoint(endpoint_id)
            if collection is None:
                raise errors.EndpointNotFound(f"endpoint {endpoint_id} does not exist")
        else:
            await announce(uow, caller, collection)
            log.info("manual-only collection created for trigger", collection_id=str(collection.id))
    return await _trigger(uow, caller, collection, trigger_source, filters, invalidate_changed)


async def _add(uow: UnitOfWork, **fields: Any) -> Collection | None:
    """Insert an endpoint's collection; None when the database refuses it (the endpoint got
    one from a concurrent request, or is gone). The savepoint keeps the transaction usable."""
    try:
        async with uow.session.begin_nested():
            return await uow.collections.add(**fields)
    except IntegrityError:
        return None


async def _trigger(
    uow: UnitOfWork,
    caller: Caller,
    collection: Collection,
    trigger_source: str,
    filters: RunFilters | None,
    invalidate_changed: bool = False,
) -> CollectionRun:
    if not collection.is_enabled:
        raise errors.CollectionDisabled(f"collection {collection.id} is disabled")
    scoped = filters.model_dump() if filters is not None and not filters.is_empty else None
    refuse_nul(scoped, ["input", "filters"])
    run = await uow.runs.enqueue(
        collection_id=collection.id,
        endpoint_id=collection.endpoint_id,
        trigger_source=trigger_source,
        requested_by=caller.principal.name,
        filters=scoped,
        invalidate_changed=invalidate_changed,
    )
    if run is None:
        raise errors.CollectionInProgress(f"collection {collection.id} has a run queued or running")
    await uow.outbox.add(
        CollectionRequested(
            collection_id=collection.id,
            run_id=run.id,
            endpoint_id=collection.endpoint_id,
            trigger_source=trigger_source,
            requested_by=caller.principal.name,
            requested_at=run.requested_at,
            filters=scoped,
            invalidate_changed=invalidate_changed,
        ),
        source=caller.source,
        correlation_id=caller.correlation_id,
    )
    await uow.commit()
    log.info("collection triggered", collection_id=str(collection.id), run_id=str(run.id))
    return run
