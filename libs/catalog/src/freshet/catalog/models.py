"""The catalog's tables. Alembic migrations under migrations/ create them; keep both in step."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from freshet.catalog.clock import utcnow
from freshet.catalog.types import BigIntId, JsonType, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JsonType, list[Any]: JsonType}


class RunStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED, RunStatus.CANCELLED}
)


ACTIVE_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
ACTIVE_WHERE = "status IN ('QUEUED', 'RUNNING')"


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Endpoint(Timestamps, Base):
    __tablename__ = "endpoints"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    # Connection settings without secrets; secrets live encrypted in `secret_ciphertext`.
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secret_ciphertext: Mapped[str | None] = mapped_column(Text, default=None)
    # Names only, so listing endpoints never needs the key.
    secret_names: Mapped[list[Any]] = mapped_column(default=list)
    preview_policy: Mapped[str] = mapped_column(String(20), default="auto")
    labels: Mapped[list[Any]] = mapped_column(default=list)
    # An external ingestion command (argv) run instead of the built-in connector's discovery.
    ingest_command: Mapped[list[Any] | None] = mapped_column(JsonType, default=None)
    # Per-endpoint bound on one collection run; None means the collector's default.
    run_timeout_s: Mapped[int | None] = mapped_column(Integer, default=None)
    # Column patterns whose preview values are masked: exact names (any case) or `re:<regex>`.
    preview_masks: Mapped[list[Any]] = mapped_column(default=list)
    # Parquet caches (issue 6): whether a query may fetch an uncached table on first use, and
    # what a collection run that finds a cached table's schema changed does to its cache
    # (invalidate, refresh or ignore; see freshet.catalog.caches).
    cache_lazy_fetch: Mapped[bool] = mapped_column(Boolean, default=True)
    schema_change_policy: Mapped[str] = mapped_column(String(20), default="refresh")


class Collection(Timestamps, Base):
    __tablename__ = "collections"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # One collection per endpoint (seed 003, Q1).
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), unique=True
    )
    schedule_cron: Mapped[str | None] = mapped_column(String(120), default=None)
    schedule_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    schedule_id: Mapped[str | None] = mapped_column(String(120), default=None)
    # Each fire waits a deterministic 0..jitter seconds after its tick, so schedules sharing a
    # cron ("0 * * * *") do not all hit their sources in the same second.
    schedule_jitter_s: Mapped[int] = mapped_column(Integer, default=0)
    # The scheduler's row (next and last fire), loaded with the collection; None until the
    # scheduler has seen a cron.
    schedule: Mapped[Schedule | None] = relationship(
        "Schedule", lazy="selectin", viewonly=True, uselist=False
    )


class Schedule(Timestamps, Base):
    """A timed event the scheduler fires, of one kind:

    - "collection": id `collection::<collectionId>`, one per collection with a cron, kept in
      step with the collection by the scheduler; fires `CollectionRequested`.
    - "preview-sweep": id `preview-sweep`, an interval; requests previews older than the
      staleness window.
    - "table-refresh": id `table-refresh::<datasetId>`, an interval per cached table; fires
      `RefreshRequested`.

    A schedule has a cron (in `timezone`) or an interval, never both.
    """

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_paused_due_at", "paused", "due_at"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), default="collection")
    collection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), default=None, unique=True
    )
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), default=None, unique=True
    )
    cron: Mapped[str | None] = mapped_column(String(120), default=None)
    interval_s: Mapped[int | None] = mapped_column(Integer, default=None)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    jitter_s: Mapped[int] = mapped_column(Integer, default=0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # The nominal time of the next tick, UTC: the run id and the compare-and-set use it. Never
    # before the last change of cron, interval or zone.
    next_fire_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the next tick is actually fired: its nominal time plus the schedule's jitter.
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    last_fire_at: Mapped[datetime | None] = mapped_column(default=None)
    last_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    missed_ticks: Mapped[int] = mapped_column(Integer, default=0)
    # Who paused the schedule by hand (issue 8; NULL: not held). `paused` is the effective
    # state: held, or derived from its collection (disabled).
    paused_by: Mapped[str | None] = mapped_column(String(200), default=None)


class ArmedFire(Base):
    """A collection schedule's next tick, worked out ahead of time (issue 4): the run it makes,
    the `CollectionRequested` outbox row, and the tick after it. At the due instant the ticker
    fires every armed tick in a few set-based statements instead of building each fire then.

    An arm is valid only while its schedule still has the nominal tick, cron, zone and jitter
    it was worked out from; a changed schedule is fired the ordinary way (and armed again).
    """

    __tablename__ = "armed_fires"

    schedule_id: Mapped[str] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True
    )
    nominal: Mapped[datetime]
    due_at: Mapped[datetime]
    cron: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    jitter_s: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    collection_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    workflow_id: Mapped[str] = mapped_column(String(120))
    next_fire_at: Mapped[datetime]
    next_due_at: Mapped[datetime]
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(120))
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(Text)
    headers: Mapped[list[Any]]


class CollectionRun(Timestamps, Base):
    __tablename__ = "collection_runs"
    __table_args__ = (
        Index("ix_collection_runs_collection_id", "collection_id"),
        Index("ix_collection_runs_endpoint_id", "endpoint_id"),
        Index("ix_collection_runs_status_requested_at", "status", "requested_at"),
        # The database, not only code, keeps a collection to one active (QUEUED or RUNNING)
        # run, and so to one RUNNING run: concurrent triggers cannot both queue.
        Index(
            "uq_collection_runs_one_active",
            "collection_id",
            unique=True,
            sqlite_where=text(ACTIVE_WHERE),
            postgresql_where=text(ACTIVE_WHERE),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    collection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("collections.id", ondelete="SET NULL")
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.QUEUED.value)
    trigger_source: Mapped[str] = mapped_column(String(20), default="manual")
    requested_by: Mapped[str | None] = mapped_column(String(200), default=None)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    workflow_id: Mapped[str | None] = mapped_column(String(120), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    filters: Mapped[dict[str, Any] | None] = mapped_column(JsonType, default=None)
    datasets_total: Mapped[int | None] = mapped_column(Integer, default=None)
    datasets_added: Mapped[int | None] = mapped_column(Integer, default=None)
    datasets_removed: Mapped[int | None] = mapped_column(Integer, default=None)
    datasets_changed: Mapped[int | None] = mapped_column(Integer, default=None)
    # The names behind the counts ({"added": [[schema, name], ...], "removed": ..,
    # "schema_changed": ..}), so `POST /connections/{name}/discover` can answer from the run.
    diff: Mapped[dict[str, Any] | None] = mapped_column(JsonType, default=None)
    # Drop the cache pointer of tables whose schema changed, in the transaction that records
    # the change (discover's `invalidate_changed`), whatever the endpoint's policy says.
    invalidate_changed: Mapped[bool] = mapped_column(Boolean, default=False)
    # The collector working on a RUNNING run renews this lease; another takes the run over
    # once it expires, so a run whose collector died does not stay RUNNING forever.
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)

    @property
    def duration_ms(self) -> int | None:
        """From start to final status; None until both happened."""
        if self.started_at is None or self.completed_at is None:
            return None
        return int((self.completed_at - self.started_at).total_seconds() * 1000)


class Dataset(Timestamps, Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("endpoint_id", "schema_name", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), index=True
    )
    schema_name: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(400))
    kind: Mapped[str] = mapped_column(String(20), default="table")
    columns: Mapped[list[Any]] = mapped_column(default=list)
    primary_key: Mapped[list[Any]] = mapped_column(default=list)
    labels: Mapped[list[Any]] = mapped_column(default=list)
    # Free-form record; `payload["preview"]` holds the latest sample with its provenance.
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    row_estimate: Mapped[int | None] = mapped_column(default=None)
    # `payload["preview"]["sampledAt"]` as a column, so stale previews can be found (and
    # counted) without reading every payload. NULL: never sampled.
    preview_sampled_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    first_seen_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    last_seen_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    removed_at: Mapped[datetime | None] = mapped_column(default=None)


class DatasetEdge(Timestamps, Base):
    __tablename__ = "dataset_edges"
    __table_args__ = (UniqueConstraint("source_dataset_id", "target_dataset_id", "kind", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), index=True
    )
    source_dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    target_dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(40), default="foreign_key")
    # A stable name for the edge, e.g. "orders(customer_id)->customers(id)".
    name: Mapped[str] = mapped_column(String(600))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_published_at_id", "published_at", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(120))
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(Text)
    headers: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class InboxMessage(Base):
    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(String(120), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Lease(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column()


class DeadLetterMark(Base):
    """What operators did to dead-lettered messages, which stay in their `.dlq` topics.

    `replayed`: that message was re-published to its original topic. `purged`: every message
    of the partition up to and including `offset` is hidden from the dead-letter list (Kafka
    has no per-message delete, and the embedded broker neither retention nor delete-records).
    `digest` identifies the message at that offset: a broker that lost its topics reuses
    offsets, and a mark whose digest no longer matches is ignored.
    """

    __tablename__ = "dead_letter_marks"
    __table_args__ = (Index("ix_dead_letter_marks_topic", "dlq_topic", "partition", "action"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(20))
    dlq_topic: Mapped[str] = mapped_column(String(249))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class PreviewRequest(Timestamps, Base):
    """One request to sample a dataset, from the fan-out, the sweep, an operator or outside.

    The previewer's durable work item: the consumer records it and moves on, a worker holding
    the endpoint's lease runs it. Its id is the handle a caller polls. Statuses:
    requested (written by the gateway, not yet seen by the previewer) -> queued -> running ->
    sampled (PreviewSampled written) -> persisted; or refused, throttled, dropped, failed.
    """

    __tablename__ = "preview_requests"
    __table_args__ = (
        Index("ix_preview_requests_status_due_at", "status", "due_at"),
        Index("ix_preview_requests_endpoint_id_status", "endpoint_id", "status"),
        Index("ix_preview_requests_dataset_id_requested_at", "dataset_id", "requested_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    refresh_source: Mapped[str] = mapped_column(String(20))
    requested_by: Mapped[str | None] = mapped_column(String(200), default=None)
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    correlation_id: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(20))
    # Why it was refused, throttled, dropped or failed; sanitised, never a secret.
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # The previewer process running it (the holder of the endpoint's preview lease).
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    sampled_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditRecord(Base):
    """Who or what did what to which target, why, and how it ended. No secrets in any field."""

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_at_id", "at", "id"),
        Index("ix_audit_records_target_type_target_id", "target_type", "target_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(80), index=True)
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    outcome: Mapped[str] = mapped_column(String(40))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    correlation_id: Mapped[str | None] = mapped_column(String(200), default=None)


# --- parquet caches and refreshes (issue 6; API in freshet.catalog.caches and .refreshes) ---

REFRESH_ACTIVE_STATUSES = ("queued", "running")
REFRESH_ACTIVE_WHERE = "status IN ('queued', 'running')"


class TableCache(Timestamps, Base):
    """A table's cache settings and its current cache pointer (None: no cache to read).

    The pointer (version .. synced_at) only ever moves in one transaction, to a file that was
    completely written and fsynced before; queries read it at their start.
    """

    __tablename__ = "table_caches"

    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), index=True
    )
    # Kept cached: part of "every cached table" of a connection refresh.
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    # None: the endpoint's `cache_lazy_fetch`.
    lazy_fetch: Mapped[bool | None] = mapped_column(Boolean, default=None)
    # Refreshed on this interval by the scheduler's `table-refresh::<dataset id>` schedule.
    refresh_interval_s: Mapped[int | None] = mapped_column(Integer, default=None)
    version: Mapped[str | None] = mapped_column(String(80), default=None)
    uri: Mapped[str | None] = mapped_column(String(2000), default=None)
    rows: Mapped[int | None] = mapped_column(BigInteger, default=None)
    bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # sha256 of the parquet file's Arrow schema.
    schema_fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    # The dataset's (catalog) fingerprint when the version was written: differs from
    # `datasets.fingerprint` once the source's shape changed and the cache was not redone.
    source_fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    synced_at: Mapped[datetime | None] = mapped_column(default=None)
    # The refresh that wrote the current version.
    refresh_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)


class RefreshJob(Timestamps, Base):
    """One refresh request (a table or a connection): the seed's refresh id and status."""

    __tablename__ = "refresh_jobs"
    __table_args__ = (
        Index("ix_refresh_jobs_status_lease_expires_at", "status", "lease_expires_at"),
        Index("ix_refresh_jobs_requested_at_id", "requested_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), index=True
    )
    # "table" or "connection".
    scope: Mapped[str] = mapped_column(String(20), default="table")
    # queued -> in_progress -> completed | failed.
    status: Mapped[str] = mapped_column(String(20), default="queued")
    trigger_source: Mapped[str] = mapped_column(String(20), default="api")
    requested_by: Mapped[str | None] = mapped_column(String(200), default=None)
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    concurrency: Mapped[int] = mapped_column(Integer, default=5)
    tables_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_synced: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_written: Mapped[int] = mapped_column(BigInteger, default=0)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    correlation_id: Mapped[str | None] = mapped_column(String(200), default=None)
    # The refresher working on the job renews this; another takes the job over once it lapses.
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)


