"""REST request and response bodies (snake_case, like the refresh API of seed 004)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import inspect as sa_inspect

from freshet.catalog import Collection, CollectionRun, Dataset, DatasetEdge, Endpoint
from freshet.catalog.audit import audit_cursor
from freshet.catalog.endpoints import collection_cursor
from freshet.catalog.models import AuditRecord, DeadLetterMark, PreviewRequest, Schedule
from freshet.catalog.runs import run_cursor
from freshet.catalog.schedules import MAX_JITTER_S
from freshet.contracts import RunFilters
from freshet.gateway.service_layer.previews import PreviewView
from freshet.kit.dead_letters import DeadLetter

PreviewPolicy = Literal["auto", "manual-only", "disabled"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
Label = Annotated[str, Field(min_length=1, max_length=200)]
SecretName = Annotated[str, Field(min_length=1, max_length=100)]
SecretValue = Annotated[str, Field(max_length=10_000)]
Argument = Annotated[str, Field(min_length=1, max_length=4_000, pattern=r"^[^\x00]*$")]
IngestCommand = Annotated[
    list[Argument],
    Field(
        min_length=1,
        max_length=100,
        description="argv of an external ingestion program run instead of the built-in "
        "discovery; secrets reach it as FRESHET_SECRET_<NAME> environment variables, never "
        "put them here.",
    ),
]
RunTimeout = Annotated[int, Field(ge=1, le=24 * 3600, description="Seconds one run may take.")]
PreviewMasks = Annotated[
    list[str],
    Field(
        max_length=100,
        description="Columns whose preview values are masked: a column name (any case) or "
        "`re:<regular expression>` searched in column names (any case).",
    ),
]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Unique; used in /connections/{name}/…")
    kind: str = Field(description="postgres, sqlite, …")
    config: dict[str, Any] = Field(default_factory=dict, description="Settings without secrets.")
    secrets: dict[SecretName, SecretValue] = Field(
        default_factory=dict,
        max_length=20,
        description="Secret settings (e.g. password); encrypted at rest, never returned.",
    )
    preview_policy: PreviewPolicy = "auto"
    labels: list[Label] = Field(default_factory=list, max_length=50)
    ingest_command: IngestCommand | None = None
    run_timeout_s: RunTimeout | None = None
    preview_masks: PreviewMasks = Field(default_factory=list)


class EndpointUpdate(BaseModel):
    """Only the fields sent change. `secrets` merges: a name with null removes that secret."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    config: dict[str, Any] | None = None
    secrets: dict[SecretName, SecretValue | None] | None = Field(default=None, max_length=20)
    preview_policy: PreviewPolicy | None = None
    labels: list[Label] | None = Field(default=None, max_length=50)
    ingest_command: IngestCommand | None = None
    run_timeout_s: RunTimeout | None = None
    preview_masks: PreviewMasks | None = None


class ConnectionTestOut(BaseModel):
    ok: bool
    latency_ms: int
    error: str | None = Field(description="Why the test failed, without any secret.")
    checked_at: datetime


class CollectionCreate(BaseModel):
    """Defaults as GraphQL's CollectionCreateInput: UTC, enabled."""

    model_config = ConfigDict(extra="forbid")

    endpoint_id: uuid.UUID
    schedule_cron: str | None = Field(
        default=None, max_length=120, description="5-field cron; null means manual only."
    )
    schedule_timezone: str = Field(default="UTC", max_length=64)
    is_enabled: bool = True
    schedule_jitter_s: int = Field(
        default=0,
        ge=0,
        le=MAX_JITTER_S,
        description="Each scheduled fire waits a deterministic 0..N seconds after its tick.",
    )


class CollectionUpdate(BaseModel):
    """Only the fields sent change; `schedule_cron: null` makes the collection manual-only."""

    model_config = ConfigDict(extra="forbid")

    schedule_cron: str | None = Field(default=None, max_length=120)
    schedule_timezone: str | None = Field(default=None, max_length=64)
    is_enabled: bool | None = None
    schedule_jitter_s: int | None = Field(default=None, ge=0, le=MAX_JITTER_S)


class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: RunFilters | None = None


class EndpointOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: str
    config: dict[str, Any]
    secret_fields: list[str] = Field(description="Names of stored secrets; never their values.")
    preview_policy: str
    labels: list[str]
    ingest_command: list[str] | None
    run_timeout_s: int | None
    collection_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    preview_masks: list[str] = Field(default_factory=list)

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
            ingest_command=[str(a) for a in e.ingest_command] if e.ingest_command else None,
            run_timeout_s=e.run_timeout_s,
            collection_id=collection.id if collection else None,
            created_at=e.created_at,
            updated_at=e.updated_at,
            preview_masks=[str(m) for m in e.preview_masks],
        )


