"""Audit records: who or what did what to which target, why, when, and how it ended.

Written in the transaction of the change they describe (`uow.audit.add`), so a record exists
exactly when the change does. Read newest first with keyset pagination on (at, id), like runs.
Fields must never hold a secret: callers pass sanitised reasons and details.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.clock import utcnow
from freshet.catalog.cursors import encode_cursor, older_than
from freshet.catalog.models import AuditRecord

MAX_REASON = 2_000


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    outcome: str | None = None
    actor: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    at_from: datetime | None = None
    at_to: datetime | None = None


def audit_cursor(record: AuditRecord) -> str:
    return encode_cursor(record.at.isoformat(), str(record.id))


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        # Staged in this transaction; the unit of work reports them once it commits.
        self.recorded: list[AuditRecord] = []

    def add(
        self,
        *,
        actor: str,
        action: str,
        target_type: str,
        target_id: str | uuid.UUID,
        outcome: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        correlation_id: str | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """Stage a record in the session; it is inserted at the next flush or commit."""
        record = AuditRecord(
            id=uuid.uuid4(),
            at=at or utcnow(),
            actor=actor[:200],
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            outcome=outcome,
            reason=reason[:MAX_REASON] if reason else reason,
            details=details or {},
            correlation_id=correlation_id[:200] if correlation_id else None,
        )
        self.session.add(record)
        self.recorded.append(record)
        return record

    def take_recorded(self) -> list[AuditRecord]:
        recorded, self.recorded = self.recorded, []
        return recorded

    async def page(
        self, where: AuditFilter, *, first: int = 50, after: str | None = None
    ) -> list[AuditRecord]:
        """Records newest first, `first` of them after the cursor `after` (ValueError if it is
        not one of ours). `at_from` is inclusive, `at_to` exclusive."""
        stmt = select(AuditRecord).order_by(AuditRecord.at.desc(), AuditRecord.id.desc())
        for column, value in (
            (AuditRecord.action, where.action),
            (AuditRecord.outcome, where.outcome),
            (AuditRecord.actor, where.actor),
            (AuditRecord.target_type, where.target_type),
            (AuditRecord.target_id, where.target_id),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if where.at_from is not None:
            stmt = stmt.where(AuditRecord.at >= where.at_from)
        if where.at_to is not None:
            stmt = stmt.where(AuditRecord.at < where.at_to)
        if after is not None:
            stmt = stmt.where(older_than(after, AuditRecord.at, AuditRecord.id))
        result = await self.session.execute(stmt.limit(first))
        return list(result.scalars())

    async def prune(self, before: datetime) -> int:
        result = await self.session.execute(delete(AuditRecord).where(AuditRecord.at < before))
        return int(result.rowcount)  # type: ignore[attr-defined]
