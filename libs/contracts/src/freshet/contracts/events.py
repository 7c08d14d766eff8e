"""The events Freshet services exchange, one pydantic model each.

Field names are snake_case JSON so that systems outside the project can publish and read them
with any Kafka client. A version only ever gains optional fields; consumers ignore fields they
do not know, so a newer producer never breaks an older consumer.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

TriggerSource = Literal["manual", "schedule", "api", "event"]
RunOutcome = Literal["SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"]
RefreshSource = Literal["collection", "manual", "schedule", "external"]

MAX_PREVIEW_ROWS = 50


class Event(BaseModel):
    """Base of every event: immutable, tolerant of unknown fields, keyed for partitioning."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    # Name of the field whose value is the Kafka key (ordering is per key).
    key_field: ClassVar[str]

    def key(self) -> str:
        return str(getattr(self, self.key_field))


class CollectionRequested(Event):
    """Ask the collector to run a collection. Outside systems may publish it too."""

    event_type: ClassVar[str] = "freshet.collection.requested.v1"
    key_field: ClassVar[str] = "collection_id"

    collection_id: UUID
    run_id: UUID | None = Field(
        default=None,
        description="Run to execute. When absent the collector derives one from the event id, "
        "so a redelivered event still maps to one run.",
    )
    endpoint_id: UUID | None = None
    trigger_source: TriggerSource = "event"
    requested_by: str | None = Field(default=None, max_length=200)
    requested_at: datetime | None = None
    filters: dict[str, JsonValue] | None = None
    invalidate_changed: bool = Field(
        default=False,
        description="Drop the parquet cache of tables whose schema changed, in the run's own "
        "transaction, whatever the endpoint's schema-change policy.",
    )


class DatasetRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    dataset_id: UUID
    schema_name: str
    name: str


class DatasetDiff(BaseModel):
    """What a collection run changed in the catalog."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    added: list[DatasetRef] = Field(default_factory=list)
    removed: list[DatasetRef] = Field(default_factory=list)
    schema_changed: list[DatasetRef] = Field(default_factory=list)


class RunCompleted(Event):
    """A collection run reached a final status."""

    event_type: ClassVar[str] = "freshet.run.completed.v1"
    key_field: ClassVar[str] = "collection_id"

    run_id: UUID
    collection_id: UUID
    endpoint_id: UUID
    status: RunOutcome
    trigger_source: TriggerSource
    requested_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime
    error: str | None = Field(default=None, max_length=2000)
    datasets_total: int = Field(default=0, ge=0)
    diff: DatasetDiff = Field(default_factory=DatasetDiff)


class RefreshRequested(Event):
    """Ask the refresher to refresh the parquet cache of an endpoint's tables."""

    event_type: ClassVar[str] = "freshet.refresh.requested.v1"
    key_field: ClassVar[str] = "endpoint_id"

    endpoint_id: UUID
    refresh_id: UUID | None = None
    tables: list[str] | None = Field(
        default=None, description='"schema.table" names; absent means every cached table.'
    )
    force: bool = False
    trigger_source: TriggerSource = "event"
    requested_by: str | None = Field(default=None, max_length=200)
    all_tables: bool = Field(
        default=False,
        description="With `tables` absent: every discovered table, cached or not, instead of "
        "every cached table.",
    )
    concurrency: int | None = Field(
        default=None, ge=1, le=64, description="Tables refreshed at once for this request."
    )


class PreviewRequested(Event):
    """Ask the previewer to sample one dataset."""

    event_type: ClassVar[str] = "freshet.preview.requested.v1"
    key_field: ClassVar[str] = "dataset_id"

    dataset_id: UUID
    endpoint_id: UUID
    refresh_source: RefreshSource
    run_id: UUID | None = None
    requested_by: str | None = Field(default=None, max_length=200)
    request_id: UUID | None = Field(
        default=None,
        description="The preview request this event carries (the handle a caller polls). When "
        "absent the previewer derives one from the event id, so a redelivered event is one "
        "request.",
    )


class PreviewSampled(Event):
    """Sample rows of one dataset, from the previewer or from an outside sampler."""

    event_type: ClassVar[str] = "freshet.preview.sampled.v1"
    key_field: ClassVar[str] = "dataset_id"

    dataset_id: UUID
    endpoint_id: UUID | None = None
    columns: list[str]
    rows: list[list[JsonValue]] = Field(max_length=MAX_PREVIEW_ROWS)
    sampled_at: datetime
    sampled_by: str = Field(max_length=200)
    refresh_source: RefreshSource
    truncated: bool = False
    row_count: int = Field(ge=0)
    run_id: UUID | None = None
    request_id: UUID | None = Field(
        default=None, description="The preview request this sample answers, if any."
    )
    truncation: dict[str, JsonValue] | None = Field(
        default=None,
        description="What was cut to keep the sample small: counts of values truncated, binary "
        "values replaced and rows dropped, and where.",
    )
    masked_columns: list[str] | None = Field(
        default=None, description="Columns whose values were replaced by the endpoint's masks."
    )


class CollectionChanged(Event):
    """A collection's schedule or state changed; the scheduler follows it."""

    event_type: ClassVar[str] = "freshet.collection.changed.v1"
    key_field: ClassVar[str] = "collection_id"

    collection_id: UUID
    endpoint_id: UUID
    schedule_cron: str | None = None
    schedule_timezone: str = "UTC"
    is_enabled: bool = True
    deleted: bool = False
    schedule_jitter_s: int = Field(default=0, ge=0)
    changed_at: datetime


RefreshJobStatus = Literal["completed", "failed"]


class TableRefreshEvent(Event):
    """What every per-table refresh event says: which table, which refresh, who asked."""

    key_field: ClassVar[str] = "dataset_id"

    refresh_id: UUID
    dataset_id: UUID
    endpoint_id: UUID
    schema_name: str
    table_name: str
    trigger_source: TriggerSource


class TableRefreshed(TableRefreshEvent):
    """A table's cache moved to a new version (the catalog pointer moved)."""

    event_type: ClassVar[str] = "freshet.table.refreshed.v1"

    version: str
    rows: int = Field(ge=0)
    bytes: int = Field(ge=0)
    schema_fingerprint: str
    started_at: datetime
    completed_at: datetime


class TableRefreshFailed(TableRefreshEvent):
    """A table's refresh failed; its previous cache (if any) still serves."""

    event_type: ClassVar[str] = "freshet.table.refresh_failed.v1"

    error: str = Field(max_length=2000)
    failed_at: datetime


class RefreshCompleted(Event):
    """A refresh job (a table or a connection) has nothing left to do."""

    event_type: ClassVar[str] = "freshet.refresh.completed.v1"
    key_field: ClassVar[str] = "endpoint_id"

    refresh_id: UUID
    endpoint_id: UUID
    status: RefreshJobStatus
    scope: str
    tables_total: int = Field(ge=0)
    tables_succeeded: int = Field(ge=0)
    tables_failed: int = Field(ge=0)
    tables_skipped: int = Field(ge=0)
    rows_synced: int = Field(ge=0)
    bytes_written: int = Field(ge=0)
    requested_at: datetime
    started_at: datetime | None = None
    completed_at: datetime
    trigger_source: TriggerSource


EVENT_MODELS: tuple[type[Event], ...] = (
    CollectionRequested,
    RunCompleted,
    RefreshRequested,
    PreviewRequested,
    PreviewSampled,
    CollectionChanged,
    TableRefreshed,
    TableRefreshFailed,
    RefreshCompleted,
)
