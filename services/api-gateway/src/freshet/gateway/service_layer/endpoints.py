"""Endpoints: register, change, delete, and test the connection."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError

from freshet.catalog import Collection, Endpoint, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.connectors import KINDS, ConnectorError, connector_for
from freshet.gateway import errors
from freshet.gateway.schemas import ConnectionTestOut, EndpointCreate, EndpointUpdate
from freshet.gateway.service_layer import collections, previews
from freshet.gateway.service_layer.caller import Caller
from freshet.gateway.service_layer.checks import refuse_nul
from freshet.kit.redaction import describe_error

log = structlog.get_logger("freshet.gateway")

SECRET_LOOKING_KEYS = ("password", "passwd", "secret", "token", "dsn", "url")


def _invalid(loc: list[str], message: str) -> errors.ApiError:
    """Errors carry `details` in the shape of request validation errors (`loc`, `msg`)."""
    return errors.ValidationFailed(message, details=[{"loc": ["body", *loc], "msg": message}])


def validate_endpoint(
    caller: Caller,
    *,
    kind: str,
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
    ingest_command: list[str] | None,
) -> None:
    """Refuse what the request model cannot see: kinds, secrets in config, connector settings."""
    if kind not in KINDS:
        raise _invalid(["kind"], f"kind must be one of {', '.join(KINDS)}")
    refuse_nul(config, ["body", "config"])
    refuse_nul(list(secrets), ["body", "secrets"])
    leaked = sorted(k for k in config if any(s in k.lower() for s in SECRET_LOOKING_KEYS))
    if leaked:
        raise errors.ValidationFailed(
            f"config field(s) {', '.join(leaked)} look secret: send them in `secrets`",
            details=[
                {"loc": ["body", "config", k], "msg": "looks secret: send it in `secrets`"}
                for k in leaked
            ],
        )
    try:
        connector_for(kind, config, secrets)
    except ConnectorError as exc:
        raise _invalid(["config"], str(exc)) from None
    if ingest_command is not None:
        if not caller.settings.ingest_commands_allowed:
            raise _invalid(
                ["ingest_command"],
                "external ingestion commands are disabled here (FRESHET_ALLOW_INGEST_COMMANDS)",
            )
        if any(v and v in arg for arg in ingest_command for v in secrets.values()):
            raise _invalid(
                ["ingest_command"],
                "contains a secret value; secrets reach the command as environment variables",
            )


def validate_new_endpoint(caller: Caller, data: EndpointCreate) -> None:
    refuse_nul(data.labels, ["body", "labels"])
    previews.check_masks(data.preview_masks, ["body", "preview_masks"])
    validate_endpoint(
        caller,
        kind=data.kind,
        config=data.config,
        secrets=data.secrets,
        ingest_command=data.ingest_command,
    )


async def register_endpoint(
    uow: UnitOfWork, caller: Caller, data: EndpointCreate
) -> tuple[Endpoint, Collection]:
    """Register an endpoint with its (manual-only) collection; one per endpoint."""
    validate_new_endpoint(caller, data)
    if await uow.endpoints.get_by_name(data.name) is not None:
        raise errors.EndpointNameTaken(f"an endpoint named {data.name!r} exists")
    try:
        endpoint = await uow.endpoints.add(
            name=data.name,
            kind=data.kind,
            config=data.config,
            secret_ciphertext=caller.secret_box.encrypt(data.secrets),
            secret_names=list(data.secrets),
            preview_policy=data.preview_policy,
            labels=data.labels,
            ingest_command=data.ingest_command,
            run_timeout_s=data.run_timeout_s,
            preview_masks=data.preview_masks,
        )
        collection = await uow.collections.add(endpoint_id=endpoint.id)
        await collections.announce(uow, caller, collection)
        await uow.commit()
    except IntegrityError:
        raise errors.EndpointNameTaken(f"an endpoint named {data.name!r} exists") from None
    log.info("endpoint registered", endpoint_id=str(endpoint.id), kind=endpoint.kind)
    return endpoint, collection


async def get_endpoint(uow: UnitOfWork, endpoint_id: uuid.UUID) -> Endpoint:
    endpoint = await uow.endpoints.get(endpoint_id)
    if endpoint is None:
        raise errors.EndpointNotFound(f"endpoint {endpoint_id} does not exist")
    return endpoint


def _changed_settings(
    caller: Caller, endpoint: Endpoint, data: EndpointUpdate
) -> tuple[dict[str, Any], dict[str, str]]:
    """The config and secrets the endpoint would have after `data`, validated as a new
    endpoint's would be."""
    refuse_nul(data.labels, ["body", "labels"])
    if data.preview_masks is not None:
        previews.check_masks(data.preview_masks, ["body", "preview_masks"])
    secrets = caller.secret_box.decrypt(endpoint.secret_ciphertext)
    if data.secrets is not None:
        for name, value in data.secrets.items():
            if value is None:
                secrets.pop(name, None)
            else:
                secrets[name] = value
    config = data.config if data.config is not None else dict(endpoint.config)
    sent = data.model_fields_set
    ingest = data.ingest_command if "ingest_command" in sent else endpoint.ingest_command
    validate_endpoint(
        caller,
        kind=endpoint.kind,
        config=config,
        secrets=secrets,
        ingest_command=[str(a) for a in ingest] if ingest else None,
    )
    return config, secrets


