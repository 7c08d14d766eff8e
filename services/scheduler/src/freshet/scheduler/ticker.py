"""Fires due schedules: one active ticker among all scheduler processes (a lease), due ticks
fired in batches, each batch one transaction, each tick's run id derived from the schedule id
and the nominal fire time.

Two tickers at once (a lease handed over while the old holder still runs) cannot fire a tick
twice: the fire moves `next_fire_at` with a compare-and-set on the locked row, and the
deterministic run id would collapse a second run into the first anyway.

Catch-up: a tick found late by no more than the catch-up window fires (once); older ticks
are counted as missed (metric, log line, `missed_ticks`) and the schedule moves on to the
next fire after now, so downtime never ends in a burst.

What a fire does depends on the schedule's kind (`actions`). A batch that the database
refuses (a trigger made a collection active between the check and the insert, a collection
deleted meanwhile) is fired again one schedule at a time, each in its own transaction.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

import structlog
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.exc import IntegrityError

from freshet.catalog import Database, UnitOfWork
from freshet.catalog.armed_fires import FiredArms
from freshet.catalog.clock import utcnow
from freshet.catalog.schedules import COLLECTION, DueSchedule, plan_next, ticks_between
from freshet.kit.redaction import describe_error
from freshet.scheduler.actions import Action, FireCollections, Fired

log = structlog.get_logger("freshet.scheduler")

LEASE = "scheduler-ticker"

FIRES = Counter(
    "freshet_scheduler_fires_total",
    "Ticks fired, by schedule kind and outcome.",
    ["kind", "outcome"],
)
MISSED = Counter(
    "freshet_scheduler_missed_ticks_total",
    "Ticks older than the catch-up window, not fired.",
    ["kind"],
)
LATENESS = Histogram(
    "freshet_scheduler_fire_lateness_seconds",
    "Time from a tick's due time (nominal plus jitter) to its fire.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
LEADER = Gauge("freshet_scheduler_leader", "1 while this process fires schedules.")
SCHEDULES = Gauge(
    "freshet_scheduler_schedules", "Schedules by state, as the active ticker sees them.", ["state"]
)

Clock = Callable[[], datetime]
# Counting schedules by state reads every row; the gauge need not be fresher than this.
STATE_EXPORT_INTERVAL_S = 15.0


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
        standby_poll_s: float = 1.0,
        actions: Mapping[str, Action] | None = None,
        batch_size: int = 500,
        arm_ahead: timedelta = timedelta(seconds=10),
        armed_batch_size: int = 10_000,
    ) -> None:
        self.db = db
        self.holder = holder
        self.source = source
        self.catch_up = catch_up
        self.lease_ttl = lease_ttl
        self.clock = clock
        # A standby asks for the lease this often (a killed leader is replaced within TTL + this).
        self.standby_poll_s = standby_poll_s
        self.actions: Mapping[str, Action] = actions or {COLLECTION: FireCollections(source)}
        self.batch_size = batch_size
        # Collection ticks due within this are armed ahead (freshet.catalog.armed_fires).
        self.arm_ahead = arm_ahead
        # Armed ticks fired a transaction: set-based statements cost little per tick, while
        # each batch re-reads what is due, so fewer, larger batches fire a burst sooner.
        self.armed_batch_size = armed_batch_size
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
        loop = asyncio.get_running_loop()
        renew_s = self.lease_ttl.total_seconds() / 3
        leading, renewed_at, exported_at = False, -1e9, -1e9
        due: datetime | None = None
        while True:
            sleep_s = self.standby_poll_s
            # Taken before the work, not cleared after it: a change during the work still
            # wakes the wait below.
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                # A standby asks for the lease every loop; the leader renews it a third into
                # its TTL, and reads the earliest due tick in the same transaction. So idle, the
                # leader wakes only to renew: changes of collections wake it at once (an event),
                # other processes' writes (a table's refresh interval) are seen at the renewal.
                export = loop.time() - exported_at >= STATE_EXPORT_INTERVAL_S
                if not leading or loop.time() - renewed_at >= renew_s:
                    leading, due = await self._lead(export_states=export)
                    renewed_at = loop.time()
                elif woken:
                    due = await self._next_due(export_states=export)
                if leading:
                    exported_at = loop.time() if export else exported_at
                    if due is not None and due <= self.clock():
                        await self.tick()
                        due = await self._next_due(export_states=False)
                    if due is not None and due - self.clock() <= self.arm_ahead:
                        await self.arm()
                    sleep_s = min(
                        self._sleep_until(due), max(0.0, renewed_at + renew_s - loop.time())
                    )
            except Exception as exc:
                leading = False
                log.warning("scheduler tick failed", error=describe_error(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=sleep_s)

    async def _lead(self, *, export_states: bool = False) -> tuple[bool, datetime | None]:
        """Take or renew the lease; when leading, the earliest due tick as well."""
        due: datetime | None = None
        async with UnitOfWork(self.db) as uow:
            leading = await uow.leases.try_acquire(LEASE, self.holder, self.lease_ttl)
            if leading:
                due = await self._read_due(uow, export_states=export_states)
            await uow.commit()
        LEADER.set(1 if leading else 0)
        return leading, due

    async def _next_due(self, *, export_states: bool) -> datetime | None:
        async with UnitOfWork(self.db, read_only=True) as uow:
            return await self._read_due(uow, export_states=export_states)

    @staticmethod
    async def _read_due(uow: UnitOfWork, *, export_states: bool) -> datetime | None:
        due = await uow.schedules.next_due_at()
        if export_states:
            for state, count in (await uow.schedules.count_by_state()).items():
                SCHEDULES.labels(state).set(count)
        return due

    def _sleep_until(self, due: datetime | None) -> float:
        if due is None:
            return float("inf")
        return max(0.0, (due - self.clock()).total_seconds())

    async def arm(self) -> int:
        """Work out the collection ticks falling due within `arm_ahead` (see
        `freshet.catalog.armed_fires`), so that firing them is a few statements; how many."""
        action = self.actions.get(COLLECTION)
        if not isinstance(action, FireCollections):
            return 0
        horizon = self.clock() + self.arm_ahead
        armed = 0
        while True:
            async with UnitOfWork(self.db) as uow:
                candidates = await uow.armed.unarmed(horizon, limit=self.batch_size)
                await uow.armed.arm(action.arm(candidates))
                await uow.commit()
            armed += len(candidates)
            if len(candidates) < self.batch_size:
                return armed

    async def tick(self) -> int:
        """Fire every due schedule once; how many ticks fired."""
        now = self.clock()
        fired = await self._fire_armed(now)
        while True:
            async with UnitOfWork(self.db, read_only=True) as uow:
                due = await uow.schedules.due(now, limit=self.batch_size)
            if not due:
                return fired
            try:
                made = await self._fire_batch(due, now)
            except IntegrityError:
                made = 0
                for schedule_id, nominal in due:
                    made += await self.fire(schedule_id, nominal, now)
            fired += made
            if len(due) < self.batch_size or made == 0:
                return fired

    async def _fire_armed(self, now: datetime) -> int:
        """Fire the armed ticks due by `now`, a batch a transaction; the ordinary path fires
        what they leave (and a batch the database refuses)."""
        fired = 0
        while True:
            try:
                async with UnitOfWork(self.db) as uow:
                    done = await uow.armed.fire(
                        now, oldest=now - self.catch_up, limit=self.armed_batch_size
                    )
                    uow.outbox.added += done.count
                    await uow.commit()
            except IntegrityError:
                return fired
            self._record_armed(done, self.clock())
            fired += done.count
            if done.count < self.armed_batch_size:
                return fired

    def _record_armed(self, done: FiredArms, at: datetime) -> None:
        if not done.count:
            return
        FIRES.labels(COLLECTION, "queued").inc(done.count)
        latest = 0.0
        for due_at, count in done.due:
            late = max(0.0, (at - due_at).total_seconds())
            for _ in range(count):
                LATENESS.observe(late)
            latest = max(latest, late)
        log.info(
            "schedules fired",
            fired=done.count,
            outcomes={f"{COLLECTION}:queued": done.count},
            armed=True,
            max_lateness_s=round(latest, 3),
            schedule_id=done.schedule_id,
        )

    async def fire(self, schedule_id: str, nominal: datetime | None, now: datetime) -> int:
        """Fire one schedule's tick in a transaction of its own; 0 when it no longer is due."""
        with structlog.contextvars.bound_contextvars(schedule_id=schedule_id):
            try:
                return await self._fire_batch([(schedule_id, nominal)], now)
            except IntegrityError:
                # The collection was deleted during the fire: its schedule goes with it.
                log.info("schedule vanished during its fire")
                return 0

    async def _fire_batch(self, due: Sequence[tuple[str, datetime | None]], now: datetime) -> int:
        expected = dict(due)
        fired: list[tuple[DueSchedule, datetime, Fired]] = []
        async with UnitOfWork(self.db) as uow:
            rows = await uow.schedules.lock(expected)
            # Changed, paused, deleted, or fired by another ticker since it was found due.
            live = [r for r in rows if not r.paused and r.next_fire_at == expected[r.id]]
            by_kind: dict[str, list[DueSchedule]] = {}
            for row in live:
                if now - self._due_at(row) > self.catch_up:
                    self._skip_missed(row, now)
                else:
                    by_kind.setdefault(row.kind, []).append(row)
            for kind, batch in by_kind.items():
                action = self.actions.get(kind)
                if action is None:
                    log.warning("no action for schedule kind; tick not fired", kind=kind)
                    continue
                results = await action(uow, batch)
                for row in batch:
                    result = results[row.id]
                    due_at = self._advance(row, now)
                    row.last_run_id = result.made_id
                    fired.append((row, due_at, result))
            await uow.schedules.save_fired(live, now)
            await uow.commit()
        self.record(fired, self.clock())
        return len(fired)

    def record(self, fired: Sequence[tuple[DueSchedule, datetime, Fired]], at: datetime) -> None:
        """Count fires committed `at`; each with the time it was due, for its lateness.

        One line per batch at INFO (a run's history already names the schedule and tick that
        made it); one per fire at DEBUG.
        """
        outcomes: collections.Counter[str] = collections.Counter()
        for row, due_at, result in fired:
            FIRES.labels(row.kind, result.outcome).inc()
            LATENESS.observe(max(0.0, (at - due_at).total_seconds()))
            outcomes[f"{row.kind}:{result.outcome}"] += 1
            log.debug(
                "schedule fired",
                schedule_id=row.id,
                nominal=(row.last_fire_at or at).isoformat(),
                made_id=str(result.made_id) if result.made_id else None,
                outcome=result.outcome,
            )
        if fired:
            latest = max(at - due_at for _, due_at, _ in fired)
            log.info(
                "schedules fired",
                fired=len(fired),
                outcomes=dict(outcomes),
                max_lateness_s=round(latest.total_seconds(), 3),
                schedule_id=fired[0][0].id if len(fired) == 1 else None,
            )

    @staticmethod
    def _due_at(row: DueSchedule) -> datetime:
        assert row.next_fire_at is not None
        return row.due_at or row.next_fire_at

    def _advance(self, row: DueSchedule, now: datetime) -> datetime:
        """Record the tick as fired and plan the next; when the fired tick was due."""
        nominal, due_at = row.next_fire_at, self._due_at(row)
        assert nominal is not None
        row.last_fire_at = nominal
        plan_next(row, nominal)
        return due_at

    def _skip_missed(self, row: DueSchedule, now: datetime) -> None:
        first = row.next_fire_at
        assert first is not None
        missed = 1 + ticks_between(row, first, now)
        row.missed_ticks += missed
        plan_next(row, now)
        MISSED.labels(row.kind).inc(missed)
        assert row.next_fire_at is not None
        log.warning(
            "ticks missed beyond the catch-up window; not fired",
            schedule_id=row.id,
            missed=missed,
            first_missed=first.isoformat(),
            next_fire=row.next_fire_at.isoformat(),
            catch_up_s=self.catch_up.total_seconds(),
        )
