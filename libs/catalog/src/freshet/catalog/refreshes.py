"""Refresh jobs and their per-table items, stored so any replica answers and restarts lose
nothing.

A job is one request (`scope` "table" or "connection"); its items are the tables. The
partial unique index `uq_refresh_items_one_active` keeps a table to one active (queued or
running) item across every job, so of concurrent requests for a table one starts it and the
others join it:

- `join_or_start_table` (one table): an active item exists -> its refresh id, nothing new;
  otherwise a job with one queued item.
- `start_job` (several tables): each table gets a queued item, or a `waiting` item that
  names the active item's job (`joined_refresh_id`) and takes its result when it ends.

The refresher claims a job (`claim`: a lease it renews, like collection runs), records each
item's target file before writing it (`begin_item`), and ends items with `finish_item`, which
also settles the items waiting on it and completes every job that has nothing left. A job
whose lease lapsed (its refresher died) is taken over (`expired`, then `claim`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.clock import utcnow
from freshet.catalog.models import REFRESH_ACTIVE_STATUSES, Dataset, RefreshItem, RefreshJob

QUEUED, RUNNING, SUCCEEDED, FAILED, SKIPPED, WAITING = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "waiting",
)
ITEM_FINAL = (SUCCEEDED, FAILED, SKIPPED)
ITEM_OPEN = (QUEUED, RUNNING, WAITING)
JOB_QUEUED, JOB_IN_PROGRESS, JOB_COMPLETED, JOB_FAILED = (
    "queued",
    "in_progress",
    "completed",
    "failed",
)
JOB_OPEN = (JOB_QUEUED, JOB_IN_PROGRESS)
# Joining or starting retries this often when the active item it met ended meanwhile.
_JOIN_ATTEMPTS = 5


@dataclass(frozen=True)
class Enqueued:
    """What a single-table request got: a new job, or the active one it joined."""

    refresh_id: uuid.UUID
    joined: bool
    job: RefreshJob | None


@dataclass
class Progress:
    """A job's items counted by status (waiting items count as what they wait for)."""

    total: int = 0
    queued: int = 0
    running: int = 0
    waiting: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    rows: int = 0
    bytes: int = 0

    @property
    def completed(self) -> int:
        """Ended without failing (succeeded or skipped)."""
        return self.succeeded + self.skipped

    @property
    def open(self) -> int:
        return self.queued + self.running + self.waiting


@dataclass
class Settled:
    """What `finish_item` changed beyond the item itself."""

    # Items of other jobs that waited on this one and took its result: (refresh id, status).
    joined: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    # Jobs that have nothing left to do now.
    completed_jobs: list[RefreshJob] = field(default_factory=list)


def _lapsed(now: datetime) -> Any:
    return or_(RefreshJob.lease_expires_at.is_(None), RefreshJob.lease_expires_at < now)


class RefreshRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- reading -----------------------------------------------------------------------------

    async def get(self, refresh_id: uuid.UUID, *, for_update: bool = False) -> RefreshJob | None:
        stmt = select(RefreshJob).where(RefreshJob.id == refresh_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def items(self, refresh_id: uuid.UUID) -> list[RefreshItem]:
        result = await self.session.execute(
            select(RefreshItem)
            .where(RefreshItem.refresh_id == refresh_id)
            .order_by(RefreshItem.schema_name, RefreshItem.table_name)
        )
        return list(result.scalars())

    async def item(self, refresh_id: uuid.UUID, dataset_id: uuid.UUID) -> RefreshItem | None:
        return await self.session.get(RefreshItem, (refresh_id, dataset_id), populate_existing=True)

    async def active_item(self, dataset_id: uuid.UUID) -> RefreshItem | None:
        """The table's queued or running item, if a refresh of it is under way."""
        result = await self.session.execute(
            select(RefreshItem).where(
                RefreshItem.dataset_id == dataset_id,
                RefreshItem.status.in_(REFRESH_ACTIVE_STATUSES),
            )
        )
        return result.scalar_one_or_none()

    async def progress(self, refresh_id: uuid.UUID) -> Progress:
        result = await self.session.execute(
            select(
                RefreshItem.status,
                func.count(),
                func.coalesce(func.sum(RefreshItem.rows), 0),
                func.coalesce(func.sum(RefreshItem.bytes), 0),
            )
            .where(RefreshItem.refresh_id == refresh_id)
            .group_by(RefreshItem.status)
        )
        progress = Progress()
        for status, count, rows, size in result.all():
            setattr(progress, str(status), int(count))
            progress.total += int(count)
            if status == SUCCEEDED:
                progress.rows += int(rows or 0)
                progress.bytes += int(size or 0)
        return progress

    async def recent_for_endpoint(
        self, endpoint_id: uuid.UUID, *, limit: int = 50
    ) -> list[RefreshJob]:
        result = await self.session.execute(
            select(RefreshJob)
            .where(RefreshJob.endpoint_id == endpoint_id)
            .order_by(RefreshJob.requested_at.desc())
            .limit(limit)
        )
        return list(result.scalars())

    # --- requesting --------------------------------------------------------------------------

    def _job(
        self,
        *,
        refresh_id: uuid.UUID | None,
        endpoint_id: uuid.UUID,
        scope: str,
        trigger_source: str,
        requested_by: str | None,
        force: bool,
        concurrency: int,
        tables_total: int,
        correlation_id: str | None,
    ) -> RefreshJob:
        job = RefreshJob(
            id=refresh_id or uuid.uuid4(),
            endpoint_id=endpoint_id,
            scope=scope,
            status=JOB_QUEUED,
            trigger_source=trigger_source,
            requested_by=requested_by,
            force=force,
            concurrency=concurrency,
            tables_total=tables_total,
            rows_synced=0,
            bytes_written=0,
            requested_at=utcnow(),
            correlation_id=correlation_id,
        )
        self.session.add(job)
        return job

    @staticmethod
    def _item(
        job_id: uuid.UUID, dataset: Dataset, status: str, joined: uuid.UUID | None
    ) -> RefreshItem:
        return RefreshItem(
            refresh_id=job_id,
            dataset_id=dataset.id,
            schema_name=dataset.schema_name,
            table_name=dataset.name,
            status=status,
            joined_refresh_id=joined,
            attempts=0,
        )

    async def join_or_start_table(
        self,
        dataset: Dataset,
        *,
        refresh_id: uuid.UUID | None = None,
        trigger_source: str,
        requested_by: str | None,
        force: bool = False,
        correlation_id: str | None = None,
    ) -> Enqueued:
        """Join the table's active refresh, or start a job refreshing it alone."""
        for _ in range(_JOIN_ATTEMPTS):
            active = await self.active_item(dataset.id)
            if active is not None:
                return Enqueued(refresh_id=active.refresh_id, joined=True, job=None)
            try:
                async with self.session.begin_nested():
                    job = self._job(
                        refresh_id=refresh_id,
                        endpoint_id=dataset.endpoint_id,
                        scope="table",
                        trigger_source=trigger_source,
                        requested_by=requested_by,
                        force=force,
                        concurrency=1,
                        tables_total=1,
                        correlation_id=correlation_id,
                    )
                    await self.session.flush()
                    self.session.add(self._item(job.id, dataset, QUEUED, None))
                    await self.session.flush()
            except IntegrityError:
                # Another request started it between the look and the insert: join it.
                continue
            return Enqueued(refresh_id=job.id, joined=False, job=job)
        raise RuntimeError(f"could not join or start a refresh of dataset {dataset.id}")

    async def start_job(
        self,
        endpoint_id: uuid.UUID,
        datasets: Sequence[Dataset],
        *,
        refresh_id: uuid.UUID | None = None,
        scope: str = "connection",
        trigger_source: str,
        requested_by: str | None,
        force: bool = False,
        concurrency: int = 5,
        correlation_id: str | None = None,
    ) -> RefreshJob:
        """A job over these tables: each starts a refresh or joins the one under way."""
        job = self._job(
            refresh_id=refresh_id,
            endpoint_id=endpoint_id,
            scope=scope,
            trigger_source=trigger_source,
            requested_by=requested_by,
            force=force,
            concurrency=concurrency,
            tables_total=len(datasets),
            correlation_id=correlation_id,
        )
        await self.session.flush()
        for dataset in datasets:
            await self._add_item(job.id, dataset)
        if not datasets:
            await self.complete_if_done(job.id, utcnow())
        return job

    async def _add_item(self, job_id: uuid.UUID, dataset: Dataset) -> RefreshItem:
        for _ in range(_JOIN_ATTEMPTS):
            try:
                async with self.session.begin_nested():
                    item = self._item(job_id, dataset, QUEUED, None)
                    self.session.add(item)
                    await self.session.flush()
                return item
            except IntegrityError:
                pass
            active = await self.active_item(dataset.id)
            if active is None:
                continue
            item = self._item(job_id, dataset, WAITING, active.refresh_id)
            self.session.add(item)
            await self.session.flush()
            return item
        raise RuntimeError(f"could not add dataset {dataset.id} to refresh {job_id}")

    # --- working -----------------------------------------------------------------------------

    async def claim(self, refresh_id: uuid.UUID, owner: str, ttl: timedelta) -> RefreshJob | None:
        """Take the job under `owner`'s lease: a queued one, or one whose lease lapsed (or that
        `owner` holds already). None when it is finished or another refresher holds it."""
        now = utcnow()
        result = await self.session.execute(
            update(RefreshJob)
            .where(
                RefreshJob.id == refresh_id,
                RefreshJob.status.in_(JOB_OPEN),
                or_(_lapsed(now), RefreshJob.lease_owner == owner),
            )
            .values(
                status=JOB_IN_PROGRESS,
                lease_owner=owner,
                lease_expires_at=now + ttl,
                started_at=func.coalesce(RefreshJob.started_at, now),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return None
        return await self.session.get(RefreshJob, refresh_id, populate_existing=True)

    async def renew_lease(self, refresh_id: uuid.UUID, owner: str, ttl: timedelta) -> bool:
        """False when the job ended or another refresher took it over: stop working on it."""
        result = await self.session.execute(
            update(RefreshJob)
            .where(
                RefreshJob.id == refresh_id,
                RefreshJob.status.in_(JOB_OPEN),
                RefreshJob.lease_owner == owner,
            )
            .values(lease_expires_at=utcnow() + ttl)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def release_lease(self, refresh_id: uuid.UUID, owner: str) -> None:
        """Let the lease lapse now (a graceful stop), so another refresher resumes at once."""
        await self.session.execute(
            update(RefreshJob)
            .where(RefreshJob.id == refresh_id, RefreshJob.lease_owner == owner)
            .values(lease_expires_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def holds(self, refresh_id: uuid.UUID, owner: str) -> bool:
        """Whether `owner` still holds the open job (locked until the transaction ends)."""
        job = await self.get(refresh_id, for_update=True)
        return job is not None and job.status in JOB_OPEN and job.lease_owner == owner

    async def expired(
        self, now: datetime, *, queued_before: datetime, limit: int = 20
    ) -> list[uuid.UUID]:
        """Open jobs with work left whose lease lapsed: their refresher died (or, for queued
        jobs older than `queued_before`, their request never reached one)."""
        has_work = (
            select(RefreshItem.refresh_id)
            .where(
                RefreshItem.refresh_id == RefreshJob.id,
                RefreshItem.status.in_(REFRESH_ACTIVE_STATUSES),
            )
            .exists()
        )
        result = await self.session.execute(
            select(RefreshJob.id)
            .where(
                RefreshJob.status.in_(JOB_OPEN),
                _lapsed(now),
                RefreshJob.requested_at < queued_before,
                has_work,
            )
            .order_by(RefreshJob.requested_at)
            .limit(limit)
        )
        return list(result.scalars())

    async def open_items(self, refresh_id: uuid.UUID) -> list[RefreshItem]:
        """The job's items still to run (queued, or running from an attempt that died)."""
        result = await self.session.execute(
            select(RefreshItem)
            .where(
                RefreshItem.refresh_id == refresh_id,
                RefreshItem.status.in_(REFRESH_ACTIVE_STATUSES),
            )
            .order_by(RefreshItem.schema_name, RefreshItem.table_name)
        )
        return list(result.scalars())

    async def begin_item(
        self, refresh_id: uuid.UUID, dataset_id: uuid.UUID, *, version: str, uri: str
    ) -> str | bool | None:
        """Mark the item running with the file it is about to write (commit before writing).

        Returns the target of an earlier attempt that did not finish (to delete), None when
        there was none, False when the item is not open any more.
        """
        item = await self.item(refresh_id, dataset_id)
        if item is None or item.status not in REFRESH_ACTIVE_STATUSES:
            return False
        previous = item.uri if item.uri and item.uri != uri else None
        item.status = RUNNING
        item.version = version
        item.uri = uri
        item.attempts += 1
        item.started_at = utcnow()
        await self.session.flush()
        return previous

    async def finish_item(
        self,
        refresh_id: uuid.UUID,
        dataset_id: uuid.UUID,
        status: str,
        now: datetime,
        *,
        rows: int | None = None,
        size: int | None = None,
        error: str | None = None,
        reason: str | None = None,
    ) -> Settled:
        """End an open item (succeeded, failed or skipped), settle the items that joined it, and
        complete every job left with nothing to do. Check `holds` first, in this transaction."""
        assert status in ITEM_FINAL, status
        item = await self.item(refresh_id, dataset_id)
        settled = Settled()
        if item is None or item.status not in REFRESH_ACTIVE_STATUSES:
            return settled
        item.status = status
        item.rows = rows
        item.bytes = size
        item.error = error
        item.reason = reason
        item.completed_at = now
        if item.started_at is None:
            item.started_at = now
        await self.session.flush()
        waiting = await self.session.execute(
            select(RefreshItem).where(
                RefreshItem.dataset_id == dataset_id,
                RefreshItem.joined_refresh_id == refresh_id,
                RefreshItem.status == WAITING,
            )
        )
        jobs = {refresh_id}
        for joined in waiting.scalars():
            joined.status = status
            joined.rows = rows
            joined.bytes = size
            joined.error = error
            joined.reason = reason
            joined.started_at = item.started_at
            joined.completed_at = now
            joined.version = item.version
            settled.joined.append((joined.refresh_id, status))
            jobs.add(joined.refresh_id)
        await self.session.flush()
        for job_id in jobs:
            done = await self.complete_if_done(job_id, now)
            if done is not None:
                settled.completed_jobs.append(done)
        return settled

    async def complete_if_done(self, refresh_id: uuid.UUID, now: datetime) -> RefreshJob | None:
        """Complete the job when none of its items is open; the job if this call completed it.

        completed: at least one table did not fail (failures are listed per table); failed:
        every table failed.
        """
        progress = await self.progress(refresh_id)
        if progress.open:
            return None
        status = (
            JOB_FAILED if progress.total and progress.failed == progress.total else JOB_COMPLETED
        )
        result = await self.session.execute(
            update(RefreshJob)
            .where(RefreshJob.id == refresh_id, RefreshJob.status.in_(JOB_OPEN))
            .values(
                status=status,
                completed_at=now,
                rows_synced=progress.rows,
                bytes_written=progress.bytes,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return None
        return await self.session.get(RefreshJob, refresh_id, populate_existing=True)

    async def fail_open_items(self, refresh_id: uuid.UUID, error: str, now: datetime) -> Settled:
        """Fail every item of the job still to run (the endpoint is gone, say)."""
        settled = Settled()
        for item in await self.open_items(refresh_id):
            more = await self.finish_item(refresh_id, item.dataset_id, FAILED, now, error=error)
            settled.joined += more.joined
            settled.completed_jobs += more.completed_jobs
        return settled

    async def open_jobs_count(self, endpoint_ids: Iterable[uuid.UUID] | None = None) -> int:
        stmt = select(func.count()).select_from(RefreshJob).where(RefreshJob.status.in_(JOB_OPEN))
        if endpoint_ids is not None:
            stmt = stmt.where(RefreshJob.endpoint_id.in_(list(endpoint_ids)))
        return int((await self.session.execute(stmt)).scalar_one())
