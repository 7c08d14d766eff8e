"""The scheduler follows collection changes from the catalog's truth, not the event's copy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from freshet.catalog import Database, UnitOfWork
from freshet.contracts import CollectionChanged
from freshet.devstack.testing import envelope_of
from freshet.scheduler.handlers import handle_collection_changed


async def test_a_change_for_an_unknown_collection_makes_no_schedule(
    sqlite_catalog: Database,
) -> None:
    woken: list[bool] = []
    event = CollectionChanged(
        collection_id=uuid.uuid4(),
        endpoint_id=uuid.uuid4(),
        schedule_cron="*/10 * * * *",
        changed_at=datetime.now(UTC),
    )
    await handle_collection_changed(envelope_of(event), sqlite_catalog, lambda: woken.append(True))
    async with UnitOfWork(sqlite_catalog, read_only=True) as uow:
        assert await uow.schedules.all() == []
    assert woken == [True], "the ticker is woken to look again"


async def test_a_stale_event_cannot_undo_a_newer_change(sqlite_catalog: Database) -> None:
    async with UnitOfWork(sqlite_catalog) as uow:
        endpoint = await uow.endpoints.add(name="ep", kind="sqlite", config={"path": "/x.db"})
        collection = await uow.collections.add(endpoint_id=endpoint.id, schedule_cron="0 * * * *")
        await uow.commit()
    # An old event said "manual only"; the row says hourly: the row wins.
    stale = CollectionChanged(
        collection_id=collection.id, endpoint_id=endpoint.id, changed_at=datetime.now(UTC)
    )
    await handle_collection_changed(envelope_of(stale), sqlite_catalog)
    async with UnitOfWork(sqlite_catalog, read_only=True) as uow:
        schedule = await uow.schedules.for_collection(collection.id)
    assert schedule is not None
    assert schedule.cron == "0 * * * *"
