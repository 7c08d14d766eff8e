"""API tokens and the hashed form they are configured in: `role:sha256hex[:name]`.

SHA-256 without salt is enough because tokens are long random strings, not passwords people
choose: there is nothing to guess from a hash of 256 random bits.
"""

from __future__ import annotations

import hashlib
import secrets

ROLES = ("viewer", "operator", "admin")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "fsh_" + secrets.token_urlsafe(32)


def token_entry(token: str, role: str, name: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return f"{role}:{hash_token(token)}:{name}"
