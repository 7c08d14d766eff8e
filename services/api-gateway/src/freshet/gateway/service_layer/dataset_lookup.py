"""Datasets: search, one dataset with its edges, and how old its stored preview is."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from freshet.catalog import Dataset, DatasetEdge, UnitOfWork
from freshet.catalog.dataset_search import DatasetQuery, search_datasets
from freshet.catalog.datasets import preview_time
from freshet.gateway import errors


async def search(
    uow: UnitOfWork, query: DatasetQuery, *, first: int = 50, after: str | None = None
) -> list[Dataset]:
    try:
        return await search_datasets(uow.session, query, first=first, after=after)
    except ValueError:
        raise errors.ValidationFailed(
            "after is not a cursor from this list",
            details=[{"loc": ["input", "after"], "msg": "invalid cursor"}],
        ) from None


async def get_dataset(uow: UnitOfWork, dataset_id: uuid.UUID) -> tuple[Dataset, list[DatasetEdge]]:
    dataset = await uow.datasets.get(dataset_id)
    if dataset is None:
        raise errors.DatasetNotFound(f"dataset {dataset_id} does not exist")
    return dataset, await uow.datasets.edges_of(dataset.id)


@dataclass(frozen=True)
class PreviewAge:
    """The stored preview's time and whether it is older than the staleness window."""

    sampled_at: datetime | None
    age: timedelta | None
    stale: bool


def preview_age(preview: dict[str, Any] | None, *, staleness_s: float, now: datetime) -> PreviewAge:
    try:
        sampled_at = preview_time(preview)
    except ValueError:
        sampled_at = None  # an outside sampler's malformed time: shown as unknown, not a crash
    if sampled_at is None:
        return PreviewAge(None, None, stale=preview is not None)
    if sampled_at.tzinfo is None:
        sampled_at = sampled_at.replace(tzinfo=UTC)  # the catalog's zone
    age = now - sampled_at
    return PreviewAge(sampled_at, age, stale=age.total_seconds() > staleness_s)
