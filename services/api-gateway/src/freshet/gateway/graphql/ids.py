"""Ids in GraphQL arguments: a malformed one is E_VALIDATION naming the argument."""

from __future__ import annotations

import uuid

from freshet.gateway import errors


def parse_id(value: str, *loc: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        raise errors.ValidationFailed(
            f"{'.'.join(loc)} is not a valid id",
            details=[{"loc": list(loc), "msg": "is not a UUID"}],
        ) from None
