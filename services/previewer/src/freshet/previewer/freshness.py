"""Preview age as Prometheus gauges, so an alert can fire when previews go stale, and the
pruning of finished preview requests and old audit records.

Every previewer process exports the same figures (they come from the catalog); alert on the
max over instances. Endpoints that disappear (deleted, or no longer auto) lose their series.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from freshet.catalog import Database, UnitOfWork
from freshet.catalog import previews as status
from freshet.kit import metrics
from freshet.kit.redaction import describe_error
from freshet.previewer.clock import Clock

log = structlog.get_logger("freshet.previewer")

# Pruning runs on every this many gauge refreshes.
PRUNE_EVERY = 40


@dataclass
class Freshness:
    db: Database
    staleness: timedelta
    interval_s: float
    request_retention: timedelta
    audit_retention: timedelta
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._exported: set[str] = set()
        self._rounds = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="preview-freshness")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.export()
                self._rounds += 1
                if self._rounds % PRUNE_EVERY == 1:
                    await self.prune()
            except Exception as exc:
                log.warning("preview gauges not refreshed", error=describe_error(exc))
            await asyncio.sleep(self.interval_s)

    async def export(self) -> None:
        now = self.clock.now()
        async with UnitOfWork(self.db, read_only=True) as uow:
            endpoints = await uow.previews.freshness(now - self.staleness)
            open_counts = await uow.previews.count_by_status((status.QUEUED, status.RUNNING))
        seen: set[str] = set()
        for e in endpoints:
            seen.add(e.endpoint_name)
            oldest = (now - e.oldest_sampled_at).total_seconds() if e.oldest_sampled_at else 0.0
            metrics.PREVIEW_OLDEST_AGE.labels(e.endpoint_name).set(max(oldest, 0.0))
            metrics.PREVIEWS_STALE.labels(e.endpoint_name).set(e.stale_or_missing)
        for gone in self._exported - seen:
            with contextlib.suppress(KeyError):
                metrics.PREVIEW_OLDEST_AGE.remove(gone)
                metrics.PREVIEWS_STALE.remove(gone)
        self._exported = seen
        for state in (status.QUEUED, status.RUNNING):
            metrics.PREVIEW_BACKLOG.labels(state).set(open_counts.get(state, 0))

    async def prune(self) -> None:
        now = self.clock.now()
        async with UnitOfWork(self.db) as uow:
            requests = await uow.previews.prune(now - self.request_retention)
            audit = await uow.audit.prune(now - self.audit_retention)
            await uow.commit()
        if requests or audit:
            log.info("pruned preview requests and audit records", requests=requests, audit=audit)
