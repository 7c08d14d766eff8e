"""The inbox makes a consumer idempotent: an event id is claimed once per consumer.

Claim inside the transaction that applies the event; if the transaction rolls back, the claim
goes with it and a redelivery is processed again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.clock import utcnow
from freshet.catalog.conflicts import insert_ignoring_conflict
from freshet.catalog.database import Database
from freshet.catalog.models import InboxMessage


class InboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, consumer: str, event_id: str) -> bool:
        """True the first time this consumer sees `event_id`, False ever after."""
        values = {"consumer": consumer, "event_id": event_id, "processed_at": utcnow()}
        return await insert_ignoring_conflict(self.session, InboxMessage, values)

    async def prune(self, processed_before: datetime) -> int:
        result = await self.session.execute(
            delete(InboxMessage).where(InboxMessage.processed_at < processed_before)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


async def claim_once(db: Database, consumer: str, event_id: str) -> bool:
    """Claim an event in a transaction of its own, for handlers that only record it."""
    async with db.sessions() as session:
        claimed = await InboxRepository(session).claim(consumer, event_id)
        await session.commit()
        return claimed
