"""A dataset's preview actions: **Preview dataset** (operator) for a live sample, the panel a
page polls while the sample is being taken, and the admin's opt-out toggle.

The live sample is `POST /datasets/{id}/preview` of the API, through the same service layer:
a request row plus `PreviewRequested` (the previewer's endpoint limits apply), then a wait of
up to `FRESHET_PREVIEW_REQUEST_TIMEOUT_S` on the catalog. Not answered by then (the API's
202), the panel shows the request sampling and the page polls its handle until it is answered.
Without script the form posts, waits the same, and lands on the dataset page following the
request (`?request=<id>`), with a link to look again.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Request, Response
from fastapi.responses import RedirectResponse

from freshet.catalog import UnitOfWork
from freshet.gateway import errors
from freshet.gateway.deps import ReadUow, Runtime, Uow, caller_for
from freshet.gateway.service_layer import previews
from freshet.gateway.settings import GatewaySettings
from freshet.gateway.ui.preview_panel import PreviewPanel, Problem, load_panel, panel_of
from freshet.gateway.ui.rendering import render
from freshet.gateway.ui.routing import ui_router, wants_fragment
from freshet.gateway.ui.session import Admin, Operator, UiUser, Viewer, set_flash

router = ui_router()


# The answers that give no rows, shown in the panel rather than as an error page.
REFUSALS = (
    errors.PreviewDisabled,
    errors.PreviewOptedOut,
    errors.DatasetRemoved,
    errors.PreviewFailed,
)


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def _panel_response(
    request: Request, user: UiUser, panel: PreviewPanel, *, status: int = 200
) -> Response:
    return render(
        request,
        "partials/preview.html",
        {"panel": panel, "staleness_s": _settings(request).preview_staleness_s},
        status=status,
        user=user,
    )


@router.post("/datasets/{dataset_id}/preview")
async def preview_now(
    dataset_id: uuid.UUID, request: Request, uow: Uow, runtime: Runtime, user: Operator
) -> Response:
    settings = _settings(request)
    fragment = wants_fragment(request)
    try:
        asked = await previews.request_preview(uow, caller_for(request, user.principal), dataset_id)
    except REFUSALS as exc:
        # Refused before anything was requested (policy, opt-out, removed): nothing to follow.
        if not fragment:
            response = RedirectResponse(f"/ui/datasets/{dataset_id}#preview", 303)
            set_flash(response, f"No preview was taken: {exc.message}", "error")
            return response
        async with UnitOfWork(runtime.db, read_only=True) as read:
            stored = await previews.get_preview(read, dataset_id, settings.preview_staleness_s)
        panel = panel_of(stored, problem=Problem.of(exc))
        return _panel_response(request, user, panel, status=exc.status)
    await uow.session.close()  # not needed while waiting
    if not fragment:
        # Without script: wait as the API does, then show the page following the request.
        await previews.wait_for_answer(runtime.db, asked.id, settings.preview_request_timeout_s)
        return RedirectResponse(f"/ui/datasets/{dataset_id}?request={asked.id}#preview", 303)
    try:
        found = await previews.await_preview(
            runtime.db,
            asked.id,
            timeout_s=settings.preview_request_timeout_s,
            staleness_s=settings.preview_staleness_s,
        )
    except REFUSALS as exc:
        async with UnitOfWork(runtime.db, read_only=True) as read:
            panel = await load_panel(read, dataset_id, settings.preview_staleness_s, asked.id)
        return _panel_response(request, user, panel, status=exc.status)
    panel = panel_of(found, found.request)
    return _panel_response(request, user, panel, status=202 if panel.pending else 200)


@router.get("/datasets/{dataset_id}/preview")
async def preview_panel(
    dataset_id: uuid.UUID,
    request: Request,
    uow: ReadUow,
    user: Viewer,
    follow: Annotated[uuid.UUID | None, Query(alias="request")] = None,
) -> Response:
    """The panel alone: what a page polls while its request is being answered."""
    panel = await load_panel(uow, dataset_id, _settings(request).preview_staleness_s, follow)
    return _panel_response(request, user, panel)


@router.post("/datasets/{dataset_id}/preview-settings")
async def set_opt_out(dataset_id: uuid.UUID, request: Request, uow: Uow, user: Admin) -> Response:
    form = await request.form()
    opt_out = form.get("opt_out") == "true"
    await previews.set_dataset_opt_out(
        uow,
        caller_for(request, user.principal),
        dataset_id,
        opt_out,
        _settings(request).preview_staleness_s,
    )
    response = RedirectResponse(f"/ui/datasets/{dataset_id}#preview", 303)
    set_flash(
        response,
        "Opted out of previews: its stored preview was removed and no new one is taken."
        if opt_out
        else "Opted back in: the next collection run or Preview dataset samples it again.",
        "success",
    )
    return response
