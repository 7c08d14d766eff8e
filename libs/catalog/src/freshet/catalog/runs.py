"""Collection runs and their status machine.

Every transition is a compare-and-set in the database: `UPDATE … WHERE status IN (allowed)`.
Final statuses are never left, and the partial unique index keeps one RUNNING run per
collection even when two collectors race.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.clock import utcnow
from freshet.catalog.models import FINAL_STATUSES, CollectionRun, RunStatus

# Which statuses each status may be entered from.
ALLOWED_FROM: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.RUNNING: frozenset({RunStatus.QUEUED}),
    RunStatus.SUCCEEDED: frozenset({RunStatus.RUNNING}),
    RunStatus.FAILED: frozenset({RunStatus.QUEUED, RunStatus.RUNNING}),
    RunStatus.SKIPPED: frozenset({RunStatus.QUEUED}),
    RunStatus.CANCELLED: frozenset({RunStatus.QUEUED, RunStatus.RUNNING}),
}


def workflow_id(run_id: uuid.UUID) -> str:
    return f"collection-run::{run_id}"


class RunRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        *,
        run_id: uuid.UUID | None = None,
        collection_id: uuid.UUID | None,
        endpoint_id: uuid.UUID,
        trigger_source: str,
        requested_by: str | None = None,
        requested_at: datetime | None = None,
        filters: dict[str, Any] | None = None,
        status: RunStatus = RunStatus.QUEUED,
    ) -> CollectionRun:
        rid = run_id or uuid.uuid4()
        run = CollectionRun(
            id=rid,
            collection_id=collection_id,
            endpoint_id=endpoint_id,
            status=status.value,
            trigger_source=trigger_source,
            requested_by=requested_by,
            requested_at=requested_at or utcnow(),
            workflow_id=workflow_id(rid),
            filters=filters,
        )
        self.session.add(run)
        await self.session.flush()
        return run

    async def get(self, run_id: uuid.UUID, *, for_update: bool = False) -> CollectionRun | None:
        stmt = select(CollectionRun).where(CollectionRun.id == run_id)
        if for_update:
            stmt = stmt.with_for_update()
        result = await self.session.execute(stmt)
        return result.scalar_one_or_none()

    async def running_for(self, collection_id: uuid.UUID) -> CollectionRun | None:
        result = await self.session.execute(
            select(CollectionRun).where(
                CollectionRun.collection_id == collection_id,
                CollectionRun.status == RunStatus.RUNNING.value,
            )
        )
        return result.scalar_one_or_none()

    async def transition(self, run_id: uuid.UUID, to: RunStatus, **fields: Any) -> bool:
        """Move a run to `to` if its current status allows it; False if it did not move.

        A move to RUNNING that would make a second RUNNING run of the collection is refused by
        the database's unique index and reported as False, without spoiling the transaction.
        """
        allowed = [s.value for s in ALLOWED_FROM[to]]
        values: dict[str, Any] = {"status": to.value, "updated_at": utcnow(), **fields}
        if to is RunStatus.RUNNING:
            values.setdefault("started_at", utcnow())
        if to in FINAL_STATUSES:
            values.setdefault("completed_at", utcnow())
        stmt = (
            update(CollectionRun)
            .where(CollectionRun.id == run_id, CollectionRun.status.in_(allowed))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        try:
            async with self.session.begin_nested():
                result = await self.session.execute(stmt)
        except IntegrityError:
            return False
        moved = bool(result.rowcount == 1)  # type: ignore[attr-defined]
        if moved:
            # Keep identity-mapped objects honest after a Core UPDATE.
            run = await self.session.get(CollectionRun, run_id)
            if run is not None:
                await self.session.refresh(run)
        return moved

    async def find(
        self,
        *,
        collection_id: uuid.UUID | None = None,
        endpoint_id: uuid.UUID | None = None,
        statuses: Iterable[RunStatus] | None = None,
        limit: int = 50,
    ) -> list[CollectionRun]:
        stmt = select(CollectionRun).order_by(
            CollectionRun.requested_at.desc(), CollectionRun.id.desc()
        )
        if collection_id is not None:
            stmt = stmt.where(CollectionRun.collection_id == collection_id)
        if endpoint_id is not None:
            stmt = stmt.where(CollectionRun.endpoint_id == endpoint_id)
        if statuses is not None:
            stmt = stmt.where(CollectionRun.status.in_([s.value for s in statuses]))
        result = await self.session.execute(stmt.limit(limit))
        return list(result.scalars())
