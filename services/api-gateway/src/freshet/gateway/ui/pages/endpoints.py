"""Endpoints: the list with health and last run, one endpoint, add and edit (admin) with a
connection test, delete (admin), and Trigger collection (operator)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from freshet.catalog import Collection, CollectionRun, Endpoint, RunStatus, UnitOfWork
from freshet.catalog.refresh_listing import JobFilter
from freshet.connectors import KINDS
from freshet.gateway import errors
from freshet.gateway.deps import ReadUow, Uow, caller_for
from freshet.gateway.schemas import ConnectionTestOut
from freshet.gateway.service_layer import collections, endpoints, refresh_lookup
from freshet.gateway.settings import GatewaySettings
from freshet.gateway.ui.endpoint_form import (
    PREVIEW_POLICIES,
    SECRET_HINTS,
    SECRET_ROWS,
    Draft,
    config_fields,
    parse_change,
    parse_new,
)
from freshet.gateway.ui.pages.refreshes import form_defaults
from freshet.gateway.ui.rendering import render
from freshet.gateway.ui.routing import ui_router
from freshet.gateway.ui.session import Admin, Operator, UiUser, Viewer, set_flash

router = ui_router()


# What a connection does to its caches when a run finds a table's columns changed.
SCHEMA_CHANGE_POLICIES = {
    "refresh": "refresh: the old version serves until a new one is written (default)",
    "invalidate": "invalidate: drop the cache at once, then refresh",
    "ignore": "ignore: keep the old version until refreshed on request",
}

# Shown when a form has to be shown again: secret values are never written into a page.
RETYPE_SECRETS = "Secret values are not shown again: type them again before saving."


@dataclass(frozen=True)
class Health:
    label: str
    style: str
    why: str


def health_of(collection: Collection | None, last_finished: CollectionRun | None) -> Health:
    """What an operator first wants to know: is this source being collected, and does it work."""
    if collection is None:
        return Health("No collection", "muted", "Nothing collects this endpoint.")
    if not collection.is_enabled:
        return Health("Disabled", "muted", "Its collection is disabled: no runs at all.")
    if last_finished is None:
        return Health("Unknown", "wait", "No run has finished yet.")
    if last_finished.status == RunStatus.FAILED:
        return Health("Failing", "bad", last_finished.error or "The last run failed.")
    return Health("Healthy", "ok", "The last run succeeded.")


@dataclass(frozen=True)
class EndpointRow:
    endpoint: Endpoint
    collection: Collection | None
    last_run: CollectionRun | None
    health: Health


async def _rows(uow: UnitOfWork, only: uuid.UUID | None = None) -> list[EndpointRow]:
    if only is None:
        found = await uow.endpoints.all()
    else:
        found = [await endpoints.get_endpoint(uow, only)]
    by_endpoint = {c.endpoint_id: c for c in await uow.collections.all()}
    ids = [e.id for e in found]
    last = await uow.runs.latest_for_endpoints(ids)
    finished = await uow.runs.latest_for_endpoints(
        ids, statuses=[RunStatus.SUCCEEDED, RunStatus.FAILED]
    )
    return [
        EndpointRow(
            e,
            by_endpoint.get(e.id),
            last.get(e.id),
            health_of(by_endpoint.get(e.id), finished.get(e.id)),
        )
        for e in found
    ]


@router.get("/endpoints")
async def list_page(request: Request, uow: ReadUow, user: Viewer) -> Response:
    return render(request, "endpoints.html", {"rows": await _rows(uow)}, user=user)


@router.get("/endpoints/{endpoint_id}/row")
async def row_fragment(
    endpoint_id: uuid.UUID, request: Request, uow: ReadUow, user: Viewer
) -> Response:
    """One row of the list, for live updates."""
    rows = await _rows(uow, endpoint_id)
    return render(request, "partials/endpoint_row.html", {"row": rows[0]}, user=user)


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def _form_page(
    request: Request,
    user: UiUser,
    draft: Draft,
    *,
    endpoint: Endpoint | None = None,
    status: int = 200,
    test: ConnectionTestOut | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    kinds = [endpoint.kind] if endpoint is not None else list(KINDS)
    return render(
        request,
        "endpoint_form.html",
        {
            "draft": draft,
            "endpoint": endpoint,
            "kinds": kinds,
            "fields": {kind: config_fields(kind) for kind in kinds},
            "secret_hints": SECRET_HINTS,
            "secret_rows": SECRET_ROWS,
            "policies": PREVIEW_POLICIES,
            "ingest_allowed": _settings(request).ingest_commands_allowed,
            "test": test,
            "notice": notice,
        },
        status=status,
        user=user,
    )


@router.get("/endpoints/new")
async def new_form(request: Request, user: Admin) -> Response:
    return _form_page(request, user, Draft())


def _invalid(draft: Draft, exc: errors.ApiError) -> None:
    draft.errors = list(exc.details or []) or [{"loc": ["body"], "msg": exc.message}]


@router.post("/endpoints/new")
async def create(request: Request, uow: Uow, user: Admin) -> Response:
    """Save, or (action=test) test the typed settings without saving them."""
    form = await request.form()
    allowed = _settings(request).ingest_commands_allowed
    draft, data = parse_new(form, ingest_allowed=allowed)
    caller = caller_for(request, user.principal)
    if data is None:
        return _form_page(request, user, draft, status=422, notice=RETYPE_SECRETS)
    try:
        if form.get("action") == "test":
            result = await endpoints.test_new_endpoint(caller, data)
            if request.headers.get("x-requested-with") == "fetch":
                return render(request, "partials/test_result.html", {"test": result}, user=user)
            return _form_page(request, user, draft, test=result, notice=RETYPE_SECRETS)
        endpoint, _ = await endpoints.register_endpoint(uow, caller, data)
    except (errors.ValidationFailed, errors.EndpointNameTaken) as exc:
        _invalid(draft, exc)
        return _form_page(request, user, draft, status=exc.status, notice=RETYPE_SECRETS)
    response = RedirectResponse(f"/ui/endpoints/{endpoint.id}", 303)
    set_flash(response, f"Endpoint {endpoint.name} added.", "success")
    return response


@router.get("/endpoints/{endpoint_id}")
async def detail(endpoint_id: uuid.UUID, request: Request, uow: ReadUow, user: Viewer) -> Response:
    row = (await _rows(uow, endpoint_id))[0]
    runs = await uow.runs.find(endpoint_id=endpoint_id, limit=5)
    datasets = await uow.datasets.for_endpoint(endpoint_id)
    caches = await refresh_lookup.cache_totals(uow, endpoint_id)
    last_refresh = next(
        iter(
            await refresh_lookup.list_jobs(
                uow, JobFilter(endpoint_id=endpoint_id), first=1, tables_per_job=0
            )
        ),
        None,
    )
    return render(
        request,
        "endpoint.html",
        {
            "row": row,
            "runs": runs,
            "dataset_count": len(datasets),
            "caches": caches,
            "last_refresh": last_refresh,
            "policies": SCHEMA_CHANGE_POLICIES,
            **form_defaults(request),
        },
        user=user,
    )


@router.get("/endpoints/{endpoint_id}/edit")
async def edit_form(
    endpoint_id: uuid.UUID, request: Request, uow: ReadUow, user: Admin
) -> Response:
    endpoint = await endpoints.get_endpoint(uow, endpoint_id)
    return _form_page(request, user, Draft.of(endpoint), endpoint=endpoint)


@router.post("/endpoints/{endpoint_id}/edit")
async def change(endpoint_id: uuid.UUID, request: Request, uow: Uow, user: Admin) -> Response:
    form = await request.form()
    endpoint = await endpoints.get_endpoint(uow, endpoint_id)
    allowed = _settings(request).ingest_commands_allowed
    draft, data = parse_change(form, endpoint, ingest_allowed=allowed)
    caller = caller_for(request, user.principal)
    if data is None:
        return _form_page(request, user, draft, endpoint=endpoint, status=422)
    try:
        if form.get("action") == "test":
            result = await endpoints.test_endpoint_change(uow, caller, endpoint_id, data)
            if request.headers.get("x-requested-with") == "fetch":
                return render(request, "partials/test_result.html", {"test": result}, user=user)
            return _form_page(
                request, user, draft, endpoint=endpoint, test=result, notice=RETYPE_SECRETS
            )
        await endpoints.update_endpoint(uow, caller, endpoint_id, data)
    except (errors.ValidationFailed, errors.EndpointNameTaken) as exc:
        _invalid(draft, exc)
        return _form_page(
            request, user, draft, endpoint=endpoint, status=exc.status, notice=RETYPE_SECRETS
        )
    response = RedirectResponse(f"/ui/endpoints/{endpoint_id}", 303)
    set_flash(response, f"Endpoint {draft.name} saved.", "success")
    return response


@router.post("/endpoints/{endpoint_id}/delete")
async def delete(endpoint_id: uuid.UUID, request: Request, uow: Uow, user: Admin) -> Response:
    endpoint = await endpoints.get_endpoint(uow, endpoint_id)
    name = endpoint.name
    await endpoints.delete_endpoint(uow, caller_for(request, user.principal), endpoint_id)
    response = RedirectResponse("/ui/endpoints", 303)
    set_flash(
        response, f"Endpoint {name} deleted with its collection, runs and datasets.", "success"
    )
    return response


@router.post("/endpoints/{endpoint_id}/test")
async def test_stored(
    endpoint_id: uuid.UUID, request: Request, uow: Uow, user: Operator
) -> Response:
    result = await endpoints.test_endpoint(uow, caller_for(request, user.principal), endpoint_id)
    if request.headers.get("x-requested-with") == "fetch":
        return render(request, "partials/test_result.html", {"test": result}, user=user)
    response = RedirectResponse(f"/ui/endpoints/{endpoint_id}", 303)
    if result.ok:
        set_flash(response, f"Connection works ({result.latency_ms} ms).", "success")
    else:
        set_flash(response, f"Connection failed: {result.error}", "error")
    return response


@router.post("/endpoints/{endpoint_id}/trigger")
async def trigger(endpoint_id: uuid.UUID, request: Request, uow: Uow, user: Operator) -> Response:
    """Queue a run (trigger source `manual`) and show it on its collection's page."""
    caller = caller_for(request, user.principal)
    try:
        run = await collections.trigger_endpoint_collection(
            uow, caller, endpoint_id, trigger_source="manual"
        )
    except (errors.CollectionInProgress, errors.CollectionDisabled) as exc:
        async with UnitOfWork(uow.db, read_only=True) as read:
            collection = await read.collections.for_endpoint(endpoint_id)
        if collection is None:
            raise
        response = RedirectResponse(f"/ui/collections/{collection.id}#runs", 303)
        why = (
            "A run of this collection is already queued or running."
            if isinstance(exc, errors.CollectionInProgress)
            else "This collection is disabled; enable it to run it."
        )
        set_flash(response, why, "error")
        return response
    response = RedirectResponse(f"/ui/collections/{run.collection_id}?run={run.id}#runs", 303)
    set_flash(response, "Collection triggered: the new run is queued.", "success")
    return response
