"""Changing, deleting and testing endpoints: PATCH and DELETE /endpoints/{id},
POST /endpoints/{id}/test (operator, stored settings) and POST /endpoints/test (admin,
unsaved settings). Every test runs on a SQLite and a PostgreSQL catalog.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.secrets import SecretBox

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
Trigger = Callable[[str], Awaitable[dict[str, Any]]]
MoveRun = Callable[..., Awaitable[None]]
SyncDatasets = Callable[..., Awaitable[dict[str, str]]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]
OutboxEvents = Callable[[str], Awaitable[list[dict[str, Any]]]]
ExpectError = Callable[..., dict[str, Any]]

CHANGED = "freshet.collection.changed.v1"
UNREACHABLE = {"host": "127.0.0.1", "port": 1, "database": "shop", "user": "ro"}


@pytest.fixture
async def endpoint(create_endpoint: CreateEndpoint) -> dict[str, Any]:
    """shop-db: PostgreSQL settings, the `password` secret, a manual-only collection."""
    return await create_endpoint("shop-db")


async def stored_secrets(catalog: Database, secret_key: str, endpoint_id: str) -> dict[str, str]:
    async with UnitOfWork(catalog) as uow:
        row = await uow.endpoints.get(uuid.UUID(endpoint_id))
    assert row is not None
    return SecretBox([secret_key]).decrypt(row.secret_ciphertext)


def without_updated_at(endpoint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in endpoint.items() if k != "updated_at"}


def sqlite_source(tmp_path: Path) -> Path:
    """A real SQLite database file with one table."""
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    return path


# PATCH /endpoints/{id}: only the fields sent change.

PATCHES = {
    "name": {"name": "shop-db-renamed"},
    "config": {
        "config": {"host": "replica.internal", "port": 6432, "database": "shop", "user": "ro"}
    },
    "preview_policy": {"preview_policy": "manual-only"},
    "labels": {"labels": ["team:sales", "pii"]},
    "ingest_command": {"ingest_command": ["/opt/ingest", "--out", "{output}"]},
    "run_timeout_s": {"run_timeout_s": 90},
}


@pytest.mark.parametrize("change", [pytest.param(c, id=name) for name, c in PATCHES.items()])
async def test_patching_one_field_changes_that_field_and_nothing_else(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], change: dict[str, Any]
) -> None:
    url = f"/endpoints/{endpoint['id']}"

    response = await client.patch(url, json=change, headers=auth("admin"))

    assert response.status_code == 200, response.text
    patched = response.json()
    assert without_updated_at(patched) == without_updated_at({**endpoint, **change})
    assert datetime.fromisoformat(patched["updated_at"]) > datetime.fromisoformat(
        endpoint["updated_at"]
    )
    assert (await client.get(url, headers=auth("viewer"))).json() == patched


async def test_an_empty_patch_changes_nothing_but_updated_at(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any]
) -> None:
    response = await client.patch(f"/endpoints/{endpoint['id']}", json={}, headers=auth("admin"))

    assert response.status_code == 200
    assert without_updated_at(response.json()) == without_updated_at(endpoint)


async def test_a_patched_config_replaces_the_stored_one_instead_of_merging(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any]
) -> None:
    config = {"host": "replica.internal", "database": "shop", "user": "ro"}

    response = await client.patch(
        f"/endpoints/{endpoint['id']}", json={"config": config}, headers=auth("admin")
    )

    assert response.json()["config"] == config, "port is gone, not kept from before"


@pytest.mark.parametrize("field", ["ingest_command", "run_timeout_s"])
async def test_an_optional_setting_sent_as_null_is_cleared(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint, field: str
) -> None:
    endpoint = await create_endpoint(ingest_command=["/opt/ingest", "{output}"], run_timeout_s=60)
    assert endpoint[field] is not None

    response = await client.patch(
        f"/endpoints/{endpoint['id']}", json={field: None}, headers=auth("admin")
    )

    assert response.status_code == 200
    assert response.json()[field] is None


async def test_renaming_an_endpoint_to_its_own_name_is_allowed(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/endpoints/{endpoint['id']}", json={"name": "shop-db"}, headers=auth("admin")
    )

    assert response.status_code == 200
    assert response.json()["name"] == "shop-db"


async def test_renaming_to_a_taken_name_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_endpoint: CreateEndpoint,
    expect_error: ExpectError,
) -> None:
    await create_endpoint("other-db")
    url = f"/endpoints/{endpoint['id']}"

    response = await client.patch(
        url, json={"name": "other-db", "labels": ["x"]}, headers=auth("admin")
    )

    expect_error(response, 409, "E_ENDPOINT_NAME_TAKEN")
    assert (await client.get(url, headers=auth("viewer"))).json() == endpoint


async def test_the_kind_of_an_endpoint_cannot_change(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], expect_error: ExpectError
) -> None:
    url = f"/endpoints/{endpoint['id']}"

    response = await client.patch(
        url, json={"kind": "sqlite", "config": {"path": "/data/x.db"}}, headers=auth("admin")
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert ["body", "kind"] in [d["loc"] for d in error["details"]]
    assert (await client.get(url, headers=auth("viewer"))).json()["kind"] == "postgres"


async def test_a_patch_is_validated_against_the_endpoints_kind(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], expect_error: ExpectError
) -> None:
    response = await client.patch(
        f"/endpoints/{endpoint['id']}", json={"config": {"path": "/x.db"}}, headers=auth("admin")
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert "postgres" in error["message"]


@pytest.mark.parametrize(
    "key", ["password", "db_password", "Passwd", "client_secret", "API_TOKEN", "dsn", "url"]
)
async def test_a_patch_with_a_secret_looking_config_key_is_refused_without_echoing_it(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    expect_error: ExpectError,
    key: str,
) -> None:
    config = {**endpoint["config"], key: "patched-value-zq9"}

    response = await client.patch(
        f"/endpoints/{endpoint['id']}", json={"config": config}, headers=auth("admin")
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert [d["loc"] for d in error["details"]] == [["body", "config", key]]
    assert "patched-value-zq9" not in response.text


# Secrets merge.


async def test_a_secret_sent_in_a_patch_is_added_to_the_stored_ones(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    catalog: Database,
    secret_key: str,
    password: str,
) -> None:
    response = await client.patch(
        f"/endpoints/{endpoint['id']}",
        json={"secrets": {"sslpassword": "ssl-secret-zq9"}},
        headers=auth("admin"),
    )

    assert response.status_code == 200
    assert response.json()["secret_fields"] == ["password", "sslpassword"]
    assert "ssl-secret-zq9" not in response.text
    assert await stored_secrets(catalog, secret_key, endpoint["id"]) == {
        "password": password,
        "sslpassword": "ssl-secret-zq9",
    }


async def test_a_secret_sent_again_replaces_its_value(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    catalog: Database,
    secret_key: str,
    password: str,
) -> None:
    response = await client.patch(
        f"/endpoints/{endpoint['id']}",
        json={"secrets": {"password": "rotated-pw-zq9"}},
        headers=auth("admin"),
    )

    assert response.json()["secret_fields"] == ["password"]
    assert "rotated-pw-zq9" not in response.text
    assert password not in response.text
    assert await stored_secrets(catalog, secret_key, endpoint["id"]) == {
        "password": "rotated-pw-zq9"
    }


async def test_a_secret_sent_as_null_is_removed(
    client: httpx.AsyncClient,
    auth: Auth,
    create_endpoint: CreateEndpoint,
    catalog: Database,
    secret_key: str,
) -> None:
    endpoint = await create_endpoint(secrets={"password": "pw-1", "sslpassword": "ssl-1"})

    response = await client.patch(
        f"/endpoints/{endpoint['id']}",
        json={"secrets": {"password": None, "never-set": None}},
        headers=auth("admin"),
    )

    assert response.status_code == 200
    assert response.json()["secret_fields"] == ["sslpassword"]
    assert await stored_secrets(catalog, secret_key, endpoint["id"]) == {"sslpassword": "ssl-1"}


async def test_a_patch_without_secrets_keeps_them(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    catalog: Database,
    secret_key: str,
    password: str,
) -> None:
    await client.patch(
        f"/endpoints/{endpoint['id']}", json={"labels": ["x"]}, headers=auth("admin")
    )

    assert await stored_secrets(catalog, secret_key, endpoint["id"]) == {"password": password}


async def test_an_endpoint_whose_secrets_were_all_removed_lists_none(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/endpoints/{endpoint['id']}", json={"secrets": {"password": None}}, headers=auth("admin")
    )

    assert response.json()["secret_fields"] == []
    fetched = await client.get(f"/endpoints/{endpoint['id']}", headers=auth("viewer"))
    assert fetched.json()["secret_fields"] == []


# External ingestion commands.


async def test_an_ingest_command_is_accepted_in_development(
    client: httpx.AsyncClient, auth: Auth, gateway_app: FastAPI, endpoint_body: Any
) -> None:
    assert gateway_app.state.settings.environment == "development"
    body = endpoint_body("ingested-db", ingest_command=["/opt/ingest", "{output}"])

    response = await client.post("/endpoints", json=body, headers=auth("admin"))

    assert response.status_code == 201, response.text
    assert response.json()["ingest_command"] == ["/opt/ingest", "{output}"]


@pytest.mark.parametrize(
    ("environment", "allow"),
    [("development", False), ("production", None), ("production", False)],
)
async def test_an_ingest_command_is_refused_where_the_settings_forbid_it(
    client: httpx.AsyncClient,
    auth: Auth,
    gateway_app: FastAPI,
    endpoint: dict[str, Any],
    endpoint_body: Any,
    expect_error: ExpectError,
    environment: str,
    allow: bool | None,
) -> None:
    gateway_app.state.settings.environment = environment
    gateway_app.state.settings.allow_ingest_commands = allow
    command = ["/opt/ingest", "{output}"]

    created = await client.post(
        "/endpoints", json=endpoint_body("new-db", ingest_command=command), headers=auth("admin")
    )
    patched = await client.patch(
        f"/endpoints/{endpoint['id']}", json={"ingest_command": command}, headers=auth("admin")
    )

    for response in (created, patched):
        error = expect_error(response, 422, "E_VALIDATION")
        assert "FRESHET_ALLOW_INGEST_COMMANDS" in error["message"]
        assert [d["loc"] for d in error["details"]] == [["body", "ingest_command"]]


async def test_production_accepts_an_ingest_command_when_explicitly_allowed(
    client: httpx.AsyncClient, auth: Auth, gateway_app: FastAPI, endpoint: dict[str, Any]
) -> None:
    gateway_app.state.settings.environment = "production"
    gateway_app.state.settings.allow_ingest_commands = True

    response = await client.patch(
        f"/endpoints/{endpoint['id']}", json={"ingest_command": ["/opt/x"]}, headers=auth("admin")
    )

    assert response.status_code == 200


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(lambda pw: ["/opt/ingest", pw], id="as an argument"),
        pytest.param(lambda pw: ["/opt/ingest", f"--password={pw}"], id="inside an argument"),
        pytest.param(lambda pw: [f"/opt/{pw}/ingest"], id="in the program path"),
    ],
)
async def test_an_ingest_command_containing_a_secret_value_is_refused_without_echoing_it(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    expect_error: ExpectError,
    password: str,
    argv: Callable[[str], list[str]],
) -> None:
    response = await client.patch(
        f"/endpoints/{endpoint['id']}",
        json={"ingest_command": argv(password)},
        headers=auth("admin"),
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert "secret" in error["message"]


async def test_a_new_secret_whose_value_the_stored_ingest_command_contains_is_refused(
    client: httpx.AsyncClient,
    auth: Auth,
    create_endpoint: CreateEndpoint,
    expect_error: ExpectError,
) -> None:
    endpoint = await create_endpoint(ingest_command=["/opt/ingest", "--tenant=acme-zq9"])

    response = await client.patch(
        f"/endpoints/{endpoint['id']}",
        json={"secrets": {"token": "acme-zq9"}},
        headers=auth("admin"),
    )

    expect_error(response, 422, "E_VALIDATION")
    assert "acme-zq9" not in response.json()["error"]["message"]


# DELETE /endpoints/{id}.


async def test_deleting_an_endpoint_answers_204_and_it_is_gone(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], expect_error: ExpectError
) -> None:
    response = await client.delete(f"/endpoints/{endpoint['id']}", headers=auth("admin"))

    assert response.status_code == 204
    assert response.content == b""
    gone = await client.get(f"/endpoints/{endpoint['id']}", headers=auth("viewer"))
    expect_error(gone, 404, "E_ENDPOINT_NOT_FOUND")
    listed = await client.get("/endpoints", headers=auth("viewer"))
    assert listed.json() == []


async def test_deleting_an_endpoint_deletes_its_collection_runs_and_datasets(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    move_run: MoveRun,
    sync_datasets: SyncDatasets,
    expect_error: ExpectError,
) -> None:
    finished = await trigger(endpoint["collection_id"])
    await move_run(finished["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
    running = await trigger(endpoint["collection_id"])
    await move_run(running["id"], RunStatus.RUNNING)
    datasets = await sync_datasets(endpoint["id"])

    await client.delete(f"/endpoints/{endpoint['id']}", headers=auth("admin"))

    viewer = auth("viewer")
    collection = await client.get(f"/collections/{endpoint['collection_id']}", headers=viewer)
    expect_error(collection, 404, "E_COLLECTION_NOT_FOUND")
    for run in (finished, running):
        expect_error(await client.get(f"/runs/{run['id']}", headers=viewer), 404, "E_RUN_NOT_FOUND")
    for dataset_id in datasets.values():
        gone = await client.get(f"/datasets/{dataset_id}", headers=viewer)
        expect_error(gone, 404, "E_DATASET_NOT_FOUND")
    by_endpoint = {"endpoint_id": endpoint["id"]}
    assert (await client.get("/runs", params=by_endpoint, headers=viewer)).json() == []
    assert (await client.get("/datasets", params=by_endpoint, headers=viewer)).json() == []


async def test_deleting_an_endpoint_announces_its_collection_as_deleted(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox_events: OutboxEvents,
) -> None:
    before = await outbox_events(CHANGED)

    await client.delete(
        f"/endpoints/{endpoint['id']}",
        headers={**auth("admin"), "X-Correlation-ID": "delete-shop-db"},
    )

    [change] = (await outbox_events(CHANGED))[len(before) :]
    assert change["collection_id"] == endpoint["collection_id"]
    assert change["endpoint_id"] == endpoint["id"]
    assert (change["deleted"], change["is_enabled"], change["schedule_cron"]) == (
        True,
        False,
        None,
    )


async def test_deleting_an_endpoint_without_a_collection_announces_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    bare_endpoint: Callable[..., Awaitable[dict[str, Any]]],
    outbox: Outbox,
) -> None:
    endpoint = await bare_endpoint()
    before = await outbox()

    response = await client.delete(f"/endpoints/{endpoint['id']}", headers=auth("admin"))

    assert response.status_code == 204
    assert await outbox() == before


async def test_deleting_an_endpoint_leaves_other_endpoints_alone(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_endpoint: CreateEndpoint,
    trigger: Trigger,
    sync_datasets: SyncDatasets,
) -> None:
    other = await create_endpoint("other-db")
    other_run = await trigger(other["collection_id"])
    other_datasets = await sync_datasets(other["id"])

    await client.delete(f"/endpoints/{endpoint['id']}", headers=auth("admin"))

    viewer = auth("viewer")
    assert (await client.get(f"/endpoints/{other['id']}", headers=viewer)).json() == other
    assert (await client.get(f"/runs/{other_run['id']}", headers=viewer)).status_code == 200
    listed = await client.get("/datasets", params={"endpoint_id": other["id"]}, headers=viewer)
    assert {d["id"] for d in listed.json()} == set(other_datasets.values())


async def test_deleting_an_endpoint_twice_is_404_the_second_time(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox_events: OutboxEvents,
    expect_error: ExpectError,
) -> None:
    await client.delete(f"/endpoints/{endpoint['id']}", headers=auth("admin"))

    again = await client.delete(f"/endpoints/{endpoint['id']}", headers=auth("admin"))

    expect_error(again, 404, "E_ENDPOINT_NOT_FOUND")
    assert [e["deleted"] for e in await outbox_events(CHANGED)] == [False, True]


async def test_of_concurrent_deletes_of_an_endpoint_one_wins_and_one_deletion_is_announced(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox_events: OutboxEvents,
) -> None:
    responses = await asyncio.gather(
        *(client.delete(f"/endpoints/{endpoint['id']}", headers=auth("admin")) for _ in range(5))
    )

    assert sorted(r.status_code for r in responses) == [204, 404, 404, 404, 404]
    assert [e["deleted"] for e in await outbox_events(CHANGED)] == [False, True]


# POST /endpoints/{id}/test: the stored settings.


async def test_a_stored_sqlite_endpoint_that_opens_tests_ok_with_its_latency(
    client: httpx.AsyncClient, auth: Auth, tmp_path: Path
) -> None:
    created = await client.post(
        "/endpoints",
        json={
            "name": "local-db",
            "kind": "sqlite",
            "config": {"path": str(sqlite_source(tmp_path))},
        },
        headers=auth("admin"),
    )

    response = await client.post(
        f"/endpoints/{created.json()['id']}/test", headers=auth("operator")
    )

    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) == {"ok", "latency_ms", "error", "checked_at"}
    assert (result["ok"], result["error"]) == (True, None)
    assert isinstance(result["latency_ms"], int)
    assert result["latency_ms"] >= 0
    assert datetime.fromisoformat(result["checked_at"]).tzinfo is not None


async def test_a_stored_sqlite_endpoint_whose_file_is_missing_tests_not_ok(
    client: httpx.AsyncClient, auth: Auth, tmp_path: Path
) -> None:
    created = await client.post(
        "/endpoints",
        json={"name": "gone-db", "kind": "sqlite", "config": {"path": str(tmp_path / "no.db")}},
        headers=auth("admin"),
    )

    response = await client.post(
        f"/endpoints/{created.json()['id']}/test", headers=auth("operator")
    )

    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert response.json()["error"]


async def test_an_unreachable_postgres_endpoint_tests_not_ok_without_its_password(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint, password: str
) -> None:
    endpoint = await create_endpoint("down-db", config=UNREACHABLE)

    response = await client.post(f"/endpoints/{endpoint['id']}/test", headers=auth("operator"))

    assert response.status_code == 200
    result = response.json()
    assert result["ok"] is False
    assert isinstance(result["error"], str)
    assert result["error"]
    assert password not in response.text


async def test_testing_a_stored_endpoint_changes_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    create_endpoint: CreateEndpoint,
    outbox: Outbox,
) -> None:
    endpoint = await create_endpoint("down-db", config=UNREACHABLE)
    before = await outbox()

    await client.post(f"/endpoints/{endpoint['id']}/test", headers=auth("operator"))

    assert await outbox() == before
    fetched = await client.get(f"/endpoints/{endpoint['id']}", headers=auth("viewer"))
    assert fetched.json() == endpoint


async def test_testing_an_unknown_endpoint_is_404(
    client: httpx.AsyncClient, auth: Auth, expect_error: ExpectError
) -> None:
    response = await client.post(f"/endpoints/{uuid.uuid4()}/test", headers=auth("operator"))

    expect_error(response, 404, "E_ENDPOINT_NOT_FOUND")


# POST /endpoints/test: unsaved settings.


async def test_unsaved_sqlite_settings_that_open_test_ok_and_nothing_is_stored(
    client: httpx.AsyncClient, auth: Auth, tmp_path: Path, catalog: Database, outbox: Outbox
) -> None:
    body = {"name": "draft-db", "kind": "sqlite", "config": {"path": str(sqlite_source(tmp_path))}}

    response = await client.post("/endpoints/test", json=body, headers=auth("admin"))

    assert response.status_code == 200, response.text
    assert (response.json()["ok"], response.json()["error"]) == (True, None)
    async with UnitOfWork(catalog) as uow:
        assert await uow.endpoints.all() == []
        assert await uow.collections.all() == []
    assert await outbox() == []


async def test_unsaved_postgres_settings_that_cannot_connect_test_not_ok_without_the_password(
    client: httpx.AsyncClient, auth: Auth, endpoint_body: Any, password: str
) -> None:
    body = endpoint_body("draft-db", config=UNREACHABLE)

    response = await client.post("/endpoints/test", json=body, headers=auth("admin"))

    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert response.json()["error"]
    assert password not in response.text


async def test_unsaved_settings_may_use_the_name_of_an_existing_endpoint(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], endpoint_body: Any
) -> None:
    response = await client.post(
        "/endpoints/test",
        json=endpoint_body(endpoint["name"], config=UNREACHABLE),
        headers=auth("admin"),
    )

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        pytest.param({"kind": "oracle"}, ["body", "kind"], id="unknown kind"),
        pytest.param(
            {"config": {**UNREACHABLE, "password": "in-config-zq9"}},
            ["body", "config", "password"],
            id="secret-looking config key",
        ),
        pytest.param({"config": {"host": "h"}}, ["body", "config"], id="incomplete config"),
        pytest.param({"surprise": 1}, ["body", "surprise"], id="unknown field"),
    ],
)
async def test_unsaved_settings_are_validated_like_a_new_endpoint(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint_body: Any,
    expect_error: ExpectError,
    overrides: dict[str, Any],
    loc: list[str],
) -> None:
    response = await client.post(
        "/endpoints/test", json=endpoint_body("draft-db", **overrides), headers=auth("admin")
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert loc in [d["loc"] for d in error["details"]]
    assert "in-config-zq9" not in response.text


async def test_unsaved_settings_with_a_forbidden_ingest_command_are_refused(
    client: httpx.AsyncClient,
    auth: Auth,
    gateway_app: FastAPI,
    endpoint_body: Any,
    expect_error: ExpectError,
) -> None:
    gateway_app.state.settings.allow_ingest_commands = False

    response = await client.post(
        "/endpoints/test",
        json=endpoint_body("draft-db", ingest_command=["/opt/ingest"]),
        headers=auth("admin"),
    )

    expect_error(response, 422, "E_VALIDATION")
