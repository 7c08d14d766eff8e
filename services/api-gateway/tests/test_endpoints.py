"""POST/GET /endpoints: registering sources, keeping their secrets secret, refusing bad input."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from freshet.catalog import Database, UnitOfWork
from freshet.catalog.secrets import SecretBox, SecretError, generate_key

Auth = Callable[[str], dict[str, str]]
EndpointBody = Callable[..., dict[str, Any]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
Trigger = Callable[[str], Awaitable[dict[str, Any]]]
SyncDatasets = Callable[..., Awaitable[dict[str, str]]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]

VALID_CONFIG = {"host": "db.example.internal", "port": 5432, "database": "shop", "user": "ro"}


async def stored_endpoints(catalog: Database) -> list[str]:
    async with UnitOfWork(catalog) as uow:
        return [e.name for e in await uow.endpoints.all()]


# Registering an endpoint.


async def test_creating_a_postgres_endpoint_returns_201_with_ids_and_secret_names_only(
    client: httpx.AsyncClient, auth: Auth, endpoint_body: EndpointBody
) -> None:
    response = await client.post("/endpoints", json=endpoint_body("shop-db"), headers=auth("admin"))

    assert response.status_code == 201, response.text
    body = response.json()
    uuid.UUID(body["id"])
    uuid.UUID(body["collection_id"])
    assert body["name"] == "shop-db"
    assert body["kind"] == "postgres"
    assert body["config"] == VALID_CONFIG
    assert body["secret_fields"] == ["password"]
    assert "secrets" not in body


async def test_a_new_endpoint_gets_the_default_preview_policy_and_no_labels(
    create_endpoint: CreateEndpoint,
) -> None:
    endpoint = await create_endpoint()

    assert endpoint["preview_policy"] == "auto"
    assert endpoint["labels"] == []


async def test_labels_and_preview_policy_are_stored_as_sent(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint
) -> None:
    created = await create_endpoint(preview_policy="manual-only", labels=["team:sales", "pii"])

    response = await client.get(f"/endpoints/{created['id']}", headers=auth("viewer"))

    assert response.json()["preview_policy"] == "manual-only"
    assert response.json()["labels"] == ["team:sales", "pii"]


async def test_secret_fields_name_every_secret_sorted(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint
) -> None:
    created = await create_endpoint(secrets={"sslpassword": "k-pass-1", "password": "pw-2"})

    fetched = await client.get(f"/endpoints/{created['id']}", headers=auth("viewer"))

    assert created["secret_fields"] == ["password", "sslpassword"]
    assert fetched.json()["secret_fields"] == ["password", "sslpassword"]


async def test_an_endpoint_without_secrets_stores_no_ciphertext(
    client: httpx.AsyncClient, auth: Auth, catalog: Database
) -> None:
    body = {"name": "local-file", "kind": "sqlite", "config": {"path": "/data/shop.db"}}

    response = await client.post("/endpoints", json=body, headers=auth("admin"))

    assert response.status_code == 201, response.text
    assert response.json()["secret_fields"] == []
    async with UnitOfWork(catalog) as uow:
        endpoint = await uow.endpoints.get(uuid.UUID(response.json()["id"]))
    assert endpoint is not None
    assert endpoint.secret_ciphertext is None


async def test_a_new_endpoint_gets_one_enabled_collection_without_a_schedule(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint
) -> None:
    endpoint = await create_endpoint()

    response = await client.get(f"/collections/{endpoint['collection_id']}", headers=auth("viewer"))

    assert response.status_code == 200
    collection = response.json()
    assert collection["id"] == endpoint["collection_id"]
    assert collection["endpoint_id"] == endpoint["id"]
    assert collection["is_enabled"] is True
    assert collection["schedule_cron"] is None
    assert collection["schedule_id"] is None


async def test_creating_an_endpoint_writes_a_collection_changed_event_to_the_outbox(
    client: httpx.AsyncClient, auth: Auth, endpoint_body: EndpointBody, outbox: Outbox
) -> None:
    response = await client.post(
        "/endpoints",
        json=endpoint_body(),
        headers={**auth("admin"), "X-Correlation-ID": "create-shop-db-1"},
    )

    endpoint = response.json()
    [row] = await outbox()
    assert row["topic"] == "freshet.collection.changed"
    assert row["event_type"] == "freshet.collection.changed.v1"
    assert row["key"] == endpoint["collection_id"]
    assert row["value"]["collection_id"] == endpoint["collection_id"]
    assert row["value"]["endpoint_id"] == endpoint["id"]
    assert row["value"]["is_enabled"] is True
    assert row["value"]["schedule_cron"] is None
    assert row["headers"]["ce_source"] == "/freshet/gateway"
    assert row["headers"]["ce_correlationid"] == "create-shop-db-1"


# Reading endpoints.


async def test_an_endpoint_reads_back_by_id_as_it_was_created(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint
) -> None:
    created = await create_endpoint()

    response = await client.get(f"/endpoints/{created['id']}", headers=auth("viewer"))

    assert response.status_code == 200
    assert response.json() == created


async def test_the_endpoint_list_holds_every_endpoint_with_its_collection(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint
) -> None:
    first = await create_endpoint("first-db")
    second = await create_endpoint("second-db")

    response = await client.get("/endpoints", headers=auth("viewer"))

    assert response.status_code == 200
    by_name = {e["name"]: e for e in response.json()}
    assert by_name == {"first-db": first, "second-db": second}


async def test_the_endpoint_list_is_empty_without_endpoints(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    response = await client.get("/endpoints", headers=auth("viewer"))

    assert response.status_code == 200
    assert response.json() == []


async def test_an_unknown_endpoint_is_404(client: httpx.AsyncClient, auth: Auth) -> None:
    missing = uuid.uuid4()

    response = await client.get(f"/endpoints/{missing}", headers=auth("viewer"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "E_ENDPOINT_NOT_FOUND"


# Secrets stay secret.


async def test_the_password_appears_in_no_response_body(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint_body: EndpointBody,
    trigger: Trigger,
    sync_datasets: SyncDatasets,
    password: str,
) -> None:
    created = await client.post("/endpoints", json=endpoint_body(), headers=auth("admin"))
    endpoint = created.json()
    run = await trigger(endpoint["collection_id"])
    dataset_ids = await sync_datasets(endpoint["id"])
    duplicate = await client.post("/endpoints", json=endpoint_body(), headers=auth("admin"))
    reads = [
        "/endpoints",
        f"/endpoints/{endpoint['id']}",
        "/collections",
        f"/collections/{endpoint['collection_id']}",
        f"/collections/{endpoint['collection_id']}/runs",
        f"/runs/{run['id']}",
        "/datasets",
        f"/datasets/{dataset_ids['orders']}",
    ]

    responses = [created, duplicate] + [
        await client.get(path, headers=auth("admin")) for path in reads
    ]

    assert [r.status_code for r in responses] == [201, 409] + [200] * len(reads)
    for response in responses:
        assert password not in response.text, response.request.url


async def test_the_password_appears_in_no_outbox_row(
    create_endpoint: CreateEndpoint, trigger: Trigger, outbox: Outbox, password: str
) -> None:
    endpoint = await create_endpoint()
    await trigger(endpoint["collection_id"])

    rows = await outbox()

    assert len(rows) == 2
    for row in rows:
        assert password not in row["raw_value"]
        assert password not in row["key"]
        assert password not in repr(row["headers"])


async def test_the_stored_secret_is_ciphertext_that_the_configured_key_opens(
    create_endpoint: CreateEndpoint, catalog: Database, secret_key: str, password: str
) -> None:
    endpoint = await create_endpoint()

    async with UnitOfWork(catalog) as uow:
        row = await uow.endpoints.get(uuid.UUID(endpoint["id"]))

    assert row is not None
    assert row.secret_ciphertext is not None
    assert password not in row.secret_ciphertext
    assert password not in repr(row.config)
    assert SecretBox([secret_key]).decrypt(row.secret_ciphertext) == {"password": password}


async def test_the_stored_secret_cannot_be_opened_with_another_key(
    create_endpoint: CreateEndpoint, catalog: Database
) -> None:
    endpoint = await create_endpoint()

    async with UnitOfWork(catalog) as uow:
        row = await uow.endpoints.get(uuid.UUID(endpoint["id"]))

    assert row is not None
    with pytest.raises(SecretError):
        SecretBox([generate_key()]).decrypt(row.secret_ciphertext)


# Refusals.


async def test_a_duplicate_name_is_refused_with_409_and_changes_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    create_endpoint: CreateEndpoint,
    endpoint_body: EndpointBody,
    catalog: Database,
    outbox: Outbox,
) -> None:
    await create_endpoint("shop-db")
    before = await outbox()

    response = await client.post(
        "/endpoints",
        json=endpoint_body("shop-db", kind="sqlite", config={"path": "/x.db"}, secrets={}),
        headers=auth("admin"),
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "E_ENDPOINT_NAME_TAKEN"
    assert await stored_endpoints(catalog) == ["shop-db"]
    assert await outbox() == before
    async with UnitOfWork(catalog) as uow:
        assert len(await uow.collections.all()) == 1


async def test_of_two_concurrent_creations_with_one_name_exactly_one_wins(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint_body: EndpointBody,
    catalog: Database,
    outbox: Outbox,
) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/endpoints", json=endpoint_body("raced-db"), headers=auth("admin"))
            for _ in range(2)
        )
    )

    assert sorted(r.status_code for r in responses) == [201, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert loser.json()["error"]["code"] == "E_ENDPOINT_NAME_TAKEN"
    assert await stored_endpoints(catalog) == ["raced-db"]
    assert len(await outbox()) == 1


@dataclass(frozen=True)
class Invalid:
    """A POST /endpoints body that must be refused with E_VALIDATION.

    `loc`: where request validation reports the problem (in `details`);
    `says`: what the message says instead, for problems found after request validation;
    `secret`: a value that was sent and must not come back in the response.
    """

    overrides: dict[str, Any] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    loc: list[str | int] | None = None
    says: tuple[str, ...] = ()
    secret: str | None = None


INVALID = {
    "unknown kind": Invalid(
        overrides={"kind": "oracle-zq9"},
        says=("kind must be one of postgres, sqlite",),
        secret="oracle-zq9",
    ),
    "name not matching the pattern": Invalid(
        overrides={"name": "bad name zq9!"}, loc=["body", "name"], secret="bad name zq9!"
    ),
    "name starting with a dot": Invalid(
        overrides={"name": ".hidden-zq9"}, loc=["body", "name"], secret=".hidden-zq9"
    ),
    "name longer than 100 characters": Invalid(
        overrides={"name": "n" * 101}, loc=["body", "name"], secret="n" * 101
    ),
    "missing name": Invalid(drop=("name",), loc=["body", "name"]),
    "extra top-level field": Invalid(
        overrides={"owner": "extra-value-zq9"}, loc=["body", "owner"], secret="extra-value-zq9"
    ),
    "secret-looking config key": Invalid(
        overrides={"config": {**VALID_CONFIG, "password": "config-pw-zq9"}},
        says=("password", "`secrets`"),
        secret="config-pw-zq9",
    ),
    "sqlite without config.path": Invalid(
        overrides={"kind": "sqlite", "config": {}}, says=("sqlite", "path")
    ),
    "postgres with a port that is not a number": Invalid(
        overrides={"config": {**VALID_CONFIG, "port": "abc"}},
        says=("postgres", "port"),
        secret='"abc"',
    ),
    "postgres without a host": Invalid(
        overrides={"config": {k: v for k, v in VALID_CONFIG.items() if k != "host"}},
        says=("host",),
    ),
    "postgres config with an unknown key": Invalid(
        overrides={"config": {**VALID_CONFIG, "hots": "typo-zq9"}},
        says=("hots",),
        secret="typo-zq9",
    ),
    "unknown preview policy": Invalid(
        overrides={"preview_policy": "sometimes-zq9"},
        loc=["body", "preview_policy"],
        secret="sometimes-zq9",
    ),
    "secret that is not a string": Invalid(
        overrides={"secrets": {"password": 9157731}},
        loc=["body", "secrets", "password"],
        secret="9157731",
    ),
    "more than 50 labels": Invalid(
        overrides={"labels": [f"label-zq9-{i}" for i in range(51)]},
        loc=["body", "labels"],
        secret="label-zq9-",
    ),
}


@pytest.mark.parametrize("case", [pytest.param(c, id=name) for name, c in INVALID.items()])
async def test_an_invalid_endpoint_is_refused_with_422_without_echoing_input(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint_body: EndpointBody,
    catalog: Database,
    outbox: Outbox,
    password: str,
    case: Invalid,
) -> None:
    body = {**endpoint_body("shop-db"), **case.overrides}
    for name in case.drop:
        del body[name]

    response = await client.post("/endpoints", json=body, headers=auth("admin"))

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "E_VALIDATION"
    if case.loc is not None:
        assert case.loc in [d["loc"] for d in error["details"]]
        for detail in error["details"]:
            assert set(detail) == {"loc", "msg"}
            assert detail["msg"]
    for words in case.says:
        assert words in error["message"]
    assert password not in response.text
    if case.secret is not None:
        assert case.secret not in response.text
    assert await stored_endpoints(catalog) == []
    assert await outbox() == []


@pytest.mark.parametrize(
    "key", ["password", "db_password", "Passwd", "client_secret", "API_TOKEN", "dsn", "url"]
)
async def test_any_secret_looking_config_key_is_refused(
    client: httpx.AsyncClient, auth: Auth, endpoint_body: EndpointBody, key: str
) -> None:
    body = endpoint_body(config={**VALID_CONFIG, key: "value-zq9"})

    response = await client.post("/endpoints", json=body, headers=auth("admin"))

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "E_VALIDATION"
    assert key in response.json()["error"]["message"]
    assert "`secrets`" in response.json()["error"]["message"]
    assert [d["loc"] for d in response.json()["error"]["details"]] == [["body", "config", key]]
    assert "value-zq9" not in response.text


async def test_a_body_that_is_not_json_is_refused_with_422(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    response = await client.post(
        "/endpoints",
        content=b'{"name": "shop-db", "secrets": {"password": "half',
        headers={**auth("admin"), "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "E_VALIDATION"
    assert "half" not in response.text
