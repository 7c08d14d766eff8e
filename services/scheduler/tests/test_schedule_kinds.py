"""Jitter, interval schedule kinds (preview sweep, table refresh) and batched fires, as a
specification on a real catalog with an injected clock."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from freshet.catalog import Database, UnitOfWork
from freshet.catalog.datasets import DatasetSpec
from freshet.catalog.schedules import (
    COLLECTION,
    PREVIEW_SWEEP,
    PREVIEW_SWEEP_ID,
    TABLE_REFRESH,
    jitter_for,
    next_interval_tick,
    scheduled_run_id,
    table_refresh_schedule_id,
)
from freshet.devstack.testing import SetClock
from freshet.scheduler.actions import Action, FireCollections, RefreshTables, SweepPreviews
from freshet.scheduler.ticker import Ticker

SOURCE = "/freshet/scheduler"
START = datetime(2026, 6, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> SetClock:
    return SetClock(START)


def make_ticker(db: Database, clock: SetClock, **kwargs: Any) -> Ticker:
    actions: dict[str, Action] = {
        COLLECTION: FireCollections(SOURCE),
        PREVIEW_SWEEP: SweepPreviews(
            SOURCE, staleness=timedelta(hours=24), batch=kwargs.pop("sweep_batch", 100)
        ),
        TABLE_REFRESH: RefreshTables(SOURCE),
    }
    return Ticker(db, holder="scheduler-a", source=SOURCE, clock=clock, actions=actions, **kwargs)


async def new_collection(
    db: Database, clock: SetClock, cron: str, *, jitter_s: int = 0
) -> uuid.UUID:
    async with UnitOfWork(db) as uow:
        endpoint = await uow.endpoints.add(
            name=f"ep-{uuid.uuid4().hex[:8]}", kind="sqlite", config={"path": "/x.db"}
        )
        made = await uow.collections.add(
            endpoint_id=endpoint.id, schedule_cron=cron, schedule_jitter_s=jitter_s
        )
        await uow.schedules.sync_collection(made, made.id, clock.now)
        await uow.commit()
        return made.id


def spec(name: str) -> DatasetSpec:
    return DatasetSpec(
        schema_name="main",
        name=name,
        kind="table",
        columns=[],
        primary_key=[],
        foreign_keys=[],
        fingerprint=name,
    )


async def new_endpoint_with_tables(
    db: Database, *names: str, policy: str = "auto"
) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    async with UnitOfWork(db) as uow:
        endpoint = await uow.endpoints.add(
            name=f"ep-{uuid.uuid4().hex[:8]}", kind="sqlite", config={"path": "/x.db"}
        )
        endpoint.preview_policy = policy
        await uow.datasets.sync(
            endpoint_id=endpoint.id,
            endpoint_kind="sqlite",
            run_id=uuid.uuid4(),
            specs=[spec(n) for n in names],
        )
        found = {d.name: d.id for d in await uow.datasets.for_endpoint(endpoint.id)}
        await uow.commit()
        return endpoint.id, found


async def pending(db: Database, topic: str) -> list[dict[str, Any]]:
    async with UnitOfWork(db, read_only=True) as uow:
        rows = await uow.outbox.pending(10_000)
    return [json.loads(r.value) for r in rows if r.topic == topic]


async def schedule(db: Database, schedule_id: str) -> Any:
    async with UnitOfWork(db, read_only=True) as uow:
        return await uow.schedules.get(schedule_id)


async def set_preview(db: Database, dataset_id: uuid.UUID, at: datetime) -> None:
    async with UnitOfWork(db) as uow:
        await uow.datasets.set_preview(
            dataset_id, {"columns": [], "rows": [], "sampledAt": at.isoformat()}
        )
        await uow.commit()


# --- jitter -------------------------------------------------------------------------------------


def test_jitter_is_the_same_on_every_replica_and_within_bounds() -> None:
    nominal = datetime(2026, 6, 1, 9, 15, tzinfo=UTC)
    delays = {jitter_for(f"collection::{i}", nominal, 30) for i in range(200)}
    assert all(timedelta(0) <= d < timedelta(seconds=30) for d in delays)
    assert len(delays) > 100, "jitter spreads schedules that share a tick"
    assert jitter_for("collection::x", nominal, 30) == jitter_for("collection::x", nominal, 30)
    assert jitter_for("collection::x", nominal, 0) == timedelta(0)


async def test_a_jittered_tick_fires_at_its_delay_under_its_nominal_run_id(
    sqlite_catalog: Database, clock: SetClock
) -> None:
    ticker = make_ticker(sqlite_catalog, clock)
    cid = await new_collection(sqlite_catalog, clock, "*/15 * * * *", jitter_s=120)
    nominal = datetime(2026, 6, 1, 9, 15, tzinfo=UTC)
    row = await schedule(sqlite_catalog, f"collection::{cid}")
    delay = jitter_for(row.id, nominal, 120)
    assert row.due_at == nominal + delay
    clock.now = row.due_at - timedelta(milliseconds=1)
    assert await ticker.tick() == 0, "not before its jittered time"
    clock.now = row.due_at
    assert await ticker.tick() == 1
    [request] = await pending(sqlite_catalog, "freshet.collection.requested")
    assert request["run_id"] == str(scheduled_run_id(row.id, nominal))
    assert datetime.fromisoformat(request["requested_at"]) == nominal


async def test_changing_only_the_jitter_keeps_the_next_tick(
    sqlite_catalog: Database, clock: SetClock
) -> None:
    cid = await new_collection(sqlite_catalog, clock, "*/15 * * * *")
    async with UnitOfWork(sqlite_catalog) as uow:
        found = await uow.collections.get(cid)
        assert found is not None
        await uow.collections.update(
            found,
            schedule_cron=found.schedule_cron,
            schedule_timezone="UTC",
            is_enabled=True,
            schedule_jitter_s=60,
        )
        await uow.schedules.sync_collection(found, cid, clock.now)
        await uow.commit()
    row = await schedule(sqlite_catalog, f"collection::{cid}")
    nominal = datetime(2026, 6, 1, 9, 15, tzinfo=UTC)
    assert (row.next_fire_at, row.jitter_s) == (nominal, 60)
    assert row.due_at == nominal + jitter_for(row.id, nominal, 60)


# --- batches ------------------------------------------------------------------------------------


async def test_many_schedules_sharing_a_tick_fire_once_each_across_batches(
    sqlite_catalog: Database, clock: SetClock
) -> None:
    ticker = make_ticker(sqlite_catalog, clock, batch_size=40)
    ids = [await new_collection(sqlite_catalog, clock, "0 * * * *") for _ in range(101)]
    clock.now = datetime(2026, 6, 1, 10, 0, 0, 200_000, tzinfo=UTC)
    assert await ticker.tick() == 101
    assert await ticker.tick() == 0
    requests = await pending(sqlite_catalog, "freshet.collection.requested")
    assert sorted(r["collection_id"] for r in requests) == sorted(str(i) for i in ids)
    async with UnitOfWork(sqlite_catalog, read_only=True) as uow:
        rows = [await uow.schedules.for_collection(i) for i in ids]
    assert {r.next_fire_at for r in rows if r} == {datetime(2026, 6, 1, 11, tzinfo=UTC)}


async def test_a_batch_the_database_refuses_is_fired_again_one_by_one(
    sqlite_catalog: Database, clock: SetClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when a trigger makes a collection active between the check and the insert (possible
    on PostgreSQL): the batch is refused as a whole, and each schedule fires on its own."""
    from freshet.catalog.runs import RunRepository

    ticker = make_ticker(sqlite_catalog, clock)
    ids = [await new_collection(sqlite_catalog, clock, "0 * * * *") for _ in range(3)]
    async with UnitOfWork(sqlite_catalog) as uow:
        busy = await uow.collections.get(ids[1])
        assert busy is not None
        active = await uow.runs.add(
            collection_id=busy.id, endpoint_id=busy.endpoint_id, trigger_source="api"
        )
        await uow.commit()
    real = RunRepository.collections_with_active_run
    calls = 0

    async def stale_once(self: RunRepository, ids: Any) -> set[uuid.UUID]:
        nonlocal calls
        calls += 1
        return set() if calls == 1 else await real(self, ids)

    monkeypatch.setattr(RunRepository, "collections_with_active_run", stale_once)
    clock.now = datetime(2026, 6, 1, 10, 0, 1, tzinfo=UTC)
    assert await ticker.tick() == 3
    async with UnitOfWork(sqlite_catalog, read_only=True) as uow:
        statuses = {
            cid: [r.status for r in await uow.runs.find(collection_id=cid) if r.id != active.id]
            for cid in ids
        }
    assert statuses == {ids[0]: ["QUEUED"], ids[1]: ["SKIPPED"], ids[2]: ["QUEUED"]}


