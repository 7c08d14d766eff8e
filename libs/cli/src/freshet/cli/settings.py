"""Where the gateway is and who is asking: `FRESHET_GATEWAY_URL`, `FRESHET_TOKEN`, ..."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRESHET_", extra="ignore")

    gateway_url: str = "http://127.0.0.1:8000"
    # A bearer token, or a file holding one. Neither set: the development admin token that
    # `make up` writes (`<FRESHET_DATA_DIR>/admin-token`), when it exists.
    token: SecretStr | None = None
    token_file: Path | None = None
    cli_timeout_s: float = 30.0

    def bearer(self) -> str | None:
        if self.token is not None:
            return self.token.get_secret_value().strip()
        path = self.token_file or Path(os.environ.get("FRESHET_DATA_DIR", "var")) / "admin-token"
        if path.exists():
            return path.read_text().strip() or None
        return None
