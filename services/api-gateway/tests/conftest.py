"""Fixtures for the gateway's REST API: an app on a migrated catalog, tokens, a client.

ASGITransport does not run the lifespan, so the Kafka producer and the outbox relay never
start: requests only touch the catalog database, and outbox rows stay pending where the tests
can read them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from freshet.catalog import Database, DatasetSpec, ForeignKeySpec, RunStatus, UnitOfWork
from freshet.catalog.secrets import generate_key
from freshet.devstack.ui_client import UiClient
from freshet.gateway.app import create_app
from freshet.gateway.settings import GatewaySettings
from freshet.kit.tokens import ROLES, new_token, token_entry

# Nothing listens on port 1: a connection is refused at once.
NO_BROKER = "127.0.0.1:1"

# A password distinctive enough that finding it anywhere is a leak, never a coincidence.
PASSWORD = "pw-Zq8!never-shown-7731"

# The identity each role's token is configured with (what `requested_by` records).
TOKEN_NAMES = {"viewer": "vera-viewer", "operator": "otto-operator", "admin": "ada-admin"}

Auth = Callable[[str], dict[str, str]]
EndpointBody = Callable[..., dict[str, Any]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
Trigger = Callable[[str], Awaitable[dict[str, Any]]]
SyncDatasets = Callable[..., Awaitable[dict[str, str]]]
MoveRun = Callable[..., Awaitable[None]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]


def postgres_endpoint(name: str = "shop-db", **overrides: Any) -> dict[str, Any]:
    """A valid POST /endpoints body for a PostgreSQL source, with a password secret."""
    body: dict[str, Any] = {
        "name": name,
        "kind": "postgres",
        "config": {"host": "db.example.internal", "port": 5432, "database": "shop", "user": "ro"},
        "secrets": {"password": PASSWORD},
    }
    body.update(overrides)
    return body


@pytest.fixture
def password() -> str:
    """The password every endpoint made by `endpoint_body` / `create_endpoint` is sent with."""
    return PASSWORD


@pytest.fixture
def endpoint_body() -> EndpointBody:
    """Build a valid POST /endpoints body: `endpoint_body(name, **field_overrides)`."""
    return postgres_endpoint


@pytest.fixture
def secret_key() -> str:
    return generate_key()


@pytest.fixture
def tokens() -> dict[str, str]:
    """Clear-text bearer tokens by role; the app is configured with their hashes only."""
    return {role: new_token() for role in ROLES}


@pytest.fixture
async def gateway_app(
    catalog_url: str, secret_key: str, tokens: dict[str, str], tmp_path: Path
) -> AsyncIterator[FastAPI]:
    entries = [token_entry(token, role, TOKEN_NAMES[role]) for role, token in tokens.items()]
    app = create_app(
        GatewaySettings(
            database_url=catalog_url,
            api_tokens=SecretStr(",".join(entries)),
            secret_keys=SecretStr(secret_key),
            data_dir=tmp_path,
            # No broker: routes that read Kafka (dead letters) fail fast with 503 here; their
            # own tests give the app a real broker.
            kafka_bootstrap=NO_BROKER,
            # No previewer answers here: manual previews answer 202 after this.
            preview_request_timeout_s=0.1,
            # No refresher or collector runs here: synchronous refresh requests answer with
            # the state (202) almost at once.
            refresh_wait_timeout_s=0.2,
        )
    )
    yield app
    app.state.query_engine.close()
    await app.state.runtime.db.dispose()


@pytest.fixture
def catalog(gateway_app: FastAPI) -> Database:
    """The app's own catalog database, for arranging state and checking what was written."""
    db: Database = gateway_app.state.runtime.db
    return db


