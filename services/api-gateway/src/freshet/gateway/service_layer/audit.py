"""The audit trail: records newest first, filtered, by keyset pages like runs."""

from __future__ import annotations

from dataclasses import replace

from freshet.catalog import UnitOfWork
from freshet.catalog.audit import AuditFilter
from freshet.catalog.models import AuditRecord
from freshet.gateway import errors
from freshet.gateway.service_layer.checks import refuse_nul
from freshet.gateway.service_layer.runs import as_utc, check_cursor


async def list_records(
    uow: UnitOfWork, where: AuditFilter, first: int = 50, after: str | None = None
) -> list[AuditRecord]:
    refuse_nul(
        [where.action, where.outcome, where.actor, where.target_type, where.target_id],
        ["query"],
    )
    where = replace(where, at_from=as_utc(where.at_from, "from"), at_to=as_utc(where.at_to, "to"))
    check_cursor(after)
    if where.at_from and where.at_to and where.at_from > where.at_to:
        raise errors.ValidationFailed(
            "from is after to", details=[{"loc": ["query", "from"], "msg": "is after `to`"}]
        )
    try:
        return await uow.audit.page(where, first=first, after=after)
    except ValueError:
        raise errors.ValidationFailed(
            "after is not a cursor from this list",
            details=[{"loc": ["query", "after"], "msg": "invalid cursor"}],
        ) from None
