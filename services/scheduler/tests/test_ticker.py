"""Schedules as a specification, on a real catalog with an injected clock: no waiting for
wall-clock minutes. Each test moves the clock and calls `tick()` the way the loop would."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY

from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.schedules import scheduled_run_id
from freshet.contracts import CollectionChanged
from freshet.devstack.testing import SetClock, envelope_of
from freshet.scheduler.handlers import handle_collection_changed
from freshet.scheduler.ticker import Ticker


@pytest.fixture
def clock() -> SetClock:
    return SetClock(datetime(2026, 6, 1, 9, 0, 0, tzinfo=UTC))


class ArmingTicker(Ticker):
    """Arms what is due within its horizon before every tick, as the running loop does ahead
    of a due tick: the same specification holds when ticks fire armed."""

    async def tick(self) -> int:
        await self.arm()
        return await super().tick()


@pytest.fixture(params=["ordinary", "armed"])
def ticker(request: pytest.FixtureRequest, sqlite_catalog: Database, clock: SetClock) -> Ticker:
    kind = ArmingTicker if request.param == "armed" else Ticker
    return kind(sqlite_catalog, holder="scheduler-a", source="/freshet/scheduler", clock=clock)


async def collection(
    db: Database, clock: SetClock, cron: str | None, tz: str = "UTC", enabled: bool = True
) -> uuid.UUID:
    async with UnitOfWork(db) as uow:
        endpoint = await uow.endpoints.add(
            name=f"ep-{uuid.uuid4().hex[:6]}", kind="sqlite", config={"path": "/x.db"}
        )
        made = await uow.collections.add(
            endpoint_id=endpoint.id, schedule_cron=cron, schedule_timezone=tz, is_enabled=enabled
        )
        await uow.schedules.sync_collection(made, made.id, clock.now)
        await uow.commit()
        return made.id


async def change(db: Database, clock: SetClock, collection_id: uuid.UUID, **fields: Any) -> None:
    async with UnitOfWork(db) as uow:
        found = await uow.collections.get(collection_id)
        assert found is not None
        await uow.collections.update(
            found,
            schedule_cron=fields.get("cron", found.schedule_cron),
            schedule_timezone=fields.get("tz", found.schedule_timezone),
            is_enabled=fields.get("enabled", found.is_enabled),
        )
        await uow.schedules.sync_collection(found, collection_id, clock.now)
        await uow.commit()


async def schedule_of(db: Database, collection_id: uuid.UUID) -> Any:
    async with UnitOfWork(db, read_only=True) as uow:
        return await uow.schedules.for_collection(collection_id)


async def runs_of(db: Database, collection_id: uuid.UUID) -> list[Any]:
    async with UnitOfWork(db, read_only=True) as uow:
        return list(reversed(await uow.runs.find(collection_id=collection_id, limit=500)))


async def pending(db: Database, topic: str) -> list[dict[str, Any]]:
    async with UnitOfWork(db, read_only=True) as uow:
        rows = await uow.outbox.pending(1000)
    return [json.loads(r.value) for r in rows if r.topic == topic]


async def advance_to(ticker: Ticker, clock: SetClock, until: datetime, step: timedelta) -> None:
    """Let time pass, ticking as the loop would (every `step`)."""
    while clock.now < until:
        clock.now = min(until, clock.now + step)
        await ticker.tick()


# --- keeping schedules in step with collections -----------------------------------------------


async def test_a_collection_with_a_cron_has_exactly_one_schedule(
    sqlite_catalog: Database, clock: SetClock
) -> None:
    cid = await collection(sqlite_catalog, clock, "*/15 * * * *")
    for _ in range(2):
        await handle_collection_changed(
            envelope_of(
                CollectionChanged(
                    collection_id=cid,
                    endpoint_id=uuid.uuid4(),
                    schedule_cron="*/15 * * * *",
                    changed_at=clock.now,
                )
            ),
            sqlite_catalog,
        )
    async with UnitOfWork(sqlite_catalog, read_only=True) as uow:
        schedules = [s for s in await uow.schedules.all() if s.collection_id == cid]
    assert [s.id for s in schedules] == [f"collection::{cid}"]
    assert schedules[0].paused is False


async def test_manual_only_and_deleted_collections_have_no_schedule(
    sqlite_catalog: Database, clock: SetClock
) -> None:
    cid = await collection(sqlite_catalog, clock, "0 * * * *")
    await change(sqlite_catalog, clock, cid, cron=None)
    assert await schedule_of(sqlite_catalog, cid) is None
    await change(sqlite_catalog, clock, cid, cron="0 * * * *")
    async with UnitOfWork(sqlite_catalog) as uow:
        found = await uow.collections.get(cid)
        assert found is not None
        await uow.collections.delete(found)
        await uow.schedules.sync_collection(None, cid, clock.now)
        await uow.commit()
    assert await schedule_of(sqlite_catalog, cid) is None


# --- firing -----------------------------------------------------------------------------------


async def test_a_tick_queues_one_run_with_an_id_derived_from_the_tick(
    sqlite_catalog: Database, clock: SetClock, ticker: Ticker
) -> None:
    cid = await collection(sqlite_catalog, clock, "*/15 * * * *")
    assert (await schedule_of(sqlite_catalog, cid)).next_fire_at == datetime(
        2026, 6, 1, 9, 15, tzinfo=UTC
    )
    clock.now = datetime(2026, 6, 1, 9, 15, 0, 300_000, tzinfo=UTC)
    assert await ticker.tick() == 1
    assert await ticker.tick() == 0, "a tick fires once"

    nominal = datetime(2026, 6, 1, 9, 15, tzinfo=UTC)
    [run] = await runs_of(sqlite_catalog, cid)
    assert run.id == scheduled_run_id(f"collection::{cid}", nominal)
    assert (run.status, run.trigger_source, run.requested_at) == ("QUEUED", "schedule", nominal)
    [request] = await pending(sqlite_catalog, "freshet.collection.requested")
    assert request["run_id"] == str(run.id)
    assert request["trigger_source"] == "schedule"
    schedule = await schedule_of(sqlite_catalog, cid)
    assert (schedule.last_fire_at, schedule.last_run_id) == (nominal, run.id)
    assert schedule.next_fire_at == datetime(2026, 6, 1, 9, 30, tzinfo=UTC)


async def test_two_tickers_fire_each_tick_once(
    sqlite_catalog: Database, clock: SetClock, ticker: Ticker
) -> None:
    other = Ticker(sqlite_catalog, holder="scheduler-b", source="/freshet/scheduler", clock=clock)
    assert (await ticker._lead())[0]
    assert not (await other._lead())[0], "one holds the lease"
    cid = await collection(sqlite_catalog, clock, "*/15 * * * *")
    clock.now = datetime(2026, 6, 1, 9, 15, 1, tzinfo=UTC)
    # Even if both tick (a lease handed over while the old holder still runs):
    fired = await ticker.tick() + await other.tick()
    assert fired == 1
    assert len(await runs_of(sqlite_catalog, cid)) == 1


async def test_a_fire_while_a_run_is_active_records_a_skipped_run(
    sqlite_catalog: Database, clock: SetClock, ticker: Ticker
) -> None:
    cid = await collection(sqlite_catalog, clock, "*/15 * * * *")
    async with UnitOfWork(sqlite_catalog) as uow:
        found = await uow.collections.get(cid)
        assert found is not None
        active = await uow.runs.add(
            collection_id=cid, endpoint_id=found.endpoint_id, trigger_source="api"
        )
        await uow.runs.transition(active.id, RunStatus.RUNNING)
        await uow.commit()
    clock.now = datetime(2026, 6, 1, 9, 15, 1, tzinfo=UTC)
    await ticker.tick()
    runs = await runs_of(sqlite_catalog, cid)
    skipped = [r for r in runs if r.id != active.id]
    assert [(r.status, r.error, r.trigger_source) for r in skipped] == [
        ("SKIPPED", "previous run still running", "schedule")
    ]
    [event] = await pending(sqlite_catalog, "freshet.run.completed")
    assert (event["status"], event["error"]) == ("SKIPPED", "previous run still running")
    assert await pending(sqlite_catalog, "freshet.collection.requested") == []


async def test_a_late_tick_within_the_catch_up_window_fires_once(
    sqlite_catalog: Database, clock: SetClock, ticker: Ticker
) -> None:
    cid = await collection(sqlite_catalog, clock, "*/15 * * * *")
    clock.now = datetime(2026, 6, 1, 9, 15, 45, tzinfo=UTC)  # down for 45 s
    await ticker.tick()
    [run] = await runs_of(sqlite_catalog, cid)
    assert run.requested_at == datetime(2026, 6, 1, 9, 15, tzinfo=UTC)


async def test_ticks_older_than_the_catch_up_window_are_counted_not_fired(
    sqlite_catalog: Database, clock: SetClock, ticker: Ticker
) -> None:
    before = (
        REGISTRY.get_sample_value("freshet_scheduler_missed_ticks_total", {"kind": "collection"})
        or 0.0
    )
    cid = await collection(sqlite_catalog, clock, "*/15 * * * *")
    clock.now = datetime(2026, 6, 1, 10, 20, tzinfo=UTC)  # 9:15, 9:30, 9:45, 10:00, 10:15 missed
    await ticker.tick()
    assert await runs_of(sqlite_catalog, cid) == [], "no burst after downtime"
    schedule = await schedule_of(sqlite_catalog, cid)
    assert schedule.missed_ticks == 5
    assert schedule.next_fire_at == datetime(2026, 6, 1, 10, 30, tzinfo=UTC)
    after = (
        REGISTRY.get_sample_value("freshet_scheduler_missed_ticks_total", {"kind": "collection"})
        or 0.0
    )
    assert after - before == 5


async def test_changing_the_cron_never_fires_ticks_before_the_change(
    sqlite_catalog: Database, clock: SetClock, ticker: Ticker
) -> None:
    cid = await collection(sqlite_catalog, clock, "0 * * * *")
    clock.now = datetime(2026, 6, 1, 9, 40, tzinfo=UTC)
    await change(sqlite_catalog, clock, cid, cron="*/30 * * * *")  # 9:30 is past: not fired
    clock.now = datetime(2026, 6, 1, 9, 40, 30, tzinfo=UTC)
    assert await ticker.tick() == 0
    assert (await schedule_of(sqlite_catalog, cid)).next_fire_at == datetime(
        2026, 6, 1, 10, 0, tzinfo=UTC
    )


async def test_pause_stops_fires_and_resume_does_not_catch_up(
    sqlite_catalog: Database, clock: SetClock, ticker: Ticker
) -> None:
    cid = await collection(sqlite_catalog, clock, "*/15 * * * *")
    await change(sqlite_catalog, clock, cid, enabled=False)
    await advance_to(ticker, clock, datetime(2026, 6, 1, 10, 5, tzinfo=UTC), timedelta(minutes=1))
    assert await runs_of(sqlite_catalog, cid) == []
    await change(sqlite_catalog, clock, cid, enabled=True)
    assert (await schedule_of(sqlite_catalog, cid)).next_fire_at == datetime(
        2026, 6, 1, 10, 15, tzinfo=UTC
    )
    await advance_to(ticker, clock, datetime(2026, 6, 1, 10, 16, tzinfo=UTC), timedelta(seconds=30))
    assert [r.requested_at for r in await runs_of(sqlite_catalog, cid)] == [
        datetime(2026, 6, 1, 10, 15, tzinfo=UTC)
    ]


async def test_a_schedule_deleted_between_due_and_fire_fires_nothing(
    sqlite_catalog: Database, clock: SetClock, ticker: Ticker
) -> None:
    cid = await collection(sqlite_catalog, clock, "*/15 * * * *")
    nominal = datetime(2026, 6, 1, 9, 15, tzinfo=UTC)
    clock.now = nominal + timedelta(seconds=1)
    async with UnitOfWork(sqlite_catalog) as uow:
        found = await uow.collections.get(cid)
        assert found is not None
        await uow.collections.delete(found)  # the schedule goes with it (cascade)
        await uow.commit()
    assert await ticker.fire(f"collection::{cid}", nominal, clock.now) == 0


# --- DST --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [
        ("Europe/Berlin", datetime(2026, 3, 29), datetime(2026, 10, 25)),
        ("America/New_York", datetime(2026, 3, 8), datetime(2026, 11, 1)),
    ],
)
async def test_a_daily_0230_schedule_fires_once_on_dst_days(
    sqlite_catalog: Database,
    clock: SetClock,
    ticker: Ticker,
    zone: str,
    spring: datetime,
    fall: datetime,
) -> None:
    tz = ZoneInfo(zone)
    for day in (spring, fall):
        clock.now = (day - timedelta(days=1)).replace(hour=12, tzinfo=tz).astimezone(UTC)
        cid = await collection(sqlite_catalog, clock, "30 2 * * *", tz=zone)
        await advance_to(
            ticker,
            clock,
            (day + timedelta(days=1)).replace(hour=0, tzinfo=tz).astimezone(UTC),
            timedelta(minutes=10),
        )
        fires = [r.requested_at.astimezone(tz) for r in await runs_of(sqlite_catalog, cid)]
        assert len(fires) == 1, fires
        local = fires[0]
        assert local.date() == day.date()
        # Spring forward: 02:30 does not exist and the tick fires at 03:00 (cronsim's rule,
        # like cron's). Fall back: 02:30 exists twice and fires once.
        expected = (3, 0) if day == spring else (2, 30)
        assert (local.hour, local.minute) == expected


# --- real loops, real time ----------------------------------------------------------------------


async def test_two_running_tickers_fire_every_tick_once_and_hand_over_when_one_stops(
    sqlite_catalog: Database,
) -> None:
    wall = SetClock(datetime.now(UTC))
    cid = await collection(sqlite_catalog, wall, "* * * * * *")  # every second (seconds first)

    def start(holder: str) -> Ticker:
        return Ticker(
            sqlite_catalog,
            holder=holder,
            source="/freshet/scheduler",
            lease_ttl=timedelta(seconds=1),
            standby_poll_s=0.2,
        )

    first, second = start("scheduler-a"), start("scheduler-b")
    await first.start()
    await second.start()
    try:
        await asyncio.sleep(3)
        await first.stop()  # the leader, or not: either way the other must carry on
        await asyncio.sleep(3)
    finally:
        await second.stop()
    runs = await runs_of(sqlite_catalog, cid)
    ticks = [r.requested_at for r in runs]
    assert len(ticks) == len(set(ticks)), "no tick fired twice"
    assert len(runs) >= 4, f"fires went on after a ticker stopped: {ticks}"
    # Every second between the first and last fire was fired or skipped, none lost.
    assert (ticks[-1] - ticks[0]).total_seconds() == len(ticks) - 1


async def test_a_running_leader_finds_a_schedule_another_process_wrote_without_a_wake_up(
    sqlite_catalog: Database,
) -> None:
    # A table's refresh interval is written by the gateway, which cannot wake this process:
    # the leader must still see it, at its next lease renewal (a third of the TTL).
    ticker = Ticker(
        sqlite_catalog,
        holder="scheduler-a",
        source="/freshet/scheduler",
        lease_ttl=timedelta(seconds=1.5),
    )
    await ticker.start()
    try:
        await asyncio.sleep(0.3)  # leading, idle: nothing is due
        wall = SetClock(datetime.now(UTC))
        cid = await collection(sqlite_catalog, wall, "* * * * * *")
        for _ in range(40):
            if await runs_of(sqlite_catalog, cid):
                break
            await asyncio.sleep(0.1)
    finally:
        await ticker.stop()
    assert await runs_of(sqlite_catalog, cid), "the new schedule was never fired"
