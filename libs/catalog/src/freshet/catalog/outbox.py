"""The transactional outbox: events are rows written with the change that implies them.

A relay (freshet.kit.relay) publishes pending rows in id order and marks them published.
Published rows are kept for a while, so that after the loss of a broker that keeps nothing
(the embedded one) they can be sent again; consumers are idempotent by event id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.clock import utcnow
from freshet.catalog.models import OutboxMessage
from freshet.contracts import Event, encode, topic_for

# Batches write through Core: the ORM's bulk path costs more than the statement itself.
OUTBOX = cast(Table, OutboxMessage.__table__)


def outbox_values(
    event: Event,
    source: str,
    correlation_id: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> dict[str, Any]:
    """The columns of an event's outbox row: the encoded message, ready to send as it is.
    `time` is when the event happens, if not now (an armed tick: its due time)."""
    msg = encode(event, source=source, correlation_id=correlation_id, event_id=event_id, time=time)
    headers = {k: v.decode() for k, v in msg.headers}
    return {
        "event_id": headers["ce_id"],
        "event_type": event.event_type,
        "topic": topic_for(event).name,
        "key": msg.key.decode(),
        "value": msg.value.decode(),
        "headers": [[k, v] for k, v in headers.items()],
        "created_at": utcnow(),
    }


class OutboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.added = 0

    async def add(
        self,
        event: Event,
        *,
        source: str,
        correlation_id: str | None = None,
        event_id: str | None = None,
    ) -> OutboxMessage:
        row = self.stage(event, source=source, correlation_id=correlation_id, event_id=event_id)
        await self.session.flush()
        return row

    def stage(
        self,
        event: Event,
        *,
        source: str,
        correlation_id: str | None = None,
        event_id: str | None = None,
    ) -> OutboxMessage:
        """The event's row in the session, inserted at the next flush or commit."""
        row = OutboxMessage(**outbox_values(event, source, correlation_id, event_id))
        self.session.add(row)
        self.added += 1
        return row

    async def add_many(
        self, events: Sequence[Event], *, source: str, correlation_id: str | None = None
    ) -> None:
        """Write many events in one statement (the scheduler's batched fires)."""
        if events:
            rows = [outbox_values(e, source, correlation_id) for e in events]
            await self.session.execute(insert(OUTBOX), rows)
            self.added += len(rows)

    async def add_raw(
        self,
        *,
        topic: str,
        key: str,
        value: str,
        headers: list[tuple[str, str]],
        event_type: str,
        row_id: str,
    ) -> OutboxMessage:
        """A message kept exactly as given (an operator's dead-letter replay): the headers,
        event id included, are the original ones, so consumers' inboxes recognise it.
        `row_id` names the row only (the outbox needs it unique; a replay repeats an event id).
        """
        row = OutboxMessage(
            event_id=row_id,
            event_type=event_type,
            topic=topic,
            key=key,
            value=value,
            headers=[[k, v] for k, v in headers],
        )
        self.session.add(row)
        self.added += 1
        await self.session.flush()
        return row

    async def pending(self, limit: int) -> list[OutboxMessage]:
        result = await self.session.execute(
            select(OutboxMessage)
            .where(OutboxMessage.published_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        return list(result.scalars())

    async def mark_published(self, ids: Sequence[int], at: datetime | None = None) -> None:
        if ids:
            await self.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(list(ids)))
                .values(published_at=at or utcnow())
            )

    async def count_attempt(self, ids: Sequence[int]) -> None:
        if ids:
            await self.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(list(ids)))
                .values(attempts=OutboxMessage.attempts + 1)
            )

    async def backlog(self) -> tuple[int, datetime | None]:
        """How many rows wait to be published, and when the oldest was written."""
        result = await self.session.execute(
            select(func.count(), func.min(OutboxMessage.created_at)).where(
                OutboxMessage.published_at.is_(None)
            )
        )
        count, oldest = result.one()
        return int(count), oldest

    async def requeue_published_since(self, since: datetime) -> int:
        """Mark rows published after `since` as pending again (the broker lost them)."""
        result = await self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.published_at >= since)
            .values(published_at=None)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def prune(self, published_before: datetime) -> int:
        result = await self.session.execute(
            delete(OutboxMessage).where(OutboxMessage.published_at < published_before)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
