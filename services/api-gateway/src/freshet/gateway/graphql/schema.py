"""Query and Mutation of seed 003, resolved through the gateway's service layer.

Every resolver checks its role first (`role_field`), then opens its own unit of work: read-only
for queries, writing for mutations (the service function commits it).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, TypeVar

import strawberry
from graphql import GraphQLError
from pydantic import BaseModel, ValidationError
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.scalars import JSON
from strawberry.types import ExecutionContext

from freshet.catalog import CollectionRun, RunStatus
from freshet.catalog.runs import RunFilter
from freshet.contracts import RunFilters
from freshet.gateway import errors
from freshet.gateway.auth import Role
from freshet.gateway.graphql.errors import ErrorCodes, log_errors, pydantic_details
from freshet.gateway.graphql.ids import parse_id as _uuid
from freshet.gateway.graphql.permissions import check_roles, role_field
from freshet.gateway.graphql.previews import PreviewMutation, PreviewQuery
from freshet.gateway.graphql.types import (
    CollectionCreateInput,
    CollectionUpdateInput,
    Info,
    MetadataCollection,
    MetadataCollectionRun,
    MetadataCollectionStatus,
    MetadataEndpoint,
)
from freshet.gateway.schemas import CollectionCreate, CollectionUpdate
from freshet.gateway.service_layer import collections, endpoints, runs

MAX_PAGE = 500
MAX_CURSOR = 500
MAX_DEPTH = 10
MAX_TOKENS = 2_000
MAX_ALIASES = 30

Model = TypeVar("Model", bound=BaseModel)


def _given(value: Any) -> bool:
    """Whether an optional argument was sent with a value (not left out, not null)."""
    return value is not strawberry.UNSET and value is not None


def _invalid(loc: Iterable[str], message: str, msg: str) -> errors.ApiError:
    return errors.ValidationFailed(message, details=[{"loc": list(loc), "msg": msg}])


def _optional_uuid(value: str | None, *loc: str) -> uuid.UUID | None:
    return _uuid(value, *loc) if _given(value) and value is not None else None


def _page(first: int | None, after: str | None) -> tuple[int, str | None]:
    size = first if first is not None and first is not strawberry.UNSET else 50
    if not 1 <= size <= MAX_PAGE:
        raise _invalid(
            ["first"], f"first must be between 1 and {MAX_PAGE}", f"must be 1 to {MAX_PAGE}"
        )
    if _given(after) and after is not None:
        if len(after) > MAX_CURSOR:
            raise _invalid(["after"], "after is not a cursor from this list", "invalid cursor")
        return size, after
    return size, None


def _utc(value: datetime | None) -> datetime | None:
    """Times without an offset are UTC."""
    if not _given(value) or value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _model(model: type[Model], data: dict[str, Any]) -> Model:
    """Build a service-layer input model from the fields that were sent (and only those, so
    that its `model_fields_set` says what the client sent)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.ValidationFailed(
            "input is invalid", details=pydantic_details(exc, ["input"])
        ) from None


FILTERS_HELP = (
    "Optional (additive): limit the run to datasets matching include_schemas, "
    "exclude_schemas, include_tables, exclude_tables (shell patterns)."
)


def _filters(value: object) -> RunFilters | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.ValidationFailed(
            "filters must be an object",
            details=[{"loc": ["input", "filters"], "msg": "must be an object"}],
        )
    return _model(RunFilters, value)


async def _queue(
    info: Info, trigger: Callable[..., Awaitable[CollectionRun]], target: uuid.UUID, filters: object
) -> MetadataCollectionRun:
    """The two triggers: same source, same filters, same answer."""
    scope = _filters(filters)
    info.context.forget()
    async with info.context.write() as uow:
        run = await trigger(uow, info.context.caller(), target, trigger_source="api", filters=scope)
    return MetadataCollectionRun.of(run)


