"""Collection runs and their status machine.

Every transition is a compare-and-set in the database: `UPDATE … WHERE status IN (allowed)`.
Final statuses are never left. A partial unique index keeps a collection to one active
(QUEUED or RUNNING) run, so two triggers or two collectors racing cannot both win.

A RUNNING run carries a lease (`lease_owner`, `lease_expires_at`) that its collector renews;
when the lease expires, another collector may take the run over.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from freshet.catalog.clock import utcnow
from freshet.catalog.cursors import encode_cursor, older_than
from freshet.catalog.models import ACTIVE_STATUSES, FINAL_STATUSES, CollectionRun, RunStatus

# Batches write through Core: the ORM's bulk path costs more than the statement itself.
RUNS = cast(Table, CollectionRun.__table__)

# Which statuses each status may be entered from. SKIPPED from RUNNING: the run's prepare
# step (after markRunStarted) may find nothing to do.
ALLOWED_FROM: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.RUNNING: frozenset({RunStatus.QUEUED}),
    RunStatus.SUCCEEDED: frozenset({RunStatus.RUNNING}),
    RunStatus.FAILED: frozenset({RunStatus.QUEUED, RunStatus.RUNNING}),
    RunStatus.SKIPPED: frozenset({RunStatus.QUEUED, RunStatus.RUNNING}),
    RunStatus.CANCELLED: frozenset({RunStatus.QUEUED, RunStatus.RUNNING}),
}


def workflow_id(run_id: uuid.UUID) -> str:
    return f"collection-run::{run_id}"


@dataclass(frozen=True)
class RunFilter:
    """What run history can be filtered by (GraphQL `collectionRuns`, REST `GET /runs`)."""

    endpoint_id: uuid.UUID | None = None
    collection_id: uuid.UUID | None = None
    statuses: Iterable[RunStatus] | None = None
    requested_from: datetime | None = None
    requested_to: datetime | None = None


def _lapsed(now: datetime) -> ColumnElement[bool]:
    return or_(CollectionRun.lease_expires_at.is_(None), CollectionRun.lease_expires_at < now)


def run_values(
    *,
    run_id: uuid.UUID | None = None,
    collection_id: uuid.UUID | None,
    endpoint_id: uuid.UUID,
    trigger_source: str,
    requested_by: str | None = None,
    requested_at: datetime | None = None,
    filters: dict[str, Any] | None = None,
    status: RunStatus = RunStatus.QUEUED,
    error: str | None = None,
    invalidate_changed: bool = False,
) -> dict[str, Any]:
    """The columns of a new run."""
    rid = run_id or uuid.uuid4()
    now = utcnow()
    return {
        "id": rid,
        "collection_id": collection_id,
        "endpoint_id": endpoint_id,
        "status": status.value,
        "trigger_source": trigger_source,
        "requested_by": requested_by,
        "requested_at": requested_at or now,
        "workflow_id": workflow_id(rid),
        "filters": filters,
        "error": error,
        "completed_at": now if status.is_final else None,
        "invalidate_changed": invalidate_changed,
        "created_at": now,
        "updated_at": now,
    }


def run_cursor(run: CollectionRun) -> str:
    return encode_cursor(run.requested_at.isoformat(), str(run.id))


class RunRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, **fields: Any) -> CollectionRun:
        """Insert a run. An active run (QUEUED) may violate the one-active index: see enqueue."""
        run = CollectionRun(**run_values(**fields))
        self.session.add(run)
        await self.session.flush()
        return run

    async def insert_many(self, values: Sequence[dict[str, Any]]) -> None:
        """Insert many runs (each from `run_values`) in one statement, as the scheduler's
        batched fires do; no ORM objects, which cost more than the insert itself."""
        if values:
            await self.session.execute(insert(RUNS), list(values))

    async def enqueue(self, **fields: Any) -> CollectionRun | None:
        """Insert a QUEUED run, or return None when the collection already has an active run.

        The database decides (the partial unique index), so concurrent callers in different
        processes get exactly one run between them. The savepoint keeps a refusal from
        spoiling the caller's transaction.
        """
        try:
            async with self.session.begin_nested():
                run = await self.add(status=RunStatus.QUEUED, **fields)
        except IntegrityError:
            return None
        return run

    async def get(self, run_id: uuid.UUID, *, for_update: bool = False) -> CollectionRun | None:
        stmt = select(CollectionRun).where(CollectionRun.id == run_id)
        if for_update:
            stmt = stmt.with_for_update()
        result = await self.session.execute(stmt)
        return result.scalar_one_or_none()

    async def existing_ids(self, run_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        ids = list(run_ids)
        if not ids:
            return set()
        result = await self.session.execute(
            select(CollectionRun.id).where(CollectionRun.id.in_(ids))
        )
        return set(result.scalars())

    async def collections_with_active_run(
        self, collection_ids: Iterable[uuid.UUID]
    ) -> set[uuid.UUID]:
        ids = list(collection_ids)
        if not ids:
            return set()
        result = await self.session.execute(
            select(CollectionRun.collection_id).where(
                CollectionRun.collection_id.in_(ids),
                CollectionRun.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
        )
        return {cid for cid in result.scalars() if cid is not None}

    async def active_for(self, collection_id: uuid.UUID) -> CollectionRun | None:
        result = await self.session.execute(
            select(CollectionRun).where(
                CollectionRun.collection_id == collection_id,
                CollectionRun.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
        )
        return result.scalar_one_or_none()

    async def running_for(self, collection_id: uuid.UUID) -> CollectionRun | None:
        active = await self.active_for(collection_id)
        return active if active is not None and active.status == RunStatus.RUNNING else None

    async def transition(self, run_id: uuid.UUID, to: RunStatus, **fields: Any) -> bool:
        """Move a run to `to` if its current status allows it; False if it did not move.

        Leaving RUNNING drops the lease.
        """
        allowed = [s.value for s in ALLOWED_FROM[to]]
        values: dict[str, Any] = {"status": to.value, "updated_at": utcnow(), **fields}
        if to is RunStatus.RUNNING:
            values.setdefault("started_at", utcnow())
        if to in FINAL_STATUSES:
            values.setdefault("completed_at", utcnow())
            values.setdefault("lease_owner", None)
            values.setdefault("lease_expires_at", None)
        # No savepoint: a transition can never add an active run (QUEUED -> RUNNING keeps the
        # one the collection has; every other move leaves the active set), so the one-active
        # index cannot refuse it. Only inserts (`enqueue`) need one.
        moved = await self._update(run_id, [CollectionRun.status.in_(allowed)], values)
        if moved:
            await self._refresh(run_id)
        return moved

    async def _update(
        self, run_id: uuid.UUID, conditions: list[ColumnElement[bool]], values: dict[str, Any]
    ) -> bool:
        """A compare-and-set on one run: True when the conditions held and it changed."""
        result = await self.session.execute(
            update(CollectionRun)
            .where(CollectionRun.id == run_id, *conditions)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def renew_lease(self, run_id: uuid.UUID, owner: str, ttl: timedelta) -> bool:
        """Extend the lease of a RUNNING run held by `owner`.

        False when the run is no longer RUNNING (cancelled, deleted) or another collector took
        it over: the caller must stop working on it.
        """
        return await self._update(
            run_id,
            [CollectionRun.status == RunStatus.RUNNING.value, CollectionRun.lease_owner == owner],
            {"lease_expires_at": utcnow() + ttl},
        )

    async def release_lease(self, run_id: uuid.UUID, owner: str) -> None:
        """Let the lease lapse now, so another collector takes the run over at once."""
        await self.session.execute(
            update(CollectionRun)
            .where(CollectionRun.id == run_id, CollectionRun.lease_owner == owner)
            .values(lease_expires_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def take_over(self, run_id: uuid.UUID, owner: str, ttl: timedelta) -> bool:
        """Claim a RUNNING run whose lease expired (or that never had one)."""
        now = utcnow()
        moved = await self._update(
            run_id,
            [
                CollectionRun.status == RunStatus.RUNNING.value,
                or_(_lapsed(now), CollectionRun.lease_owner == owner),
            ],
            {"lease_owner": owner, "lease_expires_at": now + ttl},
        )
        if moved:
            await self._refresh(run_id)
        return moved

    async def expired(self, *, limit: int = 20) -> list[uuid.UUID]:
        """RUNNING runs whose collector stopped renewing their lease."""
        now = utcnow()
        result = await self.session.execute(
            select(CollectionRun.id)
            .where(
                CollectionRun.status == RunStatus.RUNNING.value,
                _lapsed(now),
            )
            .order_by(CollectionRun.started_at)
            .limit(limit)
        )
        return list(result.scalars())

    async def find(
        self,
        *,
        collection_id: uuid.UUID | None = None,
        endpoint_id: uuid.UUID | None = None,
        statuses: Iterable[RunStatus] | None = None,
        limit: int = 50,
    ) -> list[CollectionRun]:
        return await self.page(
            RunFilter(endpoint_id=endpoint_id, collection_id=collection_id, statuses=statuses),
            first=limit,
        )

    async def page(
        self, where: RunFilter, *, first: int = 50, after: str | None = None
    ) -> list[CollectionRun]:
        """Runs newest first, `first` of them after the cursor `after` (see `run_cursor`).

        Keyset pagination on (requested_at, id): a page never repeats or skips a run when
        new runs arrive between pages. A malformed cursor raises ValueError.
        """
        stmt = select(CollectionRun).order_by(
            CollectionRun.requested_at.desc(), CollectionRun.id.desc()
        )
        if where.collection_id is not None:
            stmt = stmt.where(CollectionRun.collection_id == where.collection_id)
        if where.endpoint_id is not None:
            stmt = stmt.where(CollectionRun.endpoint_id == where.endpoint_id)
        if where.statuses is not None:
            stmt = stmt.where(CollectionRun.status.in_([s.value for s in where.statuses]))
        if where.requested_from is not None:
            stmt = stmt.where(CollectionRun.requested_at >= where.requested_from)
        if where.requested_to is not None:
            stmt = stmt.where(CollectionRun.requested_at < where.requested_to)
        if after is not None:
            stmt = stmt.where(older_than(after, CollectionRun.requested_at, CollectionRun.id))
        result = await self.session.execute(stmt.limit(first))
        return list(result.scalars())

    async def latest_for_endpoints(
        self, endpoint_ids: Iterable[uuid.UUID], *, statuses: Iterable[RunStatus] | None = None
    ) -> dict[uuid.UUID, CollectionRun]:
        """Each endpoint's newest run (of `statuses`), for overviews; one indexed read each."""
        wanted = list(statuses) if statuses is not None else None
        latest: dict[uuid.UUID, CollectionRun] = {}
        for endpoint_id in endpoint_ids:
            found = await self.page(RunFilter(endpoint_id=endpoint_id, statuses=wanted), first=1)
            if found:
                latest[endpoint_id] = found[0]
        return latest

    async def request_invalidation(self, run_id: uuid.UUID) -> bool:
        """Ask an active run to drop the caches of tables whose schema it finds changed; False
        when it finished already (the caller then drops them itself)."""
        return await self._update(
            run_id,
            [CollectionRun.status.in_([s.value for s in ACTIVE_STATUSES])],
            {"invalidate_changed": True},
        )

    async def _refresh(self, run_id: uuid.UUID) -> None:
        # Keep identity-mapped objects honest after a Core UPDATE.
        run = await self.session.get(CollectionRun, run_id)
        if run is not None:
            await self.session.refresh(run)
