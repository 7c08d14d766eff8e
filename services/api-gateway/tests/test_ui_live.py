"""The live-update hub: changes reach every open stream once, whether an event or the poll of
active runs noticed them; closing ends the streams."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.contracts import RunCompleted
from freshet.gateway.ui.live import (
    REPLAY_S,
    LiveRefreshes,
    LiveRuns,
    RefreshChange,
    RunChange,
)

CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
Trigger = Callable[[str], Awaitable[dict[str, Any]]]
MoveRun = Callable[..., Awaitable[None]]
SyncDatasets = Callable[..., Awaitable[dict[str, str]]]


def change(status: str, run_id: str = "r1") -> RunChange:
    return RunChange(run_id=run_id, collection_id="c1", endpoint_id="e1", status=status)


async def next_change(queue: asyncio.Queue[RunChange | None]) -> RunChange | None:
    return await asyncio.wait_for(queue.get(), 10)


async def test_a_change_reaches_every_listener_once(catalog: Database) -> None:
    hub = LiveRuns(catalog, poll_s=60)
    async with hub.listen() as first, hub.listen() as second:
        hub.publish(change("RUNNING"), "poll")
        hub.publish(change("RUNNING"), "event")
        hub.publish(change("SUCCEEDED"), "event")

        for queue in (first, second):
            assert await next_change(queue) == change("RUNNING")
            assert await next_change(queue) == change("SUCCEEDED")
            assert queue.empty()
    assert hub.listeners == 0


async def test_a_page_that_connects_late_gets_the_changes_made_since_it_was_read(
    catalog: Database,
) -> None:
    # A page read at t=1000 while r1 was QUEUED connects after another page's stream saw r1
    # start and r2 end; without the catch-up it would show r1 QUEUED until r1 ends.
    now = [990.0]
    hub = LiveRuns(catalog, poll_s=60, clock=lambda: now[0])
    async with hub.listen():
        hub.publish(change("SUCCEEDED", run_id="r0"), "event")  # before the page: it shows it
        hub.publish(change("QUEUED"), "poll")
        now[0] = 1_001.0
        hub.publish(change("RUNNING"), "poll")
        hub.publish(change("SUCCEEDED", run_id="r2"), "event")

        async with hub.listen(since=1_000.0) as late:
            replayed = [late.get_nowait() for _ in range(late.qsize())]
        async with hub.listen() as unnamed:
            assert unnamed.empty()
        now[0] = 1_001.0 + REPLAY_S + 1
        async with hub.listen(since=1_000.0) as too_late:
            assert too_late.empty()

    # The newest state of each item changed since the page was read, in order.
    assert replayed == [change("RUNNING"), change("SUCCEEDED", run_id="r2")]


async def test_a_finished_run_event_becomes_a_change() -> None:
    run_id, collection_id, endpoint_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    event = RunCompleted(
        run_id=run_id,
        collection_id=collection_id,
        endpoint_id=endpoint_id,
        status="FAILED",
        trigger_source="api",
        requested_at=datetime.now(UTC),
        completed_at=datetime.now(UTC),
        error="boom",
    )

    assert RunChange.of_event(event) == RunChange(
        str(run_id), str(collection_id), str(endpoint_id), "FAILED"
    )


async def test_the_poll_announces_runs_starting_and_finishing_without_events(
    catalog: Database, create_endpoint: CreateEndpoint, trigger: Trigger, move_run: MoveRun
) -> None:
    endpoint = await create_endpoint()
    hub = LiveRuns(catalog, poll_s=0.05)
    async with hub.listen() as queue:
        run = await trigger(endpoint["collection_id"])
        queued = await next_change(queue)
        await move_run(run["id"], RunStatus.RUNNING)
        running = await next_change(queue)
        await move_run(run["id"], RunStatus.SUCCEEDED)
        succeeded = await next_change(queue)

    assert [c.status for c in (queued, running, succeeded) if c] == [
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
    ]
    assert succeeded is not None
    assert succeeded.run_id == run["id"]
    assert succeeded.endpoint_id == endpoint["id"]


async def test_closing_ends_open_and_later_streams(catalog: Database) -> None:
    hub = LiveRuns(catalog, poll_s=60)
    async with hub.listen() as queue:
        hub.close()
        assert await next_change(queue) is None
    async with hub.listen() as late:
        assert await next_change(late) is None


async def test_a_listener_that_falls_behind_keeps_the_newest_changes(catalog: Database) -> None:
    hub = LiveRuns(catalog, poll_s=60)
    async with hub.listen() as queue:
        for i in range(300):
            hub.publish(change("SUCCEEDED", run_id=f"r{i}"), "event")
        kept = [queue.get_nowait() for _ in range(queue.qsize())]

    assert len(kept) == 256
    assert kept[-1] == change("SUCCEEDED", run_id="r299")


async def test_the_refresh_feed_announces_jobs_as_their_tables_move(
    catalog: Database, create_endpoint: CreateEndpoint, sync_datasets: SyncDatasets
) -> None:
    endpoint = await create_endpoint()
    tables = await sync_datasets(endpoint["id"])
    hub = LiveRefreshes(catalog, poll_s=0.05)
    async with hub.listen() as queue:
        async with UnitOfWork(catalog) as uow:
            datasets = list(
                (await uow.datasets.many(uuid.UUID(t) for t in tables.values())).values()
            )
            job = await uow.refreshes.start_job(
                uuid.UUID(endpoint["id"]), datasets, trigger_source="api", requested_by="x"
            )
            await uow.commit()
        started = await next_refresh(queue)
        async with UnitOfWork(catalog) as uow:
            await uow.refreshes.finish_item(
                job.id, uuid.UUID(tables["orders"]), "succeeded", utcnow(), rows=3, size=30
            )
            await uow.commit()
        one_done = await next_refresh(queue)
        async with UnitOfWork(catalog) as uow:
            await uow.refreshes.finish_item(
                job.id, uuid.UUID(tables["customers"]), "failed", utcnow(), error="boom"
            )
            await uow.commit()
        ended = await next_refresh(queue)

    assert started == RefreshChange(str(job.id), endpoint["id"], "in_progress", 2, 0, 0, 0)
    assert one_done == RefreshChange(str(job.id), endpoint["id"], "in_progress", 2, 0, 1, 0)
    # The job left the open ones: the feed reads it once more to announce how it ended.
    assert ended == RefreshChange(str(job.id), endpoint["id"], "completed", 2, 0, 1, 1)


async def next_refresh(queue: asyncio.Queue[RefreshChange | None]) -> RefreshChange | None:
    return await asyncio.wait_for(queue.get(), 10)