@strawberry.type
class Query(PreviewQuery):
    @role_field(
        Role.viewer,
        "Collections, oldest first, `first` (1 to 500) of them after the cursor `after`.",
    )
    async def collections(
        self,
        info: Info,
        endpoint_id: strawberry.ID | None = strawberry.UNSET,
        is_enabled: bool | None = strawberry.UNSET,
        first: int | None = 50,
        after: str | None = strawberry.UNSET,
    ) -> list[MetadataCollection]:
        size, cursor = _page(first, after)
        endpoint = _optional_uuid(endpoint_id, "endpointId")
        async with info.context.read() as uow:
            found = await collections.list_collections(
                uow,
                endpoint_id=endpoint,
                is_enabled=is_enabled if _given(is_enabled) else None,
                first=size,
                after=cursor,
            )
        return [MetadataCollection.of(c) for c in found]

    @role_field(Role.viewer, "One collection; null when there is none with this id.")
    async def collection(self, info: Info, id: strawberry.ID) -> MetadataCollection | None:
        collection_id = _uuid(id, "id")
        async with info.context.read() as uow:
            try:
                found = await collections.get_collection(uow, collection_id)
            except errors.CollectionNotFound:
                return None
        return MetadataCollection.of(found)

    @role_field(
        Role.viewer,
        "Runs, newest first, `first` (1 to 500) of them after the cursor `after`; "
        "`from` (inclusive) and `to` (exclusive) bound the time they were requested "
        "(UTC when no offset is given).",
    )
    async def collection_runs(
        self,
        info: Info,
        endpoint_id: strawberry.ID | None = strawberry.UNSET,
        collection_id: strawberry.ID | None = strawberry.UNSET,
        status: MetadataCollectionStatus | None = strawberry.UNSET,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = strawberry.UNSET,
        to: datetime | None = strawberry.UNSET,
        first: int | None = 50,
        after: str | None = strawberry.UNSET,
    ) -> list[MetadataCollectionRun]:
        size, cursor = _page(first, after)
        where = RunFilter(
            endpoint_id=_optional_uuid(endpoint_id, "endpointId"),
            collection_id=_optional_uuid(collection_id, "collectionId"),
            statuses=[RunStatus(status.value)] if _given(status) and status is not None else None,
            requested_from=_utc(from_),
            requested_to=_utc(to),
        )
        async with info.context.read() as uow:
            found = await runs.list_runs(uow, where, first=size, after=cursor)
        return [MetadataCollectionRun.of(r) for r in found]

    @role_field(Role.viewer, "All endpoints, by name.")
    async def endpoints(self, info: Info) -> list[MetadataEndpoint]:
        async with info.context.read() as uow:
            found = await uow.endpoints.all()
            by_endpoint = {c.endpoint_id: c for c in await uow.collections.all()}
        loaders = info.context.loaders
        for e in found:  # their `collection` fields need no further reads
            loaders.endpoint.prime(e.id, e)
            loaders.collection_of_endpoint.prime(e.id, by_endpoint.get(e.id))
        return [MetadataEndpoint.of(e) for e in found]

    @role_field(Role.viewer, "One endpoint; null when there is none with this id.")
    async def endpoint(self, info: Info, id: strawberry.ID) -> MetadataEndpoint | None:
        endpoint_id = _uuid(id, "id")
        async with info.context.read() as uow:
            try:
                found = await endpoints.get_endpoint(uow, endpoint_id)
            except errors.EndpointNotFound:
                return None
        info.context.loaders.endpoint.prime(found.id, found)
        return MetadataEndpoint.of(found)

    @role_field(Role.viewer, "One run; null when there is none with this id.")
    async def run(self, info: Info, id: strawberry.ID) -> MetadataCollectionRun | None:
        run_id = _uuid(id, "id")
        async with info.context.read() as uow:
            try:
                found = await runs.get_run(uow, run_id)
            except errors.RunNotFound:
                return None
        return MetadataCollectionRun.of(found)


