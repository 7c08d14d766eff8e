"""A unit of work: one transaction over the catalog, with every repository on it.

    async with UnitOfWork(db) as uow:
        run = await uow.runs.get(run_id)
        await uow.outbox.add(event, source=...)
        await uow.commit()

Leaving the block without `commit()` rolls back. After a commit that wrote outbox rows, the
process's outbox relay is woken so the events leave at once; on PostgreSQL the commit also
notifies the relays of other processes (`outbox_notices`).
`UnitOfWork(db, read_only=True)` is for reads: on SQLite it does not take the write lock, and
it cannot commit.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.armed_fires import ArmedFireRepository
from freshet.catalog.audit import AuditRepository
from freshet.catalog.caches import CacheRepository
from freshet.catalog.database import Database
from freshet.catalog.datasets import DatasetRepository
from freshet.catalog.dead_letters import DeadLetterRepository
from freshet.catalog.endpoints import CollectionRepository, EndpointRepository
from freshet.catalog.inbox import InboxRepository
from freshet.catalog.leases import LeaseRepository
from freshet.catalog.outbox import OutboxRepository
from freshet.catalog.outbox_notices import CHANNEL
from freshet.catalog.previews import PreviewRepository
from freshet.catalog.refreshes import RefreshRepository
from freshet.catalog.runs import RunRepository
from freshet.catalog.schedules import ScheduleRepository


class UnitOfWork:
    session: AsyncSession
    endpoints: EndpointRepository
    collections: CollectionRepository
    runs: RunRepository
    datasets: DatasetRepository
    outbox: OutboxRepository
    inbox: InboxRepository
    leases: LeaseRepository
    schedules: ScheduleRepository
    armed: ArmedFireRepository
    dead_letters: DeadLetterRepository
    previews: PreviewRepository
    audit: AuditRepository
    caches: CacheRepository
    refreshes: RefreshRepository

    def __init__(self, db: Database, *, read_only: bool = False) -> None:
        self.db = db
        self.read_only = read_only

    async def __aenter__(self) -> Self:
        self.session = self.db.read_sessions() if self.read_only else self.db.sessions()
        self.endpoints = EndpointRepository(self.session)
        self.collections = CollectionRepository(self.session)
        self.runs = RunRepository(self.session)
        self.datasets = DatasetRepository(self.session)
        self.outbox = OutboxRepository(self.session)
        self.inbox = InboxRepository(self.session)
        self.leases = LeaseRepository(self.session)
        self.schedules = ScheduleRepository(self.session)
        self.armed = ArmedFireRepository(self.session)
        self.dead_letters = DeadLetterRepository(self.session)
        self.previews = PreviewRepository(self.session)
        self.audit = AuditRepository(self.session)
        self.caches = CacheRepository(self.session)
        self.refreshes = RefreshRepository(self.session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() ends any open transaction (rolling it back) but, unlike rollback(), does not
        # expire what was loaded: objects stay readable after the block, detached.
        await self.session.close()

    async def commit(self) -> None:
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        if self.outbox.added and self.db.dialect == "postgresql":
            # Delivered at commit, to the relay of whichever process leads (outbox_notices).
            await self.session.execute(text(f"NOTIFY {CHANNEL}"))
        await self.session.commit()
        if self.outbox.added:
            self.outbox.added = 0
            self.db.outbox_committed()
        if self.audit.recorded:
            self.db.audit_committed(self.audit.take_recorded())

    async def rollback(self) -> None:
        await self.session.rollback()
        self.outbox.added = 0
        self.audit.take_recorded()
