"""Triggers: POST /collections/{id}/trigger and POST /endpoints/{id}/trigger (operator).

A trigger queues a run and its CollectionRequested in one transaction. A collection has at
most one active (QUEUED or RUNNING) run: the database's partial unique index decides, so
concurrent triggers make exactly one run between them. Every test runs on a SQLite and a
PostgreSQL catalog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from freshet.catalog import RunStatus

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
BareEndpoint = Callable[..., Awaitable[dict[str, Any]]]
Trigger = Callable[[str], Awaitable[dict[str, Any]]]
MoveRun = Callable[..., Awaitable[None]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]
OutboxEvents = Callable[[str], Awaitable[list[dict[str, Any]]]]
ExpectError = Callable[..., dict[str, Any]]

CHANGED = "freshet.collection.changed.v1"
REQUESTED = "freshet.collection.requested.v1"
FILTERS = {
    "include_schemas": ["sales", "crm_*"],
    "exclude_schemas": ["tmp"],
    "include_tables": ["sales.orders", "customer?"],
    "exclude_tables": ["*_backup"],
}


@pytest.fixture
async def endpoint(create_endpoint: CreateEndpoint) -> dict[str, Any]:
    return await create_endpoint("shop-db")


def trigger_url(endpoint: dict[str, Any], route: str) -> str:
    if route == "collection":
        return f"/collections/{endpoint['collection_id']}/trigger"
    return f"/endpoints/{endpoint['id']}/trigger"


ROUTES = ["collection", "endpoint"]


# Who and what a run records.


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("role", "name"), [("operator", "otto-operator"), ("admin", "ada-admin")])
async def test_a_triggered_run_is_requested_by_the_name_of_the_token(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox_events: OutboxEvents,
    route: str,
    role: str,
    name: str,
) -> None:
    response = await client.post(trigger_url(endpoint, route), headers=auth(role))

    assert response.status_code == 202, response.text
    assert response.json()["requested_by"] == name
    [requested] = await outbox_events(REQUESTED)
    assert requested["requested_by"] == name


@pytest.mark.parametrize("route", ROUTES)
async def test_a_triggered_run_is_a_queued_api_run_of_the_endpoints_collection(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox: Outbox,
    route: str,
) -> None:
    response = await client.post(
        trigger_url(endpoint, route), headers={**auth("operator"), "X-Correlation-ID": "trig-1"}
    )

    run = response.json()
    assert (run["status"], run["trigger_source"]) == ("QUEUED", "api")
    assert (run["collection_id"], run["endpoint_id"]) == (endpoint["collection_id"], endpoint["id"])
    [row] = [r for r in await outbox() if r["event_type"] == REQUESTED]
    assert row["key"] == endpoint["collection_id"]
    assert row["headers"]["ce_correlationid"] == "trig-1"
    event = row["value"]
    assert (event["run_id"], event["collection_id"], event["endpoint_id"]) == (
        run["id"],
        endpoint["collection_id"],
        endpoint["id"],
    )
    assert event["trigger_source"] == "api"


# Filters.


@pytest.mark.parametrize("route", ROUTES)
async def test_filters_are_stored_on_the_run_and_carried_in_collection_requested(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox_events: OutboxEvents,
    route: str,
) -> None:
    response = await client.post(
        trigger_url(endpoint, route), json={"filters": FILTERS}, headers=auth("operator")
    )

    assert response.status_code == 202, response.text
    run = response.json()
    assert run["filters"] == FILTERS
    stored = await client.get(f"/runs/{run['id']}", headers=auth("viewer"))
    assert stored.json()["filters"] == FILTERS
    [requested] = await outbox_events(REQUESTED)
    assert requested["filters"] == FILTERS


async def test_filters_sent_in_part_are_completed_with_empty_lists(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any]
) -> None:
    response = await client.post(
        trigger_url(endpoint, "collection"),
        json={"filters": {"include_schemas": ["sales"]}},
        headers=auth("operator"),
    )

    assert response.json()["filters"] == {
        "include_schemas": ["sales"],
        "exclude_schemas": [],
        "include_tables": [],
        "exclude_tables": [],
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="no body"),
        pytest.param({}, id="empty object"),
        pytest.param({"filters": None}, id="null filters"),
        pytest.param({"filters": {}}, id="empty filters"),
        pytest.param({"filters": {"include_schemas": [], "exclude_tables": []}}, id="empty lists"),
    ],
)
async def test_a_trigger_without_filters_scopes_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox_events: OutboxEvents,
    body: dict[str, Any] | None,
) -> None:
    response = await client.post(
        trigger_url(endpoint, "collection"), json=body, headers=auth("operator")
    )

    assert response.status_code == 202, response.text
    assert response.json()["filters"] is None
    [requested] = await outbox_events(REQUESTED)
    assert requested["filters"] is None


async def test_hostile_filter_patterns_are_data_stored_verbatim(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any]
) -> None:
    patterns = ["o'brien", 'say "hi"', "x'; DROP TABLE collection_runs; --", "ünï-数据", "../*"]

    response = await client.post(
        trigger_url(endpoint, "collection"),
        json={"filters": {"include_tables": patterns}},
        headers=auth("operator"),
    )

    assert response.status_code == 202, response.text
    stored = await client.get(f"/runs/{response.json()['id']}", headers=auth("viewer"))
    assert stored.json()["filters"]["include_tables"] == patterns


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"filters": {"tables": ["x"]}}, ["body", "filters", "tables"], id="unknown"),
        pytest.param(
            {"filters": {"include_schemas": "sales"}},
            ["body", "filters", "include_schemas"],
            id="string for list",
        ),
        pytest.param(
            {"filters": {"include_schemas": [7]}},
            ["body", "filters", "include_schemas", 0],
            id="number pattern",
        ),
        pytest.param(
            {"filters": {"exclude_tables": [f"t{i}" for i in range(101)]}},
            ["body", "filters", "exclude_tables"],
            id="over 100 patterns",
        ),
        pytest.param({"filters": ["sales"]}, ["body", "filters"], id="list for object"),
        pytest.param({"filters": "sales"}, ["body", "filters"], id="string for object"),
        pytest.param({"filter": {}}, ["body", "filter"], id="misspelt"),
        pytest.param(["filters"], ["body"], id="list body"),
        pytest.param(
            {"filters": {"include_schemas": ["sa\x00les"]}}, ["input", "filters"], id="nul"
        ),
    ],
)
async def test_invalid_filters_are_refused_and_nothing_is_queued(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox_events: OutboxEvents,
    expect_error: ExpectError,
    route: str,
    body: Any,
    loc: list[str | int],
) -> None:
    response = await client.post(trigger_url(endpoint, route), json=body, headers=auth("operator"))

    error = expect_error(response, 422, "E_VALIDATION")
    assert loc in [d["loc"] for d in error["details"]]
    runs = await client.get("/runs", headers=auth("viewer"))
    assert runs.json() == []
    assert await outbox_events(REQUESTED) == []


async def test_a_trigger_body_that_is_not_json_is_refused(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], expect_error: ExpectError
) -> None:
    response = await client.post(
        trigger_url(endpoint, "collection"),
        content=b'{"filters": {',
        headers={**auth("operator"), "content-type": "application/json"},
    )

    expect_error(response, 422, "E_VALIDATION")


# One active run per collection.


@pytest.mark.parametrize("active", [RunStatus.QUEUED, RunStatus.RUNNING])
@pytest.mark.parametrize("route", ROUTES)
async def test_an_active_run_blocks_another_trigger_with_409(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    move_run: MoveRun,
    outbox: Outbox,
    expect_error: ExpectError,
    active: RunStatus,
    route: str,
) -> None:
    run = await trigger(endpoint["collection_id"])
    if active is RunStatus.RUNNING:
        await move_run(run["id"], RunStatus.RUNNING)
    before = await outbox()

    response = await client.post(trigger_url(endpoint, route), headers=auth("operator"))

    expect_error(response, 409, "E_COLLECTION_IN_PROGRESS")
    listed = await client.get("/runs", headers=auth("viewer"))
    assert [(r["id"], r["status"]) for r in listed.json()] == [(run["id"], active.value)]
    assert await outbox() == before


@pytest.mark.parametrize(
    "path",
    [
        pytest.param((RunStatus.RUNNING, RunStatus.SUCCEEDED), id="SUCCEEDED"),
        pytest.param((RunStatus.RUNNING, RunStatus.FAILED), id="FAILED"),
        pytest.param((RunStatus.SKIPPED,), id="SKIPPED"),
        pytest.param((RunStatus.CANCELLED,), id="CANCELLED"),
    ],
)
async def test_a_finished_run_does_not_block_the_next_trigger(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    move_run: MoveRun,
    path: tuple[RunStatus, ...],
) -> None:
    finished = await trigger(endpoint["collection_id"])
    await move_run(finished["id"], *path)

    response = await client.post(trigger_url(endpoint, "collection"), headers=auth("operator"))

    assert response.status_code == 202, response.text
    assert response.json()["id"] != finished["id"]


async def test_an_active_run_of_one_collection_does_not_block_another(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_endpoint: CreateEndpoint,
    trigger: Trigger,
) -> None:
    other = await create_endpoint("other-db")
    await trigger(endpoint["collection_id"])

    response = await client.post(trigger_url(other, "collection"), headers=auth("operator"))

    assert response.status_code == 202


@pytest.mark.parametrize("route", ROUTES)
async def test_twenty_concurrent_triggers_make_exactly_one_run(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox_events: OutboxEvents,
    expect_error: ExpectError,
    route: str,
) -> None:
    url = trigger_url(endpoint, route)

    responses = await asyncio.gather(
        *(client.post(url, headers=auth("operator")) for _ in range(20))
    )

    accepted = [r for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code != 202]
    assert len(accepted) == 1, [r.text for r in responses]
    assert len(refused) == 19
    for response in refused:
        expect_error(response, 409, "E_COLLECTION_IN_PROGRESS")
    run = accepted[0].json()
    runs = await client.get(
        f"/collections/{endpoint['collection_id']}/runs", headers=auth("viewer")
    )
    assert [(r["id"], r["status"]) for r in runs.json()] == [(run["id"], "QUEUED")]
    [requested] = await outbox_events(REQUESTED)
    assert requested["run_id"] == run["id"]


async def test_twenty_concurrent_triggers_of_an_endpoint_without_a_collection_make_one_of_each(
    client: httpx.AsyncClient,
    auth: Auth,
    bare_endpoint: BareEndpoint,
    outbox_events: OutboxEvents,
    expect_error: ExpectError,
) -> None:
    endpoint = await bare_endpoint()
    changes_before = await outbox_events(CHANGED)

    responses = await asyncio.gather(
        *(
            client.post(f"/endpoints/{endpoint['id']}/trigger", headers=auth("operator"))
            for _ in range(20)
        )
    )

    accepted = [r for r in responses if r.status_code == 202]
    assert len(accepted) == 1, [r.text for r in responses]
    for response in responses:
        if response.status_code != 202:
            expect_error(response, 409, "E_COLLECTION_IN_PROGRESS")
    run = accepted[0].json()
    collections = await client.get(
        "/collections", params={"endpoint_id": endpoint["id"]}, headers=auth("viewer")
    )
    assert [c["id"] for c in collections.json()] == [run["collection_id"]]
    created = (await outbox_events(CHANGED))[len(changes_before) :]
    assert [c["collection_id"] for c in created] == [run["collection_id"]]
    [requested] = await outbox_events(REQUESTED)
    assert requested["run_id"] == run["id"]


async def test_concurrent_triggers_of_different_collections_each_get_their_run(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint
) -> None:
    endpoints = [await create_endpoint(f"db-{i}") for i in range(4)]

    responses = await asyncio.gather(
        *(
            client.post(trigger_url(e, "collection"), headers=auth("operator"))
            for e in endpoints
            for _ in range(5)
        )
    )

    accepted = [r.json()["collection_id"] for r in responses if r.status_code == 202]
    assert sorted(accepted) == sorted(e["collection_id"] for e in endpoints)
    assert sorted(r.status_code for r in responses) == [202] * 4 + [409] * 16


async def test_after_a_cancel_the_collection_takes_a_trigger_again(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], trigger: Trigger
) -> None:
    run = await trigger(endpoint["collection_id"])
    await client.post(f"/runs/{run['id']}/cancel", headers=auth("operator"))

    response = await client.post(trigger_url(endpoint, "collection"), headers=auth("operator"))

    assert response.status_code == 202


# Unknown targets.


async def test_triggering_an_unknown_collection_or_endpoint_is_404_with_its_code(
    client: httpx.AsyncClient, auth: Auth, outbox: Outbox, expect_error: ExpectError
) -> None:
    missing = "00000000-0000-4000-8000-000000000000"

    by_collection = await client.post(f"/collections/{missing}/trigger", headers=auth("operator"))
    by_endpoint = await client.post(f"/endpoints/{missing}/trigger", headers=auth("operator"))

    expect_error(by_collection, 404, "E_COLLECTION_NOT_FOUND")
    expect_error(by_endpoint, 404, "E_ENDPOINT_NOT_FOUND")
    assert await outbox() == []
