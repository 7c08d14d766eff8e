"""/endpoints: register, change, delete and test endpoints (admin), read them (viewer)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Body, Response, status

from freshet.gateway.deps import AdminCaller, OperatorCaller, ReadUow, Uow, Viewer
from freshet.gateway.schemas import (
    ConnectionTestOut,
    EndpointCreate,
    EndpointOut,
    EndpointUpdate,
    RunOut,
    TriggerRequest,
)
from freshet.gateway.service_layer import collections, endpoints

router = APIRouter(prefix="/endpoints", tags=["endpoints"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_endpoint(body: EndpointCreate, uow: Uow, caller: AdminCaller) -> EndpointOut:
    """Register an endpoint; it gets a manual-only collection."""
    endpoint, collection = await endpoints.register_endpoint(uow, caller, body)
    return EndpointOut.of(endpoint, collection)


@router.post("/test")
async def test_new_endpoint(body: EndpointCreate, caller: AdminCaller) -> ConnectionTestOut:
    """Check settings before saving them; nothing is stored."""
    return await endpoints.test_new_endpoint(caller, body)


@router.get("")
async def list_endpoints(uow: ReadUow, _: Viewer) -> list[EndpointOut]:
    collections_by_endpoint = {c.endpoint_id: c for c in await uow.collections.all()}
    return [EndpointOut.of(e, collections_by_endpoint.get(e.id)) for e in await uow.endpoints.all()]


@router.get("/{endpoint_id}")
async def get_endpoint(endpoint_id: uuid.UUID, uow: ReadUow, _: Viewer) -> EndpointOut:
    endpoint = await endpoints.get_endpoint(uow, endpoint_id)
    return EndpointOut.of(endpoint, await uow.collections.for_endpoint(endpoint.id))


@router.patch("/{endpoint_id}")
async def update_endpoint(
    endpoint_id: uuid.UUID, body: EndpointUpdate, uow: Uow, caller: AdminCaller
) -> EndpointOut:
    """Change the fields sent. `secrets` merges; a secret set to null is removed."""
    endpoint, collection = await endpoints.update_endpoint(uow, caller, endpoint_id, body)
    return EndpointOut.of(endpoint, collection)


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(endpoint_id: uuid.UUID, uow: Uow, caller: AdminCaller) -> Response:
    """Delete the endpoint with its collection, schedule, runs and datasets."""
    await endpoints.delete_endpoint(uow, caller, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{endpoint_id}/test")
async def test_endpoint(
    endpoint_id: uuid.UUID, uow: Uow, caller: OperatorCaller
) -> ConnectionTestOut:
    """Connect with the stored settings and run a trivial query."""
    return await endpoints.test_endpoint(uow, caller, endpoint_id)


@router.post("/{endpoint_id}/trigger", status_code=status.HTTP_202_ACCEPTED)
async def trigger_endpoint_collection(
    endpoint_id: uuid.UUID,
    uow: Uow,
    caller: OperatorCaller,
    body: TriggerRequest | None = Body(default=None),  # noqa: B008 - FastAPI's way
) -> RunOut:
    """Trigger the endpoint's collection (created manual-only if it has none)."""
    run = await collections.trigger_endpoint_collection(
        uow, caller, endpoint_id, filters=body.filters if body else None
    )
    return RunOut.of(run)
