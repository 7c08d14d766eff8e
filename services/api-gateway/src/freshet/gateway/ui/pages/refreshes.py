"""Refreshes and caches: running and recent refresh jobs with per-table progress (live, over
`/ui/live/refreshes`), one job with every table, the cached tables with their age, size and
settings; refreshing a table (with force) or a connection (with concurrency), and changing a
table's cache settings (operator) or a connection's cache policy (admin).

Every action is the refresh API's own service-layer call (`service_layer.refreshes`), asked to
answer at once (the API's `async=true`): the page then follows the job as it runs.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from freshet.catalog import Endpoint, UnitOfWork
from freshet.catalog.refresh_listing import JobFilter, job_cursor
from freshet.gateway import errors
from freshet.gateway.deps import ReadUow, Runtime, Uow, caller_for
from freshet.gateway.refresh_schemas import (
    CacheSettingsIn,
    ConnectionCacheIn,
    ConnectionRefreshAccepted,
    ConnectionRefreshRequest,
)
from freshet.gateway.service_layer import endpoints, refresh_lookup, refreshes
from freshet.gateway.settings import GatewaySettings
from freshet.gateway.ui.rendering import render
from freshet.gateway.ui.routing import ui_router
from freshet.gateway.ui.session import (
    Admin,
    Operator,
    Viewer,
    local_path,
    set_flash,
)

router = ui_router()


PAGE_SIZE = 20
RUNNING_LIMIT = 100
TABLES_PER_JOB = 20


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def _endpoint_id(raw: str) -> uuid.UUID | None:
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise errors.ValidationFailed(
            "endpoint is not an endpoint id",
            details=[{"loc": ["query", "endpoint"], "msg": "not an id"}],
        ) from None


def form_defaults(request: Request) -> dict[str, Any]:
    """What the refresh and cache forms need to know of the settings."""
    settings = _settings(request)
    return {
        "default_concurrency": settings.refresh_default_concurrency,
        "min_interval_s": int(settings.min_schedule_interval_s),
    }


async def cached_tables_context(uow: UnitOfWork, endpoint_id: uuid.UUID | None) -> dict[str, Any]:
    tables = await refresh_lookup.list_cached_tables(uow, endpoint_id=endpoint_id, first=201)
    return {"cached": tables[:200], "more_cached": len(tables) > 200}


@router.get("/refreshes")
async def refreshes_page(
    request: Request,
    uow: ReadUow,
    user: Viewer,
    endpoint: str = "",
    after: str = "",
    highlight: Annotated[str, Query(alias="refresh")] = "",
) -> Response:
    endpoint_id = _endpoint_id(endpoint)
    running = await refresh_lookup.list_jobs(
        uow,
        JobFilter(endpoint_id=endpoint_id, open=True),
        first=RUNNING_LIMIT,
        tables_per_job=TABLES_PER_JOB,
    )
    recent = await refresh_lookup.list_jobs(
        uow,
        JobFilter(endpoint_id=endpoint_id, open=False),
        first=PAGE_SIZE + 1,
        after=after or None,
        tables_per_job=TABLES_PER_JOB,
    )
    next_after = None
    if len(recent) > PAGE_SIZE:
        recent = recent[:PAGE_SIZE]
        next_after = job_cursor(recent[-1].requested_at, recent[-1].refresh_id)
    all_endpoints = await uow.endpoints.all()
    return render(
        request,
        "refreshes.html",
        {
            "running": running,
            "recent": recent,
            "endpoints": all_endpoints,
            "endpoint": endpoint,
            "chosen": next((e for e in all_endpoints if e.id == endpoint_id), None),
            "after": after,
            "next_after": next_after,
            "newest": "?" + urlencode({"endpoint": endpoint}),
            "older": "?" + urlencode({"endpoint": endpoint, "after": next_after or ""}),
            "highlight": highlight,
            "scope": f"endpoint:{endpoint_id}" if endpoint_id else "all",
            **(await cached_tables_context(uow, endpoint_id)),
            **form_defaults(request),
        },
        user=user,
    )


@router.get("/refreshes/cached-tables")
async def cached_tables_fragment(
    request: Request, uow: ReadUow, user: Viewer, endpoint: str = ""
) -> Response:
    """The cached tables alone, for the page to show new ages and sizes after a refresh."""
    return render(
        request,
        "partials/cached_tables.html",
        {**(await cached_tables_context(uow, _endpoint_id(endpoint))), **form_defaults(request)},
        user=user,
    )


@router.get("/refreshes/{refresh_id}")
async def refresh_page(
    refresh_id: uuid.UUID, request: Request, uow: ReadUow, user: Viewer
) -> Response:
    """One job with every table (what `GET /refresh/{id}` answers)."""
    job = await refreshes.refresh_status(uow, refresh_id)
    endpoint = await uow.endpoints.get_by_name(job.connection)
    return render(
        request,
        "refresh.html",
        {"j": job, "endpoint": endpoint, "all_tables": True, "highlight": ""},
        user=user,
    )


@router.get("/refreshes/{refresh_id}/card")
async def refresh_card(
    refresh_id: uuid.UUID, request: Request, uow: ReadUow, user: Viewer, all: bool = False
) -> Response:
    """One job's card, for live updates (`all`: every table, as on the job's own page)."""
    if all:
        job = await refreshes.refresh_status(uow, refresh_id)
    else:
        job = await refresh_lookup.job_overview(uow, refresh_id, tables_per_job=TABLES_PER_JOB)
    return render(
        request,
        "partials/refresh_job.html",
        {"j": job, "all_tables": all, "highlight": ""},
        user=user,
    )


# --- actions -----------------------------------------------------------------------------------


async def _table(uow: UnitOfWork, dataset_id: uuid.UUID) -> tuple[Endpoint, str, str]:
    """The connection name, schema and table of a dataset (what the refresh API is addressed by)."""
    dataset = await uow.datasets.get(dataset_id)
    if dataset is None:
        raise errors.DatasetNotFound(f"dataset {dataset_id} does not exist")
    endpoint = await endpoints.get_endpoint(uow, dataset.endpoint_id)
    return endpoint, dataset.schema_name, dataset.name


@router.post("/datasets/{dataset_id}/refresh")
async def refresh_table(
    dataset_id: uuid.UUID, request: Request, uow: Uow, runtime: Runtime, user: Operator
) -> Response:
    form = await request.form()
    force = form.get("force") == "true"
    back = local_path(str(form.get("next") or ""), f"/ui/datasets/{dataset_id}#cache")
    endpoint, schema, table = await _table(uow, dataset_id)
    _, out = await refreshes.refresh_table(
        uow,
        caller_for(request, user.principal),
        runtime.db,
        endpoint.name,
        schema,
        table,
        force=force,
        wait=False,
        trigger_source="manual",
    )
    if out.refresh_id is None:
        response = RedirectResponse(back, 303)
        set_flash(response, f"Not refreshed: {out.reason}.", "info")
        return response
    response = RedirectResponse(_job_link(out.refresh_id, endpoint.id), 303)
    set_flash(
        response,
        f"A refresh of {schema}.{table} was already running: this is it."
        if out.joined
        else f"Refresh of {schema}.{table} started.",
        "success",
    )
    return response


def _job_link(refresh_id: uuid.UUID, endpoint_id: uuid.UUID) -> str:
    return f"/ui/refreshes?endpoint={endpoint_id}&refresh={refresh_id}#refresh-{refresh_id}"


def _flash_invalid(response: Response, exc: ValidationError | errors.ApiError) -> None:
    if isinstance(exc, errors.ApiError):
        message = exc.message
    else:
        message = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
    set_flash(response, f"Not saved: {message}", "error")


@router.post("/refreshes/connection")
async def refresh_connection(
    request: Request, uow: Uow, runtime: Runtime, user: Operator
) -> Response:
    form = await request.form()
    endpoint_id = _endpoint_id(str(form.get("endpoint_id") or ""))
    back = local_path(str(form.get("next") or ""), "/ui/refreshes")
    if endpoint_id is None:
        response = RedirectResponse(back, 303)
        set_flash(response, "Choose the connection to refresh.", "error")
        return response
    endpoint = await endpoints.get_endpoint(uow, endpoint_id)
    try:
        body = ConnectionRefreshRequest.model_validate(
            {
                "concurrency": str(form.get("concurrency") or "").strip() or None,
                "all_tables": form.get("tables") == "all",
            }
        )
    except ValidationError as exc:
        response = RedirectResponse(back, 303)
        _flash_invalid(response, exc)
        return response
    _, out = await refreshes.refresh_connection(
        uow,
        caller_for(request, user.principal),
        runtime.db,
        endpoint.name,
        body,
        force=form.get("force") == "true",
        wait=False,
        trigger_source="manual",
    )
    assert isinstance(out, ConnectionRefreshAccepted)
    response = RedirectResponse(_job_link(out.refresh_id, endpoint.id), 303)
    if out.tables_total == 0:
        set_flash(
            response,
            f"{endpoint.name} has no cached tables, so there was nothing to refresh. Mark "
            "tables cached on their dataset pages, or choose all tables.",
            "info",
        )
    else:
        which = "table" if out.tables_total == 1 else "tables"
        set_flash(
            response,
            f"Refresh of {out.tables_total} {which} of {endpoint.name} started, "
            f"{body.concurrency or _settings(request).refresh_default_concurrency} at a time.",
            "success",
        )
    return response


@router.post("/datasets/{dataset_id}/cache")
async def set_table_cache(
    dataset_id: uuid.UUID, request: Request, uow: Uow, user: Operator
) -> Response:
    form = await request.form()
    back = local_path(str(form.get("next") or ""), f"/ui/datasets/{dataset_id}#cache")
    response = RedirectResponse(back, 303)
    endpoint, schema, table = await _table(uow, dataset_id)
    lazy = str(form.get("lazy_fetch") or "")
    try:
        change = CacheSettingsIn.model_validate(
            {
                "cached": form.get("cached") == "true",
                "lazy_fetch": {"true": True, "false": False}.get(lazy),
                "refresh_interval_s": str(form.get("refresh_interval_s") or "").strip() or None,
            }
        )
        await refreshes.set_table_cache(
            uow, caller_for(request, user.principal), endpoint.name, schema, table, change
        )
    except (ValidationError, errors.ValidationFailed) as exc:
        _flash_invalid(response, exc)
        return response
    set_flash(response, f"Cache settings of {schema}.{table} saved.", "success")
    return response


@router.post("/endpoints/{endpoint_id}/cache-policy")
async def set_connection_cache(
    endpoint_id: uuid.UUID, request: Request, uow: Uow, user: Admin
) -> Response:
    form = await request.form()
    response = RedirectResponse(f"/ui/endpoints/{endpoint_id}#caches", 303)
    endpoint = await endpoints.get_endpoint(uow, endpoint_id)
    try:
        change = ConnectionCacheIn.model_validate(
            {
                "schema_change_policy": str(form.get("schema_change_policy") or "") or None,
                "lazy_fetch": form.get("lazy_fetch") == "true",
            }
        )
    except ValidationError as exc:
        _flash_invalid(response, exc)
        return response
    await refreshes.set_connection_cache(
        uow, caller_for(request, user.principal), endpoint.name, change
    )
    set_flash(response, f"Cache policy of {endpoint.name} saved.", "success")
    return response
