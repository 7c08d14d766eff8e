"""Bearer tokens with roles. Tokens are configured as SHA-256 hashes only (freshet.kit.tokens)."""

from __future__ import annotations

import enum
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from freshet.gateway.settings import GatewaySettings
from freshet.kit.tokens import hash_token


class Role(enum.IntEnum):
    viewer = 1
    operator = 2
    admin = 3


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


class TokenStore:
    def __init__(self, entries: Iterable[str]) -> None:
        self._by_hash: dict[str, Principal] = {}
        for raw in entries:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(":")
            if len(parts) not in (2, 3) or parts[0] not in Role.__members__ or len(parts[1]) != 64:
                raise ValueError("a token entry must look like role:sha256hex[:name]")
            name = parts[2] if len(parts) == 3 else f"{parts[0]}-{parts[1][:8]}"
            self._by_hash[parts[1]] = Principal(name=name, role=Role[parts[0]])

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> TokenStore:
        entries: list[str] = []
        if settings.api_tokens is not None:
            entries += settings.api_tokens.get_secret_value().split(",")
        if settings.api_tokens_file is not None and settings.api_tokens_file.exists():
            entries += settings.api_tokens_file.read_text().splitlines()
        return cls(entries)

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None
