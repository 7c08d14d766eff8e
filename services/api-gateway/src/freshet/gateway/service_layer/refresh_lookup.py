"""Overviews of refreshes and caches: jobs newest first with their progress and some of their
tables, and every table that has cache settings or a cache. Read from the catalog, so any
gateway replica answers (the jobs' own states are the refresher's, through the catalog).

A single job with every table is `refreshes.refresh_status`, as `GET /refresh/{id}` shows it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from freshet.catalog import UnitOfWork
from freshet.catalog.models import RefreshJob
from freshet.catalog.refresh_listing import (
    CachedTable,
    CacheTotals,
    JobFilter,
    cached_tables,
    find_jobs,
    items_of,
    progress_of,
)
from freshet.catalog.refresh_listing import (
    cache_totals as catalog_cache_totals,
)
from freshet.gateway import errors
from freshet.gateway.refresh_schemas import RefreshStatusOut
from freshet.gateway.service_layer.runs import check_cursor


async def list_jobs(
    uow: UnitOfWork,
    where: JobFilter,
    *,
    first: int = 25,
    after: str | None = None,
    tables_per_job: int = 20,
) -> list[RefreshStatusOut]:
    """Jobs newest first, each with its progress and at most `tables_per_job` of its tables
    (running and failed ones first): a handful of queries whatever the number of jobs."""
    check_cursor(after)
    try:
        jobs = await find_jobs(uow.session, where, first=first, after=after)
    except ValueError:
        raise errors.ValidationFailed(
            "after is not a cursor from this list",
            details=[{"loc": ["input", "after"], "msg": "invalid cursor"}],
        ) from None
    return await _overviews(uow, jobs, tables_per_job)


async def job_overview(
    uow: UnitOfWork, refresh_id: uuid.UUID, *, tables_per_job: int = 20
) -> RefreshStatusOut:
    job = await uow.refreshes.get(refresh_id)
    if job is None:
        raise errors.RefreshNotFound(f"refresh {refresh_id} does not exist")
    [found] = await _overviews(uow, [job], tables_per_job)
    return found


async def _overviews(
    uow: UnitOfWork, jobs: Sequence[RefreshJob], tables_per_job: int
) -> list[RefreshStatusOut]:
    ids = [job.id for job in jobs]
    progress = await progress_of(uow.session, ids)
    items = await items_of(uow.session, ids, per_job=tables_per_job)
    names = {e.id: e.name for e in await uow.endpoints.all()} if jobs else {}
    return [
        RefreshStatusOut.of(
            job,
            names.get(job.endpoint_id, str(job.endpoint_id)),
            progress[job.id],
            items[job.id],
        )
        for job in jobs
    ]


async def list_cached_tables(
    uow: UnitOfWork, *, endpoint_id: uuid.UUID | None = None, first: int = 200
) -> list[CachedTable]:
    return await cached_tables(uow.session, endpoint_id=endpoint_id, first=first)


async def cache_totals(uow: UnitOfWork, endpoint_id: uuid.UUID) -> CacheTotals:
    return await catalog_cache_totals(uow.session, endpoint_id)