@pytest.fixture
async def client(gateway_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
def auth(tokens: dict[str, str]) -> Auth:
    """Headers that authenticate as the given role."""

    def headers(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}"}

    return headers


@pytest.fixture
def create_endpoint(client: httpx.AsyncClient, auth: Auth) -> CreateEndpoint:
    """Register a PostgreSQL endpoint as admin; returns the 201 response body."""

    async def create(name: str = "shop-db", **overrides: Any) -> dict[str, Any]:
        response = await client.post(
            "/endpoints", json=postgres_endpoint(name, **overrides), headers=auth("admin")
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    return create


@pytest.fixture
def trigger(client: httpx.AsyncClient, auth: Auth) -> Trigger:
    """Trigger a collection as operator; returns the 202 response body (the queued run)."""

    async def run(collection_id: str) -> dict[str, Any]:
        response = await client.post(
            f"/collections/{collection_id}/trigger", headers=auth("operator")
        )
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    return run


CUSTOMER_COLUMNS = [
    {"name": "id", "data_type": "integer", "nullable": False},
    {"name": "name", "data_type": "text", "nullable": True},
]
ORDER_COLUMNS = [
    {"name": "id", "data_type": "integer", "nullable": False},
    {"name": "customer_id", "data_type": "integer", "nullable": True},
]


def shop_specs(*, with_orders: bool = True) -> list[DatasetSpec]:
    """public.customers and public.orders, orders.customer_id -> customers.id."""
    specs = [
        DatasetSpec(
            schema_name="public",
            name="customers",
            kind="table",
            columns=CUSTOMER_COLUMNS,
            primary_key=["id"],
            foreign_keys=[],
            fingerprint="fp-customers",
            row_estimate=42,
        )
    ]
    if with_orders:
        specs.append(
            DatasetSpec(
                schema_name="public",
                name="orders",
                kind="table",
                columns=ORDER_COLUMNS,
                primary_key=["id"],
                foreign_keys=[
                    ForeignKeySpec(
                        columns=["customer_id"],
                        referred_schema="public",
                        referred_table="customers",
                        referred_columns=["id"],
                    )
                ],
                fingerprint="fp-orders",
                row_estimate=None,
            )
        )
    return specs


@pytest.fixture
def sync_datasets(catalog: Database) -> SyncDatasets:
    """Put public.customers and public.orders of an endpoint in the catalog, as a collector
    run would; returns their ids by table name."""

    async def sync(endpoint_id: str, *, with_orders: bool = True) -> dict[str, str]:
        async with UnitOfWork(catalog) as uow:
            await uow.datasets.sync(
                endpoint_id=uuid.UUID(endpoint_id),
                endpoint_kind="postgres",
                run_id=uuid.uuid4(),
                specs=shop_specs(with_orders=with_orders),
            )
            datasets = await uow.datasets.for_endpoint(uuid.UUID(endpoint_id))
            await uow.commit()
        return {d.name: str(d.id) for d in datasets}

    return sync


@pytest.fixture
def move_run(catalog: Database) -> MoveRun:
    """Move a run through statuses (each a legal transition), as the collector would."""

    async def move(run_id: str, *statuses: RunStatus) -> None:
        async with UnitOfWork(catalog) as uow:
            for status in statuses:
                assert await uow.runs.transition(uuid.UUID(run_id), status), status
            await uow.commit()

    return move


@pytest.fixture
def outbox(catalog: Database) -> Outbox:
    """The pending outbox rows, oldest first, as dicts with `headers` made a mapping."""

    async def read() -> list[dict[str, Any]]:
        async with UnitOfWork(catalog) as uow:
            rows = await uow.outbox.pending(1000)
        return [
            {
                "topic": row.topic,
                "event_type": row.event_type,
                "key": row.key,
                "value": json.loads(row.value),
                "raw_value": row.value,
                "headers": dict(row.headers),
            }
            for row in rows
        ]

    return read


# Helpers for the lifecycle specs (endpoints, collections, triggers, runs, hostile input).

ExpectError = Callable[..., dict[str, Any]]
BareEndpoint = Callable[..., Awaitable[dict[str, Any]]]
InsertRuns = Callable[..., Awaitable[list[str]]]
OutboxEvents = Callable[[str], Awaitable[list[dict[str, Any]]]]


def check_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The stable error body: exactly {"error": {"code", "message", "details"?}}, details as
    `loc`/`msg` pairs, and never the password any endpoint was made with."""
    assert response.status_code == status, response.text
    assert PASSWORD not in response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) <= {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    for detail in error.get("details", []):
        assert set(detail) == {"loc", "msg"}, detail
        assert isinstance(detail["loc"], list)
        assert detail["msg"]
    return error


@pytest.fixture
def expect_error() -> ExpectError:
    """`expect_error(response, status, code)`: assert the stable error body; returns `error`."""
    return check_error


@pytest.fixture
def bare_endpoint(create_endpoint: CreateEndpoint, catalog: Database) -> BareEndpoint:
    """Register an endpoint, then remove its collection straight from the catalog (no API
    call, no event): an endpoint that has no collection, as after an admin deleted it."""

    async def make(name: str | None = None, **overrides: Any) -> dict[str, Any]:
        endpoint = await create_endpoint(name or f"bare-{uuid.uuid4().hex[:8]}", **overrides)
        async with UnitOfWork(catalog) as uow:
            collection = await uow.collections.get(uuid.UUID(endpoint["collection_id"]))
            assert collection is not None
            await uow.collections.delete(collection)
            await uow.commit()
        return {**endpoint, "collection_id": None}

    return make


@pytest.fixture
def insert_runs(catalog: Database) -> InsertRuns:
    """Insert finished runs of an endpoint's collection as history, one per `(requested_at,
    status)`; returns their ids in the order given."""

    async def insert(
        endpoint: dict[str, Any], *runs: tuple[datetime, RunStatus], source: str = "schedule"
    ) -> list[str]:
        collection_id = endpoint["collection_id"]
        ids = []
        async with UnitOfWork(catalog) as uow:
            for requested_at, status in runs:
                run = await uow.runs.add(
                    collection_id=uuid.UUID(collection_id) if collection_id else None,
                    endpoint_id=uuid.UUID(endpoint["id"]),
                    trigger_source=source,
                    requested_at=requested_at,
                    status=status,
                )
                ids.append(str(run.id))
            await uow.commit()
        return ids

    return insert


@pytest.fixture
def outbox_events(outbox: Outbox) -> OutboxEvents:
    """The values of the pending outbox events of one type (e.g. "freshet.run.completed.v1")."""

    async def read(event_type: str) -> list[dict[str, Any]]:
        return [row["value"] for row in await outbox() if row["event_type"] == event_type]

    return read


# The web UI in-process (test_ui*.py).

OpenUi = Callable[..., Awaitable[UiClient]]


@pytest.fixture
async def open_ui(gateway_app: FastAPI, tokens: dict[str, str]) -> AsyncIterator[OpenUi]:
    """`await open_ui("operator")`: a browser signed in with that role's token;
    `await open_ui()` one that is signed out."""
    clients: list[httpx.AsyncClient] = []

    async def open_as(role: str | None = None) -> UiClient:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway_app), base_url="http://test"
        )
        clients.append(http)
        ui = UiClient(http)
        if role is not None:
            response = await ui.sign_in(tokens[role])
            assert response.status_code == 303, response.text
        return ui

    yield open_as
    for http in clients:
        await http.aclose()
