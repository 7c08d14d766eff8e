"""What a tick of each schedule kind does, inside the transaction that fires it.

An action gets the due schedules of its kind in one batch (the ticker has already checked that
each is still due, unpaused and within the catch-up window) and says, per schedule id, what the
tick did and the id of the run or refresh it made. An action writes its runs and outbox rows
with one statement per table for the whole batch: a thousand schedules sharing a cron fire in
a few statements, not a few thousand.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from freshet.catalog import RunStatus, UnitOfWork
from freshet.catalog.armed_fires import ArmCandidate
from freshet.catalog.endpoints import CollectionState
from freshet.catalog.outbox import outbox_values
from freshet.catalog.runs import run_values
from freshet.catalog.schedules import DueSchedule, cron_tick_after, scheduled_run_id
from freshet.contracts import (
    CollectionRequested,
    Event,
    PreviewRequested,
    RefreshRequested,
    RunCompleted,
)
from freshet.kit import metrics

log = structlog.get_logger("freshet.scheduler")

PREVIOUS_RUN_ACTIVE = "previous run still running"


@dataclass(frozen=True)
class Fired:
    outcome: str
    # The run (collection) or refresh (table) the tick made; None when it makes none.
    made_id: uuid.UUID | None = None


class Action(Protocol):
    async def __call__(self, uow: UnitOfWork, rows: Sequence[DueSchedule]) -> dict[str, Fired]: ...


def _nominal(row: DueSchedule) -> datetime:
    assert row.next_fire_at is not None
    return row.next_fire_at


def _scheduled_run(
    schedule_id: str,
    collection_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    run_id: uuid.UUID,
    nominal: datetime,
) -> tuple[dict[str, Any], CollectionRequested]:
    """A tick's QUEUED run (its columns) and the event that asks the collector for it."""
    fields: dict[str, Any] = {
        "collection_id": collection_id,
        "endpoint_id": endpoint_id,
        "trigger_source": "schedule",
        "requested_by": schedule_id,
        "requested_at": nominal,
    }
    return run_values(run_id=run_id, **fields), CollectionRequested(run_id=run_id, **fields)


def _outbox_columns(values: dict[str, Any]) -> dict[str, Any]:
    """An outbox row's columns as an arm keeps them (the row gets its time when fired)."""
    return {k: v for k, v in values.items() if k != "created_at"}


