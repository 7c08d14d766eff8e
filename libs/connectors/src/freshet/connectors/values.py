"""Turning whatever a database driver returns into values that survive JSON encoding."""

from __future__ import annotations

import math
import re
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from pydantic import JsonValue

# How a binary value appears in a sample: its size, never its bytes.
BINARY_NOTE = re.compile(r"<binary (\d+) bytes>")


def binary_note(size: int) -> str:
    return f"<binary {size} bytes>"


def json_safe(value: object) -> JsonValue:
    """`value` as a JSON value, losing precision or detail only where JSON cannot hold it.

    Lossless where JSON allows (Decimal and big numbers become strings rather than floats);
    binary data becomes a short description because previews should not ship blobs.
    """
    # bool before int: bool is an int subclass and must stay a bool.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # int() drops subclasses such as IntEnum, whose repr would leak into JSON encoders.
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else _non_finite(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _iso_seconds(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return binary_note(value.nbytes if isinstance(value, memoryview) else len(value))
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    return str(value)


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _iso_seconds(value: timedelta) -> str:
    """An ISO 8601 duration in seconds only (`PT90061.5S`), since months and days are ambiguous."""
    # Integer microseconds keep the value exact; float total_seconds() would round.
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    seconds = f"{whole}.{frac:06d}".rstrip("0") if frac else str(whole)
    return f"{sign}PT{seconds}S"
