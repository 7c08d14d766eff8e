"""Armed fires, as a specification on SQLite and PostgreSQL with an injected clock: a tick
worked out ahead fires exactly as an ordinary fire would, and an arm that no longer matches
its schedule (edited, paused, disabled, busy, deleted, already fired) never fires as armed."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, func, select

from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.models import ArmedFire
from freshet.catalog.schedules import scheduled_run_id
from freshet.devstack.testing import SetClock
from freshet.scheduler.ticker import Ticker

SOURCE = "/freshet/scheduler"
START = datetime(2026, 6, 1, 9, 14, 55, tzinfo=UTC)
TICK = datetime(2026, 6, 1, 9, 15, tzinfo=UTC)
AFTER_TICK = datetime(2026, 6, 1, 9, 15, 0, 300_000, tzinfo=UTC)


@pytest.fixture
async def db(catalog_url: str) -> AsyncIterator[Database]:
    database = Database(catalog_url)
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> SetClock:
    return SetClock(START)


@pytest.fixture
def ticker(db: Database, clock: SetClock) -> Ticker:
    return Ticker(db, holder="scheduler-a", source=SOURCE, clock=clock)


async def collection(db: Database, clock: SetClock, cron: str = "*/15 * * * *") -> uuid.UUID:
    async with UnitOfWork(db) as uow:
        endpoint = await uow.endpoints.add(
            name=f"ep-{uuid.uuid4().hex[:6]}", kind="sqlite", config={"path": "/x.db"}
        )
        made = await uow.collections.add(endpoint_id=endpoint.id, schedule_cron=cron)
        await uow.schedules.sync_collection(made, made.id, clock.now - timedelta(minutes=1))
        await uow.commit()
        return made.id


async def change(db: Database, clock: SetClock, collection_id: uuid.UUID, **fields: Any) -> None:
    async with UnitOfWork(db) as uow:
        found = await uow.collections.get(collection_id)
        assert found is not None
        await uow.collections.update(
            found,
            schedule_cron=fields.get("schedule_cron", found.schedule_cron),
            schedule_timezone=found.schedule_timezone,
            is_enabled=fields.get("is_enabled", found.is_enabled),
        )
        await uow.schedules.sync_collection(found, collection_id, clock.now)
        await uow.commit()


async def state(db: Database, collection_id: uuid.UUID) -> dict[str, Any]:
    async with UnitOfWork(db, read_only=True) as uow:
        runs = await uow.runs.find(collection_id=collection_id, limit=50)
        schedule = await uow.schedules.for_collection(collection_id)
        pending = await uow.outbox.pending(100)
        armed = (await uow.session.execute(select(func.count()).select_from(ArmedFire))).scalar()
    return {
        "runs": sorted((r.status, r.requested_at, r.trigger_source, r.error) for r in runs),
        "run_ids": {r.id for r in runs},
        "events": [
            (row.topic, json.loads(row.value))
            for row in pending
            if json.loads(row.value).get("collection_id") == str(collection_id)
        ],
        "schedule": (
            (schedule.last_fire_at, schedule.last_run_id, schedule.next_fire_at)
            if schedule
            else None
        ),
        "armed": armed,
    }


async def test_an_armed_tick_fires_exactly_as_an_ordinary_fire_would(
    db: Database, clock: SetClock, ticker: Ticker
) -> None:
    armed_cid, plain_cid = await collection(db, clock), await collection(db, clock)
    assert await ticker.arm() == 2
    # The plain one's arm goes: it is fired the ordinary way.
    async with UnitOfWork(db) as uow:
        await uow.session.execute(
            delete(ArmedFire).where(ArmedFire.schedule_id == f"collection::{plain_cid}")
        )
        await uow.commit()
    clock.now = AFTER_TICK

    assert await ticker.tick() == 2

    armed, plain = await state(db, armed_cid), await state(db, plain_cid)
    assert armed["runs"] == plain["runs"] == [("QUEUED", TICK, "schedule", None)]
    assert armed["run_ids"] == {scheduled_run_id(f"collection::{armed_cid}", TICK)}
    assert armed["schedule"] == (
        TICK,
        scheduled_run_id(f"collection::{armed_cid}", TICK),
        datetime(2026, 6, 1, 9, 30, tzinfo=UTC),
    )
    assert plain["schedule"][0::2] == armed["schedule"][0::2]
    [(topic, event)] = armed["events"]
    [(plain_topic, plain_event)] = plain["events"]
    assert topic == plain_topic == "freshet.collection.requested"
    assert set(event) == set(plain_event)
    assert (event["trigger_source"], event["requested_by"], event["run_id"]) == (
        "schedule",
        f"collection::{armed_cid}",
        str(scheduled_run_id(f"collection::{armed_cid}", TICK)),
    )
    assert armed["armed"] == 0, "fired arms are removed"


async def test_armed_fires_are_counted_with_their_lateness(
    db: Database, clock: SetClock, ticker: Ticker
) -> None:
    for _ in range(3):
        await collection(db, clock)
    await ticker.arm()
    before = _fire_metrics()
    clock.now = AFTER_TICK

    assert await ticker.tick() == 3

    fires, observed, late_s = (a - b for a, b in zip(_fire_metrics(), before, strict=True))
    assert (fires, observed) == (3, 3)
    assert late_s == pytest.approx(3 * (AFTER_TICK - TICK).total_seconds())


def _fire_metrics() -> tuple[float, float, float]:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    return (
        sample("freshet_scheduler_fires_total", kind="collection", outcome="queued"),
        sample("freshet_scheduler_fire_lateness_seconds_count"),
        sample("freshet_scheduler_fire_lateness_seconds_sum"),
    )


async def test_an_arm_is_not_fired_before_its_tick_is_due(
    db: Database, clock: SetClock, ticker: Ticker
) -> None:
    cid = await collection(db, clock)
    await ticker.arm()

    assert await ticker.tick() == 0
    assert (await state(db, cid))["runs"] == []


async def test_arms_of_schedules_changed_after_arming_never_fire_as_armed(
    db: Database, clock: SetClock, ticker: Ticker
) -> None:
    edited, paused, disabled, busy = [await collection(db, clock) for _ in range(4)]
    await ticker.arm()
    await change(db, clock, edited, schedule_cron="*/20 * * * *")
    await change(db, clock, paused, is_enabled=False)
    # Disabled without the scheduler having followed yet: the schedule still runs.
    async with UnitOfWork(db) as uow:
        found = await uow.collections.get(disabled)
        assert found is not None
        found.is_enabled = False
        busy_one = await uow.collections.get(busy)
        assert busy_one is not None
        active = await uow.runs.add(
            collection_id=busy, endpoint_id=busy_one.endpoint_id, trigger_source="api"
        )
        await uow.commit()
    clock.now = AFTER_TICK

    await ticker.tick()

    assert (await state(db, edited))["runs"] == [], "the old cron's tick is not fired"
    assert (await state(db, paused))["runs"] == []
    assert (await state(db, disabled))["runs"] == []
    assert (await state(db, disabled))["schedule"][2] == datetime(2026, 6, 1, 9, 30, tzinfo=UTC), (
        "a disabled collection's tick is passed over, as an ordinary fire does"
    )
    busy_state = await state(db, busy)
    assert [(s, e) for s, _, source, e in busy_state["runs"] if source == "schedule"] == [
        (RunStatus.SKIPPED.value, "previous run still running")
    ]
    assert active.id in busy_state["run_ids"]


async def test_a_deleted_collection_takes_its_arm_along(
    db: Database, clock: SetClock, ticker: Ticker
) -> None:
    cid = await collection(db, clock)
    await ticker.arm()
    async with UnitOfWork(db) as uow:
        found = await uow.collections.get(cid)
        assert found is not None
        await uow.session.delete(found)
        await uow.commit()
    clock.now = AFTER_TICK

    assert await ticker.tick() == 0
    assert (await state(db, cid))["armed"] == 0


async def test_an_armed_tick_whose_run_exists_falls_back_and_fires_once(
    db: Database, clock: SetClock, ticker: Ticker
) -> None:
    # However it happened (a second ticker, a restore), the run of the tick exists: the
    # database refuses the armed batch and the ordinary path records the duplicate.
    cid = await collection(db, clock)
    await ticker.arm()
    run_id = scheduled_run_id(f"collection::{cid}", TICK)
    async with UnitOfWork(db) as uow:
        found = await uow.collections.get(cid)
        assert found is not None
        run = await uow.runs.add(
            collection_id=cid, endpoint_id=found.endpoint_id, trigger_source="schedule"
        )
        run.id = run_id  # the id the tick derives
        await uow.runs.transition(run_id, RunStatus.SUCCEEDED)
        await uow.commit()
    clock.now = AFTER_TICK

    await ticker.tick()

    after = await state(db, cid)
    assert after["run_ids"] == {run_id}
    assert after["events"] == []
    assert after["schedule"][2] == datetime(2026, 6, 1, 9, 30, tzinfo=UTC)


async def test_two_tickers_fire_an_armed_tick_once(
    db: Database, clock: SetClock, ticker: Ticker
) -> None:
    other = Ticker(db, holder="scheduler-b", source=SOURCE, clock=clock)
    cid = await collection(db, clock)
    await ticker.arm()
    await other.arm()
    clock.now = AFTER_TICK

    fired = await ticker.tick() + await other.tick()

    assert fired == 1
    assert len((await state(db, cid))["events"]) == 1
