"""Request and response bodies of the refresh API (seed 004's fields, snake_case)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from freshet.catalog.models import RefreshItem, RefreshJob, TableCache
from freshet.catalog.refreshes import Progress

TableName = Annotated[str, Field(min_length=3, max_length=700, pattern=r"^[^\x00]*$")]
SchemaChangePolicy = Literal["invalidate", "refresh", "ignore"]


def seed_status(status: str) -> str:
    """Seed 004 says `in_progress` from the moment a refresh is accepted."""
    return "in_progress" if status in ("queued", "in_progress") else status


class ConnectionRefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(
        default=None, ge=1, le=64, description="Tables refreshed at once (default 5)."
    )
    tables: list[TableName] | None = Field(
        default=None,
        max_length=10_000,
        description='"schema.table" names; absent: every cached table of the connection.',
    )
    all_tables: bool = Field(
        default=False,
        description="With `tables` absent: every discovered table, cached or not.",
    )


class TableResult(BaseModel):
    table: str
    schema_name: str
    table_name: str
    status: str
    rows_synced: int | None
    bytes: int | None
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None
    error: str | None
    reason: str | None = Field(description="Why it was skipped.")
    joined_refresh_id: uuid.UUID | None = Field(
        description="The refresh it joined (one was running for this table)."
    )

    @classmethod
    def of(cls, item: RefreshItem) -> TableResult:
        return cls(
            table=f"{item.schema_name}.{item.table_name}",
            schema_name=item.schema_name,
            table_name=item.table_name,
            status=item.status,
            rows_synced=item.rows,
            bytes=item.bytes,
            started_at=item.started_at,
            completed_at=item.completed_at,
            duration_ms=item.duration_ms,
            error=item.error,
            reason=item.reason,
            joined_refresh_id=item.joined_refresh_id,
        )


class TableError(BaseModel):
    table: str
    error: str


class RefreshStatusOut(BaseModel):
    """`GET /refresh/{refresh_id}`, and the answer of a connection refresh."""

    refresh_id: uuid.UUID
    connection: str
    scope: str
    status: str = Field(description="in_progress, completed or failed.")
    trigger_source: str
    requested_by: str | None
    force: bool
    concurrency: int
    tables_total: int
    tables_queued: int
    tables_running: int
    tables_completed: int = Field(description="Succeeded or skipped.")
    tables_succeeded: int
    tables_skipped: int
    tables_failed: int
    rows_synced: int
    bytes_written: int
    requested_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None
    error: str | None
    errors: list[TableError]
    tables: list[TableResult]

    @classmethod
    def of(
        cls, job: RefreshJob, connection: str, progress: Progress, items: list[RefreshItem]
    ) -> RefreshStatusOut:
        duration = (
            int((job.completed_at - job.requested_at).total_seconds() * 1000)
            if job.completed_at
            else None
        )
        return cls(
            refresh_id=job.id,
            connection=connection,
            scope=job.scope,
            status=seed_status(job.status),
            trigger_source=job.trigger_source,
            requested_by=job.requested_by,
            force=job.force,
            concurrency=job.concurrency,
            tables_total=progress.total,
            tables_queued=progress.queued + progress.waiting,
            tables_running=progress.running,
            tables_completed=progress.completed,
            tables_succeeded=progress.succeeded,
            tables_skipped=progress.skipped,
            tables_failed=progress.failed,
            rows_synced=progress.rows,
            bytes_written=progress.bytes,
            requested_at=job.requested_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            duration_ms=duration,
            error=job.error,
            errors=[
                TableError(table=f"{i.schema_name}.{i.table_name}", error=i.error or "failed")
                for i in items
                if i.status == "failed"
            ],
            tables=[TableResult.of(i) for i in items],
        )


class ConnectionRefreshAccepted(BaseModel):
    """202 of `POST /connections/{name}/refresh?async=true` (seed 004)."""

    refresh_id: uuid.UUID
    connection: str
    status: str
    tables_total: int
    tables_queued: int
    started_at: datetime


class TableRefreshOut(BaseModel):
    """`POST /connections/{name}/tables/{schema}/{table}/refresh` (seed 004's fields)."""

    refresh_id: uuid.UUID | None = Field(description="Absent when skipped without a refresh.")
    connection: str
    schema_name: str = Field(serialization_alias="schema")
    table: str
    status: str = Field(description="in_progress, completed, skipped or failed.")
    joined: bool = Field(description="A refresh of the table was running; this is that one.")
    started_at: datetime | None
    completed_at: datetime | None = None
    rows_synced: int | None = None
    bytes: int | None = None
    duration_ms: int | None = None
    queued_ms: int | None = Field(default=None, description="From request to start of work.")
    reason: str | None = Field(default=None, description="Why it was skipped.")
    error: str | None = None
    last_synced_at: datetime | None = None

    model_config = ConfigDict(populate_by_name=True)


class CacheSettingsIn(BaseModel):
    """Only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    cached: bool | None = None
    lazy_fetch: bool | None = Field(default=None, description="null: the connection's setting.")
    refresh_interval_s: int | None = Field(
        default=None, ge=1, le=366 * 86_400, description="null: refreshed only on request."
    )


class CacheOut(BaseModel):
    connection: str
    schema_name: str = Field(serialization_alias="schema")
    table: str
    dataset_id: uuid.UUID
    cached: bool
    lazy_fetch: bool | None
    refresh_interval_s: int | None
    version: str | None
    rows: int | None
    bytes: int | None
    schema_fingerprint: str | None
    schema_current: bool | None = Field(
        description="Whether the cached version has the shape the catalog has now."
    )
    synced_at: datetime | None
    refresh_id: uuid.UUID | None
    last_error: str | None
    last_attempt_at: datetime | None

    model_config = ConfigDict(populate_by_name=True)

    @classmethod
    def of(
        cls,
        connection: str,
        schema: str,
        table: str,
        dataset_id: uuid.UUID,
        fingerprint: str | None,
        cache: TableCache | None,
    ) -> CacheOut:
        return cls(
            connection=connection,
            schema_name=schema,
            table=table,
            dataset_id=dataset_id,
            cached=bool(cache and cache.cached),
            lazy_fetch=cache.lazy_fetch if cache else None,
            refresh_interval_s=cache.refresh_interval_s if cache else None,
            version=cache.version if cache else None,
            rows=cache.rows if cache else None,
            bytes=cache.bytes if cache else None,
            schema_fingerprint=cache.schema_fingerprint if cache else None,
            schema_current=(cache.source_fingerprint == fingerprint)
            if cache and cache.uri
            else None,
            synced_at=cache.synced_at if cache else None,
            refresh_id=cache.refresh_id if cache else None,
            last_error=cache.last_error if cache else None,
            last_attempt_at=cache.last_attempt_at if cache else None,
        )


class ConnectionCacheIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_change_policy: SchemaChangePolicy | None = None
    lazy_fetch: bool | None = None


class ConnectionCacheOut(BaseModel):
    connection: str
    schema_change_policy: str
    lazy_fetch: bool


class DiscoverOut(BaseModel):
    """`POST /connections/{name}/discover` (seed 004's fields plus the names)."""

    name: str
    run_id: uuid.UUID
    discovery_status: str = Field(
        description="success, failed, skipped, cancelled or in_progress (still running)."
    )
    tables_discovered: int | None
    tables_added: int | None
    tables_removed: int | None
    tables_schema_changed: int | None
    added: list[str]
    removed: list[str]
    schema_changed: list[str]
    invalidate_changed: bool
    caches_invalidated: list[str] = Field(
        description="Tables whose cache pointer was dropped (their schema changed)."
    )
    error: str | None