class RefreshItem(Base):
    """One table of a refresh job.

    Statuses: queued -> running -> succeeded | failed; queued -> skipped (synced within the
    minimum interval); waiting (joined the active item of another job, `joined_refresh_id`)
    -> the final status of that item. A partial unique index keeps a table to one active
    (queued or running) item across all jobs: the database, not code, makes a second request
    join the first.
    """

    __tablename__ = "refresh_items"
    __table_args__ = (
        Index(
            "uq_refresh_items_one_active",
            "dataset_id",
            unique=True,
            sqlite_where=text(REFRESH_ACTIVE_WHERE),
            postgresql_where=text(REFRESH_ACTIVE_WHERE),
        ),
        Index("ix_refresh_items_joined_refresh_id", "joined_refresh_id"),
    )

    refresh_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("refresh_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    schema_name: Mapped[str] = mapped_column(String(200))
    table_name: Mapped[str] = mapped_column(String(400))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    joined_refresh_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    # Where this attempt writes, recorded before the first byte: the reconciler never takes
    # the file of an active item for an orphan.
    version: Mapped[str | None] = mapped_column(String(80), default=None)
    uri: Mapped[str | None] = mapped_column(String(2000), default=None)
    rows: Mapped[int | None] = mapped_column(BigInteger, default=None)
    bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Why it failed (no secrets) or was skipped.
    error: Mapped[str | None] = mapped_column(Text, default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return int((self.completed_at - self.started_at).total_seconds() * 1000)


class CacheDeletion(Base):
    """A cache file to delete once `not_before` passed and no reader holds it (durable).

    No foreign keys: a deletion outlives the table and endpoint whose file it was.
    """

    __tablename__ = "cache_deletions"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    uri: Mapped[str] = mapped_column(String(2000), unique=True)
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    # replaced, invalidated, abandoned (an attempt that did not finish).
    reason: Mapped[str] = mapped_column(String(40), default="replaced")
    not_before: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class CacheReader(Base):
    """A query's claim on the cache files it reads (`lease_id` groups one query's files).

    A file with a live claim is never deleted; an expired claim (a reader that died) no
    longer holds it.
    """

    __tablename__ = "cache_readers"

    lease_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    uri: Mapped[str] = mapped_column(String(2000), primary_key=True, index=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
