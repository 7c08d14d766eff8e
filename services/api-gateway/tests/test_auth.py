"""Who may call what: bearer tokens, roles viewer < operator < admin, stable error bodies.

Every REST route is in ROUTES with the least role that may call it; the tests run over the
whole table, so a new route needs one line here (and `test_the_route_table_covers_every_route`
fails until it has one).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.gateway.auth import Principal, Role, TokenStore
from freshet.gateway.settings import GatewaySettings
from freshet.kit.tokens import hash_token, new_token, token_entry

Auth = Callable[[str], dict[str, str]]
EndpointBody = Callable[..., dict[str, Any]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
Trigger = Callable[[str], Awaitable[dict[str, Any]]]
SyncDatasets = Callable[..., Awaitable[dict[str, str]]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]
MoveRun = Callable[..., Awaitable[None]]

ROLES = ("viewer", "operator", "admin")
OPERATIONS_PATHS = ("/health", "/ready", "/metrics")


Body = Callable[[dict[str, str], "EndpointBody"], dict[str, Any] | None]


def no_body(_ids: dict[str, str], _endpoint_body: EndpointBody) -> dict[str, Any] | None:
    return None


def new_endpoint(_ids: dict[str, str], endpoint_body: EndpointBody) -> dict[str, Any] | None:
    return endpoint_body(f"ep-{uuid.uuid4().hex[:10]}")


def unsaved_sqlite(_ids: dict[str, str], _endpoint_body: EndpointBody) -> dict[str, Any] | None:
    return {"name": "draft", "kind": "sqlite", "config": {"path": "/nowhere/x.db"}}


def collection_for_bare(ids: dict[str, str], _endpoint_body: EndpointBody) -> dict[str, Any]:
    return {"endpoint_id": ids["bare_endpoint_id"]}


def fixed(body: dict[str, Any]) -> Body:
    return lambda _ids, _endpoint_body: body


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    least_role: str
    ok_status: int = 200
    body: Body = no_body
    # The route acts on an active run (cancel): the caller gets a freshly queued one.
    needs_active_run: bool = False

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


ROUTES = [
    Route("GET", "/endpoints", "viewer"),
    Route("POST", "/endpoints", "admin", 201, new_endpoint),
    Route("POST", "/endpoints/test", "admin", 200, unsaved_sqlite),
    Route("GET", "/endpoints/{endpoint_id}", "viewer"),
    Route("PATCH", "/endpoints/{endpoint_id}", "admin", 200, fixed({"labels": ["team:x"]})),
    Route("DELETE", "/endpoints/{endpoint_id}", "admin", 204),
    Route("POST", "/endpoints/{endpoint_id}/test", "operator"),
    Route("POST", "/endpoints/{endpoint_id}/trigger", "operator", 202),
    Route("GET", "/collections", "viewer"),
    Route("POST", "/collections", "admin", 201, collection_for_bare),
    Route("GET", "/collections/{collection_id}", "viewer"),
    Route("PATCH", "/collections/{collection_id}", "admin", 200, fixed({"is_enabled": True})),
    Route("DELETE", "/collections/{collection_id}", "admin", 204),
    Route("POST", "/collections/{collection_id}/trigger", "operator", 202),
    Route("GET", "/collections/{collection_id}/runs", "viewer"),
    Route("GET", "/runs", "viewer"),
    Route("GET", "/runs/{run_id}", "viewer"),
    Route("POST", "/runs/{run_id}/cancel", "operator", needs_active_run=True),
    Route("GET", "/schedules", "viewer"),
    Route("GET", "/datasets", "viewer"),
    Route("GET", "/datasets/{dataset_id}", "viewer"),
    Route("POST", "/schedules/{schedule_id}/pause", "operator"),
    Route("POST", "/schedules/{schedule_id}/resume", "operator"),
    # This app has no broker: an allowed caller gets as far as reading Kafka (503).
    Route("GET", "/dead-letters", "admin", 503),
    Route("POST", "/dead-letters/replay", "admin", 503),
    Route("POST", "/dead-letters/purge", "admin", 503),
    Route("POST", "/dead-letters/{dead_letter_id}/replay", "admin", 503),
    Route("GET", "/datasets/{dataset_id}/preview", "viewer"),
    # No previewer runs here: the request is recorded and answered 202 after the timeout.
    Route("POST", "/datasets/{dataset_id}/preview", "operator", 202),
    Route(
        "PATCH", "/datasets/{dataset_id}/preview-settings", "admin", 200, fixed({"opt_out": False})
    ),
    Route("GET", "/preview-requests/{request_id}", "viewer"),
    Route("GET", "/audit", "admin"),
    # Seed 004's refresh API: the gateway's wait is cut short in these tests (no refresher).
    Route("POST", "/connections/{name}/tables/{schema}/{table}/refresh", "operator", 202),
    Route("POST", "/connections/{name}/refresh", "operator"),
    Route("POST", "/connections/{name}/discover", "operator", 202),
    Route("GET", "/refresh/{refresh_id}", "viewer"),
    Route("GET", "/connections/{name}/tables/{schema}/{table}/cache", "viewer"),
    Route(
        "PUT",
        "/connections/{name}/tables/{schema}/{table}/cache",
        "operator",
        200,
        fixed({"cached": True}),
    ),
    Route("PATCH", "/connections/{name}/cache", "admin", 200, fixed({"lazy_fetch": False})),
    Route("POST", "/query", "viewer", 200, fixed({"sql": "SELECT 1 AS one"})),
]
ROUTE_PARAMS = [pytest.param(route, id=str(route)) for route in ROUTES]


def random_ids() -> dict[str, str]:
    """Ids that exist nowhere: authentication must come before any lookup."""
    names = (
        "endpoint_id",
        "bare_endpoint_id",
        "collection_id",
        "run_id",
        "dataset_id",
        "request_id",
    )
    ids = {name: str(uuid.uuid4()) for name in names}
    return ids | {
        "schedule_id": f"collection::{uuid.uuid4()}",
        "dead_letter_id": f"freshet.collection.requested.dlq:0:{uuid.uuid4().int % 1000}",
        "name": "nowhere",
        "schema": "public",
        "table": "orders",
        "refresh_id": ids["run_id"],
    }


async def call(
    client: httpx.AsyncClient,
    route: Route,
    ids: dict[str, str],
    headers: dict[str, str],
    endpoint_body: EndpointBody,
) -> httpx.Response:
    body = route.body(ids, endpoint_body)
    return await client.request(
        route.method, route.template.format(**ids), json=body, headers=headers
    )


@pytest.fixture
async def seeded(
    create_endpoint: CreateEndpoint,
    trigger: Trigger,
    sync_datasets: SyncDatasets,
    move_run: MoveRun,
    catalog: Database,
) -> dict[str, str]:
    """Every id exists: an endpoint with its collection, a finished run (so the collection
    takes a trigger) and two datasets, and a bare endpoint whose collection was deleted."""
    endpoint = await create_endpoint("seeded-db")
    run = await trigger(endpoint["collection_id"])
    await move_run(run["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
    datasets = await sync_datasets(endpoint["id"])
    bare = await create_endpoint("bare-db")
    async with UnitOfWork(catalog) as uow:
        collection = await uow.collections.get(uuid.UUID(bare["collection_id"]))
        assert collection is not None
        await uow.collections.delete(collection)
        request = uow.previews.stage(
            dataset_id=uuid.UUID(datasets["orders"]),
            endpoint_id=uuid.UUID(endpoint["id"]),
            refresh_source="manual",
            status="queued",
        )
        await uow.commit()
    async with UnitOfWork(catalog) as uow:
        collection = await uow.collections.get(uuid.UUID(endpoint["collection_id"]))
        assert collection is not None
        collection.schedule_cron = "0 3 * * *"
        schedule = await uow.schedules.sync_collection(collection, collection.id, utcnow())
        assert schedule is not None
        await uow.commit()
    async with UnitOfWork(catalog) as uow:
        orders = await uow.datasets.get(uuid.UUID(datasets["customers"]))
        assert orders is not None
        job = await uow.refreshes.start_job(
            orders.endpoint_id, [orders], trigger_source="api", requested_by="seed"
        )
        await uow.commit()
    return {
        "request_id": str(request.id),
        "endpoint_id": endpoint["id"],
        "bare_endpoint_id": bare["id"],
        "collection_id": endpoint["collection_id"],
        "run_id": run["id"],
        "dataset_id": datasets["orders"],
        "schedule_id": schedule.id,
        "dead_letter_id": "freshet.collection.requested.dlq:0:0",
        "name": endpoint["name"],
        "schema": "public",
        "table": "orders",
        "refresh_id": str(job.id),
    }


def assert_auth_required(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "E_AUTH_REQUIRED"
    assert response.json()["error"]["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("route", ROUTE_PARAMS)
async def test_a_request_without_a_token_is_refused_with_401(
    client: httpx.AsyncClient, endpoint_body: EndpointBody, route: Route
) -> None:
    response = await call(client, route, random_ids(), {}, endpoint_body)

    assert_auth_required(response)


@pytest.mark.parametrize("route", ROUTE_PARAMS)
async def test_a_request_with_an_unknown_token_is_refused_with_401(
    client: httpx.AsyncClient, endpoint_body: EndpointBody, route: Route
) -> None:
    headers = {"Authorization": f"Bearer {new_token()}"}

    response = await call(client, route, random_ids(), headers, endpoint_body)

    assert_auth_required(response)


@pytest.mark.parametrize("route", ROUTE_PARAMS)
async def test_a_valid_token_sent_with_another_scheme_is_refused_with_401(
    client: httpx.AsyncClient,
    endpoint_body: EndpointBody,
    tokens: dict[str, str],
    route: Route,
) -> None:
    headers = {"Authorization": f"Basic {tokens['admin']}"}

    response = await call(client, route, random_ids(), headers, endpoint_body)

    assert_auth_required(response)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", ROUTE_PARAMS)
async def test_a_role_may_call_a_route_only_at_or_above_the_least_role_it_needs(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint_body: EndpointBody,
    seeded: dict[str, str],
    trigger: Trigger,
    route: Route,
    role: str,
) -> None:
    ids = dict(seeded)
    if route.needs_active_run:
        ids["run_id"] = (await trigger(seeded["collection_id"]))["id"]
    response = await call(client, route, ids, auth(role), endpoint_body)

    if Role[role] >= Role[route.least_role]:
        assert response.status_code == route.ok_status, response.text
    else:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "E_ROLE_FORBIDDEN"
        assert route.least_role in response.json()["error"]["message"]
        assert "WWW-Authenticate" not in response.headers


async def test_a_viewer_refused_endpoint_creation_creates_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint_body: EndpointBody,
    catalog: Database,
    outbox: Outbox,
) -> None:
    response = await client.post(
        "/endpoints", json=endpoint_body("viewer-made"), headers=auth("viewer")
    )

    assert response.status_code == 403
    async with UnitOfWork(catalog) as uow:
        assert await uow.endpoints.all() == []
    assert await outbox() == []


async def test_a_viewer_refused_a_trigger_queues_no_run(
    client: httpx.AsyncClient,
    auth: Auth,
    create_endpoint: CreateEndpoint,
    catalog: Database,
    outbox: Outbox,
) -> None:
    endpoint = await create_endpoint()
    before = await outbox()

    response = await client.post(
        f"/collections/{endpoint['collection_id']}/trigger", headers=auth("viewer")
    )

    assert response.status_code == 403
    async with UnitOfWork(catalog) as uow:
        assert await uow.runs.find() == []
    assert await outbox() == before


async def test_authentication_is_checked_before_the_body_is_validated(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    invalid = {"name": "-", "kind": 7, "surprise": True}

    anonymous = await client.post("/endpoints", json=invalid)
    viewer = await client.post("/endpoints", json=invalid, headers=auth("viewer"))

    assert anonymous.status_code == 401
    assert viewer.status_code == 403


async def test_authentication_is_checked_before_path_parameters_are_validated(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/endpoints/not-a-uuid")

    assert_auth_required(response)


@pytest.mark.parametrize("path", ["/health", "/metrics", "/openapi.json"])
async def test_operations_routes_and_the_api_description_need_no_token(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)

    assert response.status_code == 200


async def test_the_route_table_covers_every_route_of_the_app(gateway_app: FastAPI) -> None:
    app_routes = {
        f"{method.upper()} {path}"
        for path, operations in gateway_app.openapi()["paths"].items()
        if path not in OPERATIONS_PATHS
        for method in operations
    }

    assert app_routes == {str(route) for route in ROUTES}


# TokenStore: how configured entries become principals.


def test_a_token_entry_without_a_name_gets_one_from_its_role_and_hash() -> None:
    token = new_token()
    digest = hash_token(token)

    store = TokenStore([f"operator:{digest}"])

    assert store.authenticate(token) == Principal(name=f"operator-{digest[:8]}", role=Role.operator)


def test_a_token_entry_with_a_name_authenticates_as_that_name_and_role() -> None:
    token = new_token()

    store = TokenStore([token_entry(token, "admin", "ci-bot")])

    assert store.authenticate(token) == Principal(name="ci-bot", role=Role.admin)


def test_blank_lines_and_comments_in_token_entries_are_ignored() -> None:
    token = new_token()

    store = TokenStore(["", "   ", "# viewer:not-a-hash", token_entry(token, "viewer", "v")])

    assert len(store) == 1


@pytest.mark.parametrize(
    "entry",
    [
        "root:" + "a" * 64,  # unknown role
        "viewer:" + "a" * 63,  # not a sha256 hex digest
        "viewer",  # no hash
        "viewer:" + "a" * 64 + ":name:extra",  # too many parts
    ],
)
def test_a_malformed_token_entry_is_rejected(entry: str) -> None:
    with pytest.raises(ValueError, match="role:sha256hex"):
        TokenStore([entry])


def test_an_unknown_or_empty_token_authenticates_as_nobody() -> None:
    store = TokenStore([token_entry(new_token(), "admin", "a")])

    assert store.authenticate(new_token()) is None
    assert store.authenticate("") is None


def test_tokens_are_read_from_both_the_setting_and_the_tokens_file(tmp_path: Path) -> None:
    from_setting, from_file = new_token(), new_token()
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# team tokens\n{token_entry(from_file, 'operator', 'filed')}\n")
    settings = GatewaySettings(
        api_tokens=SecretStr(token_entry(from_setting, "viewer", "set")),
        api_tokens_file=tokens_file,
        data_dir=tmp_path,
    )

    store = TokenStore.from_settings(settings)

    assert store.authenticate(from_setting) == Principal(name="set", role=Role.viewer)
    assert store.authenticate(from_file) == Principal(name="filed", role=Role.operator)
