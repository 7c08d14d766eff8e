"""/collections: create, change, delete (admin), read (viewer), trigger (operator)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from freshet.catalog import RunStatus
from freshet.catalog.runs import RunFilter
from freshet.gateway.deps import AdminCaller, OperatorCaller, ReadUow, Uow, Viewer
from freshet.gateway.schemas import (
    CollectionCreate,
    CollectionOut,
    CollectionUpdate,
    RunOut,
    TriggerRequest,
)
from freshet.gateway.service_layer import collections, runs

router = APIRouter(prefix="/collections", tags=["collections"])

First = Annotated[int, Query(ge=1, le=500, description="Page size.")]
After = Annotated[str | None, Query(max_length=500, description="A `cursor` of the last page.")]


@router.get("")
async def list_collections(
    uow: ReadUow,
    _: Viewer,
    endpoint_id: uuid.UUID | None = None,
    is_enabled: bool | None = None,
    first: First = 50,
    after: After = None,
) -> list[CollectionOut]:
    found = await collections.list_collections(
        uow, endpoint_id=endpoint_id, is_enabled=is_enabled, first=first, after=after
    )
    return [CollectionOut.of(c) for c in found]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_collection(body: CollectionCreate, uow: Uow, caller: AdminCaller) -> CollectionOut:
    """One collection per endpoint; a second is E_VALIDATION."""
    return CollectionOut.of(await collections.create_collection(uow, caller, body))


@router.get("/{collection_id}")
async def get_collection(collection_id: uuid.UUID, uow: ReadUow, _: Viewer) -> CollectionOut:
    return CollectionOut.of(await collections.get_collection(uow, collection_id))


@router.patch("/{collection_id}")
async def update_collection(
    collection_id: uuid.UUID, body: CollectionUpdate, uow: Uow, caller: AdminCaller
) -> CollectionOut:
    """Change the fields sent; `schedule_cron: null` makes it manual-only."""
    return CollectionOut.of(await collections.update_collection(uow, caller, collection_id, body))


@router.delete("/{collection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_collection(collection_id: uuid.UUID, uow: Uow, caller: AdminCaller) -> Response:
    """Delete the collection and its schedule; an active run is cancelled; history stays."""
    await collections.delete_collection(uow, caller, collection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{collection_id}/trigger", status_code=status.HTTP_202_ACCEPTED)
async def trigger_collection(
    collection_id: uuid.UUID,
    uow: Uow,
    caller: OperatorCaller,
    body: TriggerRequest | None = Body(default=None),  # noqa: B008 - FastAPI's way
) -> RunOut:
    """Queue a run. E_COLLECTION_DISABLED, E_COLLECTION_IN_PROGRESS when one is active."""
    run = await collections.trigger_collection(
        uow, caller, collection_id, filters=body.filters if body else None
    )
    return RunOut.of(run)


@router.get("/{collection_id}/runs")
async def list_collection_runs(
    collection_id: uuid.UUID,
    uow: ReadUow,
    _: Viewer,
    status_: Annotated[RunStatus | None, Query(alias="status")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    first: First = 50,
    after: After = None,
) -> list[RunOut]:
    """The collection's runs, newest first."""
    await collections.get_collection(uow, collection_id)
    where = RunFilter(
        collection_id=collection_id,
        statuses=[status_] if status_ else None,
        requested_from=from_,
        requested_to=to,
    )
    return [RunOut.of(r) for r in await runs.list_runs(uow, where, first=first, after=after)]
