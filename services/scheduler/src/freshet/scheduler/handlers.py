"""Scheduler handlers: keep each collection's schedule in step with the collection.

The collection row is the truth; the event only says which one to look at. Syncing from the
row makes the handler idempotent and indifferent to duplicates and order.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from prometheus_client import Counter

from freshet.catalog import Database, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.contracts import CollectionChanged, Envelope

log = structlog.get_logger("freshet.scheduler")

CHANGES = Counter(
    "freshet_scheduler_collection_changes_total",
    "CollectionChanged events the scheduler followed.",
    ["change"],
)


async def handle_collection_changed(
    env: Envelope, db: Database, wake: Callable[[], None] = lambda: None
) -> None:
    event = env.data
    assert isinstance(event, CollectionChanged)
    async with UnitOfWork(db) as uow:
        collection = await uow.collections.get(event.collection_id)
        schedule = await uow.schedules.sync_collection(collection, event.collection_id, utcnow())
        await uow.commit()
    change = "deleted" if event.deleted else "scheduled" if event.schedule_cron else "manual"
    CHANGES.labels(change).inc()
    log.info(
        "collection changed",
        collection_id=str(event.collection_id),
        schedule_cron=event.schedule_cron,
        is_enabled=event.is_enabled,
        deleted=event.deleted,
        change=change,
        schedule=schedule.id if schedule else None,
        paused=schedule.paused if schedule else None,
        next_fire=schedule.next_fire_at.isoformat() if schedule and schedule.next_fire_at else None,
    )
    wake()
