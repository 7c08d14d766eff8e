"""/schedules: what the scheduler will fire, for operators."""

from __future__ import annotations

from fastapi import APIRouter

from freshet.gateway.deps import ReadUow, Viewer
from freshet.gateway.schemas import ScheduleOut

router = APIRouter(prefix="/schedules", tags=["schedules"])


@router.get("")
async def list_schedules(uow: ReadUow, _: Viewer) -> list[ScheduleOut]:
    """Every schedule with its state, next fire, last fire and missed ticks."""
    return [ScheduleOut.of(s) for s in await uow.schedules.all()]
