"""Opaque pagination cursors: the sort key of the last item of a page, base64url-encoded.

Opaque so that clients pass them back unchanged and the sort key can change without breaking
them more than a page.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.sql.elements import ColumnElement

SEPARATOR = "\x1f"


def encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode(SEPARATOR.join(parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, parts: int) -> list[str]:
    """The parts of a cursor; ValueError("invalid cursor") when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("invalid cursor") from None
    split = raw.split(SEPARATOR)
    if len(split) != parts:
        raise ValueError("invalid cursor")
    return split


def older_than(cursor: str, at: Any, key: Any) -> ColumnElement[bool]:
    """The rows after `cursor` (time, id) in a newest-first list ordered by `at` then `key`
    (a cursor made by `encode_cursor(time.isoformat(), str(id))`); ValueError if it is not one
    of ours."""
    at_raw, id_raw = decode_cursor(cursor, parts=2)
    when, last = datetime.fromisoformat(at_raw), uuid.UUID(id_raw)
    return or_(at < when, and_(at == when, key < last))
