"""Collection schedules: 5-field cron expressions in an IANA time zone, validated up front.

A misconfigured cron could fire a collection every minute and hammer a source (seed 003, R1),
so a schedule whose fires can come closer together than a minimum interval is refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

CRON_FIELDS = 5
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
    if not name or len(name) > MAX_TIMEZONE_LENGTH:
        raise ScheduleError("schedule_timezone", "is not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: names like "../x" that are not even well-formed keys.
        raise ScheduleError("schedule_timezone", "is not an IANA time zone name") from None


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
    if len(cron.split()) != CRON_FIELDS:
        raise ScheduleError(
            "schedule_cron",
            "must have 5 fields: minute hour day-of-month month day-of-week",
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


def _words(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"
