"""GraphQL types of seed 003 (names, nullability and defaults as written there), plus additive
fields (`cursor`, run counts, `triggerSource`, `durationMs`), built from catalog rows."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from freshet.catalog import Collection, CollectionRun, Endpoint
from freshet.catalog.endpoints import collection_cursor
from freshet.catalog.runs import run_cursor
from freshet.gateway import errors
from freshet.gateway.graphql.context import GraphQLContext
from freshet.gateway.schemas import loaded_schedule

Info = strawberry.Info[GraphQLContext, None]


def _id(value: uuid.UUID) -> strawberry.ID:
    return strawberry.ID(str(value))


@strawberry.enum(description="Status of a collection run.")
class MetadataCollectionStatus(enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


async def _collection_of(root: MetadataEndpoint, info: Info) -> MetadataCollection | None:
    found = await info.context.loaders.collection_of_endpoint.load(uuid.UUID(root.id))
    return MetadataCollection.of(found) if found is not None else None


@strawberry.type(
    description="A remote data source Freshet keeps fresh. Secrets are never returned: "
    "`secretFields` names them."
)
class MetadataEndpoint:
    id: strawberry.ID
    name: str = strawberry.field(description="Unique; used in /connections/{name}/… paths.")
    kind: str = strawberry.field(description="postgres, sqlite, …")
    config: JSON = strawberry.field(description="Connection settings, without secrets.")
    secret_fields: list[str] = strawberry.field(
        description="Names of the stored secrets; never their values."
    )
    preview_policy: str = strawberry.field(description="auto, manual-only or disabled.")
    labels: list[str]
    created_at: datetime
    updated_at: datetime
    preview_masks: list[str] = strawberry.field(
        description="Columns whose preview values are masked: names (any case) or `re:<regex>`."
    )

    collection: MetadataCollection | None = strawberry.field(
        resolver=_collection_of, description="The endpoint's collection; null if it has none."
    )

    @classmethod
    def of(cls, e: Endpoint) -> MetadataEndpoint:
        return cls(
            id=_id(e.id),
            name=e.name,
            kind=e.kind,
            config=JSON(dict(e.config)),
            secret_fields=[str(n) for n in e.secret_names],
            preview_policy=e.preview_policy,
            labels=[str(x) for x in e.labels],
            created_at=e.created_at,
            updated_at=e.updated_at,
            preview_masks=[str(m) for m in e.preview_masks],
        )


async def _endpoint_of(
    root: MetadataCollection | MetadataCollectionRun, info: Info
) -> MetadataEndpoint:
    """The `endpoint` of a collection or run, through the request's loader."""
    found = await info.context.loaders.endpoint.load(uuid.UUID(root.endpoint_id))
    if found is None:  # deleted since the item was read
        raise errors.EndpointNotFound(f"endpoint {root.endpoint_id} does not exist")
    return MetadataEndpoint.of(found)


@strawberry.type(description="The collection of an endpoint: its schedule and whether it runs.")
class MetadataCollection:
    id: strawberry.ID
    endpoint_id: strawberry.ID
    endpoint: MetadataEndpoint = strawberry.field(resolver=_endpoint_of)
    schedule_cron: str | None = strawberry.field(
        description="5-field cron expression; null = manual only."
    )
    schedule_timezone: str | None = strawberry.field(
        description='IANA time zone of the schedule, e.g. "Asia/Kolkata".'
    )
    is_enabled: bool = strawberry.field(description="A disabled collection never runs.")
    schedule_jitter_s: int = strawberry.field(
        description="Each scheduled fire waits a deterministic 0..N seconds after its tick."
    )
    temporal_schedule_id: str | None = strawberry.field(
        description="Id of the schedule (`collection::<id>`) while a cron is set; "
        "null for manual-only collections."
    )
    created_at: datetime
    updated_at: datetime
    cursor: str = strawberry.field(
        description="Pass as `after` to `collections` to list the collections after this one."
    )
    next_fire_at: datetime | None = strawberry.field(
        description="When the scheduler fires next; null when paused or manual-only."
    )
    last_fire_at: datetime | None = strawberry.field(
        description="The nominal time of the last scheduled fire."
    )
    last_run_id: strawberry.ID | None = strawberry.field(
        description="The run the last scheduled fire made."
    )

    @classmethod
    def of(cls, c: Collection) -> MetadataCollection:
        schedule = loaded_schedule(c)
        return cls(
            next_fire_at=schedule.next_fire_at if schedule and not schedule.paused else None,
            last_fire_at=schedule.last_fire_at if schedule else None,
            last_run_id=_id(schedule.last_run_id) if schedule and schedule.last_run_id else None,
            id=_id(c.id),
            endpoint_id=_id(c.endpoint_id),
            schedule_cron=c.schedule_cron,
            schedule_timezone=c.schedule_timezone,
            is_enabled=c.is_enabled,
            schedule_jitter_s=c.schedule_jitter_s,
            temporal_schedule_id=c.schedule_id,
            created_at=c.created_at,
            updated_at=c.updated_at,
            cursor=collection_cursor(c),
        )


