"""Dataset previews: the stored sample, a fresh one on demand, preview settings, and the
handles of manual preview requests."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from freshet.catalog import previews as request_status
from freshet.gateway.deps import AdminCaller, OperatorCaller, ReadUow, Runtime, Uow, Viewer
from freshet.gateway.schemas import DatasetPreviewOut, DatasetPreviewSettings, PreviewRequestOut
from freshet.gateway.service_layer import previews
from freshet.gateway.settings import GatewaySettings

router = APIRouter(tags=["previews"])


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


@router.get("/datasets/{dataset_id}/preview")
async def get_dataset_preview(
    dataset_id: uuid.UUID, uow: ReadUow, _: Viewer, request: Request
) -> DatasetPreviewOut:
    """The stored preview (`cached: true`) with its age; `stale` when older than the staleness
    window or never sampled (then `sampled_at` is null and there are no rows)."""
    found = await previews.get_preview(uow, dataset_id, _settings(request).preview_staleness_s)
    return DatasetPreviewOut.of(found)


@router.post(
    "/datasets/{dataset_id}/preview",
    responses={202: {"model": DatasetPreviewOut, "description": "Still sampling: poll `request`."}},
)
async def preview_dataset(
    dataset_id: uuid.UUID,
    uow: Uow,
    caller: OperatorCaller,
    runtime: Runtime,
    request: Request,
    response: Response,
) -> DatasetPreviewOut:
    """Sample the dataset now. 200 with the fresh rows (`cached: false`) when the previewer
    answers within FRESHET_PREVIEW_REQUEST_TIMEOUT_S; otherwise 202 with the stored preview
    and `request`, whose `poll_url` says when the fresh rows are in. The previewer's endpoint
    limits apply. E_PREVIEW_DISABLED / E_PREVIEW_OPTED_OUT / E_DATASET_REMOVED (409),
    E_PREVIEW_FAILED (502) when sampling failed."""
    settings = _settings(request)
    asked = await previews.request_preview(uow, caller, dataset_id)
    await uow.session.close()  # not needed while waiting
    result = await previews.await_preview(
        runtime.db,
        asked.id,
        timeout_s=settings.preview_request_timeout_s,
        staleness_s=settings.preview_staleness_s,
    )
    assert result.request is not None
    if result.request.status != request_status.PERSISTED:
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Location"] = f"/preview-requests/{result.request.id}"
    return DatasetPreviewOut.of(result)


@router.patch("/datasets/{dataset_id}/preview-settings")
async def update_dataset_preview_settings(
    dataset_id: uuid.UUID,
    body: DatasetPreviewSettings,
    uow: Uow,
    caller: AdminCaller,
    request: Request,
) -> DatasetPreviewOut:
    """Opt a dataset out of previews (its stored sample is purged at once) or back in."""
    found = await previews.set_dataset_opt_out(
        uow, caller, dataset_id, body.opt_out, _settings(request).preview_staleness_s
    )
    return DatasetPreviewOut.of(found)


@router.get("/preview-requests/{request_id}")
async def get_preview_request(request_id: uuid.UUID, uow: ReadUow, _: Viewer) -> PreviewRequestOut:
    """A preview request's status; `persisted` means its rows are in the dataset's preview."""
    return PreviewRequestOut.of(await previews.get_request(uow, request_id))
