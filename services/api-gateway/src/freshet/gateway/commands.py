"""The gateway's service functions: REST and GraphQL call these, never the tables directly."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.exc import IntegrityError

from freshet.catalog import Collection, CollectionRun, Endpoint, RunStatus, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.secrets import SecretBox
from freshet.connectors import KINDS, ConnectorError, connector_for
from freshet.contracts import CollectionChanged, CollectionRequested
from freshet.gateway import errors
from freshet.gateway.auth import Principal
from freshet.gateway.schemas import EndpointCreate

log = structlog.get_logger("freshet.gateway")

SECRET_LOOKING_KEYS = ("password", "passwd", "secret", "token", "dsn", "url")


def validate_endpoint(data: EndpointCreate) -> None:
    """Refuse what the request model cannot see: kinds, secrets in config, connector settings.

    Errors carry `details` in the shape of request validation errors (`loc`, `msg`).
    """
    if data.kind not in KINDS:
        message = f"kind must be one of {', '.join(KINDS)}"
        raise errors.ValidationFailed(message, details=[{"loc": ["body", "kind"], "msg": message}])
    leaked = sorted(k for k in data.config if any(s in k.lower() for s in SECRET_LOOKING_KEYS))
    if leaked:
        raise errors.ValidationFailed(
            f"config field(s) {', '.join(leaked)} look secret: send them in `secrets`",
            details=[
                {"loc": ["body", "config", k], "msg": "looks secret: send it in `secrets`"}
                for k in leaked
            ],
        )
    try:
        connector_for(data.kind, data.config, data.secrets)
    except ConnectorError as exc:
        raise errors.ValidationFailed(
            str(exc), details=[{"loc": ["body", "config"], "msg": str(exc)}]
        ) from None


async def register_endpoint(
    uow: UnitOfWork, box: SecretBox, data: EndpointCreate, *, source: str, correlation_id: str
) -> tuple[Endpoint, Collection]:
    """Register an endpoint with its (manual-only) collection; one per endpoint."""
    validate_endpoint(data)
    if await uow.endpoints.get_by_name(data.name) is not None:
        raise errors.EndpointNameTaken(f"an endpoint named {data.name!r} exists")
    try:
        endpoint = await uow.endpoints.add(
            name=data.name,
            kind=data.kind,
            config=data.config,
            secret_ciphertext=box.encrypt(data.secrets),
            secret_names=list(data.secrets),
            preview_policy=data.preview_policy,
            labels=data.labels,
        )
        collection = await uow.collections.add(endpoint_id=endpoint.id)
        await uow.outbox.add(
            CollectionChanged(
                collection_id=collection.id,
                endpoint_id=endpoint.id,
                schedule_cron=collection.schedule_cron,
                schedule_timezone=collection.schedule_timezone,
                is_enabled=collection.is_enabled,
                changed_at=utcnow(),
            ),
            source=source,
            correlation_id=correlation_id,
        )
        await uow.commit()
    except IntegrityError:
        raise errors.EndpointNameTaken(f"an endpoint named {data.name!r} exists") from None
    log.info("endpoint registered", endpoint_id=str(endpoint.id), kind=endpoint.kind)
    return endpoint, collection


async def trigger_collection(
    uow: UnitOfWork,
    collection_id: uuid.UUID,
    principal: Principal,
    *,
    trigger_source: str,
    source: str,
    correlation_id: str,
) -> CollectionRun:
    """Queue a run and its CollectionRequested in one transaction."""
    collection = await uow.collections.get(collection_id)
    if collection is None:
        raise errors.CollectionNotFound(f"collection {collection_id} does not exist")
    if not collection.is_enabled:
        raise errors.CollectionDisabled(f"collection {collection_id} is disabled")
    if await uow.runs.running_for(collection_id) is not None:
        raise errors.CollectionInProgress(f"collection {collection_id} has a run in progress")
    run = await uow.runs.add(
        collection_id=collection.id,
        endpoint_id=collection.endpoint_id,
        trigger_source=trigger_source,
        requested_by=principal.name,
        status=RunStatus.QUEUED,
    )
    await uow.outbox.add(
        CollectionRequested(
            collection_id=collection.id,
            run_id=run.id,
            endpoint_id=collection.endpoint_id,
            trigger_source=trigger_source,
            requested_by=principal.name,
            requested_at=run.requested_at,
        ),
        source=source,
        correlation_id=correlation_id,
    )
    await uow.commit()
    log.info("collection triggered", collection_id=str(collection_id), run_id=str(run.id))
    return run
