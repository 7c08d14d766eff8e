"""Endpoint secrets, encrypted at rest with Fernet; MultiFernet allows key rotation."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretError(Exception):
    """A secret could not be decrypted. The message never contains key or plaintext."""


def generate_key() -> str:
    return Fernet.generate_key().decode()


class SecretBox:
    """Encrypts with the first key, decrypts with any: put the new key first to rotate."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretError("no secret key configured")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except (ValueError, TypeError):
            raise SecretError("a configured secret key is not a valid Fernet key") from None

    def encrypt(self, secrets: Mapping[str, str]) -> str | None:
        if not secrets:
            return None
        return self._fernet.encrypt(json.dumps(dict(secrets)).encode()).decode()

    def decrypt(self, ciphertext: str | None) -> dict[str, str]:
        if not ciphertext:
            return {}
        try:
            plain = self._fernet.decrypt(ciphertext.encode())
        except InvalidToken:
            raise SecretError(
                "endpoint secrets cannot be decrypted with the configured keys"
            ) from None
        data = json.loads(plain)
        return {str(k): str(v) for k, v in data.items()}

    def rotate(self, ciphertext: str) -> str:
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretError(
                "endpoint secrets cannot be decrypted with the configured keys"
            ) from None
