"""Schedules held and released by operators."""

from __future__ import annotations

import structlog

from freshet.catalog import UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.models import Schedule
from freshet.gateway import errors
from freshet.gateway.service_layer.caller import Caller

log = structlog.get_logger("freshet.gateway")


async def _get(uow: UnitOfWork, schedule_id: str) -> Schedule:
    row = await uow.schedules.get(schedule_id, for_update=True)
    if row is None:
        raise errors.ScheduleNotFound(f"schedule {schedule_id} does not exist")
    return row


async def pause(uow: UnitOfWork, caller: Caller, schedule_id: str) -> Schedule:
    """Idempotent: pausing a held schedule keeps who held it first."""
    row = await _get(uow, schedule_id)
    if row.paused_by is None:
        await uow.schedules.hold(row, caller.principal.name, utcnow())
        _audit(uow, caller, row, "schedule.pause", "paused")
        await uow.commit()
        log.info("schedule paused", schedule_id=schedule_id, by=caller.principal.name)
    return row


async def resume(uow: UnitOfWork, caller: Caller, schedule_id: str) -> Schedule:
    """Idempotent: resuming a schedule that is not held changes nothing."""
    row = await _get(uow, schedule_id)
    if row.paused_by is not None:
        await uow.schedules.release(row, utcnow())
        _audit(uow, caller, row, "schedule.resume", "paused" if row.paused else "resumed")
        await uow.commit()
        log.info("schedule resumed", schedule_id=schedule_id, by=caller.principal.name)
    return row


def _audit(uow: UnitOfWork, caller: Caller, row: Schedule, action: str, outcome: str) -> None:
    uow.audit.add(
        actor=caller.principal.name,
        action=action,
        target_type="schedule",
        target_id=row.id,
        outcome=outcome,
        correlation_id=caller.correlation_id,
    )