# --- interval schedules -------------------------------------------------------------------------


def test_interval_ticks_are_phase_shifted_per_schedule_and_periodic() -> None:
    after = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    first = next_interval_tick("table-refresh::a", 3600, after)
    assert after < first <= after + timedelta(hours=1)
    assert next_interval_tick("table-refresh::a", 3600, first) == first + timedelta(hours=1)
    phases = {next_interval_tick(f"table-refresh::{i}", 3600, after) for i in range(50)}
    assert len(phases) > 40, "tables refreshed hourly spread over the hour"


async def test_a_table_refresh_schedule_asks_the_refresher_once_per_tick(
    sqlite_catalog: Database, clock: SetClock
) -> None:
    ticker = make_ticker(sqlite_catalog, clock)
    endpoint_id, tables = await new_endpoint_with_tables(sqlite_catalog, "orders")
    async with UnitOfWork(sqlite_catalog) as uow:
        await uow.schedules.set_table_refresh(tables["orders"], 600, clock.now)
        await uow.commit()
    sid = table_refresh_schedule_id(tables["orders"])
    first = (await schedule(sqlite_catalog, sid)).next_fire_at
    clock.now = first + timedelta(seconds=1)
    assert await ticker.tick() == 1
    clock.now = first + timedelta(seconds=601)
    assert await ticker.tick() == 1
    requests = await pending(sqlite_catalog, "freshet.refresh.requested")
    assert [r["refresh_id"] for r in requests] == [
        str(scheduled_run_id(sid, first)),
        str(scheduled_run_id(sid, first + timedelta(seconds=600))),
    ]
    assert {(r["endpoint_id"], tuple(r["tables"]), r["trigger_source"]) for r in requests} == {
        (str(endpoint_id), ("main.orders",), "schedule")
    }
    # Saying the same interval again (every scheduler start, say) keeps the next tick.
    before = (await schedule(sqlite_catalog, sid)).next_fire_at
    async with UnitOfWork(sqlite_catalog) as uow:
        await uow.schedules.set_table_refresh(tables["orders"], 600, clock.now)
        await uow.commit()
    assert (await schedule(sqlite_catalog, sid)).next_fire_at == before
    async with UnitOfWork(sqlite_catalog) as uow:
        await uow.schedules.set_table_refresh(tables["orders"], None, clock.now)
        await uow.commit()
    assert await schedule(sqlite_catalog, sid) is None


