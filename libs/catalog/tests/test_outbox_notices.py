"""The relay's wake-ups from other processes: a commit that adds outbox rows is noticed; other
commits (lease renewals, run updates) are not, so an idle relay does not read the outbox for
nothing. Every test runs on SQLite (the probe) and PostgreSQL (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from freshet.catalog import Database, UnitOfWork, outbox_notices
from freshet.catalog.clock import utcnow
from freshet.catalog.outbox_notices import OutboxNotices
from freshet.contracts import CollectionChanged


@pytest.fixture
async def databases(catalog_url: str) -> AsyncIterator[tuple[Database, Database]]:
    """The relay's process and another one: two engines, so two sets of connections."""
    mine, other = Database(catalog_url), Database(catalog_url)
    yield mine, other
    await mine.dispose()
    await other.dispose()


async def commit_an_event(db: Database) -> None:
    async with UnitOfWork(db) as uow:
        changed = CollectionChanged(
            collection_id=uuid.uuid4(), endpoint_id=uuid.uuid4(), changed_at=utcnow()
        )
        await uow.outbox.add(changed, source="/test")
        await uow.commit()


async def notices_during(notices: asyncio.Queue[None], seconds: float) -> int:
    await asyncio.sleep(seconds)
    count = 0
    while not notices.empty():
        notices.get_nowait()
        count += 1
    return count


async def test_outbox_rows_committed_elsewhere_are_noticed_and_other_commits_are_not(
    databases: tuple[Database, Database],
) -> None:
    mine, other = databases
    queue: asyncio.Queue[None] = asyncio.Queue()
    notices = OutboxNotices(mine, lambda: queue.put_nowait(None), probe_interval_s=0.02)
    await notices.start()
    try:
        await notices_during(queue, 0.5)  # whatever starting costs (a first look)

        for _ in range(5):
            async with UnitOfWork(other) as uow:
                await uow.leases.try_acquire("some-lease", "other", timedelta(seconds=5))
                await uow.commit()
            await asyncio.sleep(0.05)
        quiet = await notices_during(queue, 0.3)

        await commit_an_event(other)
        noticed = await notices_during(queue, 1.0)
    finally:
        await notices.stop()

    assert quiet == 0, "commits without outbox rows woke the relay"
    assert noticed >= 1, "an outbox row committed by another process went unnoticed"


async def test_an_idle_probe_stops_polling_and_still_notices_the_next_event(
    sqlite_catalog: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite only: PostgreSQL notifies, there is no probe to go idle.
    mine, other = sqlite_catalog, Database(str(sqlite_catalog.url))
    looks = 0
    real = outbox_notices._data_version

    def counted(conn: sqlite3.Connection) -> int:
        nonlocal looks
        looks += 1
        return real(conn)

    monkeypatch.setattr(outbox_notices, "_data_version", counted)
    monkeypatch.setattr(outbox_notices, "IDLE_AFTER_S", 0.2)
    queue: asyncio.Queue[None] = asyncio.Queue()
    notices = OutboxNotices(mine, lambda: queue.put_nowait(None), probe_interval_s=0.02)
    await notices.start()
    try:
        await notices_during(queue, 0.5)  # polled, then idle
        before = looks
        await asyncio.sleep(1.0)
        idle_looks = looks - before

        await commit_an_event(other)
        noticed = await notices_during(queue, 1.0)
    finally:
        await notices.stop()
        await other.dispose()

    assert idle_looks <= 2, f"an idle probe looked {idle_looks} times in a second"
    assert noticed >= 1, "the first event after a quiet spell went unnoticed"