class CollectionOut(BaseModel):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    schedule_cron: str | None
    schedule_timezone: str
    is_enabled: bool
    schedule_id: str | None
    schedule_jitter_s: int
    created_at: datetime
    updated_at: datetime
    next_fire_at: datetime | None = Field(description="When the scheduler fires next.")
    last_fire_at: datetime | None = Field(description="The nominal time of the last fire.")
    last_run_id: uuid.UUID | None = Field(description="The run the last fire made.")
    cursor: str = Field(description="Pass as `after` to get the items after this one.")

    @classmethod
    def of(cls, c: Collection) -> CollectionOut:
        data = {k: getattr(c, k) for k in COLLECTION_FIELDS}
        schedule = loaded_schedule(c)
        return cls(
            **data,
            next_fire_at=schedule.next_fire_at if schedule and not schedule.paused else None,
            last_fire_at=schedule.last_fire_at if schedule else None,
            last_run_id=schedule.last_run_id if schedule else None,
            cursor=collection_cursor(c),
        )


COLLECTION_FIELDS = (
    "id",
    "endpoint_id",
    "schedule_cron",
    "schedule_timezone",
    "is_enabled",
    "schedule_id",
    "schedule_jitter_s",
    "created_at",
    "updated_at",
)


def loaded_schedule(c: Collection) -> Schedule | None:
    """The collection's schedule row if it was loaded with it (a new object has none yet)."""
    if "schedule" in sa_inspect(c).unloaded:
        return None
    return c.schedule


class ScheduleOut(BaseModel):
    id: str
    kind: str = Field(description="collection, preview-sweep or table-refresh.")
    collection_id: uuid.UUID | None
    dataset_id: uuid.UUID | None = Field(description="The cached table of a table-refresh.")
    cron: str | None = Field(description="Cron in `timezone`; null for interval schedules.")
    interval_s: int | None = Field(description="Seconds between ticks; null for cron ones.")
    timezone: str
    jitter_s: int
    paused: bool
    next_fire_at: datetime | None = Field(description="The nominal time of the next tick.")
    due_at: datetime | None = Field(description="When the next tick fires (after jitter).")
    last_fire_at: datetime | None
    last_run_id: uuid.UUID | None = Field(description="The run or refresh the last tick made.")
    missed_ticks: int
    updated_at: datetime
    # Who paused it by hand (POST /schedules/{id}/pause); null when not held.
    paused_by: str | None = None

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        return cls.model_validate(s, from_attributes=True)


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
    filters: dict[str, Any] | None
    cursor: str = Field(description="Pass as `after` to get the runs after this one.")

    @classmethod
    def of(cls, r: CollectionRun) -> RunOut:
        data = {k: getattr(r, k) for k in cls.model_fields if k != "cursor"}
        return cls(**data, cursor=run_cursor(r))


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
    preview_opt_out: bool = False

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
            preview_opt_out=bool(d.payload.get("previewOptOut")),
        )


class DeadLetterReplayOut(BaseModel):
    at: datetime
    by: str


class DeadLetterOut(BaseModel):
    """A dead-lettered message. `value` is the original event (JSON text) when it is UTF-8;
    events carry no secrets, and `error` was scrubbed when it was written."""

    id: str = Field(description="`<dlq topic>:<partition>:<offset>`")
    dlq_topic: str
    partition: int
    offset: int
    topic: str = Field(description="The topic it was consumed from and is replayed to.")
    reason: str | None
    error: str | None
    group: str | None
    attempts: int | None
    failed_at: datetime | None
    event_type: str | None
    event_id: str | None
    correlation_id: str | None
    key: str | None
    value: str | None
    value_bytes: int
    headers: dict[str, str]
    replays: list[DeadLetterReplayOut]

    @classmethod
    def of(cls, m: DeadLetter, replays: list[DeadLetterMark]) -> DeadLetterOut:
        attempts = m.dlq("attempts")
        try:
            value: str | None = m.value.decode()
        except UnicodeDecodeError:
            value = None
        return cls(
            id=m.id,
            dlq_topic=m.dlq_topic,
            partition=m.partition,
            offset=m.offset,
            topic=m.original_topic,
            reason=m.dlq("reason"),
            error=m.dlq("error"),
            group=m.dlq("group"),
            attempts=int(attempts) if attempts and attempts.isdigit() else None,
            failed_at=m.failed_at,
            event_type=m.header("ce_type"),
            event_id=m.header("ce_id"),
            correlation_id=m.header("ce_correlationid"),
            key=m.key.decode(errors="replace") if m.key is not None else None,
            value=value,
            value_bytes=len(m.value),
            headers={k: v.decode(errors="replace") for k, v in m.headers},
            replays=[DeadLetterReplayOut(at=r.at, by=r.actor) for r in replays],
        )


