"""Armed fires: collection ticks worked out ahead of time, fired in set-based statements.

Firing a tick the ordinary way builds its run, its `CollectionRequested` envelope and its next
tick in Python while the tick is already due: 0.15-0.3 ms of CPU a fire, so 10,000 schedules
sharing a cron ("every minute") took seconds to fire. Arming does that work in the seconds
before the tick (the scheduler arms what falls due within its horizon) and stores it in
`armed_fires`; at the due instant, one transaction per batch fires every armed tick that is
still valid with four statements that never leave the database:

1. insert the QUEUED runs (from the arms of due, unpaused schedules of enabled collections
   that have no active run, within the catch-up window);
2. move the schedules whose valid arm's run now exists (exactly those of step 1) to their
   next tick;
3. insert the outbox rows of the arms whose schedule now names their run;
4. count them by due instant (for the lateness metric) and delete them.

An arm is valid while its schedule has the nominal tick, cron, zone and jitter it was worked
out from. Whatever the fast path leaves due (a collection with an active run: SKIPPED; a
disabled one; an unarmed or changed schedule; a tick older than the catch-up window) is fired
the ordinary way right after, with the same outcomes. A run id that already exists, or a
collection that became active meanwhile, makes the database refuse the batch; the ordinary
path then fires it, one schedule at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Table,
    and_,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.models import (
    ACTIVE_STATUSES,
    ArmedFire,
    Collection,
    CollectionRun,
    OutboxMessage,
    RunStatus,
    Schedule,
)
from freshet.catalog.types import UTCDateTime

ARMED = cast(Table, ArmedFire.__table__)
_SCHEDULES = cast(Table, Schedule.__table__)
_COLLECTIONS = cast(Table, Collection.__table__)
_RUNS = cast(Table, CollectionRun.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)
COLLECTION_KIND = "collection"


@dataclass(frozen=True)
class ArmCandidate:
    """A collection schedule falling due soon whose next tick is not armed (or armed from
    what the schedule no longer is)."""

    id: str
    collection_id: uuid.UUID
    endpoint_id: uuid.UUID
    cron: str
    timezone: str
    jitter_s: int
    next_fire_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class FiredArms:
    """Armed ticks one batch fired: how many fell due at each instant (a burst shares a few
    instants; reading back one row per tick cost as much as firing it)."""

    due: list[tuple[datetime, int]]
    # The schedule, when the batch fired only one tick (for its log line).
    schedule_id: str | None = None

    @property
    def count(self) -> int:
        return sum(n for _, n in self.due)


def _valid(armed: Table = ARMED) -> ColumnElement[bool]:
    """The arm is for the schedule's next tick, worked out from what the schedule is now."""
    s = _SCHEDULES.c
    return and_(
        armed.c.schedule_id == s.id,
        armed.c.nominal == s.next_fire_at,
        armed.c.cron == s.cron,
        armed.c.timezone == s.timezone,
        armed.c.jitter_s == s.jitter_s,
    )


class ArmedFireRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def unarmed(self, horizon: datetime, *, limit: int) -> list[ArmCandidate]:
        """Collection schedules of enabled collections due by `horizon`, not validly armed,
        earliest first."""
        s, c, a = _SCHEDULES.c, _COLLECTIONS.c, ARMED.c
        stmt = (
            select(
                s.id,
                s.collection_id,
                c.endpoint_id,
                s.cron,
                s.timezone,
                s.jitter_s,
                s.next_fire_at,
                s.due_at,
            )
            .select_from(_SCHEDULES)
            .join(_COLLECTIONS, c.id == s.collection_id)
            .outerjoin(ARMED, _valid())
            .where(
                s.kind == COLLECTION_KIND,
                s.paused.is_(false()),
                c.is_enabled.is_(true()),
                s.due_at <= horizon,
                a.schedule_id.is_(None),
            )
            .order_by(s.due_at)
            .limit(limit)
        )
        return [ArmCandidate(**row._mapping) for row in await self.session.execute(stmt)]

    async def arm(self, values: Sequence[dict[str, Any]]) -> None:
        """Store arms (columns of `armed_fires`), replacing any earlier arm of the schedules."""
        if not values:
            return
        ids = [v["schedule_id"] for v in values]
        await self.session.execute(delete(ARMED).where(ARMED.c.schedule_id.in_(ids)))
        await self.session.execute(insert(ARMED), list(values))

    async def fire(self, now: datetime, *, oldest: datetime, limit: int) -> FiredArms:
        """Fire up to `limit` armed ticks due by `now` and not before `oldest`; those fired."""
        s, c, a, r = _SCHEDULES.c, _COLLECTIONS.c, ARMED.c, _RUNS.c
        at = literal(now, UTCDateTime())
        active = sorted(status.value for status in ACTIVE_STATUSES)
        due = (
            select(
                a.run_id,
                a.collection_id,
                a.endpoint_id,
                literal(RunStatus.QUEUED.value),
                literal("schedule"),
                s.id,
                s.next_fire_at,
                a.workflow_id,
                false(),
                at,
                at,
            )
            .select_from(_SCHEDULES)
            .join(ARMED, _valid())
            .join(_COLLECTIONS, c.id == s.collection_id)
            .where(
                s.kind == COLLECTION_KIND,
                s.paused.is_(false()),
                c.is_enabled.is_(true()),
                s.due_at <= now,
                s.due_at >= oldest,
                # Constants, as in the one-active-run index's predicate, so that PostgreSQL
                # probes that index per collection (with bound values it may not, and scanned
                # every queued run for each schedule instead).
                ~exists().where(
                    r.collection_id == s.collection_id,
                    r.status.in_([literal_column(f"'{status}'") for status in active]),
                ),
            )
            .order_by(s.due_at)
            .limit(limit)
        )
        columns = [
            "id",
            "collection_id",
            "endpoint_id",
            "status",
            "trigger_source",
            "requested_by",
            "requested_at",
            "workflow_id",
            "invalidate_changed",
            "created_at",
            "updated_at",
        ]
        # A row count, not RETURNING: fetching 10,000 returned ids cost as much as the insert.
        inserted = await self.session.execute(insert(_RUNS).from_select(columns, due))
        if not cast(CursorResult[Any], inserted).rowcount:
            return FiredArms([])
        # The arms still valid whose run now exists are those of the runs just inserted (a
        # fire always moves its schedule on in the same transaction). Moved on, the schedule
        # names the run: that finds their outbox rows and the arms to delete. Joins on keys,
        # not lists of ids: a list scanned per row made a burst quadratic on PostgreSQL.
        await self.session.execute(
            update(_SCHEDULES)
            .where(_valid(), r.id == a.run_id)
            .values(
                last_fire_at=a.nominal,
                last_run_id=a.run_id,
                next_fire_at=a.next_fire_at,
                due_at=a.next_due_at,
                updated_at=at,
            )
        )
        fired_now = and_(s.id == a.schedule_id, s.last_run_id == a.run_id)
        await self.session.execute(
            insert(_OUTBOX).from_select(
                [
                    "event_id",
                    "event_type",
                    "topic",
                    "key",
                    "value",
                    "headers",
                    "created_at",
                    "attempts",
                ],
                select(a.event_id, a.event_type, a.topic, a.key, a.value, a.headers, at, literal(0))
                .select_from(ARMED)
                .join(_SCHEDULES, fired_now)
                .order_by(a.due_at, a.schedule_id),
            )
        )
        due_counts = await self.session.execute(
            select(a.due_at, func.count(), func.min(a.schedule_id))
            .select_from(ARMED)
            .join(_SCHEDULES, fired_now)
            .group_by(a.due_at)
            .order_by(a.due_at)
        )
        rows = due_counts.all()
        await self.session.execute(delete(ARMED).where(exists().where(fired_now)))
        single = rows[0][2] if len(rows) == 1 and rows[0][1] == 1 else None
        return FiredArms([(due_at, n) for due_at, n, _ in rows], single)
