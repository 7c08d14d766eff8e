"""Runs: history with filters and cursors, and cancellation."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import structlog

from freshet.catalog import CollectionRun, RunStatus, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.cursors import decode_cursor
from freshet.catalog.runs import RunFilter
from freshet.contracts import RunCompleted
from freshet.gateway import errors
from freshet.gateway.service_layer.caller import Caller
from freshet.kit import metrics

log = structlog.get_logger("freshet.gateway")


async def get_run(uow: UnitOfWork, run_id: uuid.UUID) -> CollectionRun:
    run = await uow.runs.get(run_id)
    if run is None:
        raise errors.RunNotFound(f"run {run_id} does not exist")
    return run


def as_utc(value: datetime | None, field: str) -> datetime | None:
    """A time without an offset is read as UTC, the catalog's zone. One that has no UTC
    equivalent (9999-12-31T23:00-05:00) is refused rather than failing in the database."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise errors.ValidationFailed(
            f"{field} is out of range", details=[{"loc": ["input", field], "msg": "out of range"}]
        ) from None


def check_cursor(after: str | None) -> None:
    """Refuse an `after` that is no cursor of ours before the database sees its parts.

    The catalog parses cursors but binds what it parsed: a crafted one with a naive or
    out-of-range time would fail there (E_INTERNAL) instead of being E_VALIDATION.
    """
    if after is None:
        return
    try:
        at_raw, id_raw = decode_cursor(after, parts=2)
        uuid.UUID(id_raw)
        at = datetime.fromisoformat(at_raw)
        if at.tzinfo is None:
            raise ValueError("naive")
        at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise errors.ValidationFailed(
            "after is not a cursor from this list",
            details=[{"loc": ["input", "after"], "msg": "invalid cursor"}],
        ) from None


async def list_runs(
    uow: UnitOfWork, where: RunFilter, *, first: int = 50, after: str | None = None
) -> list[CollectionRun]:
    where = replace(
        where,
        requested_from=as_utc(where.requested_from, "from"),
        requested_to=as_utc(where.requested_to, "to"),
    )
    check_cursor(after)
    if (
        where.requested_from is not None
        and where.requested_to is not None
        and where.requested_from > where.requested_to
    ):
        raise errors.ValidationFailed(
            "from is after to", details=[{"loc": ["input", "from"], "msg": "is after `to`"}]
        )
    try:
        return await uow.runs.page(where, first=first, after=after)
    except ValueError:
        raise errors.ValidationFailed(
            "after is not a cursor from this list",
            details=[{"loc": ["input", "after"], "msg": "invalid cursor"}],
        ) from None


async def cancel(uow: UnitOfWork, caller: Caller, run: CollectionRun, *, reason: str) -> bool:
    """Move an active run to CANCELLED and announce it; False if it had finished meanwhile.

    The collector working on a RUNNING run sees the change at its next check (about a
    second) and stops; whatever it found is discarded.
    """
    now = utcnow()
    if not await uow.runs.transition(run.id, RunStatus.CANCELLED, error=reason, completed_at=now):
        return False
    if run.collection_id is not None:
        await uow.outbox.add(
            RunCompleted(
                run_id=run.id,
                collection_id=run.collection_id,
                endpoint_id=run.endpoint_id,
                status="CANCELLED",
                trigger_source=run.trigger_source,
                requested_at=run.requested_at,
                started_at=run.started_at,
                completed_at=now,
                error=reason,
            ),
            source=caller.source,
            correlation_id=caller.correlation_id,
        )
    metrics.RUNS_FINISHED.labels(RunStatus.CANCELLED.value).inc()
    log.info("run cancelled", run_id=str(run.id), reason=reason)
    return True


async def cancel_run(uow: UnitOfWork, caller: Caller, run_id: uuid.UUID) -> CollectionRun:
    """Cancel a QUEUED or RUNNING run; a finished run never changes (E_RUN_FINISHED)."""
    run = await get_run(uow, run_id)
    if not await cancel(uow, caller, run, reason=f"cancelled by {caller.principal.name}"):
        raise errors.RunFinished(f"run {run_id} already finished with status {run.status}")
    await uow.commit()
    return run
