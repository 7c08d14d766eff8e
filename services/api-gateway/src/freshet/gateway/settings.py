"""Gateway settings: the common ones plus API tokens."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from freshet.kit.settings import Settings


class GatewaySettings(Settings):
    model_config = SettingsConfigDict(env_prefix="FRESHET_", extra="ignore")

    # Hashed tokens: "role:sha256hex[:name]" entries, comma separated, and/or a file with one
    # entry per line. Clear-text tokens are never configured, stored or logged.
    api_tokens: SecretStr | None = None
    api_tokens_file: Path | None = None
    # Larger request bodies are refused with 413 before anything parses them.
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
