"""What a tick of each schedule kind does, inside the transaction that fires it.

An action gets the due schedules of its kind in one batch (the ticker has already checked that
each is still due, unpaused and within the catch-up window) and says, per schedule id, what the
tick did and the id of the run or refresh it made. Everything an action writes (runs, outbox
rows) is staged in the session and flushed once for the batch: a thousand schedules sharing a
cron fire in a few statements, not a few thousand.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from freshet.catalog import Collection, RunStatus, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.models import Schedule
from freshet.catalog.schedules import scheduled_run_id
from freshet.contracts import CollectionRequested, PreviewRequested, RefreshRequested, RunCompleted
from freshet.kit import metrics

log = structlog.get_logger("freshet.scheduler")

PREVIOUS_RUN_ACTIVE = "previous run still running"


@dataclass(frozen=True)
class Fired:
    outcome: str
    # The run (collection) or refresh (table) the tick made; None when it makes none.
    made_id: uuid.UUID | None = None


class Action(Protocol):
    async def __call__(self, uow: UnitOfWork, rows: Sequence[Schedule]) -> dict[str, Fired]: ...


def _nominal(row: Schedule) -> datetime:
    assert row.next_fire_at is not None
    return row.next_fire_at


@dataclass(frozen=True)
class FireCollections:
    """Queue a run per tick, or record it SKIPPED when the collection has an active run
    (Temporal's overlap default). The run id is derived from the tick, so a tick fired twice,
    for any reason, is one run."""

    source: str

    async def __call__(self, uow: UnitOfWork, rows: Sequence[Schedule]) -> dict[str, Fired]:
        run_ids = {row.id: scheduled_run_id(row.id, _nominal(row)) for row in rows}
        existing = await uow.runs.existing_ids(run_ids.values())
        collections = await uow.collections.many(
            row.collection_id for row in rows if row.collection_id is not None
        )
        busy = await uow.runs.collections_with_active_run(collections)
        fired: dict[str, Fired] = {}
        for row in rows:
            run_id = run_ids[row.id]
            collection = collections.get(row.collection_id) if row.collection_id else None
            if run_id in existing:
                fired[row.id] = Fired("duplicate", run_id)
            elif collection is None or not collection.is_enabled:
                fired[row.id] = Fired("disabled", run_id)
            elif collection.id in busy:
                self._skip(uow, row, collection, run_id)
                fired[row.id] = Fired("skipped", run_id)
            else:
                self._queue(uow, row, collection, run_id)
                busy.add(collection.id)
                fired[row.id] = Fired("queued", run_id)
        return fired

    def _queue(
        self, uow: UnitOfWork, row: Schedule, collection: Collection, run_id: uuid.UUID
    ) -> None:
        uow.runs.stage(
            run_id=run_id,
            collection_id=collection.id,
            endpoint_id=collection.endpoint_id,
            trigger_source="schedule",
            requested_by=row.id,
            requested_at=_nominal(row),
        )
        uow.outbox.stage(
            CollectionRequested(
                collection_id=collection.id,
                run_id=run_id,
                endpoint_id=collection.endpoint_id,
                trigger_source="schedule",
                requested_by=row.id,
                requested_at=_nominal(row),
            ),
            source=self.source,
        )

    def _skip(
        self, uow: UnitOfWork, row: Schedule, collection: Collection, run_id: uuid.UUID
    ) -> None:
        run = uow.runs.stage(
            run_id=run_id,
            collection_id=collection.id,
            endpoint_id=collection.endpoint_id,
            trigger_source="schedule",
            requested_by=row.id,
            requested_at=_nominal(row),
            status=RunStatus.SKIPPED,
            error=PREVIOUS_RUN_ACTIVE,
        )
        uow.outbox.stage(
            RunCompleted(
                run_id=run_id,
                collection_id=collection.id,
                endpoint_id=collection.endpoint_id,
                status="SKIPPED",
                trigger_source="schedule",
                requested_at=run.requested_at,
                completed_at=run.completed_at or utcnow(),
                error=PREVIOUS_RUN_ACTIVE,
            ),
            source=self.source,
        )
        metrics.RUNS_FINISHED.labels(RunStatus.SKIPPED.value).inc()


@dataclass(frozen=True)
class SweepPreviews:
    """Request a preview of every dataset whose preview is older than the staleness window, or
    that was never sampled (never-sampled datasets must not look fresh), oldest first, at most
    `batch` per sweep. The previewer's own throttles and policies still apply."""

    source: str
    staleness: timedelta
    batch: int
    auto: bool = True

    async def __call__(self, uow: UnitOfWork, rows: Sequence[Schedule]) -> dict[str, Fired]:
        fired: dict[str, Fired] = {}
        for row in rows:
            if not self.auto:
                fired[row.id] = Fired("off")
                continue
            cutoff = _nominal(row) - self.staleness
            stale = [
                d
                for d in await uow.datasets.stale_previews(cutoff, limit=self.batch)
                if not d.payload.get("previewOptOut")
            ]
            for dataset in stale:
                uow.outbox.stage(
                    PreviewRequested(
                        dataset_id=dataset.id,
                        endpoint_id=dataset.endpoint_id,
                        refresh_source="schedule",
                        requested_by=row.id,
                    ),
                    source=self.source,
                )
            log.info("preview sweep", requested=len(stale), cutoff=cutoff.isoformat())
            fired[row.id] = Fired("requested" if stale else "idle")
        return fired


@dataclass(frozen=True)
class RefreshTables:
    """Ask the refresher to refresh a cached table; the refresh id is derived from the tick,
    so a tick fired twice is one refresh."""

    source: str

    async def __call__(self, uow: UnitOfWork, rows: Sequence[Schedule]) -> dict[str, Fired]:
        datasets = await uow.datasets.many(r.dataset_id for r in rows if r.dataset_id is not None)
        fired: dict[str, Fired] = {}
        for row in rows:
            dataset = datasets.get(row.dataset_id) if row.dataset_id else None
            if dataset is None or dataset.removed_at is not None:
                fired[row.id] = Fired("gone")
                continue
            refresh_id = scheduled_run_id(row.id, _nominal(row))
            uow.outbox.stage(
                RefreshRequested(
                    endpoint_id=dataset.endpoint_id,
                    refresh_id=refresh_id,
                    tables=[f"{dataset.schema_name}.{dataset.name}"],
                    trigger_source="schedule",
                    requested_by=row.id,
                ),
                source=self.source,
            )
            fired[row.id] = Fired("requested", refresh_id)
        return fired