@strawberry.type(description="One run of a collection.")
class MetadataCollectionRun:
    id: strawberry.ID
    collection_id: strawberry.ID | None = strawberry.field(
        description="Null once the collection was deleted (the run stays in history)."
    )
    endpoint_id: strawberry.ID
    endpoint: MetadataEndpoint = strawberry.field(resolver=_endpoint_of)
    status: MetadataCollectionStatus
    requested_by: str | None = strawberry.field(description="Name of the token that asked.")
    requested_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    workflow_id: str | None = strawberry.field(
        description="`collection-run::<id>`: the run's workflow, unique per run."
    )
    temporal_run_id: str | None = strawberry.field(
        description="Always null: runs are executed by Freshet's collector, not by Temporal, "
        "so there is no Temporal run id; `workflowId` identifies the execution."
    )
    error: str | None = strawberry.field(
        description="Why the run failed or was skipped, without connection secrets."
    )
    filters: JSON | None = strawberry.field(description="The datasets the run was limited to.")
    created_at: datetime
    updated_at: datetime
    trigger_source: str = strawberry.field(description="api, manual, schedule or event.")
    duration_ms: int | None = strawberry.field(description="From start to completion.")
    datasets_total: int | None = strawberry.field(description="Datasets found by the run.")
    datasets_added: int | None
    datasets_removed: int | None
    datasets_changed: int | None = strawberry.field(description="Datasets whose schema changed.")
    cursor: str = strawberry.field(
        description="Pass as `after` to `collectionRuns` to list the runs after this one."
    )

    @classmethod
    def of(cls, r: CollectionRun) -> MetadataCollectionRun:
        return cls(
            id=_id(r.id),
            collection_id=_id(r.collection_id) if r.collection_id else None,
            endpoint_id=_id(r.endpoint_id),
            status=MetadataCollectionStatus(r.status),
            requested_by=r.requested_by,
            requested_at=r.requested_at,
            started_at=r.started_at,
            completed_at=r.completed_at,
            workflow_id=r.workflow_id,
            temporal_run_id=None,
            error=r.error,
            filters=JSON(r.filters) if r.filters is not None else None,
            created_at=r.created_at,
            updated_at=r.updated_at,
            trigger_source=r.trigger_source,
            duration_ms=r.duration_ms,
            datasets_total=r.datasets_total,
            datasets_added=r.datasets_added,
            datasets_removed=r.datasets_removed,
            datasets_changed=r.datasets_changed,
            cursor=run_cursor(r),
        )


@strawberry.input(description="A new collection; an endpoint has at most one.")
class CollectionCreateInput:
    endpoint_id: strawberry.ID
    schedule_cron: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="5-field cron expression, at most one run per 5 minutes; "
        "absent or null = manual only.",
    )
    schedule_timezone: str | None = strawberry.field(
        default="UTC", description="IANA time zone; null means the default (UTC)."
    )
    is_enabled: bool | None = strawberry.field(
        default=True, description="null means the default (true)."
    )
    schedule_jitter_s: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="Seconds (0..86400) each scheduled fire may wait after its tick; "
        "absent or null = 0.",
    )


@strawberry.input(
    description="Changes to a collection: a field left out stays as it is; "
    "`scheduleCron: null` makes the collection manual-only."
)
class CollectionUpdateInput:
    schedule_cron: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="A new 5-field cron; null = manual only; absent = unchanged.",
    )
    schedule_timezone: str | None = strawberry.field(
        default=strawberry.UNSET, description="IANA time zone; absent or null = unchanged."
    )
    is_enabled: bool | None = strawberry.field(
        default=strawberry.UNSET, description="absent or null = unchanged."
    )
    schedule_jitter_s: int | None = strawberry.field(
        default=strawberry.UNSET, description="absent or null = unchanged."
    )
