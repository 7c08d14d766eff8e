"""/endpoints: register and read endpoints (admin to write, viewer to read)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from freshet.gateway import commands, errors
from freshet.gateway.deps import Admin, Box, CorrelationId, ReadUow, Runtime, Uow, Viewer
from freshet.gateway.schemas import EndpointCreate, EndpointOut

router = APIRouter(prefix="/endpoints", tags=["endpoints"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_endpoint(
    body: EndpointCreate, uow: Uow, box: Box, runtime: Runtime, cid: CorrelationId, _: Admin
) -> EndpointOut:
    endpoint, collection = await commands.register_endpoint(
        uow, box, body, source=runtime.source, correlation_id=cid
    )
    return EndpointOut.of(endpoint, collection)


@router.get("")
async def list_endpoints(uow: ReadUow, _: Viewer) -> list[EndpointOut]:
    collections = {c.endpoint_id: c for c in await uow.collections.all()}
    return [EndpointOut.of(e, collections.get(e.id)) for e in await uow.endpoints.all()]


@router.get("/{endpoint_id}")
async def get_endpoint(endpoint_id: uuid.UUID, uow: ReadUow, _: Viewer) -> EndpointOut:
    endpoint = await uow.endpoints.get(endpoint_id)
    if endpoint is None:
        raise errors.EndpointNotFound(f"endpoint {endpoint_id} does not exist")
    collection = await uow.collections.for_endpoint(endpoint.id)
    return EndpointOut.of(endpoint, collection)
