"""/datasets: the catalog's datasets with columns, edges and their latest preview."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from freshet.gateway import errors
from freshet.gateway.deps import ReadUow, Viewer
from freshet.gateway.schemas import DatasetOut

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.get("")
async def list_datasets(
    uow: ReadUow,
    _: Viewer,
    endpoint_id: uuid.UUID | None = None,
    first: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[DatasetOut]:
    return [DatasetOut.of(d) for d in await uow.datasets.find(endpoint_id=endpoint_id, limit=first)]


@router.get("/{dataset_id}")
async def get_dataset(dataset_id: uuid.UUID, uow: ReadUow, _: Viewer) -> DatasetOut:
    dataset = await uow.datasets.get(dataset_id)
    if dataset is None:
        raise errors.DatasetNotFound(f"dataset {dataset_id} does not exist")
    return DatasetOut.of(dataset, await uow.datasets.edges_of(dataset.id))