async def test_a_removed_table_is_not_refreshed_and_a_deleted_one_loses_its_schedule(
    sqlite_catalog: Database, clock: SetClock
) -> None:
    ticker = make_ticker(sqlite_catalog, clock)
    endpoint_id, tables = await new_endpoint_with_tables(sqlite_catalog, "a", "b")
    async with UnitOfWork(sqlite_catalog) as uow:
        for dataset_id in tables.values():
            await uow.schedules.set_table_refresh(dataset_id, 600, clock.now)
        await uow.datasets.sync(
            endpoint_id=endpoint_id, endpoint_kind="sqlite", run_id=uuid.uuid4(), specs=[spec("b")]
        )  # "a" vanished from the source
        await uow.commit()
    first_ticks = [
        (await schedule(sqlite_catalog, table_refresh_schedule_id(d))).due_at
        for d in tables.values()
    ]
    for due in sorted(first_ticks):
        clock.now = due
        await ticker.tick()
    assert [r["tables"] for r in await pending(sqlite_catalog, "freshet.refresh.requested")] == [
        ["main.b"]
    ]
    async with UnitOfWork(sqlite_catalog) as uow:
        assert await uow.endpoints.delete(endpoint_id)
        await uow.commit()
    assert await schedule(sqlite_catalog, table_refresh_schedule_id(tables["b"])) is None


