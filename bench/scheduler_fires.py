"""The scheduler at scale (issue 4): 10,000 schedules firing once a minute each.

Fires: the ticker of `freshet.scheduler` runs in this process over a real catalog (SQLite, or
PostgreSQL with --postgres), with a simulated clock. Waiting for real minutes would measure
nothing but sleep, so whenever ticks are due the clock jumps to the instant they are due and
then runs at real speed while the ticker fires them: a fire's lateness is the real time from
its due instant to the commit of its transaction (as if the ticker had woken exactly on time;
the real loop wakes within a millisecond or two of that). CPU is this process's CPU time
(SQLite and driver threads included; a PostgreSQL server's own CPU is not) while ticking,
divided by the fires. Between ticks, outside the measurement, the bench finishes the runs the
fires queued (as the collector would), so every fire queues a run rather than recording an
overlap. Log lines go to a file, as a service's do.

Two layouts: "spread" (each schedule at its own second of the minute, ~167 fires a second)
and "aligned" (every schedule at second 0: 10,000 fires due at once, the worst case that
per-schedule jitter exists to avoid).

Idle: a real scheduler process (broker + scheduler, nothing else) over a catalog holding
10,000 schedules none of which is due, its CPU measured over a window.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

from bench.stack import BenchStack, cpu_snapshot, cpu_used
from bench.stats import summary_ms
from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.armed_fires import FiredArms
from freshet.catalog.migrate import migrate
from freshet.catalog.models import Collection, CollectionRun, Endpoint, Schedule
from freshet.catalog.schedules import COLLECTION, DueSchedule, plan_next
from freshet.kit.logging import configure_logging
from freshet.scheduler.actions import FireCollections, Fired
from freshet.scheduler.ticker import Ticker

SOURCE = "/freshet/bench"
SIM_START = datetime(2026, 6, 1, 9, 0, 0, tzinfo=UTC)
LAYOUTS = ("spread", "aligned")


class SimClock:
    """Real time shifted by an offset that the bench moves forward to the next due instant."""

    def __init__(self, start: datetime) -> None:
        self.offset = start - datetime.now(UTC)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def jump_to(self, at: datetime) -> None:
        self.offset = at - datetime.now(UTC)


class MeasuredTicker(Ticker):
    """The real ticker, also keeping each fire's lateness for the report."""

    lateness_s: list[float]

    def record(self, fired: Sequence[tuple[DueSchedule, datetime, Fired]], at: datetime) -> None:
        super().record(fired, at)
        self.lateness_s.extend((at - due).total_seconds() for _, due, _ in fired)

    def _record_armed(self, done: FiredArms, at: datetime) -> None:
        super()._record_armed(done, at)
        for due_at, count in done.due:
            self.lateness_s.extend([(at - due_at).total_seconds()] * count)


def cron_for(layout: str, i: int) -> str:
    # Six fields put seconds first: "17 * * * * *" fires at second 17 of every minute.
    return f"{i % 60} * * * * *" if layout == "spread" else "* * * * *"


async def create_schedules(db: Database, count: int, layout: str, now: datetime) -> None:
    """Endpoints, collections and their schedules, written in bulk (the API would take long)."""
    batch = 1000
    for start in range(0, count, batch):
        endpoints, collections, schedules = [], [], []
        for i in range(start, min(start + batch, count)):
            eid, cid = uuid.uuid4(), uuid.uuid4()
            cron = cron_for(layout, i)
            endpoints.append(
                {"id": eid, "name": f"bench-{i}", "kind": "sqlite", "config": {"path": "/x.db"}}
            )
            collections.append(
                {
                    "id": cid,
                    "endpoint_id": eid,
                    "schedule_cron": cron,
                    "schedule_id": f"collection::{cid}",
                }
            )
            row = Schedule(
                id=f"collection::{cid}", kind=COLLECTION, cron=cron, timezone="UTC", jitter_s=0
            )
            plan_next(row, now)
            schedules.append(
                {
                    "id": row.id,
                    "kind": COLLECTION,
                    "collection_id": cid,
                    "cron": cron,
                    "timezone": "UTC",
                    "jitter_s": 0,
                    "paused": False,
                    "missed_ticks": 0,
                    "next_fire_at": row.next_fire_at,
                    "due_at": row.due_at,
                }
            )
        async with UnitOfWork(db) as uow:
            await uow.session.execute(insert(Endpoint), endpoints)
            await uow.session.execute(insert(Collection), collections)
            await uow.session.execute(insert(Schedule), schedules)
            await uow.commit()


async def finish_queued_runs(db: Database) -> None:
    async with UnitOfWork(db) as uow:
        await uow.session.execute(
            update(CollectionRun)
            .where(CollectionRun.status == RunStatus.QUEUED.value)
            .values(status=RunStatus.SUCCEEDED.value)
        )
        await uow.commit()


@contextlib.contextmanager
def logs_to(path: Path) -> Iterator[None]:
    with path.open("a") as sink:
        previous, sys.stderr = sys.stderr, sink
        try:
            yield
        finally:
            sys.stderr = previous


