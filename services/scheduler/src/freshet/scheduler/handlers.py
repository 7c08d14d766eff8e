"""Scheduler handlers. This slice follows schedule changes; firing them is issue 4."""

from __future__ import annotations

import structlog
from prometheus_client import Counter

from freshet.catalog import Database
from freshet.catalog.inbox import claim_once
from freshet.contracts import CollectionChanged, Envelope

log = structlog.get_logger("freshet.scheduler")

CHANGES = Counter(
    "freshet_scheduler_collection_changes_total",
    "CollectionChanged events the scheduler followed.",
    ["change"],
)


async def handle_collection_changed(env: Envelope, db: Database) -> None:
    event = env.data
    assert isinstance(event, CollectionChanged)
    if not await claim_once(db, "scheduler.changes", env.id):
        return
    change = "deleted" if event.deleted else "scheduled" if event.schedule_cron else "manual"
    CHANGES.labels(change).inc()
    log.info(
        "collection changed",
        collection_id=str(event.collection_id),
        schedule_cron=event.schedule_cron,
        is_enabled=event.is_enabled,
        deleted=event.deleted,
        change=change,
    )
