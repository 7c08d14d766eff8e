"""The run workflow (seed 003's CollectionRunWorkflow), one step per function:

    claim (markRunStarted) -> prepare (SKIPPED with a reason) -> ingest -> persist
    -> markRunCompleted | markRunFailed

Each step is idempotent by run id: the run's status and lease in the catalog say how far it
got and who works on it, so a redelivered request or a takeover never makes a second run or
a second set of datasets. Every database step retries transient errors with backoff;
permanent ones (a broken invariant) are not retried.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import stamina
import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

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
from freshet.catalog.secrets import SecretBox, SecretError
from freshet.connectors import ConnectorFactory, TableInfo
from freshet.contracts import (
    CollectionRequested,
    DatasetDiff,
    DatasetRef,
    RunCompleted,
    RunFilters,
)
from freshet.kit import metrics
from freshet.kit.errors import PermanentError

log = structlog.get_logger("freshet.collector")

# A run id for requests that carry none, derived from the event id so redelivery is harmless.
RUN_ID_NAMESPACE = uuid.UUID("6f1c3a52-8b1e-4d0a-9c55-0e5b7f1d2a10")
PREVIOUS_RUN_ACTIVE = "previous run still running"


@dataclass
class CollectorDeps:
    db: Database
    secrets: SecretBox
    source: str
    connect: ConnectorFactory
    # Who holds the leases of the runs this process works on.
    owner: str
    introspect_attempts: int = 3
    db_attempts: int = 5
    lease_ttl: timedelta = timedelta(seconds=30)
    run_timeout_s: float = 600.0
    ingest_workdir: Path = Path("var/ingest")
    ingest_commands_allowed: bool = True
    # How long a cache file dropped for a schema change stays readable (its readers' leases
    # hold it longer).
    cache_grace: timedelta = timedelta(seconds=60)


@dataclass
class Claim:
    """A run this process holds the lease of and is about to work on."""

    run_id: uuid.UUID
    collection_id: uuid.UUID | None
    endpoint_id: uuid.UUID
    correlation_id: str
    filters: dict[str, object] | None = None


@dataclass
class Plan:
    """What prepare found: everything ingest needs, read in one short transaction."""

    kind: str
    config: dict[str, object]
    secrets: dict[str, str]
    filters: RunFilters
    ingest_command: list[str] | None
    timeout_s: float
    skip_reason: str | None = None
    failure: str | None = None


@dataclass
class Outcome:
    status: RunStatus
    error: str | None = None
    sync: SyncResult = field(default_factory=SyncResult)
    # Tables whose cache pointer this run dropped (their schema changed).
    invalidated: list[Dataset] = field(default_factory=list)


def run_id_for(cmd: CollectionRequested, event_id: str) -> uuid.UUID:
    return cmd.run_id or uuid.uuid5(RUN_ID_NAMESPACE, event_id)


def is_transient_db_error(exc: Exception) -> bool:
    """Lost connections, lock timeouts and deadlocks pass; constraint violations do not."""
    if isinstance(exc, IntegrityError):
        return False
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def db_attempts(deps: CollectorDeps) -> AsyncIterator[stamina.Attempt]:
    return stamina.retry_context(
        on=is_transient_db_error, attempts=deps.db_attempts, wait_initial=0.1, wait_max=2.0
    )


async def claim(
    cmd: CollectionRequested, run_id: uuid.UUID, correlation_id: str, deps: CollectorDeps
) -> Claim | None:
    """markRunStarted: move the run to RUNNING under this process's lease.

    Creates the run for requests from outside systems. None when there is nothing to do:
    the run finished already, another collector holds its live lease, it was cancelled
    meanwhile, or another run of the collection is active (recorded as SKIPPED).
    """
    async for attempt in db_attempts(deps):
        with attempt:
            async with UnitOfWork(deps.db) as uow:
                result = await _claim(uow, cmd, run_id, correlation_id, deps)
                await uow.commit()
                return result
    raise AssertionError("unreachable")  # pragma: no cover


async def _claim(
    uow: UnitOfWork,
    cmd: CollectionRequested,
    run_id: uuid.UUID,
    correlation_id: str,
    deps: CollectorDeps,
) -> Claim | None:
    run = await uow.runs.get(run_id, for_update=True)
    if run is None:
        collection = await uow.collections.get(cmd.collection_id)
        if collection is None:
            raise PermanentError(f"collection {cmd.collection_id} does not exist")
        fields: dict[str, Any] = {
            "run_id": run_id,
            "collection_id": collection.id,
            "endpoint_id": collection.endpoint_id,
            "trigger_source": cmd.trigger_source,
            "requested_by": cmd.requested_by,
            "requested_at": cmd.requested_at,
            "filters": cmd.filters,
            "invalidate_changed": cmd.invalidate_changed,
        }
        run = await uow.runs.enqueue(**fields)
        if run is None:
            skipped = await uow.runs.add(
                **fields, status=RunStatus.SKIPPED, error=PREVIOUS_RUN_ACTIVE
            )
            await _announce(
                uow, skipped, correlation_id, deps, Outcome(RunStatus.SKIPPED, PREVIOUS_RUN_ACTIVE)
            )
            log.info("run skipped", reason=PREVIOUS_RUN_ACTIVE)
            return None
    status = RunStatus(run.status)
    if status.is_final:
        log.info("run already finished; duplicate request ignored", status=status.value)
        return None
    if status is RunStatus.QUEUED:
        moved = await uow.runs.transition(
            run.id,
            RunStatus.RUNNING,
            lease_owner=deps.owner,
            lease_expires_at=utcnow() + deps.lease_ttl,
        )
        if not moved:
            log.info("run left QUEUED meanwhile; nothing to do")
            return None
        log.info("run started")
    elif not await uow.runs.take_over(run.id, deps.owner, deps.lease_ttl):
        log.info("run is in progress elsewhere; its lease is live", owner=run.lease_owner)
        return None
    else:
        metrics.RUN_TAKEOVERS.inc()
        log.warning("took over a run whose collector stopped", previous_owner=run.lease_owner)
    return Claim(
        run_id=run.id,
        collection_id=run.collection_id,
        endpoint_id=run.endpoint_id,
        correlation_id=correlation_id,
        filters=run.filters,
    )


async def take_over(run_id: uuid.UUID, deps: CollectorDeps) -> Claim | None:
    """Claim a RUNNING run whose lease lapsed (its collector died); None if someone was first."""
    async for attempt in db_attempts(deps):
        with attempt:
            async with UnitOfWork(deps.db) as uow:
                before = await uow.runs.get(run_id, for_update=True)
                previous_owner = before.lease_owner if before is not None else None
                if not await uow.runs.take_over(run_id, deps.owner, deps.lease_ttl):
                    return None
                run = await uow.runs.get(run_id)
                await uow.commit()
            assert run is not None
            metrics.RUN_TAKEOVERS.inc()
            log.warning(
                "took over a run whose lease expired",
                run_id=str(run_id),
                previous_owner=previous_owner,
            )
            return Claim(
                run_id=run.id,
                collection_id=run.collection_id,
                endpoint_id=run.endpoint_id,
                # The original request's correlation id is not stored; the run id links them.
                correlation_id=f"takeover:{run.id}",
                filters=run.filters,
            )
    raise AssertionError("unreachable")  # pragma: no cover


async def prepare(held: Claim, deps: CollectorDeps) -> Plan:
    """Read the endpoint and collection; say why the run should be skipped or fail at once."""
    async with UnitOfWork(deps.db, read_only=True) as uow:
        endpoint = await uow.endpoints.get(held.endpoint_id)
        collection = await uow.collections.get(held.collection_id) if held.collection_id else None
    timeout = float(deps.run_timeout_s)
    if endpoint is None:
        return _skip("endpoint no longer exists", timeout)
    if endpoint.run_timeout_s:
        timeout = float(endpoint.run_timeout_s)
    if collection is None:
        return _skip("collection no longer exists", timeout)
    if not collection.is_enabled:
        return _skip("collection is disabled", timeout)
    command = [str(a) for a in endpoint.ingest_command] if endpoint.ingest_command else None
    plan = Plan(
        kind=endpoint.kind,
        config=dict(endpoint.config),
        secrets={},
        filters=RunFilters(),
        ingest_command=command,
        timeout_s=timeout,
    )
    try:
        plan.filters = RunFilters.model_validate(held.filters or {})
    except ValueError:
        plan.failure = "invalid filters: expected include/exclude schema and table patterns"
        return plan
    if command is not None and not deps.ingest_commands_allowed:
        plan.failure = "external ingestion commands are disabled (FRESHET_ALLOW_INGEST_COMMANDS)"
        return plan
    try:
        plan.secrets = deps.secrets.decrypt(endpoint.secret_ciphertext)
    except SecretError as exc:
        plan.failure = str(exc)
    return plan


def _skip(reason: str, timeout_s: float) -> Plan:
    return Plan(
        kind="",
        config={},
        secrets={},
        filters=RunFilters(),
        ingest_command=None,
        timeout_s=timeout_s,
        skip_reason=reason,
    )


def in_scope(tables: list[TableInfo], filters: RunFilters) -> list[TableInfo]:
    return [t for t in tables if filters.matches(t.schema_name, t.name)]


def spec(table: TableInfo) -> DatasetSpec:
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


async def finish(
    held: Claim,
    deps: CollectorDeps,
    status: RunStatus,
    *,
    tables: list[TableInfo] | None = None,
    kind: str = "",
    filters: RunFilters | None = None,
    error: str | None = None,
) -> bool:
    """persist + markRunCompleted/Failed/Skipped, in one transaction.

    Only while this process still holds the run: a run cancelled or taken over meanwhile
    keeps its status, and what this process found is discarded.
    """
    async for attempt in db_attempts(deps):
        with attempt:
            async with UnitOfWork(deps.db) as uow:
                run = await uow.runs.get(held.run_id, for_update=True)
                if (
                    run is None
                    or run.status != RunStatus.RUNNING.value
                    or run.lease_owner != deps.owner
                ):
                    log.info("run is no longer ours; discarding its results")
                    return False
                sync = SyncResult()
                if tables is not None:
                    sync = await uow.datasets.sync(
                        endpoint_id=run.endpoint_id,
                        endpoint_kind=kind,
                        run_id=run.id,
                        specs=[spec(t) for t in tables],
                        scope=None
                        if filters is None or filters.is_empty
                        else (lambda s, n: filters.matches(s, n)),
                    )
                invalidated = await _on_schema_change(uow, run, sync, deps)
                outcome = Outcome(status, error, sync, invalidated)
                await complete(uow, run, held.correlation_id, deps, outcome)
                await uow.commit()
                return True
    raise AssertionError("unreachable")  # pragma: no cover


async def _on_schema_change(
    uow: UnitOfWork, run: CollectionRun, sync: SyncResult, deps: CollectorDeps
) -> list[Dataset]:
    """Caches of tables whose shape changed: dropped in this very transaction when the run or
    the endpoint's policy says so, so no query reads a file of the old shape once the catalog
    has the new one."""
    endpoint = await uow.endpoints.get(run.endpoint_id)
    if endpoint is None or not sync.schema_changed:
        return []
    dropped = await uow.caches.on_schema_change(
        endpoint,
        [d.id for d in sync.schema_changed],
        utcnow(),
        grace=deps.cache_grace,
        invalidate=run.invalidate_changed,
    )
    if dropped:
        log.info("caches invalidated for schema changes", tables=len(dropped))
    return [d for d in sync.schema_changed if d.id in set(dropped)]


async def complete(
    uow: UnitOfWork,
    run: CollectionRun,
    correlation_id: str,
    deps: CollectorDeps,
    outcome: Outcome,
) -> bool:
    now = utcnow()
    sync = outcome.sync
    moved = await uow.runs.transition(
        run.id,
        outcome.status,
        completed_at=now,
        error=outcome.error,
        datasets_total=sync.total,
        datasets_added=len(sync.added),
        datasets_removed=len(sync.removed),
        datasets_changed=len(sync.schema_changed),
        diff={
            "added": _names(sync.added),
            "removed": _names(sync.removed),
            "schema_changed": _names(sync.schema_changed),
            "caches_invalidated": _names(outcome.invalidated),
        },
    )
    if not moved:
        return False
    await _announce(uow, run, correlation_id, deps, outcome, completed_at=now)
    if run.started_at is not None:
        metrics.RUN_SECONDS.labels(outcome.status.value).observe(
            (now - run.started_at).total_seconds()
        )
    log.info("run finished", status=outcome.status.value, datasets=sync.total, error=outcome.error)
    return True


async def _announce(
    uow: UnitOfWork,
    run: CollectionRun,
    correlation_id: str,
    deps: CollectorDeps,
    outcome: Outcome,
    completed_at: datetime | None = None,
) -> None:
    """RunCompleted with the diff, in the transaction that finished the run."""
    metrics.RUNS_FINISHED.labels(outcome.status.value).inc()
    if run.collection_id is None:
        return
    sync = outcome.sync
    await uow.outbox.add(
        RunCompleted(
            run_id=run.id,
            collection_id=run.collection_id,
            endpoint_id=run.endpoint_id,
            status=outcome.status.value,
            trigger_source=run.trigger_source,
            requested_at=run.requested_at,
            started_at=run.started_at,
            completed_at=completed_at or run.completed_at or utcnow(),
            error=outcome.error,
            datasets_total=sync.total,
            diff=DatasetDiff(
                added=_refs(sync.added),
                removed=_refs(sync.removed),
                schema_changed=_refs(sync.schema_changed),
            ),
        ),
        source=deps.source,
        correlation_id=correlation_id,
    )


def _names(datasets: list[Dataset]) -> list[list[str]]:
    return [[d.schema_name, d.name] for d in datasets]


def _refs(datasets: list[Dataset]) -> list[DatasetRef]:
    return [DatasetRef(dataset_id=d.id, schema_name=d.schema_name, name=d.name) for d in datasets]
