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

    # Web UI (freshet.gateway.ui).
    # How long the browser keeps the sign-in cookie (it holds the API token; see the docs).
    ui_session_ttl_s: int = Field(default=8 * 3600, ge=60)
    # Secure cookies: None sets them on HTTPS requests only; set true behind a TLS proxy that
    # does not forward the scheme.
    ui_cookie_secure: bool | None = None
    # While someone watches runs live, how often the gateway also reads the active runs (for
    # RUNNING, which has no event, and for RunCompleted read by another gateway replica).
    ui_live_poll_s: float = Field(default=1.0, gt=0)
