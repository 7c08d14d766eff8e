"""Operators' marks on dead-lettered messages: replayed ones, and purge watermarks.

The messages themselves stay in the `.dlq` topics (see `models.DeadLetterMark` for why);
these rows say which of them an operator already replayed and up to where a partition was
purged.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.clock import utcnow
from freshet.catalog.models import DeadLetterMark

REPLAYED = "replayed"
PURGED = "purged"

Position = tuple[str, int]  # (dead-letter topic, partition)


class DeadLetterRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def mark(
        self,
        action: str,
        dlq_topic: str,
        partition: int,
        offset: int,
        digest: str,
        actor: str,
        at: datetime | None = None,
    ) -> DeadLetterMark:
        row = DeadLetterMark(
            action=action,
            dlq_topic=dlq_topic,
            partition=partition,
            offset=offset,
            digest=digest,
            actor=actor,
            at=at or utcnow(),
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def purge_marks(self, topics: Iterable[str]) -> dict[Position, list[DeadLetterMark]]:
        """Purge watermarks per partition, highest offset first (the caller checks digests:
        the newest whose message is still there is the one in force)."""
        result = await self.session.execute(
            select(DeadLetterMark)
            .where(DeadLetterMark.action == PURGED, DeadLetterMark.dlq_topic.in_(list(topics)))
            .order_by(DeadLetterMark.offset.desc(), DeadLetterMark.id.desc())
        )
        out: dict[Position, list[DeadLetterMark]] = {}
        for row in result.scalars():
            out.setdefault((row.dlq_topic, row.partition), []).append(row)
        return out

    async def replays(
        self, dlq_topic: str, partition: int, offsets: Iterable[int]
    ) -> dict[int, list[DeadLetterMark]]:
        result = await self.session.execute(
            select(DeadLetterMark)
            .where(
                DeadLetterMark.action == REPLAYED,
                DeadLetterMark.dlq_topic == dlq_topic,
                DeadLetterMark.partition == partition,
                DeadLetterMark.offset.in_(list(offsets)),
            )
            .order_by(DeadLetterMark.id)
        )
        out: dict[int, list[DeadLetterMark]] = {}
        for row in result.scalars():
            out.setdefault(row.offset, []).append(row)
        return out
