"""json_safe: every driver value becomes something json.dumps accepts, without silent loss."""

from __future__ import annotations

import enum
import json
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from freshet.connectors import json_safe


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (False, False),
        (42, 42),
        (2**70, 2**70),
        (Colour.RED, 1),
        (1.5, 1.5),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        ("héllo", "héllo"),
        (Decimal("12.50"), "12.50"),
        (Decimal("1E+3"), "1E+3"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05+00:00"),
        (datetime(2026, 1, 2, 3, 4, 5, 600), "2026-01-02T03:04:05.000600"),
        (date(2026, 1, 2), "2026-01-02"),
        (time(13, 45), "13:45:00"),
        (timedelta(days=1, hours=1, minutes=1, seconds=1), "PT90061S"),
        (timedelta(seconds=1, microseconds=500_000), "PT1.5S"),
        (timedelta(microseconds=1), "PT0.000001S"),
        (timedelta(seconds=-90), "-PT90S"),
        (timedelta(0), "PT0S"),
        (uuid.UUID("11111111-1111-4111-8111-111111111111"), "11111111-1111-4111-8111-111111111111"),
        (b"\x00\x01\x02", "<binary 3 bytes>"),
        (bytearray(5), "<binary 5 bytes>"),
        (memoryview(b"abcd"), "<binary 4 bytes>"),
        (memoryview(bytes(8)).cast("I"), "<binary 8 bytes>"),
        ([1, Decimal("2"), (b"x", None)], [1, "2", ["<binary 1 bytes>", None]]),
        ({"a": Decimal("1.0"), 2: [date(2026, 1, 1)]}, {"a": "1.0", "2": ["2026-01-01"]}),
        (frozenset(), "frozenset()"),
        (object, "<class 'object'>"),
    ],
)
def test_json_safe(value: object, expected: object) -> None:
    result = json_safe(value)
    assert result == expected
    assert type(result) is type(expected)
    json.dumps(result, allow_nan=False)


def test_json_safe_drops_str_subclasses() -> None:
    class Tag(str):
        pass

    assert type(json_safe(Tag("x"))) is str
