"""Gauges read from the catalog, for alerts no single collector could raise from its own
counters: runs stuck QUEUED or RUNNING (whoever holds them), and each endpoint's recent runs.

Every collector exports the same catalog-wide values; dashboards and alerts take `max`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog
from prometheus_client import Gauge

from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.run_stats import run_stats
from freshet.kit import metrics
from freshet.kit.redaction import describe_error

INTERVAL_S = 15.0
RECENT_WINDOW = timedelta(hours=24)
log = structlog.get_logger("freshet.collector")

ENDPOINT_RUNS = Gauge(
    "freshet_endpoint_runs_recent",
    "Runs of an endpoint requested in the last 24 hours, by status (catalog-wide).",
    ["endpoint", "status"],
)
ENDPOINT_LAST_DURATION = Gauge(
    "freshet_endpoint_last_run_duration_seconds",
    "Duration of an endpoint's latest finished run (catalog-wide).",
    ["endpoint"],
)


async def export_once(db: Database) -> None:
    now = utcnow()
    async with UnitOfWork(db, read_only=True) as uow:
        stats = await run_stats(uow.session, now - RECENT_WINDOW)
    for active, since in (
        (RunStatus.QUEUED, stats.oldest_queued_at),
        (RunStatus.RUNNING, stats.oldest_running_since),
    ):
        age = (now - since).total_seconds() if since is not None else 0.0
        metrics.RUNS_OLDEST_ACTIVE.labels(active.value).set(max(age, 0.0))
    # Endpoints deleted or idle for a day drop out instead of showing stale values.
    ENDPOINT_RUNS.clear()
    for endpoint, by_status in stats.recent.items():
        for status, count in by_status.items():
            ENDPOINT_RUNS.labels(endpoint, status).set(count)
    ENDPOINT_LAST_DURATION.clear()
    for endpoint, seconds in stats.last_duration_s.items():
        ENDPOINT_LAST_DURATION.labels(endpoint).set(seconds)


class RunGauges:
    def __init__(self, db: Database, interval_s: float = INTERVAL_S) -> None:
        self.db = db
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="run gauges")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await export_once(self.db)
            except Exception as exc:
                log.warning("run gauges not updated", error=describe_error(exc))
            await asyncio.sleep(self.interval_s)
