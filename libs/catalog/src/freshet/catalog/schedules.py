"""Collection schedules: cron expressions in an IANA time zone, validated up front, and the
`schedules` rows the scheduler fires.

A misconfigured cron could fire a collection every minute and hammer a source (seed 003, R1),
so a schedule whose fires can come closer together than a minimum interval is refused. Five
fields is cron; six put seconds first (cronsim's form, as Quartz), for tests and operators,
and meet the same minimum.

DST follows cronsim: a wall-clock time that does not exist (02:30 on a spring-forward day)
fires at the first valid time after it (03:00), once; a time that exists twice (fall-back)
fires once, at its first occurrence.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.endpoints import schedule_id_for
from freshet.catalog.models import Collection, Schedule

CRON_FIELDS = (5, 6)
RUN_ID_NAMESPACE = uuid.UUID("2b0f5e0c-7d0e-4a43-9a55-3f9f3b8f2e61")
# Fires inspected to find the smallest gap. Cron fields repeat within a day (minutes, hours)
# or a year (days, months), so the smallest gap shows within the first fires of a year.
_GAP_SAMPLE_FIRES = 2_000
_GAP_SAMPLE_SPAN = timedelta(days=400)
# A fixed, DST-free start: the structural gap of an expression does not depend on today.
_GAP_START = datetime(2026, 1, 1)
MAX_TIMEZONE_LENGTH = 64


class ScheduleError(ValueError):
    """A schedule is not acceptable; `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_timezone(name: str) -> ZoneInfo:
    if not name or len(name) > MAX_TIMEZONE_LENGTH or _host_specific(name):
        raise ScheduleError("schedule_timezone", "is not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: names like "../x" that are not even well-formed keys.
        raise ScheduleError("schedule_timezone", "is not an IANA time zone name") from None


def _host_specific(name: str) -> bool:
    """Names the tz database files carry that are not zones, or mean "whatever this host is"."""
    return name in ("localtime", "Factory", "posixrules") or name.startswith(("posix/", "right/"))


def min_gap(cron: str) -> timedelta:
    """The smallest time between two consecutive fires of `cron` (naive, wall-clock)."""
    fires = CronSim(cron, _GAP_START)
    previous = next(fires)
    smallest = timedelta.max
    for _ in range(_GAP_SAMPLE_FIRES):
        try:
            current = next(fires)
        except StopIteration:  # pragma: no cover - cronsim iterates forever for valid input
            break
        smallest = min(smallest, current - previous)
        if current - _GAP_START > _GAP_SAMPLE_SPAN:
            break
        previous = current
    return smallest


def validate_schedule(cron: str | None, timezone: str, *, min_interval: timedelta) -> None:
    """Refuse a schedule that is malformed or fires more often than `min_interval`.

    `cron` None means manual only; the time zone is still checked.
    """
    parse_timezone(timezone)
    if cron is None:
        return
    if len(cron.split()) not in CRON_FIELDS:
        raise ScheduleError(
            "schedule_cron",
            "must have 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds "
            "first",
        )
    try:
        gap = min_gap(cron)
    except (CronSimError, ValueError, StopIteration):
        raise ScheduleError("schedule_cron", "is not a valid cron expression") from None
    if gap < min_interval:
        raise ScheduleError(
            "schedule_cron",
            f"fires every {_words(gap)} at times; the minimum interval is {_words(min_interval)}",
        )


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first fire strictly after `after` (aware), as an aware datetime in `timezone`."""
    zone = parse_timezone(timezone)
    return next(CronSim(cron, after.astimezone(zone)))


def scheduled_run_id(schedule_id: str, nominal: datetime) -> uuid.UUID:
    """The run of one tick: a duplicate fire of the same tick, from any cause, is the same run."""
    return uuid.uuid5(RUN_ID_NAMESPACE, f"{schedule_id}@{nominal.astimezone(UTC).isoformat()}")


def ticks_between(cron: str, timezone: str, after: datetime, until: datetime) -> int:
    """How many fires fall in (after, until]."""
    fires = CronSim(cron, after.astimezone(parse_timezone(timezone)))
    count = 0
    while next(fires) <= until:
        count += 1
    return count


class ScheduleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, schedule_id: str, *, for_update: bool = False) -> Schedule | None:
        stmt = select(Schedule).where(Schedule.id == schedule_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def for_collection(self, collection_id: uuid.UUID) -> Schedule | None:
        result = await self.session.execute(
            select(Schedule).where(Schedule.collection_id == collection_id)
        )
        return result.scalar_one_or_none()

    async def all(self) -> list[Schedule]:
        return list((await self.session.execute(select(Schedule).order_by(Schedule.id))).scalars())

    async def due(self, now: datetime, *, limit: int = 100) -> list[Schedule]:
        result = await self.session.execute(
            select(Schedule)
            .where(Schedule.paused.is_(False), Schedule.next_fire_at <= now)
            .order_by(Schedule.next_fire_at)
            .limit(limit)
        )
        return list(result.scalars())

    async def next_due_at(self) -> datetime | None:
        result = await self.session.execute(
            select(func.min(Schedule.next_fire_at)).where(Schedule.paused.is_(False))
        )
        value: datetime | None = result.scalar_one_or_none()
        return value

    async def count_by_state(self) -> dict[str, int]:
        result = await self.session.execute(
            select(Schedule.paused, func.count()).group_by(Schedule.paused)
        )
        counts = {"active": 0, "paused": 0}
        for paused, count in result.all():
            counts["paused" if paused else "active"] = int(count)
        return counts

    async def sync_collection(
        self, collection: Collection | None, collection_id: uuid.UUID, now: datetime
    ) -> Schedule | None:
        """Make the collection's schedule match the collection; idempotent.

        No cron (or no collection): no schedule. Disabled: paused. A new or changed cron or
        zone, or a resume, starts from `now`: ticks before a change are never fired.
        """
        row = await self.for_collection(collection_id)
        if collection is None or not collection.schedule_cron:
            if row is not None:
                await self.session.delete(row)
                await self.session.flush()
            return None
        paused = not collection.is_enabled
        if row is None:
            row = Schedule(
                id=schedule_id_for(collection.id),
                kind="collection",
                collection_id=collection.id,
                cron=collection.schedule_cron,
                timezone=collection.schedule_timezone,
                paused=paused,
                next_fire_at=None,
                missed_ticks=0,
            )
            self.session.add(row)
        changed = (row.cron, row.timezone) != (
            collection.schedule_cron,
            collection.schedule_timezone,
        )
        resumed = row.paused and not paused
        row.cron = collection.schedule_cron
        row.timezone = collection.schedule_timezone
        row.paused = paused
        if row.next_fire_at is None or changed or resumed:
            row.next_fire_at = next_fire(row.cron, row.timezone, now).astimezone(UTC)
        row.updated_at = now
        await self.session.flush()
        return row


def _words(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"
