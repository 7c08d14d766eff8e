"""Opaque pagination cursors: the sort key of the last item of a page, base64url-encoded.

Opaque so that clients pass them back unchanged and the sort key can change without breaking
them more than a page.
"""

from __future__ import annotations

import base64
import binascii

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
