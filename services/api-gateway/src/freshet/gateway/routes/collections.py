"""/collections and /runs: read collections, trigger them, follow their runs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from freshet.catalog import RunStatus
from freshet.gateway import commands, errors
from freshet.gateway.deps import CorrelationId, Operator, ReadUow, Runtime, Uow, Viewer
from freshet.gateway.schemas import CollectionOut, RunOut

router = APIRouter(tags=["collections"])


@router.get("/collections")
async def list_collections(uow: ReadUow, _: Viewer) -> list[CollectionOut]:
    return [CollectionOut.of(c) for c in await uow.collections.all()]


@router.get("/collections/{collection_id}")
async def get_collection(collection_id: uuid.UUID, uow: ReadUow, _: Viewer) -> CollectionOut:
    collection = await uow.collections.get(collection_id)
    if collection is None:
        raise errors.CollectionNotFound(f"collection {collection_id} does not exist")
    return CollectionOut.of(collection)


@router.post("/collections/{collection_id}/trigger", status_code=status.HTTP_202_ACCEPTED)
async def trigger_collection(
    collection_id: uuid.UUID, uow: Uow, runtime: Runtime, cid: CorrelationId, who: Operator
) -> RunOut:
    run = await commands.trigger_collection(
        uow, collection_id, who, trigger_source="manual", source=runtime.source, correlation_id=cid
    )
    return RunOut.of(run)


@router.get("/collections/{collection_id}/runs")
async def list_runs(
    collection_id: uuid.UUID,
    uow: ReadUow,
    _: Viewer,
    status_: Annotated[RunStatus | None, Query(alias="status")] = None,
    first: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[RunOut]:
    if await uow.collections.get(collection_id) is None:
        raise errors.CollectionNotFound(f"collection {collection_id} does not exist")
    runs = await uow.runs.find(
        collection_id=collection_id, statuses=[status_] if status_ else None, limit=first
    )
    return [RunOut.of(r) for r in runs]


@router.get("/runs/{run_id}")
async def get_run(run_id: uuid.UUID, uow: ReadUow, _: Viewer) -> RunOut:
    run = await uow.runs.get(run_id)
    if run is None:
        raise errors.RunNotFound(f"run {run_id} does not exist")
    return RunOut.of(run)
