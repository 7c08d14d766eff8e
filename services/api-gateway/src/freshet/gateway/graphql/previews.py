"""GraphQL for previews: `catalogDatasetPreview`, `previewRequest`, the `previewDataset`
mutation and the preview settings mutations, with the same fields and rules as REST (the same
service functions behind them). `Query` and `Mutation` in `schema` inherit these fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from freshet.catalog import PreviewRequest
from freshet.gateway import errors
from freshet.gateway.auth import Role
from freshet.gateway.graphql.ids import parse_id
from freshet.gateway.graphql.permissions import role_field
from freshet.gateway.graphql.types import Info, MetadataEndpoint
from freshet.gateway.schemas import EndpointUpdate
from freshet.gateway.service_layer import endpoints, previews
from freshet.gateway.service_layer.previews import PreviewView


@strawberry.type(description="A preview request: the handle of a manual preview.")
class DatasetPreviewRequest:
    id: strawberry.ID
    dataset_id: strawberry.ID
    status: str = strawberry.field(
        description="requested, queued, running, sampled, persisted (answered with rows), "
        "refused, throttled, dropped or failed."
    )
    refresh_source: str
    requested_by: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    reason: str | None = strawberry.field(description="Why it was refused or failed.")
    poll_url: str = strawberry.field(description="REST: GET it for this request's status.")

    @classmethod
    def of(cls, r: PreviewRequest) -> DatasetPreviewRequest:
        return cls(
            id=strawberry.ID(str(r.id)),
            dataset_id=strawberry.ID(str(r.dataset_id)),
            status=r.status,
            refresh_source=r.refresh_source,
            requested_by=r.requested_by,
            requested_at=r.requested_at,
            started_at=r.started_at,
            finished_at=r.finished_at,
            attempts=r.attempts,
            reason=r.reason,
            poll_url=f"/preview-requests/{r.id}",
        )


@strawberry.type(description="The last failed sampling of a dataset.")
class DatasetPreviewError:
    at: str | None
    reason: str | None
    attempts: int | None


@strawberry.type(
    description="A dataset's sample rows with provenance. `cached` is false only for rows "
    "sampled for this very request; a never-sampled dataset has no sampledAt and is stale."
)
class DatasetPreview:
    dataset_id: strawberry.ID
    endpoint_id: strawberry.ID
    cached: bool
    sampled: bool = strawberry.field(description="false when the dataset was never sampled.")
    columns: list[str]
    rows: JSON
    row_count: int
    sampled_at: datetime | None
    sampled_by: str | None
    refresh_source: str | None = strawberry.field(
        description="collection, manual, schedule or external."
    )
    run_id: str | None
    truncated: bool
    truncation: JSON | None = strawberry.field(description="What was cut, and where.")
    masked_columns: list[str]
    age_seconds: float | None
    stale: bool
    stale_after_seconds: float
    preview_policy: str
    opted_out: bool
    last_error: DatasetPreviewError | None
    request: DatasetPreviewRequest | None = strawberry.field(
        description="The manual request this answers (previewDataset only); while its status "
        "is not `persisted` the rows are the stored ones: poll it."
    )

    @classmethod
    def of(cls, v: PreviewView) -> DatasetPreview:
        fields = v.fields()
        error = v.last_error
        truncation = fields.pop("truncation")
        return cls(
            **{
                **fields,
                "dataset_id": strawberry.ID(str(v.dataset.id)),
                "endpoint_id": strawberry.ID(str(v.endpoint.id)),
                "rows": JSON(fields["rows"]),
            },
            truncation=JSON(truncation) if truncation else None,
            last_error=DatasetPreviewError(
                at=error.get("at"), reason=error.get("reason"), attempts=error.get("attempts")
            )
            if error
            else None,
            request=DatasetPreviewRequest.of(v.request) if v.request is not None else None,
        )


@strawberry.input(description="An endpoint's preview settings; a field left out is unchanged.")
class EndpointPreviewSettingsInput:
    preview_policy: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="auto, manual-only or disabled (disabling purges the stored samples).",
    )
    preview_masks: list[str] | None = strawberry.field(
        default=strawberry.UNSET,
        description="Column names (any case) or `re:<regex>` whose values are masked.",
    )


@strawberry.input(description="A dataset's preview settings.")
class DatasetPreviewSettingsInput:
    opted_out: bool = strawberry.field(
        description="true: never preview it (its stored sample is purged); false: as its "
        "endpoint's policy says."
    )


@strawberry.type
class PreviewQuery:
    @role_field(
        Role.viewer,
        "A dataset's stored preview with its age and staleness; null when there is no dataset "
        "with this id.",
    )
    async def catalog_dataset_preview(self, info: Info, id: strawberry.ID) -> DatasetPreview | None:
        dataset_id = parse_id(id, "id")
        async with info.context.read() as uow:
            try:
                found = await previews.get_preview(
                    uow, dataset_id, info.context.settings.preview_staleness_s
                )
            except errors.DatasetNotFound:
                return None
        return DatasetPreview.of(found)

    @role_field(Role.viewer, "A preview request; null when there is none with this id.")
    async def preview_request(self, info: Info, id: strawberry.ID) -> DatasetPreviewRequest | None:
        request_id = parse_id(id, "id")
        async with info.context.read() as uow:
            try:
                found = await previews.get_request(uow, request_id)
            except errors.PreviewRequestNotFound:
                return None
        return DatasetPreviewRequest.of(found)


@strawberry.type
class PreviewMutation:
    @role_field(
        Role.operator,
        "Sample the dataset now: fresh rows (`cached: false`) when the previewer answers in "
        "time, else the stored preview with `request` to poll. E_PREVIEW_DISABLED, "
        "E_PREVIEW_OPTED_OUT, E_DATASET_REMOVED, E_PREVIEW_FAILED.",
    )
    async def preview_dataset(self, info: Info, id: strawberry.ID) -> DatasetPreview:
        dataset_id = parse_id(id, "id")
        settings = info.context.settings
        async with info.context.write() as uow:
            asked = await previews.request_preview(uow, info.context.caller(), dataset_id)
        found = await previews.await_preview(
            info.context.runtime.db,
            asked.id,
            timeout_s=settings.preview_request_timeout_s,
            staleness_s=settings.preview_staleness_s,
        )
        return DatasetPreview.of(found)

    @role_field(
        Role.admin,
        "Change an endpoint's preview policy and masks (validated like REST's PATCH).",
    )
    async def update_endpoint_preview_settings(
        self,
        info: Info,
        id: strawberry.ID,
        input_: Annotated[EndpointPreviewSettingsInput, strawberry.argument(name="input")],
    ) -> MetadataEndpoint:
        endpoint_id = parse_id(id, "id")
        sent: dict[str, object] = {}
        if input_.preview_policy is not strawberry.UNSET and input_.preview_policy is not None:
            sent["preview_policy"] = input_.preview_policy
        if input_.preview_masks is not strawberry.UNSET and input_.preview_masks is not None:
            sent["preview_masks"] = input_.preview_masks
        # A ValidationError here is E_VALIDATION with loc/msg details (graphql/errors.py).
        body = EndpointUpdate.model_validate(sent)
        info.context.forget()
        async with info.context.write() as uow:
            updated, _ = await endpoints.update_endpoint(
                uow, info.context.caller(), endpoint_id, body
            )
        return MetadataEndpoint.of(updated)

    @role_field(
        Role.admin, "Opt a dataset out of previews (its stored sample is purged) or back in."
    )
    async def update_dataset_preview_settings(
        self,
        info: Info,
        id: strawberry.ID,
        input_: Annotated[DatasetPreviewSettingsInput, strawberry.argument(name="input")],
    ) -> DatasetPreview:
        dataset_id = parse_id(id, "id")
        async with info.context.write() as uow:
            found = await previews.set_dataset_opt_out(
                uow,
                info.context.caller(),
                dataset_id,
                input_.opted_out,
                info.context.settings.preview_staleness_s,
            )
        return DatasetPreview.of(found)
