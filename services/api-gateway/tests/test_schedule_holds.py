"""POST /schedules/{id}/pause and /resume: an operator's hold, kept across collection edits."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx

from freshet.catalog import Database, UnitOfWork
from freshet.catalog.clock import utcnow


async def scheduled(client: httpx.AsyncClient, auth: Any, create_endpoint: Any) -> dict[str, Any]:
    endpoint = await create_endpoint(f"held-{uuid.uuid4().hex[:6]}")
    response = await client.patch(
        f"/collections/{endpoint['collection_id']}",
        json={"schedule_cron": "0 3 * * *"},
        headers=auth("admin"),
    )
    assert response.status_code == 200, response.text
    return dict(endpoint)


async def sync(catalog: Database, collection_id: str) -> None:
    """What the scheduler does on CollectionChanged."""
    async with UnitOfWork(catalog) as uow:
        collection = await uow.collections.get(uuid.UUID(collection_id))
        await uow.schedules.sync_collection(collection, uuid.UUID(collection_id), utcnow())
        await uow.commit()


async def test_a_held_schedule_stays_paused_through_collection_edits_until_resumed(
    client: httpx.AsyncClient, auth: Any, create_endpoint: Any, catalog: Database
) -> None:
    endpoint = await scheduled(client, auth, create_endpoint)
    await sync(catalog, endpoint["collection_id"])
    schedule_id = f"collection::{endpoint['collection_id']}"

    paused = await client.post(f"/schedules/{schedule_id}/pause", headers=auth("operator"))
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    assert paused.json()["paused_by"] == "otto-operator"
    again = await client.post(f"/schedules/{schedule_id}/pause", headers=auth("admin"))
    assert again.json()["paused_by"] == "otto-operator"

    # An edit of the collection re-derives the schedule; the hold survives it.
    await client.patch(
        f"/collections/{endpoint['collection_id']}",
        json={"schedule_cron": "0 4 * * *"},
        headers=auth("admin"),
    )
    await sync(catalog, endpoint["collection_id"])
    async with UnitOfWork(catalog) as uow:
        row = await uow.schedules.get(schedule_id)
        assert row is not None
        assert row.paused
        assert await uow.schedules.due(utcnow() + timedelta(days=3)) == []

    resumed = await client.post(f"/schedules/{schedule_id}/resume", headers=auth("operator"))
    assert resumed.json()["paused"] is False
    assert resumed.json()["paused_by"] is None
    # Ticks of the pause are not fired: the next one is after now.
    next_fire = resumed.json()["next_fire_at"]
    assert next_fire is not None
    listed = (await client.get("/schedules", headers=auth("viewer"))).json()
    assert [s["paused"] for s in listed if s["id"] == schedule_id] == [False]


async def test_resuming_a_disabled_collections_schedule_keeps_it_paused(
    client: httpx.AsyncClient, auth: Any, create_endpoint: Any, catalog: Database
) -> None:
    endpoint = await scheduled(client, auth, create_endpoint)
    await sync(catalog, endpoint["collection_id"])
    schedule_id = f"collection::{endpoint['collection_id']}"
    await client.post(f"/schedules/{schedule_id}/pause", headers=auth("operator"))
    await client.patch(
        f"/collections/{endpoint['collection_id']}",
        json={"is_enabled": False},
        headers=auth("admin"),
    )
    await sync(catalog, endpoint["collection_id"])

    resumed = await client.post(f"/schedules/{schedule_id}/resume", headers=auth("operator"))

    assert resumed.json()["paused"] is True
    assert resumed.json()["paused_by"] is None


async def test_interval_schedules_are_listed_and_held_too(
    client: httpx.AsyncClient, auth: Any, catalog: Database
) -> None:
    async with UnitOfWork(catalog) as uow:
        await uow.schedules.set_interval("preview-sweep", "preview-sweep", 3600, utcnow())
        await uow.commit()

    listed = (await client.get("/schedules", headers=auth("viewer"))).json()
    assert [(s["id"], s["cron"], s["interval_s"]) for s in listed] == [
        ("preview-sweep", None, 3600)
    ]
    paused = await client.post("/schedules/preview-sweep/pause", headers=auth("operator"))
    assert paused.json()["paused"] is True
    resumed = await client.post("/schedules/preview-sweep/resume", headers=auth("operator"))
    assert resumed.json()["paused"] is False


async def test_an_unknown_schedule_is_404(
    client: httpx.AsyncClient, auth: Any, expect_error: Any
) -> None:
    expect_error(
        await client.post("/schedules/collection::nope/pause", headers=auth("operator")),
        404,
        "E_SCHEDULE_NOT_FOUND",
    )
