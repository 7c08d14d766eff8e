"""Checks on input that the request models do not express, shared by every way in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from freshet.gateway import errors


def contains_nul(value: Any) -> bool:
    """Whether a JSON-like value holds a NUL character in any string, key or item."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


def refuse_nul(value: Any, loc: Sequence[str]) -> None:
    """PostgreSQL stores no NUL character in text or JSON (SQLite would): refuse it up front
    as E_VALIDATION instead of failing in the database with E_INTERNAL."""
    if contains_nul(value):
        message = "must not contain NUL characters"
        raise errors.ValidationFailed(
            f"{loc[-1]} {message}", details=[{"loc": list(loc), "msg": message}]
        )
