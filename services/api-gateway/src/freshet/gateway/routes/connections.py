"""Seed 004's refresh API: /connections/{name}/… (a connection is an endpoint, by name) and
/refresh/{refresh_id}; plus the cache settings of tables and connections."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response

from freshet.gateway.deps import AdminCaller, OperatorCaller, ReadUow, Runtime, Uow, Viewer
from freshet.gateway.refresh_schemas import (
    CacheOut,
    CacheSettingsIn,
    ConnectionCacheIn,
    ConnectionCacheOut,
    ConnectionRefreshAccepted,
    ConnectionRefreshRequest,
    DiscoverOut,
    RefreshStatusOut,
    TableRefreshOut,
)
from freshet.gateway.service_layer import refreshes

router = APIRouter(tags=["refresh"])

Name = Annotated[str, Path(max_length=200)]
Schema = Annotated[str, Path(max_length=200)]
Table = Annotated[str, Path(max_length=400)]
Async = Annotated[bool, Query(alias="async", description="Answer 202 at once; poll /refresh/{id}.")]
Force = Annotated[bool, Query(description="Refresh even when synced within the minimum interval.")]


@router.post(
    "/connections/{name}/tables/{schema}/{table}/refresh",
    responses={202: {"model": TableRefreshOut}},
)
async def refresh_table(
    name: Name,
    schema: Schema,
    table: Table,
    uow: Uow,
    caller: OperatorCaller,
    runtime: Runtime,
    response: Response,
    async_: Async = False,
    force: Force = False,
) -> TableRefreshOut:
    """Refresh one table's cache: 200 when done (or `skipped` with the reason), 202 with the
    refresh id with `async=true` (or when a synchronous wait runs out). A refresh already
    running for the table is joined (`joined: true`, its refresh id). A failed refresh is
    E_REFRESH_FAILED (502); the old cache keeps serving."""
    code, out = await refreshes.refresh_table(
        uow, caller, runtime.db, name, schema, table, force=force, wait=not async_
    )
    response.status_code = code
    return out


@router.post(
    "/connections/{name}/refresh",
    responses={202: {"model": ConnectionRefreshAccepted}},
)
async def refresh_connection(
    name: Name,
    uow: Uow,
    caller: OperatorCaller,
    runtime: Runtime,
    response: Response,
    body: ConnectionRefreshRequest | None = Body(default=None),  # noqa: B008 - FastAPI's way
    async_: Async = False,
    force: Force = False,
) -> RefreshStatusOut | ConnectionRefreshAccepted:
    """Refresh the listed tables, every cached table, or (`all_tables`) every discovered one,
    `concurrency` at a time; one table's failure never stops the others."""
    code, out = await refreshes.refresh_connection(
        uow,
        caller,
        runtime.db,
        name,
        body or ConnectionRefreshRequest(),
        force=force,
        wait=not async_,
    )
    response.status_code = code
    return out


@router.post("/connections/{name}/discover", responses={202: {"model": DiscoverOut}})
async def discover(
    name: Name,
    uow: Uow,
    caller: OperatorCaller,
    runtime: Runtime,
    response: Response,
    invalidate_changed: Annotated[
        bool, Query(description="Drop the cache of tables whose schema changed.")
    ] = False,
) -> DiscoverOut:
    """Re-discover tables and columns (a collection run) and report what changed."""
    code, out = await refreshes.discover(
        uow, caller, runtime.db, name, invalidate_changed=invalidate_changed
    )
    response.status_code = code
    return out


@router.get("/refresh/{refresh_id}")
async def refresh_status(refresh_id: uuid.UUID, uow: ReadUow, _: Viewer) -> RefreshStatusOut:
    """A refresh's status, per-table results and errors, from the catalog."""
    return await refreshes.refresh_status(uow, refresh_id)


@router.get("/connections/{name}/tables/{schema}/{table}/cache")
async def get_table_cache(
    name: Name, schema: Schema, table: Table, uow: ReadUow, _: Viewer
) -> CacheOut:
    return await refreshes.table_cache(uow, name, schema, table)


@router.put("/connections/{name}/tables/{schema}/{table}/cache")
async def set_table_cache(
    name: Name,
    schema: Schema,
    table: Table,
    body: CacheSettingsIn,
    uow: Uow,
    caller: OperatorCaller,
) -> CacheOut:
    """Mark the table cached or not, its lazy fetch and refresh interval (fields sent only)."""
    return await refreshes.set_table_cache(uow, caller, name, schema, table, body)


@router.patch("/connections/{name}/cache")
async def set_connection_cache(
    name: Name, body: ConnectionCacheIn, uow: Uow, caller: AdminCaller
) -> ConnectionCacheOut:
    """The connection's schema-change policy (invalidate, refresh, ignore) and lazy fetch."""
    return await refreshes.set_connection_cache(uow, caller, name, body)