@dataclass(frozen=True)
class FireCollections:
    """Queue a run per tick, or record it SKIPPED when the collection has an active run
    (Temporal's overlap default). The run id is derived from the tick, so a tick fired twice,
    for any reason, is one run."""

    source: str

    async def __call__(self, uow: UnitOfWork, rows: Sequence[DueSchedule]) -> dict[str, Fired]:
        run_ids = {row.id: scheduled_run_id(row.id, _nominal(row)) for row in rows}
        existing = await uow.runs.existing_ids(run_ids.values())
        collections = await uow.collections.states(
            row.collection_id for row in rows if row.collection_id is not None
        )
        busy = await uow.runs.collections_with_active_run(collections)
        runs: list[dict[str, Any]] = []
        events: list[Event] = []
        fired: dict[str, Fired] = {}
        for row in rows:
            run_id = run_ids[row.id]
            collection = collections.get(row.collection_id) if row.collection_id else None
            if run_id in existing:
                fired[row.id] = Fired("duplicate", run_id)
            elif collection is None or not collection.is_enabled:
                fired[row.id] = Fired("disabled", run_id)
            elif collection.id in busy:
                self._skip(row, collection, run_id, runs, events)
                fired[row.id] = Fired("skipped", run_id)
            else:
                self._queue(row, collection, run_id, runs, events)
                busy.add(collection.id)
                fired[row.id] = Fired("queued", run_id)
        await uow.runs.insert_many(runs)
        await uow.outbox.add_many(events, source=self.source)
        return fired

    def arm(self, candidates: Sequence[ArmCandidate]) -> list[dict[str, Any]]:
        """What firing each candidate's next tick will write, worked out now (`armed_fires`):
        the same run and `CollectionRequested` as `_queue`, and the tick after it."""
        arms: list[dict[str, Any]] = []
        for c in candidates:
            run_id = scheduled_run_id(c.id, c.next_fire_at)
            run, event = _scheduled_run(
                c.id, c.collection_id, c.endpoint_id, run_id, c.next_fire_at
            )
            next_fire_at, next_due_at = cron_tick_after(
                c.id, c.cron, c.timezone, c.jitter_s, c.next_fire_at
            )
            arms.append(
                {
                    "schedule_id": c.id,
                    "nominal": c.next_fire_at,
                    "due_at": c.due_at,
                    "cron": c.cron,
                    "timezone": c.timezone,
                    "jitter_s": c.jitter_s,
                    "run_id": run_id,
                    "collection_id": c.collection_id,
                    "endpoint_id": c.endpoint_id,
                    "workflow_id": run["workflow_id"],
                    "next_fire_at": next_fire_at,
                    "next_due_at": next_due_at,
                    **_outbox_columns(outbox_values(event, self.source, time=c.due_at)),
                }
            )
        return arms

    @staticmethod
    def _queue(
        row: DueSchedule,
        collection: CollectionState,
        run_id: uuid.UUID,
        runs: list[dict[str, Any]],
        events: list[Event],
    ) -> None:
        run, event = _scheduled_run(
            row.id, collection.id, collection.endpoint_id, run_id, _nominal(row)
        )
        runs.append(run)
        events.append(event)

    @staticmethod
    def _skip(
        row: DueSchedule,
        collection: CollectionState,
        run_id: uuid.UUID,
        runs: list[dict[str, Any]],
        events: list[Event],
    ) -> None:
        run = run_values(
            run_id=run_id,
            collection_id=collection.id,
            endpoint_id=collection.endpoint_id,
            trigger_source="schedule",
            requested_by=row.id,
            requested_at=_nominal(row),
            status=RunStatus.SKIPPED,
            error=PREVIOUS_RUN_ACTIVE,
        )
        runs.append(run)
        events.append(
            RunCompleted(
                run_id=run_id,
                collection_id=collection.id,
                endpoint_id=collection.endpoint_id,
                status="SKIPPED",
                trigger_source="schedule",
                requested_at=run["requested_at"],
                completed_at=run["completed_at"],
                error=PREVIOUS_RUN_ACTIVE,
            )
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

    async def __call__(self, uow: UnitOfWork, rows: Sequence[DueSchedule]) -> dict[str, Fired]:
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
            await uow.outbox.add_many(
                [
                    PreviewRequested(
                        dataset_id=dataset.id,
                        endpoint_id=dataset.endpoint_id,
                        refresh_source="schedule",
                        requested_by=row.id,
                    )
                    for dataset in stale
                ],
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

    async def __call__(self, uow: UnitOfWork, rows: Sequence[DueSchedule]) -> dict[str, Fired]:
        datasets = await uow.datasets.many(r.dataset_id for r in rows if r.dataset_id is not None)
        events: list[Event] = []
        fired: dict[str, Fired] = {}
        for row in rows:
            dataset = datasets.get(row.dataset_id) if row.dataset_id else None
            if dataset is None or dataset.removed_at is not None:
                fired[row.id] = Fired("gone")
                continue
            refresh_id = scheduled_run_id(row.id, _nominal(row))
            events.append(
                RefreshRequested(
                    endpoint_id=dataset.endpoint_id,
                    refresh_id=refresh_id,
                    tables=[f"{dataset.schema_name}.{dataset.name}"],
                    trigger_source="schedule",
                    requested_by=row.id,
                )
            )
            fired[row.id] = Fired("requested", refresh_id)
        await uow.outbox.add_many(events, source=self.source)
        return fired
