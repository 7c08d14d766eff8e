"""Leases elect one holder among processes (the outbox relay, later the scheduler).

A lease row works the same on SQLite and PostgreSQL. Holders renew well before expiry; a
holder that dies is replaced once its lease expires. Times come from each process's clock,
so hosts sharing a lease need synchronised clocks (NTP), as they do for any TTL lease.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.clock import utcnow
from freshet.catalog.conflicts import insert_ignoring_conflict
from freshet.catalog.models import Lease


class LeaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def try_acquire(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew the lease; True if `holder` holds it afterwards."""
        now = utcnow()
        result = await self.session.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
            .values(holder=holder, expires_at=now + ttl)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return True
        values = {"name": name, "holder": holder, "expires_at": now + ttl}
        return await insert_ignoring_conflict(self.session, Lease, values)

    async def release(self, name: str, holder: str) -> None:
        await self.session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
