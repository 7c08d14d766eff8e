"""Refresh jobs over the catalog, one transaction per step:

    accept (a RefreshRequested, or a run's schema changes) -> claim (lease) -> per table:
    plan -> begin (target recorded) -> [write the file] -> succeed (pointer moves) | fail | skip

Each step is idempotent by refresh id and checks that this process still holds the job's
lease (a job taken over by another refresher is left to it, and what this one wrote is
deleted). Events (table refreshed or failed, job completed) go to the outbox in the step's
transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog

from freshet.catalog import Database, Dataset, UnitOfWork
from freshet.catalog.caches import skip_reason
from freshet.catalog.clock import utcnow
from freshet.catalog.models import RefreshJob
from freshet.catalog.refreshes import FAILED, SKIPPED, SUCCEEDED, Settled
from freshet.catalog.secrets import SecretBox, SecretError
from freshet.contracts import (
    RefreshCompleted,
    RefreshRequested,
    RunCompleted,
    TableRefreshed,
    TableRefreshFailed,
)
from freshet.kit.errors import PermanentError
from freshet.kit.refresh_metrics import REFRESH_TABLES

log = structlog.get_logger("freshet.refresher")

# A refresh id for requests that carry none, from the event id: redelivery is harmless.
REFRESH_ID_NAMESPACE = uuid.UUID("0b7e4c52-1f0a-4d7e-9a63-5c2e8b1d4f90")


@dataclass
class JobDeps:
    db: Database
    secrets: SecretBox
    source: str
    owner: str
    lease_ttl: timedelta
    min_interval: timedelta
    grace: timedelta


@dataclass(frozen=True)
class TablePlan:
    """What refreshing one table needs, read in one short transaction."""

    dataset: Dataset
    kind: str
    config: dict[str, object]
    secrets: dict[str, str]
    force: bool
    trigger_source: str


@dataclass(frozen=True)
class ItemOutcome:
    status: str
    error: str | None = None


def refresh_id_for(event: RefreshRequested, event_id: str) -> uuid.UUID:
    return event.refresh_id or uuid.uuid5(REFRESH_ID_NAMESPACE, event_id)


def _table_key(dataset: Dataset) -> str:
    return f"{dataset.schema_name}.{dataset.name}"


async def accept(
    event: RefreshRequested, refresh_id: uuid.UUID, correlation_id: str, deps: JobDeps
) -> bool:
    """Make sure the request's job exists (the gateway writes its own; events from elsewhere
    and schedules get one here). True when the job has work left."""
    async with UnitOfWork(deps.db) as uow:
        job = await uow.refreshes.get(refresh_id)
        if job is None:
            endpoint = await uow.endpoints.get(event.endpoint_id)
            if endpoint is None:
                raise PermanentError(f"endpoint {event.endpoint_id} does not exist")
            datasets, unknown = await _select(uow, event)
            if unknown:
                log.warning("refresh names tables the catalog does not know", tables=unknown)
            job = await uow.refreshes.start_job(
                endpoint.id,
                datasets,
                refresh_id=refresh_id,
                scope="table"
                if event.tables is not None and len(event.tables) == 1
                else "connection",
                trigger_source=event.trigger_source,
                requested_by=event.requested_by,
                force=event.force,
                concurrency=event.concurrency or 5,
                correlation_id=correlation_id,
            )
            if unknown:
                job.error = f"not in the catalog: {', '.join(sorted(unknown))[:1500]}"
            joined = sum(1 for i in await uow.refreshes.items(job.id) if i.status == "waiting")
            REFRESH_TABLES.labels("joined").inc(joined)
            if job.status != "queued":
                await announce_completed(uow, [job], deps, correlation_id)
            await uow.commit()
            log.info("refresh accepted", refresh_id=str(refresh_id), tables=len(datasets))
        return job.status in ("queued", "in_progress")


async def _select(uow: UnitOfWork, event: RefreshRequested) -> tuple[list[Dataset], list[str]]:
    datasets = await uow.datasets.for_endpoint(event.endpoint_id)
    if event.tables is None:
        if event.all_tables:
            return datasets, []
        cached = {
            c.dataset_id for c in await uow.caches.for_endpoint(event.endpoint_id, cached_only=True)
        }
        return [d for d in datasets if d.id in cached], []
    by_key = {_table_key(d): d for d in datasets}
    wanted = list(dict.fromkeys(event.tables))
    return [by_key[t] for t in wanted if t in by_key], [t for t in wanted if t not in by_key]


async def accept_schema_changes(
    event: RunCompleted, correlation_id: str, deps: JobDeps
) -> uuid.UUID | None:
    """After a run that changed the schema of cached tables, refresh them (unless the
    endpoint's policy is "ignore"). The refresh id derives from the run: once per run."""
    if event.status != "SUCCEEDED" or not event.diff.schema_changed:
        return None
    refresh_id = uuid.uuid5(REFRESH_ID_NAMESPACE, f"run:{event.run_id}")
    async with UnitOfWork(deps.db) as uow:
        if await uow.refreshes.get(refresh_id) is not None:
            return refresh_id
        endpoint = await uow.endpoints.get(event.endpoint_id)
        if endpoint is None or endpoint.schema_change_policy == "ignore":
            return None
        changed = [ref.dataset_id for ref in event.diff.schema_changed]
        caches = await uow.caches.many(changed)
        wanted = [
            d
            for d in (await uow.datasets.many(changed)).values()
            if caches.get(d.id) and caches[d.id].cached
        ]
        if not wanted:
            return None
        await uow.refreshes.start_job(
            endpoint.id,
            wanted,
            refresh_id=refresh_id,
            scope="connection",
            trigger_source="event",
            requested_by=f"run:{event.run_id}",
            force=True,
            correlation_id=correlation_id,
        )
        await uow.commit()
    log.info(
        "refreshing tables whose schema changed", refresh_id=str(refresh_id), tables=len(wanted)
    )
    return refresh_id


async def claim(refresh_id: uuid.UUID, deps: JobDeps) -> RefreshJob | None:
    async with UnitOfWork(deps.db) as uow:
        job = await uow.refreshes.claim(refresh_id, deps.owner, deps.lease_ttl)
        await uow.commit()
        return job


async def open_items(refresh_id: uuid.UUID, deps: JobDeps) -> list[uuid.UUID]:
    async with UnitOfWork(deps.db, read_only=True) as uow:
        return [i.dataset_id for i in await uow.refreshes.open_items(refresh_id)]


async def plan(job: RefreshJob, dataset_id: uuid.UUID, deps: JobDeps) -> TablePlan | ItemOutcome:
    """Read what the refresh needs; or the outcome at once (skipped, failed) without reading
    the source."""
    async with UnitOfWork(deps.db, read_only=True) as uow:
        dataset = await uow.datasets.get(dataset_id)
        endpoint = await uow.endpoints.get(job.endpoint_id)
        cache = await uow.caches.get(dataset_id)
    if dataset is None or dataset.removed_at is not None:
        return ItemOutcome(FAILED, "the table is no longer in the catalog")
    if endpoint is None:
        return ItemOutcome(FAILED, "the endpoint no longer exists")
    # A schedule's own interval (at least FRESHET_MIN_SCHEDULE_INTERVAL_S) is the bound on
    # how often it refreshes; the minimum interval guards against repeated requests.
    force = job.force or job.trigger_source == "schedule"
    reason = skip_reason(cache, utcnow(), min_interval=deps.min_interval, force=force)
    if reason is not None:
        return ItemOutcome(SKIPPED, reason)
    try:
        secrets = deps.secrets.decrypt(endpoint.secret_ciphertext)
    except SecretError as exc:
        return ItemOutcome(FAILED, str(exc))
    return TablePlan(
        dataset=dataset,
        kind=endpoint.kind,
        config=dict(endpoint.config),
        secrets=secrets,
        force=job.force,
        trigger_source=job.trigger_source,
    )


async def begin(
    job: RefreshJob, dataset_id: uuid.UUID, version: str, uri: str, deps: JobDeps
) -> bool:
    """Record the target before writing it; an earlier attempt's file goes to deletion. False
    when the job is no longer ours or the item no longer open."""
    async with UnitOfWork(deps.db) as uow:
        if not await uow.refreshes.holds(job.id, deps.owner):
            return False
        previous = await uow.refreshes.begin_item(job.id, dataset_id, version=version, uri=uri)
        if previous is False:
            return False
        if isinstance(previous, str):
            await uow.caches.schedule_deletion(
                previous, dataset_id, job.endpoint_id, not_before=utcnow(), reason="abandoned"
            )
        await uow.commit()
        return True


async def succeed(
    job: RefreshJob,
    table: TablePlan,
    *,
    version: str,
    uri: str,
    rows: int,
    size: int,
    schema_fingerprint: str,
    deps: JobDeps,
) -> bool:
    """The one transaction that moves the pointer. False when the job is no longer ours (the
    caller deletes the file it wrote)."""
    now = utcnow()
    dataset = table.dataset
    async with UnitOfWork(deps.db) as uow:
        if not await uow.refreshes.holds(job.id, deps.owner):
            return False
        current = await uow.datasets.get(dataset.id)
        if current is None:
            return False
        await uow.caches.move_pointer(
            current,
            version=version,
            uri=uri,
            rows=rows,
            size=size,
            schema_fingerprint=schema_fingerprint,
            # The shape the catalog had when the read began: a change found meanwhile leaves
            # the version marked as written with the older shape.
            source_fingerprint=dataset.fingerprint,
            refresh_id=job.id,
            now=now,
            grace=deps.grace,
        )
        settled = await uow.refreshes.finish_item(
            job.id, dataset.id, SUCCEEDED, now, rows=rows, size=size
        )
        item = await uow.refreshes.item(job.id, dataset.id)
        await uow.outbox.add(
            TableRefreshed(
                refresh_id=job.id,
                dataset_id=dataset.id,
                endpoint_id=dataset.endpoint_id,
                schema_name=dataset.schema_name,
                table_name=dataset.name,
                version=version,
                rows=rows,
                bytes=size,
                schema_fingerprint=schema_fingerprint,
                started_at=(item.started_at if item and item.started_at else now),
                completed_at=now,
                trigger_source=_trigger(job.trigger_source),
            ),
            source=deps.source,
            correlation_id=job.correlation_id,
        )
        await _settle(uow, settled, deps, job.correlation_id)
        await uow.commit()
    _count(SUCCEEDED, settled)
    return True


async def end(
    job: RefreshJob,
    dataset: Dataset | None,
    dataset_id: uuid.UUID,
    outcome: ItemOutcome,
    deps: JobDeps,
) -> bool:
    """End an item as failed or skipped (the old cache keeps serving)."""
    now = utcnow()
    async with UnitOfWork(deps.db) as uow:
        if not await uow.refreshes.holds(job.id, deps.owner):
            return False
        error = outcome.error if outcome.status == FAILED else None
        reason = outcome.error if outcome.status == SKIPPED else None
        settled = await uow.refreshes.finish_item(
            job.id, dataset_id, outcome.status, now, error=error, reason=reason
        )
        if outcome.status == FAILED:
            item = await uow.refreshes.item(job.id, dataset_id)
            current = dataset or await uow.datasets.get(dataset_id)
            if current is not None:
                await uow.caches.record_failure(current, error or "failed", now)
            await uow.outbox.add(
                TableRefreshFailed(
                    refresh_id=job.id,
                    dataset_id=dataset_id,
                    endpoint_id=job.endpoint_id,
                    schema_name=item.schema_name if item else "",
                    table_name=item.table_name if item else "",
                    error=(error or "failed")[:2000],
                    failed_at=now,
                    trigger_source=_trigger(job.trigger_source),
                ),
                source=deps.source,
                correlation_id=job.correlation_id,
            )
        await _settle(uow, settled, deps, job.correlation_id)
        await uow.commit()
    _count(outcome.status, settled)
    return True


async def _settle(
    uow: UnitOfWork, settled: Settled, deps: JobDeps, correlation_id: str | None
) -> None:
    await announce_completed(uow, settled.completed_jobs, deps, correlation_id)


async def announce_completed(
    uow: UnitOfWork, jobs: Sequence[RefreshJob], deps: JobDeps, correlation_id: str | None
) -> None:
    for job in jobs:
        progress = await uow.refreshes.progress(job.id)
        await uow.outbox.add(
            RefreshCompleted(
                refresh_id=job.id,
                endpoint_id=job.endpoint_id,
                status="failed" if job.status == "failed" else "completed",
                scope=job.scope,
                tables_total=progress.total,
                tables_succeeded=progress.succeeded,
                tables_failed=progress.failed,
                tables_skipped=progress.skipped,
                rows_synced=progress.rows,
                bytes_written=progress.bytes,
                requested_at=job.requested_at,
                started_at=job.started_at,
                completed_at=job.completed_at or utcnow(),
                trigger_source=_trigger(job.trigger_source),
            ),
            source=deps.source,
            correlation_id=job.correlation_id or correlation_id,
        )
        log.info(
            "refresh completed",
            refresh_id=str(job.id),
            status=job.status,
            succeeded=progress.succeeded,
            failed=progress.failed,
            skipped=progress.skipped,
        )


def _count(status: str, settled: Settled) -> None:
    # Items that joined this one were counted as "joined" when they joined.
    REFRESH_TABLES.labels(status).inc()


def _trigger(source: str) -> str:
    return source if source in ("manual", "schedule", "api", "event") else "event"


async def renew(job_id: uuid.UUID, deps: JobDeps) -> bool:
    async with UnitOfWork(deps.db) as uow:
        ours = await uow.refreshes.renew_lease(job_id, deps.owner, deps.lease_ttl)
        await uow.commit()
        return ours


async def release(job_ids: Sequence[uuid.UUID], deps: JobDeps) -> None:
    async with UnitOfWork(deps.db) as uow:
        for job_id in job_ids:
            await uow.refreshes.release_lease(job_id, deps.owner)
        await uow.commit()


async def expired(deps: JobDeps, *, queued_grace: timedelta) -> list[uuid.UUID]:
    now = utcnow()
    async with UnitOfWork(deps.db, read_only=True) as uow:
        return await uow.refreshes.expired(now, queued_before=now - queued_grace)
