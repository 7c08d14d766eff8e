"""/audit: who or what did what, why and with what outcome (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from freshet.catalog.audit import AuditFilter
from freshet.gateway.deps import Admin, ReadUow
from freshet.gateway.routes.collections import After, First
from freshet.gateway.schemas import AuditRecordOut
from freshet.gateway.service_layer import audit

router = APIRouter(prefix="/audit", tags=["audit"])

Text = Annotated[str | None, Query(max_length=200)]


@router.get("")
async def list_audit_records(
    uow: ReadUow,
    _: Admin,
    action: Text = None,
    outcome: Text = None,
    actor: Text = None,
    target_type: Text = None,
    target_id: Text = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    first: First = 50,
    after: After = None,
) -> list[AuditRecordOut]:
    """Records newest first; `from` inclusive, `to` exclusive; page with `first` and the
    `cursor` of the last item as `after`."""
    where = AuditFilter(
        action=action,
        outcome=outcome,
        actor=actor,
        target_type=target_type,
        target_id=target_id,
        at_from=from_,
        at_to=to,
    )
    return [AuditRecordOut.of(r) for r in await audit.list_records(uow, where, first, after)]
