"""Fires due schedules: one active ticker among all scheduler processes (a lease), each fire
one transaction, each tick's run id derived from the schedule id and the nominal fire time.

Two tickers at once (a lease handed over while the old holder still runs) cannot fire a tick
twice: the fire moves `next_fire_at` with a compare-and-set, and the deterministic run id
would collapse a second run into the first anyway.

Catch-up: a tick found late by no more than the catch-up window fires (once); older ticks
are counted as missed (metric, log line, `missed_ticks`) and the schedule moves on to the
next fire after now, so downtime never ends in a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.exc import IntegrityError

from freshet.catalog import CollectionRun, Database, RunStatus, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.models import Schedule
from freshet.catalog.schedules import next_fire, scheduled_run_id, ticks_between
from freshet.contracts import CollectionRequested, RunCompleted
from freshet.kit import metrics
from freshet.kit.redaction import describe_error

log = structlog.get_logger("freshet.scheduler")

LEASE = "scheduler-ticker"
PREVIOUS_RUN_ACTIVE = "previous run still running"

FIRES = Counter("freshet_scheduler_fires_total", "Ticks fired, by outcome.", ["outcome"])
MISSED = Counter(
    "freshet_scheduler_missed_ticks_total", "Ticks older than the catch-up window, not fired."
)
LATENESS = Histogram(
    "freshet_scheduler_fire_lateness_seconds",
    "Time from a tick's nominal time to its fire.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
LEADER = Gauge("freshet_scheduler_leader", "1 while this process fires schedules.")
SCHEDULES = Gauge(
    "freshet_scheduler_schedules", "Schedules by state, as the active ticker sees them.", ["state"]
)

Clock = Callable[[], datetime]


class Ticker:
    def __init__(
        self,
        db: Database,
        *,
        holder: str,
        source: str,
        catch_up: timedelta = timedelta(seconds=60),
        lease_ttl: timedelta = timedelta(seconds=5),
        clock: Clock = utcnow,
        max_sleep_s: float = 1.0,
    ) -> None:
        self.db = db
        self.holder = holder
        self.source = source
        self.catch_up = catch_up
        self.lease_ttl = lease_ttl
        self.clock = clock
        self.max_sleep_s = max_sleep_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """A schedule changed: look again now instead of at the next planned time."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduler-ticker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            async with UnitOfWork(self.db) as uow:
                await uow.leases.release(LEASE, self.holder)
                await uow.commit()
        LEADER.set(0)

    async def _run(self) -> None:
        while True:
            sleep_s = self.max_sleep_s
            try:
                if await self._lead():
                    await self.tick()
                    sleep_s = await self._until_next_due()
            except Exception as exc:
                log.warning("scheduler tick failed", error=describe_error(exc))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=sleep_s)

    async def _lead(self) -> bool:
        async with UnitOfWork(self.db) as uow:
            leading = await uow.leases.try_acquire(LEASE, self.holder, self.lease_ttl)
            await uow.commit()
        LEADER.set(1 if leading else 0)
        return leading

    async def _until_next_due(self) -> float:
        async with UnitOfWork(self.db, read_only=True) as uow:
            due = await uow.schedules.next_due_at()
            for state, count in (await uow.schedules.count_by_state()).items():
                SCHEDULES.labels(state).set(count)
        if due is None:
            return self.max_sleep_s
        # Renewing the lease bounds the sleep too (max_sleep_s well under the lease TTL).
        return max(0.0, min(self.max_sleep_s, (due - self.clock()).total_seconds()))

    async def tick(self) -> int:
        """Fire every due schedule once; how many ticks fired."""
        now = self.clock()
        async with UnitOfWork(self.db, read_only=True) as uow:
            due = [(s.id, s.next_fire_at) for s in await uow.schedules.due(now)]
        fired = 0
        for schedule_id, nominal in due:
            assert nominal is not None
            with structlog.contextvars.bound_contextvars(schedule_id=schedule_id):
                try:
                    fired += await self.fire(schedule_id, nominal, now)
                except IntegrityError:
                    # The collection was deleted during the fire: its schedule goes with it.
                    log.info("schedule vanished during its fire")
        return fired

    async def fire(self, schedule_id: str, nominal: datetime, now: datetime) -> int:
        async with UnitOfWork(self.db) as uow:
            row = await uow.schedules.get(schedule_id, for_update=True)
            if row is None or row.paused or row.next_fire_at != nominal:
                return 0  # changed, paused, deleted, or fired by another ticker meanwhile
            late = now - nominal
            if late > self.catch_up:
                self._skip_missed(row, now)
                await uow.commit()
                return 0
            run_id = scheduled_run_id(row.id, nominal)
            outcome = "duplicate"
            if await uow.runs.get(run_id) is None and row.collection_id is not None:
                outcome = await self._queue(uow, row, run_id, nominal)
            row.last_fire_at = nominal
            row.last_run_id = run_id
            row.next_fire_at = next_fire(row.cron, row.timezone, nominal)
            row.updated_at = now
            await uow.commit()
        FIRES.labels(outcome).inc()
        LATENESS.observe(max(0.0, late.total_seconds()))
        log.info("schedule fired", nominal=nominal.isoformat(), run_id=str(run_id), outcome=outcome)
        return 1

    def _skip_missed(self, row: Schedule, now: datetime) -> None:
        first = row.next_fire_at
        assert first is not None
        missed = 1 + ticks_between(row.cron, row.timezone, first, now)
        row.missed_ticks += missed
        row.next_fire_at = next_fire(row.cron, row.timezone, now)
        row.updated_at = now
        MISSED.inc(missed)
        log.warning(
            "ticks missed beyond the catch-up window; not fired",
            missed=missed,
            first_missed=first.isoformat(),
            next_fire=row.next_fire_at.isoformat(),
            catch_up_s=self.catch_up.total_seconds(),
        )

    async def _queue(
        self, uow: UnitOfWork, row: Schedule, run_id: uuid.UUID, nominal: datetime
    ) -> str:
        assert row.collection_id is not None
        collection = await uow.collections.get(row.collection_id)
        if collection is None or not collection.is_enabled:
            return "disabled"
        fields: dict[str, Any] = {
            "run_id": run_id,
            "collection_id": collection.id,
            "endpoint_id": collection.endpoint_id,
            "trigger_source": "schedule",
            "requested_by": row.id,
            "requested_at": nominal,
        }
        run = await uow.runs.enqueue(**fields)
        if run is None:
            skipped = await uow.runs.add(
                **fields, status=RunStatus.SKIPPED, error=PREVIOUS_RUN_ACTIVE
            )
            await uow.outbox.add(self._skipped_event(skipped), source=self.source)
            metrics.RUNS_FINISHED.labels(RunStatus.SKIPPED.value).inc()
            return "skipped"
        await uow.outbox.add(
            CollectionRequested(
                collection_id=collection.id,
                run_id=run.id,
                endpoint_id=collection.endpoint_id,
                trigger_source="schedule",
                requested_by=row.id,
                requested_at=nominal,
            ),
            source=self.source,
        )
        return "queued"

    @staticmethod
    def _skipped_event(run: CollectionRun) -> RunCompleted:
        assert run.collection_id is not None
        return RunCompleted(
            run_id=run.id,
            collection_id=run.collection_id,
            endpoint_id=run.endpoint_id,
            status="SKIPPED",
            trigger_source="schedule",
            requested_at=run.requested_at,
            completed_at=run.completed_at or utcnow(),
            error=PREVIOUS_RUN_ACTIVE,
        )
