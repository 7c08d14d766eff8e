"""Schedules: cron expressions in an IANA time zone or fixed intervals, validated up front,
and the `schedules` rows the scheduler fires (kinds: see `models.Schedule`).

A misconfigured cron could fire a collection every minute and hammer a source (seed 003, R1),
so a schedule whose fires can come closer together than a minimum interval is refused. Five
fields is cron; six put seconds first (cronsim's form, as Quartz), for tests and operators,
and meet the same minimum.

DST follows cronsim: a wall-clock time that does not exist (02:30 on a spring-forward day)
fires at the first valid time after it (03:00), once; a time that exists twice (fall-back)
fires once, at its first occurrence.

Intervals tick at whole multiples of the interval since the epoch, shifted by a phase derived
from the schedule id: every replica computes the same ticks, and a thousand tables refreshed
hourly spread over the hour instead of all starting at minute 0.

Jitter delays each fire by a deterministic 0..jitter seconds (derived from the schedule id and
the tick), so all replicas agree on it; the tick's nominal time, not the jittered one, names
its run.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Protocol, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.endpoints import schedule_id_for
from freshet.catalog.models import Collection, Schedule

# Batches write through Core: the ORM's bulk path costs more than the statement itself.
SCHEDULES = cast(Table, Schedule.__table__)

CRON_FIELDS = (5, 6)
RUN_ID_NAMESPACE = uuid.UUID("2b0f5e0c-7d0e-4a43-9a55-3f9f3b8f2e61")
# Fires inspected to find the smallest gap. Cron fields repeat within a day (minutes, hours)
# or a year (days, months), so the smallest gap shows within the first fires of a year.
_GAP_SAMPLE_FIRES = 2_000
_GAP_SAMPLE_SPAN = timedelta(days=400)
# A fixed, DST-free start: the structural gap of an expression does not depend on today.
_GAP_START = datetime(2026, 1, 1)
MAX_TIMEZONE_LENGTH = 64
# A day: jitter is for spreading load, not for postponing a schedule by more than its period.
MAX_JITTER_S = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

COLLECTION = "collection"
PREVIEW_SWEEP = "preview-sweep"
TABLE_REFRESH = "table-refresh"
PREVIEW_SWEEP_ID = PREVIEW_SWEEP


def table_refresh_schedule_id(dataset_id: uuid.UUID) -> str:
    return f"{TABLE_REFRESH}::{dataset_id}"


class Timed(Protocol):
    """What working out a schedule's ticks needs: a `Schedule` row or a `DueSchedule`."""

    id: str
    cron: str | None
    interval_s: int | None
    timezone: str
    jitter_s: int
    next_fire_at: datetime | None
    due_at: datetime | None


@dataclass
class DueSchedule:
    """A schedule as the ticker fires it: read under lock with its batch, changed in memory,
    written back in one statement for the batch (no ORM objects on the hot path)."""

    id: str
    kind: str
    collection_id: uuid.UUID | None
    dataset_id: uuid.UUID | None
    cron: str | None
    interval_s: int | None
    timezone: str
    jitter_s: int
    paused: bool
    next_fire_at: datetime | None
    due_at: datetime | None
    last_fire_at: datetime | None
    last_run_id: uuid.UUID | None
    missed_ticks: int


_DUE_COLUMNS = [Schedule.__table__.c[name] for name in DueSchedule.__dataclass_fields__]
_FIRED_FIELDS = ("next_fire_at", "due_at", "last_fire_at", "last_run_id", "missed_ticks")


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


def validate_jitter(jitter_s: int, field: str = "schedule_jitter_s") -> None:
    if not 0 <= jitter_s <= MAX_JITTER_S:
        raise ScheduleError(field, f"must be between 0 and {MAX_JITTER_S} seconds")


def validate_interval(interval_s: int, *, min_interval: timedelta, field: str) -> None:
    if interval_s <= 0:
        raise ScheduleError(field, "must be a positive number of seconds")
    if timedelta(seconds=interval_s) < min_interval:
        raise ScheduleError(field, f"must be at least {_words(min_interval)}")