async def measure_fires(
    catalog_url: str,
    *,
    schedules: int,
    minutes: int,
    layout: str,
    batch_size: int,
    log_file: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    await migrate(catalog_url)
    db = Database(catalog_url)
    clock = SimClock(SIM_START)
    ticker = MeasuredTicker(
        db,
        holder="bench",
        source=SOURCE,
        clock=clock,
        actions={COLLECTION: FireCollections(SOURCE)},
        batch_size=batch_size,
    )
    ticker.lateness_s = []
    try:
        await create_schedules(db, schedules, layout, SIM_START)
        progress(f"scheduler fires ({layout}): {schedules} schedules created")
        cpu_s = 0.0
        wall_s = 0.0
        armed = 0
        end = SIM_START + timedelta(minutes=minutes)
        with logs_to(log_file):
            while True:
                async with UnitOfWork(db, read_only=True) as uow:
                    due = await uow.schedules.next_due_at()
                if due is None or due > end:
                    break
                # As the running loop does: the ticks due within the horizon are armed before
                # they are due (their CPU counts; their time is not lateness), then fired.
                clock.jump_to(due - ticker.arm_ahead)
                cpu0 = time.process_time()
                armed += await ticker.arm()
                cpu_s += time.process_time() - cpu0
                clock.jump_to(due)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await ticker.tick()
                cpu_s += time.process_time() - cpu0
                wall_s += time.perf_counter() - wall0
                await finish_queued_runs(db)
        fires = len(ticker.lateness_s)
        return {
            "layout": layout,
            "schedules": schedules,
            "simulated_minutes": minutes,
            "batch_size": batch_size,
            "fires": fires,
            "armed": armed,
            "expected_fires": schedules * minutes,
            "cpu_s": round(cpu_s, 2),
            "cpu_per_fire_ms": round(cpu_s / fires * 1000, 3) if fires else None,
            "firing_wall_s": round(wall_s, 2),
            "fires_per_s_while_firing": round(fires / wall_s, 1) if wall_s else None,
            "lateness_ms": summary_ms(ticker.lateness_s),
        }
    finally:
        await db.dispose()


async def seed_idle(catalog_url: str, schedules: int) -> None:
    """Schedules that exist but are not due within the measurement (yearly, next January)."""
    db = Database(catalog_url)
    try:
        await create_schedules(db, schedules, "spread", datetime.now(UTC))
        async with UnitOfWork(db) as uow:
            await uow.session.execute(
                update(Schedule).values(
                    cron="0 0 1 1 *",
                    next_fire_at=datetime(datetime.now(UTC).year + 1, 1, 1, tzinfo=UTC),
                    due_at=datetime(datetime.now(UTC).year + 1, 1, 1, tzinfo=UTC),
                )
            )
            await uow.commit()
    finally:
        await db.dispose()


async def measure_idle(
    stack: BenchStack, *, schedules: int, settle_s: float, window_s: float
) -> dict[str, Any]:
    await seed_idle(stack.catalog_url, schedules)
    await asyncio.sleep(settle_s)
    pids = stack.pids()
    before = cpu_snapshot(pids)
    await asyncio.sleep(window_s)
    used = cpu_used(before, cpu_snapshot(pids))
    return {
        "schedules": schedules,
        "window_s": window_s,
        "cpu_s": used,
        "share_of_a_core": {name: round(s / window_s, 4) for name, s in used.items()},
    }


async def run(
    stack: BenchStack,
    *,
    catalogs: Mapping[str, str],
    schedules: int,
    minutes: int,
    batch_size: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    configure_logging("scheduler-bench", "INFO", "json")
    result: dict[str, Any] = {"fires": {}}
    for layout in LAYOUTS:
        result["fires"][layout] = await measure_fires(
            catalogs[layout],
            schedules=schedules,
            minutes=minutes,
            layout=layout,
            batch_size=batch_size,
            log_file=stack.data_dir / "logs" / f"bench-fires-{layout}.log",
            progress=progress,
        )
        f = result["fires"][layout]
        progress(
            f"scheduler fires ({layout}): {f['fires']} fires, {f['cpu_per_fire_ms']} ms CPU "
            f"each, lateness p99 {f['lateness_ms'].get('p99')} ms"
        )
    result["idle"] = await measure_idle(stack, schedules=schedules, settle_s=5, window_s=20)
    return result


def report_lines(r: dict[str, Any]) -> list[str]:
    out = ["", "7. Scheduler: schedules firing once a minute each (issue 4)"]
    for layout, f in r["fires"].items():
        lateness = f["lateness_ms"]
        flag = "" if f["fires"] == f["expected_fires"] else "   <-- NOT ALL FIRED"
        out.append(
            f"   {layout:<8} {f['schedules']} schedules x {f['simulated_minutes']} simulated "
            f"min: {f['fires']} fires{flag}"
        )
        out.append(
            f"            CPU per fire {f['cpu_per_fire_ms']} ms; {f['fires_per_s_while_firing']} "
            f"fires/s while firing (batches of {f['batch_size']})"
        )
        out.append(
            f"            lateness (ms) p50 {lateness.get('p50')}  p99 {lateness.get('p99')}  "
            f"max {lateness.get('max')}   (target p99 < 1000)"
        )
    idle = r["idle"]
    shares = ", ".join(f"{n} {s:.2%}" for n, s in sorted(idle["share_of_a_core"].items()))
    out.append(
        f"   idle     {idle['schedules']} schedules, none due, over {idle['window_s']:.0f} s: "
        f"{shares} of a core (target scheduler < 1%)"
    )
    return out
