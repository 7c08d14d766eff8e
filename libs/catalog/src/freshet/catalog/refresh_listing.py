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
from sqlalchemy.sql.elements import ColumnElement

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
    """A table with cache settings or a cache, and the names it is known by. (The dataset's
    columns only: its payload holds the preview sample, which a listing has no use for.)"""

    cache: TableCache
    dataset_id: uuid.UUID
    schema_name: str
    table_name: str
    # The catalog's fingerprint now: differs from the cache's `source_fingerprint` once the
    # source's shape changed since the version was written.
    fingerprint: str | None
    endpoint_id: uuid.UUID
    endpoint_name: str
    # The endpoint's lazy fetch, which the table follows unless it has its own.
    endpoint_lazy_fetch: bool

    @property
    def schema_current(self) -> bool:
        return self.cache.source_fingerprint == self.fingerprint


def _live_caches(endpoint_id: uuid.UUID | None) -> ColumnElement[bool]:
    where: list[ColumnElement[bool]] = [Dataset.removed_at.is_(None)]
    if endpoint_id is not None:
        where.append(TableCache.endpoint_id == endpoint_id)
    return and_(*where)


async def cached_tables(
    session: AsyncSession, *, endpoint_id: uuid.UUID | None = None, first: int = 200
) -> list[CachedTable]:
    """Tables of live datasets with a cache row, by endpoint, schema and table name."""
    stmt = (
        select(
            TableCache,
            Dataset.schema_name,
            Dataset.name,
            Dataset.fingerprint,
            Endpoint.id,
            Endpoint.name,
            Endpoint.cache_lazy_fetch,
        )
        .join(Dataset, Dataset.id == TableCache.dataset_id)
        .join(Endpoint, Endpoint.id == TableCache.endpoint_id)
        .where(_live_caches(endpoint_id))
        .order_by(Endpoint.name, Dataset.schema_name, Dataset.name)
        .limit(first)
    )
    return [
        CachedTable(
            cache=c,
            dataset_id=c.dataset_id,
            schema_name=str(schema),
            table_name=str(table),
            fingerprint=fingerprint,
            endpoint_id=eid,
            endpoint_name=str(name),
            endpoint_lazy_fetch=bool(lazy),
        )
        for c, schema, table, fingerprint, eid, name, lazy in (await session.execute(stmt)).all()
    ]


@dataclass(frozen=True)
class CacheTotals:
    kept_cached: int
    with_version: int
    bytes: int


async def cache_totals(session: AsyncSession, endpoint_id: uuid.UUID) -> CacheTotals:
    """An endpoint's tables kept cached, those with a cached version, and its size, counted in
    the database."""
    has_version = TableCache.uri.is_not(None)
    row = (
        await session.execute(
            select(
                func.count().filter(TableCache.cached.is_(True)),
                func.count().filter(has_version),
                func.coalesce(func.sum(case((has_version, TableCache.bytes), else_=0)), 0),
            )
            .join(Dataset, Dataset.id == TableCache.dataset_id)
            .where(_live_caches(endpoint_id))
        )
    ).one()
    return CacheTotals(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))
