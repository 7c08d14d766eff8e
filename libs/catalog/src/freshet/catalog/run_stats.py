"""Catalog-wide run figures for operators' gauges (stuck runs, recent outcomes per endpoint)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.models import CollectionRun, Endpoint, RunStatus


@dataclass
class RunStats:
    # Oldest QUEUED run (since requested) and oldest RUNNING run (since started).
    oldest_queued_at: datetime | None = None
    oldest_running_since: datetime | None = None
    # endpoint name -> status -> runs requested since the window's start.
    recent: dict[str, dict[str, int]] = field(default_factory=dict)
    # endpoint name -> duration of its latest finished run that ran.
    last_duration_s: dict[str, float] = field(default_factory=dict)


async def run_stats(session: AsyncSession, since: datetime) -> RunStats:
    stats = RunStats()
    stats.oldest_queued_at = (
        await session.execute(
            select(func.min(CollectionRun.requested_at)).where(
                CollectionRun.status == RunStatus.QUEUED.value
            )
        )
    ).scalar_one_or_none()
    stats.oldest_running_since = (
        await session.execute(
            select(func.min(CollectionRun.started_at)).where(
                CollectionRun.status == RunStatus.RUNNING.value
            )
        )
    ).scalar_one_or_none()
    counted = await session.execute(
        select(Endpoint.name, CollectionRun.status, func.count())
        .join(Endpoint, Endpoint.id == CollectionRun.endpoint_id)
        .where(CollectionRun.requested_at >= since)
        .group_by(Endpoint.name, CollectionRun.status)
    )
    for name, status, count in counted.all():
        stats.recent.setdefault(name, {})[status] = int(count)
    latest = (
        select(CollectionRun.endpoint_id, func.max(CollectionRun.completed_at).label("at"))
        .where(CollectionRun.started_at.is_not(None), CollectionRun.completed_at.is_not(None))
        .group_by(CollectionRun.endpoint_id)
        .subquery()
    )
    finished = await session.execute(
        select(Endpoint.name, CollectionRun.started_at, CollectionRun.completed_at)
        .join(Endpoint, Endpoint.id == CollectionRun.endpoint_id)
        .join(
            latest,
            (latest.c.endpoint_id == CollectionRun.endpoint_id)
            & (latest.c.at == CollectionRun.completed_at),
        )
    )
    for name, started, completed in finished.all():
        if started is not None and completed is not None:
            stats.last_duration_s[name] = (completed - started).total_seconds()
    return stats
