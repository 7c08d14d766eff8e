"""Refresh jobs and cached tables as overviews read them: many jobs at once, newest first by
keyset pages, with their progress and a bounded sample of their tables; every table that has
cache settings or a cache, with its names.

Reads only; the refresh workflow itself is `freshet.catalog.refreshes`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.cursors import encode_cursor, older_than
from freshet.catalog.models import Dataset, Endpoint, RefreshItem, RefreshJob, TableCache
from freshet.catalog.refreshes import JOB_OPEN, SUCCEEDED, Progress


@dataclass(frozen=True)
class JobFilter:
    endpoint_id: uuid.UUID | None = None
    # True: queued or in progress; False: finished; None: both.
    open: bool | None = None


def job_cursor(requested_at: datetime, refresh_id: uuid.UUID) -> str:
    """The cursor of the page after the job requested at `requested_at` with this id."""
    return encode_cursor(requested_at.isoformat(), str(refresh_id))


async def find_jobs(
    session: AsyncSession, where: JobFilter, *, first: int = 25, after: str | None = None
) -> list[RefreshJob]:
    """Jobs newest first (requested_at, id), `first` of them after the cursor `after`;
    ValueError for a cursor that is not one of ours."""
    stmt = select(RefreshJob).order_by(RefreshJob.requested_at.desc(), RefreshJob.id.desc())
    if where.endpoint_id is not None:
        stmt = stmt.where(RefreshJob.endpoint_id == where.endpoint_id)
    if where.open is True:
        stmt = stmt.where(RefreshJob.status.in_(JOB_OPEN))
    elif where.open is False:
        stmt = stmt.where(RefreshJob.status.not_in(JOB_OPEN))
    if after is not None:
        stmt = stmt.where(older_than(after, RefreshJob.requested_at, RefreshJob.id))
    return list((await session.execute(stmt.limit(first))).scalars())


async def progress_of(
    session: AsyncSession, refresh_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Progress]:
    """Each job's items counted by status, in one query (`RefreshRepository.progress` for many)."""
    ids = list(refresh_ids)
    found: dict[uuid.UUID, Progress] = {job_id: Progress() for job_id in ids}
    if not ids:
        return found
    result = await session.execute(
        select(
            RefreshItem.refresh_id,
            RefreshItem.status,
            func.count(),
            func.coalesce(func.sum(RefreshItem.rows), 0),
            func.coalesce(func.sum(RefreshItem.bytes), 0),
        )
        .where(RefreshItem.refresh_id.in_(ids))
        .group_by(RefreshItem.refresh_id, RefreshItem.status)
    )
    for job_id, status, count, rows, size in result.all():
        progress = found[job_id]
        setattr(progress, str(status), int(count))
        progress.total += int(count)
        if status == SUCCEEDED:
            progress.rows += int(rows or 0)
            progress.bytes += int(size or 0)
    return found


# What an overview of a big job shows first: what is moving, then what went wrong.
_SHOWN_FIRST = case(
    (RefreshItem.status == "running", 0),
    (RefreshItem.status == "failed", 1),
    (RefreshItem.status.in_(("queued", "waiting")), 2),
    else_=3,
)


async def items_of(
    session: AsyncSession, refresh_ids: Iterable[uuid.UUID], *, per_job: int
) -> dict[uuid.UUID, list[RefreshItem]]:
    """At most `per_job` tables of each job (running, failed, waiting, then the rest, each by
    name), in one query: a connection job of thousands of tables stays a bounded read."""
    ids = list(refresh_ids)
    found: dict[uuid.UUID, list[RefreshItem]] = {job_id: [] for job_id in ids}
    if not ids:
        return found
    rank = (
        func.row_number()
        .over(
            partition_by=RefreshItem.refresh_id,
            order_by=(_SHOWN_FIRST, RefreshItem.schema_name, RefreshItem.table_name),
        )
        .label("rank")
    )
    ranked = select(RefreshItem.refresh_id, RefreshItem.dataset_id, rank).where(
        RefreshItem.refresh_id.in_(ids)
    )
    sub = ranked.subquery()
    result = await session.execute(
        select(RefreshItem)
        .join(
            sub,
            and_(
                sub.c.refresh_id == RefreshItem.refresh_id,
                sub.c.dataset_id == RefreshItem.dataset_id,
            ),
        )
        .where(sub.c.rank <= per_job)
        .order_by(sub.c.rank)
    )
    for item in result.scalars():
        found[item.refresh_id].append(item)
    return found


@dataclass(frozen=True)
class CachedTable:
    """A table with cache settings or a cache, and the names it is known by."""

    cache: TableCache
    dataset: Dataset
    endpoint_name: str
    # The endpoint's lazy fetch, which the table follows unless it has its own.
    endpoint_lazy_fetch: bool


async def cached_tables(
    session: AsyncSession, *, endpoint_id: uuid.UUID | None = None, first: int = 200
) -> list[CachedTable]:
    """Tables of live datasets with a cache row, by endpoint, schema and table name."""
    stmt = (
        select(TableCache, Dataset, Endpoint.name, Endpoint.cache_lazy_fetch)
        .join(Dataset, Dataset.id == TableCache.dataset_id)
        .join(Endpoint, Endpoint.id == TableCache.endpoint_id)
        .where(Dataset.removed_at.is_(None))
        .order_by(Endpoint.name, Dataset.schema_name, Dataset.name)
        .limit(first)
    )
    if endpoint_id is not None:
        stmt = stmt.where(TableCache.endpoint_id == endpoint_id)
    return [
        CachedTable(cache=c, dataset=d, endpoint_name=str(n), endpoint_lazy_fetch=bool(lazy))
        for c, d, n, lazy in (await session.execute(stmt)).all()
    ]
