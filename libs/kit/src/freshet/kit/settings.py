"""One settings object per process, read from `FRESHET_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRESHET_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("var")
    database_url: str = "sqlite:///var/catalog.db"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # For topics Freshet creates itself; 3 on a production cluster of three or more brokers.
    topic_replication_factor: int = Field(default=1, ge=1)

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"

    # Fernet keys: FRESHET_SECRET_KEY (one), FRESHET_SECRET_KEYS (newest first, comma
    # separated) and/or a file with one key per line, newest first. The first key encrypts.
    secret_key: SecretStr | None = None
    secret_keys: SecretStr | None = None
    secret_key_file: Path | None = None

    # Consumers. aiokafka's default fetch wait of 500 ms costs ~250 ms per event hop on the
    # embedded broker; 10 ms costs ~6% of a core when idle (FACTS.md).
    fetch_max_wait_ms: int = 10
    max_message_bytes: int = 1024 * 1024
    retry_attempts: int = Field(default=5, ge=1)
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    graceful_timeout_s: float = 15.0
    session_timeout_ms: int = 10_000

    # Outbox relay. Commits wake it (in-process at once; other processes through database
    # notices: LISTEN/NOTIFY on PostgreSQL, a PRAGMA data_version probe every
    # relay_probe_interval_s on SQLite, which bounds the wait of another process's events).
    # The outbox is also read every relay_poll_interval_s, in case a notice was lost.
    relay_poll_interval_s: float = Field(default=5.0, gt=0)
    relay_probe_interval_s: float = Field(default=0.05, gt=0)
    relay_batch_size: int = 500
    relay_lease_ttl_s: float = 10.0
    outbox_retention_hours: float = 24.0
    inbox_retention_hours: float = 24.0 * 7

    # Connectors.
    source_timeout_s: float = 30.0

    # Collections and runs.
    # Schedules firing more often than this are refused (seed 003, R1).
    min_schedule_interval_s: float = Field(default=300.0, ge=0)
    # One run, start to finish, unless its endpoint sets its own bound.
    run_timeout_s: float = Field(default=600.0, gt=0)
    # A RUNNING run's lease: renewed while its collector works on it, taken over when it lapses.
    run_lease_ttl_s: float = Field(default=30.0, gt=0)
    # How often a collector checks that its runs were not cancelled (and renews due leases).
    run_check_interval_s: float = Field(default=1.0, gt=0)
    max_concurrent_runs: int = Field(default=16, ge=1)
    # Ticks found later than this after downtime are counted as missed, not fired.
    schedule_catch_up_s: float = Field(default=60.0, ge=0)
    # The scheduler must see a schedule change within a second, not within milliseconds.
    scheduler_fetch_max_wait_ms: int = Field(default=500, ge=1)
    # Automatic previews after collection runs and from the sweep (endpoint policy still holds).
    preview_auto: bool = True
    # Previews older than this are stale: flagged in the API and UI, re-requested by the sweep.
    preview_staleness_s: float = Field(default=86_400.0, gt=0)
    # How often the scheduler's preview sweep looks for stale or never-sampled previews; 0 off.
    preview_sweep_interval_s: int = Field(default=3_600, ge=0)
    # Datasets one sweep requests at most (oldest first); the rest wait for the next sweep.
    preview_sweep_batch: int = Field(default=1_000, ge=1)
    # External ingestion commands run programs on collector hosts; an admin API token must not
    # be enough for that in production unless an operator opts in.
    allow_ingest_commands: bool | None = None

    # Kafka security (issue 8). Every client the kit makes (producer, consumers, admin) gets
    # these through `freshet.kit.broker.kafka_client_options`. SASL mechanisms are those aiokafka
    # supports without extra packages.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # PEM files; without a CA file the system's trust store verifies the brokers.
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_") and (
            not self.kafka_sasl_username or self.kafka_sasl_password is None
        ):
            raise ValueError(
                "FRESHET_KAFKA_SECURITY_PROTOCOL=SASL_* needs FRESHET_KAFKA_SASL_USERNAME and "
                "FRESHET_KAFKA_SASL_PASSWORD"
            )
        if (self.kafka_ssl_keyfile is None) != (self.kafka_ssl_certfile is None):
            raise ValueError("FRESHET_KAFKA_SSL_CERTFILE and FRESHET_KAFKA_SSL_KEYFILE go together")
        return self

    # Previews (issue 5; docs/architecture.md, "Previews").
    # Rows one sample reads at most; 50 is also the hard cap the events enforce.
    preview_max_rows: int = Field(default=50, ge=1, le=50)
    # Strings (and other values, as JSON text) over this many UTF-8 bytes are cut, marked.
    preview_max_value_bytes: int = Field(default=1024, ge=64, le=65_536)
    # The whole preview (columns and rows as JSON) stays under this; rows go from the end.
    preview_max_bytes: int = Field(default=65_536, ge=4_096, le=1_048_576)
    # Bounds connecting and every statement of one sample (the connectors' statement timeout).
    preview_statement_timeout_s: float = Field(default=15.0, gt=0)
    # Per endpoint: samples running at once, and started per second. Limits are global across
    # previewer replicas: one replica at a time works on an endpoint (a lease per endpoint).
    preview_endpoint_concurrency: int = Field(default=2, ge=1, le=256)
    preview_endpoint_rate: float = Field(default=5.0, gt=0)
    # Per dataset: at most one automatic refresh in this window; manual previews bypass it.
    preview_dataset_interval_s: float = Field(default=3_600.0, ge=0)
    # Attempts per request (transient failures: timeouts, refused connections), with
    # exponential backoff and jitter between them; then the request fails for that dataset.
    preview_max_attempts: int = Field(default=4, ge=1, le=20)
    preview_retry_initial_s: float = Field(default=1.0, ge=0)
    preview_retry_max_s: float = Field(default=30.0, ge=0)
    preview_retry_jitter_s: float = Field(default=1.0, ge=0)
    # A previewer holds an endpoint's preview lease this long unless it renews it.
    preview_lease_ttl_s: float = Field(default=15.0, gt=0)
    # How often a previewer looks for endpoints with due requests that no one works on.
    preview_poll_interval_s: float = Field(default=0.5, gt=0)
    # Endpoints one previewer process works on at once, and requests it holds per endpoint
    # (running or waiting to retry); the rest wait in the catalog.
    preview_max_endpoints: int = Field(default=64, ge=1)
    preview_endpoint_backlog: int = Field(default=32, ge=1)
    # How long POST /datasets/{id}/preview waits for fresh rows before answering 202.
    preview_request_timeout_s: float = Field(default=10.0, ge=0, le=120)
    # How often the previewer exports preview-age gauges and prunes old requests and audit.
    preview_gauge_interval_s: float = Field(default=15.0, gt=0)
    # Finished preview requests and audit records are kept this long.
    preview_request_retention_hours: float = Field(default=24.0 * 7, gt=0)
    audit_retention_days: float = Field(default=90.0, gt=0)
    # Parquet caches and refreshes (issue 6).
    # Where cache files live: a local folder (default `<data_dir>/cache`) or any S3-compatible
    # store as `s3://bucket/prefix` (with the endpoint URL and keys below).
    cache_root: str | None = None
    cache_s3_endpoint_url: str | None = None
    cache_s3_region: str = "us-east-1"
    cache_s3_access_key_id: SecretStr | None = None
    cache_s3_secret_access_key: SecretStr | None = None
    # A table synced less than this ago is not refreshed again unless forced (seed 004).
    refresh_min_interval_s: float = Field(default=300.0, ge=0)
    # Rows per Arrow batch read from a source and written to parquet: bounds a refresh's memory.
    refresh_batch_rows: int = Field(default=65_536, ge=1)
    # Table refreshes one refresher process runs at once, in all and per endpoint.
    refresh_max_concurrent: int = Field(default=4, ge=1)
    refresh_max_per_endpoint: int = Field(default=2, ge=1)
    # A connection refresh's parallelism when its request names none (seed 004: 5).
    refresh_default_concurrency: int = Field(default=5, ge=1, le=64)
    # One table's refresh, start to finish.
    refresh_timeout_s: float = Field(default=3_600.0, gt=0)
    # A refresh job's lease: renewed while a refresher works on it, taken over when it lapses.
    refresh_lease_ttl_s: float = Field(default=30.0, gt=0)
    # How long a synchronous refresh or discover request waits before answering with the state.
    refresh_wait_timeout_s: float = Field(default=300.0, gt=0)
    # A replaced or invalidated cache file is kept at least this long (and while read).
    cache_grace_s: float = Field(default=60.0, ge=0)
    # How often pending deletions are worked off / orphan files looked for.
    cache_maintenance_interval_s: float = Field(default=5.0, gt=0)
    cache_reconcile_interval_s: float = Field(default=600.0, gt=0)
    # Files younger than this are never taken for orphans (a writer may be about to record it).
    cache_orphan_min_age_s: float = Field(default=60.0, ge=0)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def ingest_commands_allowed(self) -> bool:
        if self.allow_ingest_commands is None:
            return not self.is_production
        return self.allow_ingest_commands

    def fernet_keys(self) -> list[str]:
        keys: list[str] = []
        if self.secret_key is not None:
            keys.append(self.secret_key.get_secret_value().strip())
        if self.secret_keys is not None:
            keys += [k.strip() for k in self.secret_keys.get_secret_value().split(",")]
        if self.secret_key_file is not None and self.secret_key_file.exists():
            keys += [k.strip() for k in self.secret_key_file.read_text().splitlines()]
        return [k for k in keys if k]
