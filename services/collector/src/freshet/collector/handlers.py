"""The run workflow: CollectionRequested -> RUNNING -> discover -> SUCCEEDED/FAILED/SKIPPED.

Each step is idempotent by run id: the run's status in the catalog says how far a run got, so
a redelivered request resumes or does nothing, and never makes a second run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import stamina
import structlog

from freshet.catalog import (
    CollectionRun,
    Database,
    DatasetSpec,
    ForeignKeySpec,
    RunStatus,
    UnitOfWork,
)
from freshet.catalog.clock import utcnow
from freshet.catalog.datasets import SyncResult
from freshet.catalog.models import Dataset
from freshet.catalog.secrets import SecretBox
from freshet.connectors import ConnectorError, ConnectorFactory, TableInfo
from freshet.contracts import (
    CollectionRequested,
    DatasetDiff,
    DatasetRef,
    Envelope,
    RunCompleted,
)
from freshet.kit import metrics
from freshet.kit.errors import PermanentError
from freshet.kit.redaction import describe_error

# A run id for requests that carry none, derived from the event id so redelivery is harmless.
RUN_ID_NAMESPACE = uuid.UUID("6f1c3a52-8b1e-4d0a-9c55-0e5b7f1d2a10")
log = structlog.get_logger("freshet.collector")


@dataclass
class CollectorDeps:
    db: Database
    secrets: SecretBox
    source: str
    connect: ConnectorFactory
    introspect_attempts: int = 3


def run_id_for(cmd: CollectionRequested, event_id: str) -> uuid.UUID:
    return cmd.run_id or uuid.uuid5(RUN_ID_NAMESPACE, event_id)


async def handle_collection_requested(env: Envelope, deps: CollectorDeps) -> None:
    cmd = env.data
    assert isinstance(cmd, CollectionRequested)
    run_id = run_id_for(cmd, env.id)
    with structlog.contextvars.bound_contextvars(run_id=str(run_id)):
        started = await _start_run(cmd, run_id, env, deps)
        if started is None:
            return
        run, kind, config, secrets = started
        try:
            tables = await _discover(deps, kind, config, secrets)
        except Exception as exc:
            await _finish(
                run, env, deps, RunStatus.FAILED, error=describe_error(exc, secrets.values())
            )
            return
        await _finish(run, env, deps, RunStatus.SUCCEEDED, tables=tables, kind=kind)


async def _start_run(
    cmd: CollectionRequested, run_id: uuid.UUID, env: Envelope, deps: CollectorDeps
) -> tuple[CollectionRun, str, dict[str, object], dict[str, str]] | None:
    """Move the run to RUNNING (creating it for outside requests); None if nothing to do."""
    async with UnitOfWork(deps.db) as uow:
        run = await uow.runs.get(run_id, for_update=True)
        collection = await uow.collections.get(cmd.collection_id)
        if run is None:
            if collection is None:
                raise PermanentError(f"collection {cmd.collection_id} does not exist")
            run = await uow.runs.add(
                run_id=run_id,
                collection_id=collection.id,
                endpoint_id=collection.endpoint_id,
                trigger_source=cmd.trigger_source,
                requested_by=cmd.requested_by,
                requested_at=cmd.requested_at,
                filters=cmd.filters,
            )
        status = RunStatus(run.status)
        if status.is_final:
            log.info("run already finished; duplicate request ignored", status=status.value)
            return None
        if status is RunStatus.QUEUED:
            if collection is None or not collection.is_enabled:
                await _complete(
                    uow, run, env, deps, RunStatus.SKIPPED, error="collection is disabled"
                )
                await uow.commit()
                return None
            if not await uow.runs.transition(run.id, RunStatus.RUNNING):
                await _complete(
                    uow, run, env, deps, RunStatus.SKIPPED, error="previous run still running"
                )
                await uow.commit()
                return None
            log.info("run started")
        else:
            log.info("resuming a run that was RUNNING when its collector stopped")
        endpoint = await uow.endpoints.get(run.endpoint_id)
        if endpoint is None:
            raise PermanentError(f"endpoint {run.endpoint_id} does not exist")
        kind, config = endpoint.kind, dict(endpoint.config)
        secrets = deps.secrets.decrypt(endpoint.secret_ciphertext)
        await uow.commit()
        return run, kind, config, secrets


async def _discover(
    deps: CollectorDeps, kind: str, config: dict[str, object], secrets: dict[str, str]
) -> list[TableInfo]:
    connector = deps.connect(kind, config, secrets)
    async for attempt in stamina.retry_context(
        on=lambda e: isinstance(e, ConnectorError) and e.transient,
        attempts=deps.introspect_attempts,
        timeout=None,
    ):
        with attempt:
            return await connector.introspect()
    raise AssertionError("unreachable")  # pragma: no cover


def _spec(table: TableInfo) -> DatasetSpec:
    return DatasetSpec(
        schema_name=table.schema_name,
        name=table.name,
        kind=table.kind,
        columns=[c.model_dump() for c in table.columns],
        primary_key=list(table.primary_key),
        foreign_keys=[
            ForeignKeySpec(
                columns=list(fk.columns),
                referred_schema=fk.referred_schema,
                referred_table=fk.referred_table,
                referred_columns=list(fk.referred_columns),
            )
            for fk in table.foreign_keys
        ],
        fingerprint=table.fingerprint(),
        row_estimate=table.row_estimate,
    )


def _refs(datasets: list[Dataset]) -> list[DatasetRef]:
    return [DatasetRef(dataset_id=d.id, schema_name=d.schema_name, name=d.name) for d in datasets]


async def _finish(
    run: CollectionRun,
    env: Envelope,
    deps: CollectorDeps,
    status: RunStatus,
    *,
    tables: list[TableInfo] | None = None,
    kind: str = "",
    error: str | None = None,
) -> None:
    async with UnitOfWork(deps.db) as uow:
        sync = SyncResult()
        if tables is not None:
            sync = await uow.datasets.sync(
                endpoint_id=run.endpoint_id,
                endpoint_kind=kind,
                run_id=run.id,
                specs=[_spec(t) for t in tables],
            )
        moved = await _complete(uow, run, env, deps, status, error=error, sync=sync)
        if not moved:
            # Cancelled (or finished elsewhere) while discovering: its results are discarded.
            log.info("run left RUNNING meanwhile; discarding its results")
            return
        await uow.commit()


async def _complete(
    uow: UnitOfWork,
    run: CollectionRun,
    env: Envelope,
    deps: CollectorDeps,
    status: RunStatus,
    *,
    error: str | None = None,
    sync: SyncResult | None = None,
) -> bool:
    sync = sync or SyncResult()
    now = utcnow()
    moved = await uow.runs.transition(
        run.id,
        status,
        completed_at=now,
        error=error,
        datasets_total=sync.total,
        datasets_added=len(sync.added),
        datasets_removed=len(sync.removed),
        datasets_changed=len(sync.schema_changed),
    )
    if not moved:
        return False
    assert run.collection_id is not None
    await uow.outbox.add(
        RunCompleted(
            run_id=run.id,
            collection_id=run.collection_id,
            endpoint_id=run.endpoint_id,
            status=status.value,
            trigger_source=run.trigger_source,
            requested_at=run.requested_at,
            started_at=run.started_at,
            completed_at=now,
            error=error,
            datasets_total=sync.total,
            diff=DatasetDiff(
                added=_refs(sync.added),
                removed=_refs(sync.removed),
                schema_changed=_refs(sync.schema_changed),
            ),
        ),
        source=deps.source,
        correlation_id=env.correlation_id,
    )
    metrics.RUNS_FINISHED.labels(status.value).inc()
    if run.started_at is not None:
        metrics.RUN_SECONDS.labels(status.value).observe((now - run.started_at).total_seconds())
    log.info("run finished", status=status.value, datasets=sync.total, error=error)
    return True