async def update_endpoint(
    uow: UnitOfWork, caller: Caller, endpoint_id: uuid.UUID, data: EndpointUpdate
) -> tuple[Endpoint, Collection | None]:
    """Change what was sent; the whole result is validated as a new endpoint would be."""
    endpoint = await get_endpoint(uow, endpoint_id)
    sent = data.model_fields_set
    config, secrets = _changed_settings(caller, endpoint, data)
    preview_before = previews.endpoint_settings(endpoint)
    if data.name is not None and data.name != endpoint.name:
        if await uow.endpoints.get_by_name(data.name) is not None:
            raise errors.EndpointNameTaken(f"an endpoint named {data.name!r} exists")
        endpoint.name = data.name
    endpoint.config = config
    endpoint.secret_ciphertext = caller.secret_box.encrypt(secrets)
    endpoint.secret_names = sorted(secrets)
    if data.preview_policy is not None:
        endpoint.preview_policy = data.preview_policy
    if data.preview_masks is not None:
        endpoint.preview_masks = list(data.preview_masks)
    if data.labels is not None:
        endpoint.labels = list(data.labels)
    if "ingest_command" in sent:
        endpoint.ingest_command = data.ingest_command
    if "run_timeout_s" in sent:
        endpoint.run_timeout_s = data.run_timeout_s
    endpoint.updated_at = utcnow()
    try:
        await uow.session.flush()
        await previews.endpoint_settings_changed(uow, caller, endpoint, preview_before)
        collection = await uow.collections.for_endpoint(endpoint.id)
        await uow.commit()
    except IntegrityError:
        raise errors.EndpointNameTaken(f"an endpoint named {data.name!r} exists") from None
    log.info("endpoint updated", endpoint_id=str(endpoint.id), fields=sorted(sent))
    return endpoint, collection


async def delete_endpoint(uow: UnitOfWork, caller: Caller, endpoint_id: uuid.UUID) -> None:
    """Delete an endpoint with its collection, runs and datasets; its schedule goes too.

    A run in progress notices at its next lease check that its row is gone and stops.
    """
    endpoint = await get_endpoint(uow, endpoint_id)
    collection = await uow.collections.for_endpoint(endpoint.id)
    if collection is not None:
        await collections.announce(uow, caller, collection, deleted=True)
    if not await uow.endpoints.delete(endpoint.id):
        # A concurrent request deleted it first (PostgreSQL waits for its lock, then finds
        # nothing): one 204, one deleted event; this one writes nothing.
        raise errors.EndpointNotFound(f"endpoint {endpoint_id} does not exist")
    await uow.commit()
    log.info("endpoint deleted", endpoint_id=str(endpoint_id))


async def test_connection(
    caller: Caller, kind: str, config: Mapping[str, Any], secrets: Mapping[str, str]
) -> ConnectionTestOut:
    """Connect and run a trivial query; the result names no secret, whatever the driver says."""
    started = time.perf_counter()
    error: str | None = None
    try:
        connector = connector_for(kind, config, secrets, timeout_s=caller.settings.source_timeout_s)
        await connector.test()
    except ConnectorError as exc:
        error = exc.message
    except Exception as exc:
        error = describe_error(exc, secrets.values())
    latency = int((time.perf_counter() - started) * 1000)
    log.info("connection tested", kind=kind, ok=error is None, latency_ms=latency, error=error)
    return ConnectionTestOut(ok=error is None, latency_ms=latency, error=error, checked_at=utcnow())


async def test_endpoint(
    uow: UnitOfWork, caller: Caller, endpoint_id: uuid.UUID
) -> ConnectionTestOut:
    endpoint = await get_endpoint(uow, endpoint_id)
    kind, config = endpoint.kind, dict(endpoint.config)
    secrets = caller.secret_box.decrypt(endpoint.secret_ciphertext)
    # The transaction is not needed while the source is contacted.
    await uow.session.close()
    return await test_connection(caller, kind, config, secrets)


async def test_new_endpoint(caller: Caller, data: EndpointCreate) -> ConnectionTestOut:
    """Test settings before they are saved (the UI's "Test connection")."""
    validate_new_endpoint(caller, data)
    return await test_connection(caller, data.kind, data.config, data.secrets)


async def test_endpoint_change(
    uow: UnitOfWork, caller: Caller, endpoint_id: uuid.UUID, data: EndpointUpdate
) -> ConnectionTestOut:
    """Test the settings an endpoint would have after `data`, before saving them (the UI's
    "Test connection" while editing; secrets not sent are the stored ones)."""
    endpoint = await get_endpoint(uow, endpoint_id)
    config, secrets = _changed_settings(caller, endpoint, data)
    kind = endpoint.kind
    await uow.session.close()
    return await test_connection(caller, kind, config, secrets)
