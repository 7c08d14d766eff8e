"""Collections and runs: a collection's schedule (in words and cron, zone, next and last fire,
enable and disable), run history with filters and keyset pages, one run, cancel."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from zoneinfo import available_timezones

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from freshet.catalog import Collection, CollectionRun, Endpoint, RunStatus, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.runs import RunFilter, run_cursor
from freshet.gateway import errors
from freshet.gateway.deps import ReadUow, Uow, caller_for
from freshet.gateway.schemas import CollectionUpdate
from freshet.gateway.service_layer import collections, endpoints, runs
from freshet.gateway.ui.rendering import Clock, render
from freshet.gateway.ui.routing import ui_router
from freshet.gateway.ui.session import (
    Admin,
    Operator,
    UiUser,
    Viewer,
    local_path,
    set_flash,
    viewer_zone,
)

router = ui_router()


PAGE_SIZE = 25
ZONES = sorted(available_timezones() - {"localtime", "Factory"})


@dataclass
class HistoryFilter:
    """Run history filters as typed in the form (times in the viewer's zone)."""

    status: str = ""
    from_: str = ""
    to: str = ""
    endpoint: str = ""
    after: str = ""
    error: str | None = None

    @property
    def is_set(self) -> bool:
        return bool(self.status or self.from_ or self.to or self.endpoint)

    def query(self, **overrides: str) -> str:
        """The filter as a query string, e.g. for the next page's link."""
        values = {
            "status": self.status,
            "from": self.from_,
            "to": self.to,
            "endpoint": self.endpoint,
            "after": self.after,
        }
        values.update(overrides)
        return urlencode({k: v for k, v in values.items() if v})


def _read_filter(
    request: Request, clock: Clock, base: RunFilter
) -> tuple[HistoryFilter, RunFilter]:
    q = request.query_params
    shown = HistoryFilter(
        status=q.get("status", ""),
        from_=q.get("from", ""),
        to=q.get("to", ""),
        endpoint=q.get("endpoint", ""),
        after=q.get("after", ""),
    )
    statuses = None
    if shown.status:
        if shown.status not in RunStatus.__members__:
            raise errors.ValidationFailed(
                "status is not a run status",
                details=[{"loc": ["query", "status"], "msg": "unknown status"}],
            )
        statuses = [RunStatus(shown.status)]
    try:
        requested_from = clock.parse_input(shown.from_)
        requested_to = clock.parse_input(shown.to)
    except ValueError:
        raise errors.ValidationFailed(
            "from and to must be dates with times",
            details=[{"loc": ["query", "from"], "msg": "not a date and time"}],
        ) from None
    endpoint_id = base.endpoint_id
    if shown.endpoint:
        try:
            endpoint_id = uuid.UUID(shown.endpoint)
        except ValueError:
            raise errors.ValidationFailed(
                "endpoint is not an endpoint id",
                details=[{"loc": ["query", "endpoint"], "msg": "not an id"}],
            ) from None
    where = RunFilter(
        endpoint_id=endpoint_id,
        collection_id=base.collection_id,
        statuses=statuses,
        requested_from=requested_from,
        requested_to=requested_to,
    )
    return shown, where


async def _history(request: Request, uow: UnitOfWork, base: RunFilter) -> dict[str, Any]:
    clock = Clock(viewer_zone(request), utcnow())
    shown, where = _read_filter(request, clock, base)
    try:
        found = await runs.list_runs(uow, where, first=PAGE_SIZE + 1, after=shown.after or None)
    except errors.ApiError as exc:
        if exc.code != "E_VALIDATION":
            raise
        shown.error = exc.message
        found = []
    more = len(found) > PAGE_SIZE
    page = found[:PAGE_SIZE]
    return {
        "runs": page,
        "filter": shown,
        "statuses": [s.value for s in RunStatus],
        "next_after": run_cursor(page[-1]) if more else None,
        "highlight": request.query_params.get("run", ""),
    }


async def _collection_page(
    request: Request,
    uow: UnitOfWork,
    user: UiUser,
    collection_id: uuid.UUID,
    *,
    schedule_error: str | None = None,
    typed: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    collection = await collections.get_collection(uow, collection_id)
    endpoint = await endpoints.get_endpoint(uow, collection.endpoint_id)
    history = await _history(request, uow, RunFilter(collection_id=collection_id))
    return render(
        request,
        "collection.html",
        {
            "collection": collection,
            "endpoint": endpoint,
            "schedule": collection.schedule,
            "zones": ZONES,
            "schedule_error": schedule_error,
            "typed": typed
            or {"cron": collection.schedule_cron or "", "timezone": collection.schedule_timezone},
            "names": {endpoint.id: endpoint.name},
            "scope": f"collection:{collection.id}",
            "wide": False,
            **history,
        },
        status=status,
        user=user,
    )


@router.get("/collections/{collection_id}")
async def collection_page(
    collection_id: uuid.UUID, request: Request, uow: ReadUow, user: Viewer
) -> Response:
    return await _collection_page(request, uow, user, collection_id)


@router.post("/collections/{collection_id}/schedule")
async def set_schedule(
    collection_id: uuid.UUID, request: Request, uow: Uow, user: Admin
) -> Response:
    form = await request.form()
    cron = str(form.get("cron") or "").strip()
    zone = str(form.get("timezone") or "").strip() or "UTC"
    change = CollectionUpdate(schedule_cron=cron or None, schedule_timezone=zone)
    try:
        await collections.update_collection(
            uow, caller_for(request, user.principal), collection_id, change
        )
    except errors.ValidationFailed as exc:
        await uow.session.rollback()
        return await _collection_page(
            request,
            uow,
            user,
            collection_id,
            schedule_error=exc.message,
            typed={"cron": cron, "timezone": zone},
            status=422,
        )
    response = RedirectResponse(f"/ui/collections/{collection_id}", 303)
    set_flash(
        response, "Schedule saved." if cron else "Schedule removed: manual runs only.", "success"
    )
    return response


@router.post("/collections/{collection_id}/enabled")
async def set_enabled(
    collection_id: uuid.UUID, request: Request, uow: Uow, user: Admin
) -> Response:
    form = await request.form()
    enabled = form.get("enabled") == "true"
    await collections.update_collection(
        uow,
        caller_for(request, user.principal),
        collection_id,
        CollectionUpdate(is_enabled=enabled),
    )
    response = RedirectResponse(f"/ui/collections/{collection_id}", 303)
    set_flash(
        response,
        "Collection enabled."
        if enabled
        else "Collection disabled: it takes no runs until enabled.",
        "success",
    )
    return response


@router.get("/runs")
async def runs_page(request: Request, uow: ReadUow, user: Viewer) -> Response:
    history = await _history(request, uow, RunFilter())
    all_endpoints = await uow.endpoints.all()
    return render(
        request,
        "runs.html",
        {
            "endpoints": all_endpoints,
            "names": {e.id: e.name for e in all_endpoints},
            "scope": f"endpoint-runs:{history['filter'].endpoint}"
            if history["filter"].endpoint
            else "all",
            "wide": True,
            **history,
        },
        user=user,
    )


async def _run_and_endpoint(
    uow: UnitOfWork, run_id: uuid.UUID
) -> tuple[CollectionRun, Endpoint | None]:
    run = await runs.get_run(uow, run_id)
    return run, await uow.endpoints.get(run.endpoint_id)


@router.get("/runs/{run_id}")
async def run_page(run_id: uuid.UUID, request: Request, uow: ReadUow, user: Viewer) -> Response:
    run, endpoint = await _run_and_endpoint(uow, run_id)
    collection: Collection | None = (
        await uow.collections.get(run.collection_id) if run.collection_id else None
    )
    return render(
        request, "run.html", {"run": run, "endpoint": endpoint, "collection": collection}, user=user
    )


@router.get("/runs/{run_id}/row")
async def run_row(
    run_id: uuid.UUID, request: Request, uow: ReadUow, user: Viewer, wide: bool = False
) -> Response:
    """One row of a history table, for live updates."""
    run, endpoint = await _run_and_endpoint(uow, run_id)
    names = {endpoint.id: endpoint.name} if endpoint else {}
    return render(
        request,
        "partials/run_row.html",
        {"run": run, "names": names, "wide": wide, "highlight": "", "back": ""},
        user=user,
    )


@router.post("/runs/{run_id}/cancel")
async def cancel(run_id: uuid.UUID, request: Request, uow: Uow, user: Operator) -> Response:
    form = await request.form()
    back = local_path(str(form.get("next") or ""), f"/ui/runs/{run_id}")
    response = RedirectResponse(back, 303)
    try:
        await runs.cancel_run(uow, caller_for(request, user.principal), run_id)
    except errors.RunFinished:
        set_flash(response, "That run had already finished.", "error")
        return response
    set_flash(response, "Run cancelled.", "success")
    return response