async def test_the_preview_sweep_requests_stale_and_never_sampled_previews_only(
    sqlite_catalog: Database, clock: SetClock
) -> None:
    ticker = make_ticker(sqlite_catalog, clock)
    _, auto = await new_endpoint_with_tables(sqlite_catalog, "fresh", "stale", "never", "opted_out")
    _, manual = await new_endpoint_with_tables(sqlite_catalog, "m", policy="manual")
    _, disabled = await new_endpoint_with_tables(sqlite_catalog, "d", policy="disabled")
    await set_preview(sqlite_catalog, auto["fresh"], START - timedelta(hours=1))
    await set_preview(sqlite_catalog, auto["stale"], START - timedelta(hours=30))
    async with UnitOfWork(sqlite_catalog) as uow:
        opted = await uow.datasets.get(auto["opted_out"], for_update=True)
        assert opted is not None
        opted.payload = {**opted.payload, "previewOptOut": True}
        await uow.schedules.set_interval(PREVIEW_SWEEP_ID, PREVIEW_SWEEP, 3600, clock.now)
        await uow.commit()
    clock.now = (await schedule(sqlite_catalog, PREVIEW_SWEEP_ID)).next_fire_at
    assert await ticker.tick() == 1
    requests = await pending(sqlite_catalog, "freshet.preview.requested")
    assert [r["dataset_id"] for r in requests] == [str(auto["never"]), str(auto["stale"])]
    assert {(r["refresh_source"], r["requested_by"]) for r in requests} == {
        ("schedule", PREVIEW_SWEEP_ID)
    }
    assert not {str(manual["m"]), str(disabled["d"])} & {r["dataset_id"] for r in requests}


async def test_the_preview_sweep_asks_for_at_most_its_batch_oldest_first(
    sqlite_catalog: Database, clock: SetClock
) -> None:
    ticker = make_ticker(sqlite_catalog, clock, sweep_batch=2)
    _, tables = await new_endpoint_with_tables(sqlite_catalog, "t1", "t2", "t3")
    for hours, name in ((48, "t1"), (72, "t2"), (30, "t3")):
        await set_preview(sqlite_catalog, tables[name], START - timedelta(hours=hours))
    async with UnitOfWork(sqlite_catalog) as uow:
        await uow.schedules.set_interval(PREVIEW_SWEEP_ID, PREVIEW_SWEEP, 3600, clock.now)
        await uow.commit()
    clock.now = (await schedule(sqlite_catalog, PREVIEW_SWEEP_ID)).next_fire_at
    await ticker.tick()
    requests = await pending(sqlite_catalog, "freshet.preview.requested")
    assert [r["dataset_id"] for r in requests] == [str(tables["t2"]), str(tables["t1"])]


async def test_interval_ticks_missed_in_downtime_are_counted_not_fired(
    sqlite_catalog: Database, clock: SetClock
) -> None:
    ticker = make_ticker(sqlite_catalog, clock)
    _, tables = await new_endpoint_with_tables(sqlite_catalog, "t")
    async with UnitOfWork(sqlite_catalog) as uow:
        await uow.schedules.set_table_refresh(tables["t"], 600, clock.now)
        await uow.commit()
    sid = table_refresh_schedule_id(tables["t"])
    first = (await schedule(sqlite_catalog, sid)).next_fire_at
    clock.now = first + timedelta(seconds=1805)  # first, +600, +1200, +1800 missed
    assert await ticker.tick() == 0
    row = await schedule(sqlite_catalog, sid)
    assert row.missed_ticks == 4
    assert row.next_fire_at == first + timedelta(seconds=2400)
    assert await pending(sqlite_catalog, "freshet.refresh.requested") == []