@strawberry.type
class Mutation(PreviewMutation):
    @role_field(
        Role.admin,
        "Create the collection of an endpoint that has none (E_VALIDATION when it has one).",
    )
    async def create_collection(
        self,
        info: Info,
        input_: Annotated[CollectionCreateInput, strawberry.argument(name="input")],
    ) -> MetadataCollection:
        data: dict[str, Any] = {"endpoint_id": input_.endpoint_id}
        if _given(input_.schedule_cron):
            data["schedule_cron"] = input_.schedule_cron
        if _given(input_.schedule_timezone):
            data["schedule_timezone"] = input_.schedule_timezone
        if _given(input_.is_enabled):
            data["is_enabled"] = input_.is_enabled
        if _given(input_.schedule_jitter_s):
            data["schedule_jitter_s"] = input_.schedule_jitter_s
        body = _model(CollectionCreate, data)
        info.context.forget()
        async with info.context.write() as uow:
            created = await collections.create_collection(uow, info.context.caller(), body)
        return MetadataCollection.of(created)

    @role_field(
        Role.admin,
        "Change the fields sent; `scheduleCron: null` makes the collection manual-only.",
    )
    async def update_collection(
        self,
        info: Info,
        id: strawberry.ID,
        input_: Annotated[CollectionUpdateInput, strawberry.argument(name="input")],
    ) -> MetadataCollection:
        collection_id = _uuid(id, "id")
        sent = {
            "schedule_cron": input_.schedule_cron,
            "schedule_timezone": input_.schedule_timezone,
            "is_enabled": input_.is_enabled,
            "schedule_jitter_s": input_.schedule_jitter_s,
        }
        body = _model(
            CollectionUpdate, {k: v for k, v in sent.items() if v is not strawberry.UNSET}
        )
        info.context.forget()
        async with info.context.write() as uow:
            updated = await collections.update_collection(
                uow, info.context.caller(), collection_id, body
            )
        return MetadataCollection.of(updated)

    @role_field(
        Role.admin,
        "Delete a collection and its schedule; an active run is cancelled, run history stays.",
    )
    async def delete_collection(self, info: Info, id: strawberry.ID) -> bool:
        collection_id = _uuid(id, "id")
        info.context.forget()
        async with info.context.write() as uow:
            return await collections.delete_collection(uow, info.context.caller(), collection_id)

    @role_field(
        Role.operator,
        "Queue a run (E_COLLECTION_DISABLED; E_COLLECTION_IN_PROGRESS while a run is queued "
        "or running).",
    )
    async def trigger_collection(
        self,
        info: Info,
        collection_id: strawberry.ID,
        filters: Annotated[JSON | None, strawberry.argument(description=FILTERS_HELP)] = None,
    ) -> MetadataCollectionRun:
        return await _queue(
            info, collections.trigger_collection, _uuid(collection_id, "collectionId"), filters
        )

    @role_field(
        Role.operator,
        "Queue a run of the endpoint's collection; an endpoint without one gets a "
        "manual-only collection first.",
    )
    async def trigger_endpoint_collection(
        self,
        info: Info,
        endpoint_id: strawberry.ID,
        filters: Annotated[JSON | None, strawberry.argument(description=FILTERS_HELP)] = None,
    ) -> MetadataCollectionRun:
        return await _queue(
            info, collections.trigger_endpoint_collection, _uuid(endpoint_id, "endpointId"), filters
        )

    @role_field(
        Role.operator,
        "Cancel a QUEUED or RUNNING run (E_RUN_FINISHED when it already finished).",
    )
    async def cancel_run(self, info: Info, id: strawberry.ID) -> MetadataCollectionRun:
        run_id = _uuid(id, "id")
        info.context.forget()
        async with info.context.write() as uow:
            run = await runs.cancel_run(uow, info.context.caller(), run_id)
        return MetadataCollectionRun.of(run)


check_roles(Query, Mutation)


class FreshetSchema(strawberry.Schema):
    def process_errors(
        self,
        errors: list[GraphQLError],
        execution_context: ExecutionContext | None = None,
    ) -> None:
        """Log through structlog (strawberry's default logs every error, expected ones too,
        with the exception's text, through the standard library)."""
        log_errors(errors)


schema = FreshetSchema(
    query=Query,
    mutation=Mutation,
    extensions=[
        ErrorCodes,
        # Factories: each operation gets its own extension instances.
        partial(QueryDepthLimiter, max_depth=MAX_DEPTH),
        partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        partial(MaxAliasesLimiter, max_alias_count=MAX_ALIASES),
    ],
)