@lru_cache(maxsize=4096)
def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first fire strictly after `after` (aware), as an aware datetime in `timezone`.

    Cached: the schedules of a batch often share a cron and a tick (every "0 * * * *" one).
    """
    zone = parse_timezone(timezone)
    return next(CronSim(cron, after.astimezone(zone)))


def interval_phase(schedule_id: str, interval_s: int) -> int:
    digest = hashlib.sha256(schedule_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % interval_s


def next_interval_tick(schedule_id: str, interval_s: int, after: datetime) -> datetime:
    """The first tick strictly after `after`: epoch + phase + k * interval."""
    phase = interval_phase(schedule_id, interval_s)
    since = int((after - _EPOCH).total_seconds() // 1) - phase
    k = since // interval_s + 1
    return _EPOCH + timedelta(seconds=phase + k * interval_s)


def next_tick(row: Timed, after: datetime) -> datetime:
    """The schedule's first nominal tick strictly after `after`, in UTC."""
    if row.interval_s is not None:
        return next_interval_tick(row.id, row.interval_s, after)
    assert row.cron is not None, "a schedule has a cron or an interval"
    return next_fire(row.cron, row.timezone, after).astimezone(UTC)


def jitter_for(schedule_id: str, nominal: datetime, jitter_s: int) -> timedelta:
    """A delay in [0, jitter_s) that every replica computes alike for one tick."""
    if jitter_s <= 0:
        return timedelta(0)
    key = f"{schedule_id}@{nominal.astimezone(UTC).isoformat()}".encode()
    millis = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % (jitter_s * 1000)
    return timedelta(milliseconds=millis)


def cron_tick_after(
    schedule_id: str, cron: str, timezone: str, jitter_s: int, after: datetime
) -> tuple[datetime, datetime]:
    """A cron schedule's first tick strictly after `after` (UTC), and when it is due."""
    nominal = next_fire(cron, timezone, after).astimezone(UTC)
    return nominal, nominal + jitter_for(schedule_id, nominal, jitter_s)


def plan_next(row: Timed, after: datetime) -> None:
    """Move the schedule to its first tick after `after`, and when that tick is due."""
    row.next_fire_at = next_tick(row, after)
    row.due_at = row.next_fire_at + jitter_for(row.id, row.next_fire_at, row.jitter_s)


def scheduled_run_id(schedule_id: str, nominal: datetime) -> uuid.UUID:
    """The run of one tick: a duplicate fire of the same tick, from any cause, is the same run."""
    return uuid.uuid5(RUN_ID_NAMESPACE, f"{schedule_id}@{nominal.astimezone(UTC).isoformat()}")


