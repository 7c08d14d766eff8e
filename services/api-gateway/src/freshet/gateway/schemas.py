"""REST request and response bodies (snake_case, like the refresh API of seed 004)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from freshet.catalog import Collection, CollectionRun, Dataset, DatasetEdge, Endpoint

PreviewPolicy = Literal["auto", "manual-only", "disabled"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Unique; used in /connections/{name}/…")
    kind: str = Field(description="postgres, sqlite, …")
    config: dict[str, Any] = Field(default_factory=dict, description="Settings without secrets.")
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Secret settings (e.g. password); encrypted at rest, never returned.",
    )
    preview_policy: PreviewPolicy = "auto"
    labels: list[str] = Field(default_factory=list, max_length=50)


class EndpointOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: str
    config: dict[str, Any]
    secret_fields: list[str] = Field(description="Names of stored secrets; never their values.")
    preview_policy: str
    labels: list[str]
    collection_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, e: Endpoint, collection: Collection | None) -> EndpointOut:
        return cls(
            id=e.id,
            name=e.name,
            kind=e.kind,
            config=e.config,
            secret_fields=[str(n) for n in e.secret_names],
            preview_policy=e.preview_policy,
            labels=[str(x) for x in e.labels],
            collection_id=collection.id if collection else None,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class CollectionOut(BaseModel):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    schedule_cron: str | None
    schedule_timezone: str
    is_enabled: bool
    schedule_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: Collection) -> CollectionOut:
        return cls.model_validate(c, from_attributes=True)


class RunOut(BaseModel):
    id: uuid.UUID
    collection_id: uuid.UUID | None
    endpoint_id: uuid.UUID
    status: str
    trigger_source: str
    requested_by: str | None
    requested_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None
    workflow_id: str | None
    error: str | None
    datasets_total: int | None
    datasets_added: int | None
    datasets_removed: int | None
    datasets_changed: int | None

    @classmethod
    def of(cls, r: CollectionRun) -> RunOut:
        duration = (
            int((r.completed_at - r.started_at).total_seconds() * 1000)
            if r.completed_at and r.started_at
            else None
        )
        data = {k: getattr(r, k) for k in cls.model_fields if k != "duration_ms"}
        return cls(**data, duration_ms=duration)


class EdgeOut(BaseModel):
    kind: str
    name: str
    source_dataset_id: uuid.UUID
    target_dataset_id: uuid.UUID
    details: dict[str, Any]


class DatasetOut(BaseModel):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    schema_name: str
    name: str
    kind: str
    columns: list[dict[str, Any]]
    primary_key: list[str]
    labels: list[str]
    row_estimate: int | None
    removed_at: datetime | None
    preview: dict[str, Any] | None = Field(
        description="Latest sample with provenance; null when never sampled."
    )
    edges: list[EdgeOut] | None = None
    updated_at: datetime

    @classmethod
    def of(cls, d: Dataset, edges: list[DatasetEdge] | None = None) -> DatasetOut:
        return cls(
            id=d.id,
            endpoint_id=d.endpoint_id,
            schema_name=d.schema_name,
            name=d.name,
            kind=d.kind,
            columns=d.columns,
            primary_key=[str(c) for c in d.primary_key],
            labels=[str(x) for x in d.labels],
            row_estimate=d.row_estimate,
            removed_at=d.removed_at,
            preview=d.payload.get("preview"),
            edges=None
            if edges is None
            else [EdgeOut.model_validate(e, from_attributes=True) for e in edges],
            updated_at=d.updated_at,
        )
