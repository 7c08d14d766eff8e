"""Schedules are validated before they are stored: 5 fields, a real zone, not too often."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from freshet.catalog.schedules import ScheduleError, min_gap, next_fire, validate_schedule

FIVE_MIN = timedelta(minutes=5)


@pytest.mark.parametrize(
    "cron",
    ["*/5 * * * *", "0 * * * *", "30 2 * * *", "0 9 * * MON-FRI", "0 0 L * *", "15,45 */2 * * *"],
)
def test_sensible_schedules_pass(cron: str) -> None:
    validate_schedule(cron, "Asia/Kolkata", min_interval=FIVE_MIN)


def test_manual_only_needs_only_a_valid_zone() -> None:
    validate_schedule(None, "UTC", min_interval=FIVE_MIN)
    with pytest.raises(ScheduleError) as err:
        validate_schedule(None, "Mars/Olympus", min_interval=FIVE_MIN)
    assert err.value.field == "schedule_timezone"


@pytest.mark.parametrize(
    "cron",
    ["* * * *", "* * * * * *", "@hourly", "61 * * * *", "0 0 30 2 *", "a b c d e", "", "0 0 * * 8"],
)
def test_malformed_cron_is_refused_with_a_field(cron: str) -> None:
    with pytest.raises(ScheduleError) as err:
        validate_schedule(cron, "UTC", min_interval=FIVE_MIN)
    assert err.value.field == "schedule_cron"


@pytest.mark.parametrize(
    ("cron", "gap"),
    [
        ("* * * * *", timedelta(minutes=1)),
        ("*/2 * * * *", timedelta(minutes=2)),
        # Mostly hourly, but 0 and 1 past midnight are a minute apart.
        ("0,1 0 * * *", timedelta(minutes=1)),
        ("58 * * * *", timedelta(hours=1)),
    ],
)
def test_the_smallest_gap_between_fires_is_found(cron: str, gap: timedelta) -> None:
    assert min_gap(cron) == gap


def test_too_frequent_schedules_are_refused_and_the_limit_is_configurable() -> None:
    with pytest.raises(ScheduleError, match="minimum interval is 5 min"):
        validate_schedule("*/2 * * * *", "UTC", min_interval=FIVE_MIN)
    with pytest.raises(ScheduleError):
        validate_schedule("0,1 0 * * *", "UTC", min_interval=FIVE_MIN)
    validate_schedule("*/2 * * * *", "UTC", min_interval=timedelta(minutes=1))


@pytest.mark.parametrize(
    "zone",
    [
        "../../etc/passwd",
        "/etc/localtime",
        "x" * 100,
        "",
        "Not/AZone",
        "localtime",
        "Factory",
        "posixrules",
        "right/UTC",
        "posix/Europe/Berlin",
    ],
)
def test_hostile_or_unknown_zones_are_refused(zone: str) -> None:
    with pytest.raises(ScheduleError) as err:
        validate_schedule("0 * * * *", zone, min_interval=FIVE_MIN)
    assert err.value.field == "schedule_timezone"
    assert zone not in err.value.message or not zone


def test_next_fire_is_computed_in_the_schedule_zone() -> None:
    after = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    fire = next_fire("30 9 * * *", "Asia/Kolkata", after)
    assert fire.astimezone(UTC) == datetime(2026, 6, 1, 4, 0, tzinfo=UTC)


def test_six_fields_put_seconds_first_and_meet_the_same_minimum() -> None:
    validate_schedule("0 3 * * * *", "UTC", min_interval=FIVE_MIN)  # hourly at :03:00
    with pytest.raises(ScheduleError):
        validate_schedule("*/20 * * * * *", "UTC", min_interval=FIVE_MIN)
    validate_schedule("*/20 * * * * *", "UTC", min_interval=timedelta(seconds=5))
    after = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    assert next_fire("*/20 * * * * *", "UTC", after) == after + timedelta(seconds=20)