def ticks_between(row: Timed, after: datetime, until: datetime) -> int:
    """How many ticks of the schedule fall in (after, until]."""
    if row.interval_s is not None:
        first = next_interval_tick(row.id, row.interval_s, after)
        if first > until:
            return 0
        return 1 + int((until - first).total_seconds()) // row.interval_s
    assert row.cron is not None
    fires = CronSim(row.cron, after.astimezone(parse_timezone(row.timezone)))
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

    async def many(
        self, schedule_ids: Iterable[str], *, for_update: bool = False
    ) -> list[Schedule]:
        stmt = select(Schedule).where(Schedule.id.in_(list(schedule_ids)))
        if for_update:
            stmt = stmt.with_for_update()
        return list((await self.session.execute(stmt)).scalars())

    async def lock(self, schedule_ids: Iterable[str]) -> list[DueSchedule]:
        """The schedules, locked until the transaction ends, as plain values."""
        stmt = select(*_DUE_COLUMNS).where(Schedule.id.in_(list(schedule_ids))).with_for_update()
        return [DueSchedule(**row._mapping) for row in await self.session.execute(stmt)]

    async def save_fired(self, rows: Sequence[DueSchedule], now: datetime) -> None:
        """Write back what firing changed, for the whole batch in one statement."""
        if rows:
            values = [
                {"key": r.id, "updated_at": now, **{f: getattr(r, f) for f in _FIRED_FIELDS}}
                for r in rows
            ]
            await self.session.execute(
                update(SCHEDULES).where(SCHEDULES.c.id == bindparam("key")), values
            )

    async def for_collection(self, collection_id: uuid.UUID) -> Schedule | None:
        result = await self.session.execute(
            select(Schedule).where(Schedule.collection_id == collection_id)
        )
        return result.scalar_one_or_none()

    async def all(self) -> list[Schedule]:
        return list((await self.session.execute(select(Schedule).order_by(Schedule.id))).scalars())

    async def due(self, now: datetime, *, limit: int = 100) -> list[tuple[str, datetime]]:
        """(id, nominal tick) of unpaused schedules due by `now`, earliest due first."""
        result = await self.session.execute(
            select(Schedule.id, Schedule.next_fire_at)
            .where(Schedule.paused.is_(False), Schedule.due_at <= now)
            .order_by(Schedule.due_at)
            .limit(limit)
        )
        return [(row.id, row.next_fire_at) for row in result]

    async def next_due_at(self) -> datetime | None:
        result = await self.session.execute(
            select(func.min(Schedule.due_at)).where(Schedule.paused.is_(False))
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
        paused = not collection.is_enabled or (row is not None and row.paused_by is not None)
        if row is None:
            row = Schedule(
                id=schedule_id_for(collection.id),
                kind=COLLECTION,
                collection_id=collection.id,
                cron=collection.schedule_cron,
                timezone=collection.schedule_timezone,
                jitter_s=collection.schedule_jitter_s,
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
        jitter_changed = row.jitter_s != collection.schedule_jitter_s
        row.jitter_s = collection.schedule_jitter_s
        if row.next_fire_at is None or changed or resumed:
            plan_next(row, now)
        elif jitter_changed:
            # Same tick, new delay: a jitter edit never skips or repeats a tick.
            row.due_at = row.next_fire_at + jitter_for(row.id, row.next_fire_at, row.jitter_s)
        row.updated_at = now
        await self.session.flush()
        return row

    async def set_interval(
        self,
        schedule_id: str,
        kind: str,
        interval_s: int | None,
        now: datetime,
        *,
        dataset_id: uuid.UUID | None = None,
        jitter_s: int = 0,
    ) -> Schedule | None:
        """Create, change or (interval None) remove an interval schedule; idempotent.

        A changed interval starts from `now`; an unchanged one keeps its next tick, so calling
        this again (every start of the scheduler, say) never re-fires or skips a tick.
        """
        row = await self.get(schedule_id, for_update=True)
        if interval_s is None:
            if row is not None:
                await self.session.delete(row)
                await self.session.flush()
            return None
        if row is None:
            row = Schedule(
                id=schedule_id,
                kind=kind,
                dataset_id=dataset_id,
                interval_s=interval_s,
                jitter_s=jitter_s,
                paused=False,
                missed_ticks=0,
            )
            self.session.add(row)
        if row.next_fire_at is None or row.interval_s != interval_s or row.jitter_s != jitter_s:
            row.interval_s = interval_s
            row.jitter_s = jitter_s
            plan_next(row, now)
            row.updated_at = now
        await self.session.flush()
        return row

    async def hold(self, row: Schedule, actor: str, now: datetime) -> None:
        """An operator pauses the schedule: no tick fires until it is resumed. The hold
        survives changes to its collection (which re-derive `paused` from the collection)."""
        row.paused_by = actor
        row.paused = True
        row.updated_at = now
        await self.session.flush()

    async def release(self, row: Schedule, now: datetime) -> None:
        """Resume a held schedule from `now`: ticks that fell in the pause are never fired.
        A collection schedule stays paused while its collection is disabled."""
        collection = (
            await self.session.get(Collection, row.collection_id)
            if row.collection_id is not None
            else None
        )
        row.paused_by = None
        paused = collection is not None and not collection.is_enabled
        if row.paused and not paused:
            plan_next(row, now)
        row.paused = paused
        row.updated_at = now
        await self.session.flush()

    async def set_table_refresh(
        self, dataset_id: uuid.UUID, interval_s: int | None, now: datetime, *, jitter_s: int = 0
    ) -> Schedule | None:
        """The cached table's refresh interval (None: refreshed only on request)."""
        return await self.set_interval(
            table_refresh_schedule_id(dataset_id),
            TABLE_REFRESH,
            interval_s,
            now,
            dataset_id=dataset_id,
            jitter_s=jitter_s,
        )


def _words(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"
