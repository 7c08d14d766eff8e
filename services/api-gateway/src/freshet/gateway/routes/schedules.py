"""/schedules: what the scheduler will fire, for operators."""

from __future__ import annotations

from fastapi import APIRouter

from freshet.gateway.deps import OperatorCaller, ReadUow, Uow, Viewer
from freshet.gateway.schemas import ScheduleOut
from freshet.gateway.service_layer import schedules

router = APIRouter(prefix="/schedules", tags=["schedules"])


@router.get("")
async def list_schedules(uow: ReadUow, _: Viewer) -> list[ScheduleOut]:
    """Every schedule with its state, next fire, last fire and missed ticks."""
    return [ScheduleOut.of(s) for s in await uow.schedules.all()]


@router.post("/{schedule_id}/pause")
async def pause_schedule(schedule_id: str, uow: Uow, caller: OperatorCaller) -> ScheduleOut:
    """Hold the schedule: nothing fires until it is resumed (survives collection edits)."""
    return ScheduleOut.of(await schedules.pause(uow, caller, schedule_id))


@router.post("/{schedule_id}/resume")
async def resume_schedule(schedule_id: str, uow: Uow, caller: OperatorCaller) -> ScheduleOut:
    """Release the hold; the next fire is the first tick after now (missed ticks are skipped).
    A collection schedule stays paused while its collection is disabled."""
    return ScheduleOut.of(await schedules.resume(uow, caller, schedule_id))
