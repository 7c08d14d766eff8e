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
    # SQL over the parquet caches (POST /query).
    # A statement's time limit, and the most a request may ask for (`timeout_s`).
    query_timeout_s: float = Field(default=30.0, gt=0)
    # Rows a query returns when the request names no `limit`, and the most it may name.
    query_default_row_limit: int = Field(default=1_000, ge=1)
    query_max_row_limit: int = Field(default=100_000, ge=1)
    # Queries one gateway process runs at once; more wait (up to their timeout), then 503.
    query_max_concurrent: int = Field(default=4, ge=1)
    # DuckDB threads and memory of one query (each query has a DuckDB instance of its own).
    query_threads: int = Field(default=2, ge=1)
    query_memory_limit: str = Field(default="512MB", pattern=r"^[0-9.]+\s*[KMGT]i?B$")
    # DuckDB instances opened ahead of need (opening one takes ~10 ms); 0 opens one per query.
    query_spare_instances: int = Field(default=2, ge=0, le=16)
    # How long a query waits for a lazy fetch (a refresh of a table with no usable cache).
    query_fetch_timeout_s: float = Field(default=120.0, gt=0)
    # A query's reader lease on its files; renewed every third of it while the query runs.
    query_lease_ttl_s: float = Field(default=60.0, ge=1)