class DeadLetterScope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str | None = Field(default=None, max_length=249)
    include_replayed: bool = False


class DeadLetterReplayAllOut(BaseModel):
    replayed: list[str]
    skipped_already_replayed: int
    not_replayable: list[str]


class DeadLetterPurgeOut(BaseModel):
    purged: int


# --- previews (issue 5) ------------------------------------------------------------------------


class PreviewRequestOut(BaseModel):
    """A preview request: the handle of a manual preview, pollable until answered."""

    id: uuid.UUID
    dataset_id: uuid.UUID
    endpoint_id: uuid.UUID
    status: str = Field(
        description="requested, queued, running, sampled, persisted (answered with rows), "
        "refused, throttled, dropped or failed."
    )
    refresh_source: str
    requested_by: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    reason: str | None = Field(description="Why it was refused or failed; no secrets.")
    poll_url: str = Field(description="GET it for this request's status.")
    preview_url: str = Field(description="GET it for the dataset's preview.")

    @classmethod
    def of(cls, r: PreviewRequest) -> PreviewRequestOut:
        return cls(
            id=r.id,
            dataset_id=r.dataset_id,
            endpoint_id=r.endpoint_id,
            status=r.status,
            refresh_source=r.refresh_source,
            requested_by=r.requested_by,
            requested_at=r.requested_at,
            started_at=r.started_at,
            finished_at=r.finished_at,
            attempts=r.attempts,
            reason=r.reason,
            poll_url=f"/preview-requests/{r.id}",
            preview_url=f"/datasets/{r.dataset_id}/preview",
        )


class PreviewErrorOut(BaseModel):
    at: str | None = None
    reason: str | None = None
    attempts: int | None = None


class DatasetPreviewOut(BaseModel):
    """A dataset's preview: the stored sample with its provenance, age and staleness."""

    dataset_id: uuid.UUID
    endpoint_id: uuid.UUID
    cached: bool = Field(
        description="true: the stored sample; false: sampled just now for this request."
    )
    sampled: bool = Field(description="false when the dataset was never sampled.")
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    sampled_at: datetime | None = Field(description="null when never sampled.")
    sampled_by: str | None
    refresh_source: str | None = Field(description="collection, manual, schedule or external.")
    run_id: str | None
    truncated: bool
    truncation: dict[str, Any] | None = Field(description="What was cut, and where.")
    masked_columns: list[str]
    age_seconds: float | None
    stale: bool = Field(description="Older than stale_after_seconds, or never sampled.")
    stale_after_seconds: float
    preview_policy: str = Field(description="The endpoint's policy: auto, manual-only, disabled.")
    opted_out: bool
    last_error: PreviewErrorOut | None = Field(
        description="The last failed sampling, when no newer preview was stored since."
    )
    request: PreviewRequestOut | None = Field(
        default=None, description="The manual request this answers (POST only)."
    )

    @classmethod
    def of(cls, v: PreviewView) -> DatasetPreviewOut:
        error = v.last_error
        return cls(
            **v.fields(),
            last_error=PreviewErrorOut.model_validate(error) if error else None,
            request=PreviewRequestOut.of(v.request) if v.request is not None else None,
        )


class DatasetPreviewSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    opt_out: bool = Field(
        description="true: never preview this dataset (stored sample purged, manual previews "
        "refused); false: preview it as its endpoint's policy says."
    )


class AuditRecordOut(BaseModel):
    id: uuid.UUID
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    outcome: str
    reason: str | None
    details: dict[str, Any]
    correlation_id: str | None
    cursor: str = Field(description="Pass as `after` to get the records after this one.")

    @classmethod
    def of(cls, r: AuditRecord) -> AuditRecordOut:
        data = {k: getattr(r, k) for k in cls.model_fields if k != "cursor"}
        return cls(**data, cursor=audit_cursor(r))
