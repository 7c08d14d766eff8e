"""/collections and /runs: reading collections, triggering them, following their runs."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from freshet.catalog import Database, RunStatus, UnitOfWork

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
Trigger = Callable[[str], Awaitable[dict[str, Any]]]
MoveRun = Callable[..., Awaitable[None]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]

REQUESTED_TOPIC = "freshet.collection.requested"


@pytest.fixture
async def collection_id(create_endpoint: CreateEndpoint) -> str:
    """The collection of a freshly registered endpoint (enabled, never run)."""
    endpoint = await create_endpoint()
    collection: str = endpoint["collection_id"]
    return collection


async def requested_events(outbox: Outbox) -> list[dict[str, Any]]:
    return [row for row in await outbox() if row["topic"] == REQUESTED_TOPIC]


async def run_ids(catalog: Database) -> list[str]:
    async with UnitOfWork(catalog) as uow:
        return [str(r.id) for r in await uow.runs.find()]


# Reading collections.


async def test_the_collection_list_holds_the_collection_of_every_endpoint(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint
) -> None:
    first = await create_endpoint("first-db")
    second = await create_endpoint("second-db")

    response = await client.get("/collections", headers=auth("viewer"))

    assert response.status_code == 200
    assert {(c["id"], c["endpoint_id"]) for c in response.json()} == {
        (first["collection_id"], first["id"]),
        (second["collection_id"], second["id"]),
    }


async def test_an_unknown_collection_is_404(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await client.get(f"/collections/{uuid.uuid4()}", headers=auth("viewer"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "E_COLLECTION_NOT_FOUND"


# Triggering a collection.


async def test_a_trigger_queues_an_api_run_and_answers_202(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint
) -> None:
    endpoint = await create_endpoint()

    response = await client.post(
        f"/collections/{endpoint['collection_id']}/trigger", headers=auth("operator")
    )

    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] == "QUEUED"
    assert run["trigger_source"] == "api"
    assert run["requested_by"] == "otto-operator"
    assert run["collection_id"] == endpoint["collection_id"]
    assert run["endpoint_id"] == endpoint["id"]
    assert run["workflow_id"] == f"collection-run::{run['id']}"
    assert run["requested_at"] is not None
    for unset in ("started_at", "completed_at", "duration_ms", "error", "datasets_total"):
        assert run[unset] is None, unset


@pytest.mark.parametrize(("role", "name"), [("operator", "otto-operator"), ("admin", "ada-admin")])
async def test_a_run_is_requested_by_the_name_of_the_token_that_triggered_it(
    client: httpx.AsyncClient, auth: Auth, collection_id: str, role: str, name: str
) -> None:
    response = await client.post(f"/collections/{collection_id}/trigger", headers=auth(role))

    assert response.json()["requested_by"] == name


async def test_a_trigger_writes_one_collection_requested_event_keyed_by_the_collection(
    client: httpx.AsyncClient, auth: Auth, collection_id: str, outbox: Outbox
) -> None:
    response = await client.post(
        f"/collections/{collection_id}/trigger",
        headers={**auth("operator"), "X-Correlation-ID": "nightly-check-42"},
    )

    run = response.json()
    [event] = await requested_events(outbox)
    assert event["event_type"] == "freshet.collection.requested.v1"
    assert event["key"] == collection_id
    assert event["value"]["run_id"] == run["id"]
    assert event["value"]["collection_id"] == collection_id
    assert event["value"]["endpoint_id"] == run["endpoint_id"]
    assert event["value"]["trigger_source"] == "api"
    assert event["value"]["requested_by"] == "otto-operator"
    assert event["headers"]["ce_correlationid"] == "nightly-check-42"
    assert event["headers"]["ce_type"] == "freshet.collection.requested.v1"
    assert event["headers"]["ce_source"] == "/freshet/gateway"


async def test_a_trigger_without_a_correlation_id_stamps_the_one_it_returns(
    client: httpx.AsyncClient, auth: Auth, collection_id: str, outbox: Outbox
) -> None:
    response = await client.post(f"/collections/{collection_id}/trigger", headers=auth("operator"))

    [event] = await requested_events(outbox)
    assert event["headers"]["ce_correlationid"] == response.headers["X-Correlation-ID"]


async def test_a_triggered_run_reads_back_by_id_as_it_was_returned(
    client: httpx.AsyncClient, auth: Auth, collection_id: str, trigger: Trigger
) -> None:
    run = await trigger(collection_id)

    response = await client.get(f"/runs/{run['id']}", headers=auth("viewer"))

    assert response.status_code == 200
    assert response.json() == run


async def test_an_unknown_collection_cannot_be_triggered(
    client: httpx.AsyncClient, auth: Auth, catalog: Database, outbox: Outbox
) -> None:
    response = await client.post(f"/collections/{uuid.uuid4()}/trigger", headers=auth("operator"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "E_COLLECTION_NOT_FOUND"
    assert await run_ids(catalog) == []
    assert await outbox() == []


async def test_a_disabled_collection_cannot_be_triggered_and_nothing_is_queued(
    client: httpx.AsyncClient, auth: Auth, collection_id: str, catalog: Database, outbox: Outbox
) -> None:
    async with UnitOfWork(catalog) as uow:
        collection = await uow.collections.get(uuid.UUID(collection_id))
        assert collection is not None
        collection.is_enabled = False
        await uow.commit()
    before = await outbox()

    response = await client.post(f"/collections/{collection_id}/trigger", headers=auth("operator"))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "E_COLLECTION_DISABLED"
    assert await run_ids(catalog) == []
    assert await outbox() == before


async def test_a_collection_with_a_running_run_cannot_be_triggered(
    client: httpx.AsyncClient,
    auth: Auth,
    collection_id: str,
    trigger: Trigger,
    move_run: MoveRun,
    catalog: Database,
    outbox: Outbox,
) -> None:
    running = await trigger(collection_id)
    await move_run(running["id"], RunStatus.RUNNING)
    before = await outbox()

    response = await client.post(f"/collections/{collection_id}/trigger", headers=auth("operator"))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "E_COLLECTION_IN_PROGRESS"
    assert await run_ids(catalog) == [running["id"]]
    assert await outbox() == before


async def test_a_collection_with_a_queued_run_cannot_be_triggered_again(
    client: httpx.AsyncClient,
    auth: Auth,
    collection_id: str,
    trigger: Trigger,
    catalog: Database,
    outbox: Outbox,
) -> None:
    first = await trigger(collection_id)
    before = await outbox()

    response = await client.post(f"/collections/{collection_id}/trigger", headers=auth("operator"))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "E_COLLECTION_IN_PROGRESS"
    assert await run_ids(catalog) == [first["id"]]
    assert await outbox() == before


async def test_a_collection_whose_run_finished_can_be_triggered_again(
    client: httpx.AsyncClient, auth: Auth, collection_id: str, trigger: Trigger, move_run: MoveRun
) -> None:
    finished = await trigger(collection_id)
    await move_run(finished["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)

    response = await client.post(f"/collections/{collection_id}/trigger", headers=auth("operator"))

    assert response.status_code == 202


# Runs.


async def test_an_unknown_run_is_404(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await client.get(f"/runs/{uuid.uuid4()}", headers=auth("viewer"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "E_RUN_NOT_FOUND"


async def test_a_succeeded_run_reports_its_times_duration_and_counts(
    client: httpx.AsyncClient,
    auth: Auth,
    collection_id: str,
    trigger: Trigger,
    catalog: Database,
) -> None:
    run = await trigger(collection_id)
    async with UnitOfWork(catalog) as uow:
        run_id = uuid.UUID(run["id"])
        assert await uow.runs.transition(run_id, RunStatus.RUNNING)
        assert await uow.runs.transition(
            run_id,
            RunStatus.SUCCEEDED,
            datasets_total=3,
            datasets_added=2,
            datasets_removed=1,
            datasets_changed=0,
        )
        await uow.commit()

    response = await client.get(f"/runs/{run['id']}", headers=auth("viewer"))

    done = response.json()
    assert done["status"] == "SUCCEEDED"
    started = datetime.fromisoformat(done["started_at"])
    completed = datetime.fromisoformat(done["completed_at"])
    assert started <= completed
    assert isinstance(done["duration_ms"], int)
    assert done["duration_ms"] >= 0
    assert (
        done["datasets_total"],
        done["datasets_added"],
        done["datasets_removed"],
        done["datasets_changed"],
    ) == (3, 2, 1, 0)


async def test_a_failed_run_reports_its_error(
    client: httpx.AsyncClient,
    auth: Auth,
    collection_id: str,
    trigger: Trigger,
    catalog: Database,
) -> None:
    run = await trigger(collection_id)
    async with UnitOfWork(catalog) as uow:
        assert await uow.runs.transition(
            uuid.UUID(run["id"]), RunStatus.FAILED, error="source unreachable"
        )
        await uow.commit()

    response = await client.get(f"/runs/{run['id']}", headers=auth("viewer"))

    assert response.json()["status"] == "FAILED"
    assert response.json()["error"] == "source unreachable"


@pytest.fixture
async def three_runs(collection_id: str, trigger: Trigger, move_run: MoveRun) -> dict[str, str]:
    """One SUCCEEDED, then one FAILED, then one QUEUED run of the collection, in that order."""
    succeeded = await trigger(collection_id)
    await move_run(succeeded["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
    failed = await trigger(collection_id)
    await move_run(failed["id"], RunStatus.RUNNING, RunStatus.FAILED)
    queued = await trigger(collection_id)
    return {"SUCCEEDED": succeeded["id"], "FAILED": failed["id"], "QUEUED": queued["id"]}


async def test_the_runs_of_a_collection_are_listed_newest_first(
    client: httpx.AsyncClient, auth: Auth, collection_id: str, three_runs: dict[str, str]
) -> None:
    response = await client.get(f"/collections/{collection_id}/runs", headers=auth("viewer"))

    assert response.status_code == 200
    assert [r["id"] for r in response.json()] == [
        three_runs["QUEUED"],
        three_runs["FAILED"],
        three_runs["SUCCEEDED"],
    ]


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "QUEUED"])
async def test_the_status_filter_lists_only_runs_in_that_status(
    client: httpx.AsyncClient,
    auth: Auth,
    collection_id: str,
    three_runs: dict[str, str],
    status: str,
) -> None:
    response = await client.get(
        f"/collections/{collection_id}/runs", params={"status": status}, headers=auth("viewer")
    )

    assert [(r["id"], r["status"]) for r in response.json()] == [(three_runs[status], status)]


async def test_the_status_filter_with_no_matching_run_lists_nothing(
    client: httpx.AsyncClient, auth: Auth, collection_id: str, three_runs: dict[str, str]
) -> None:
    response = await client.get(
        f"/collections/{collection_id}/runs", params={"status": "RUNNING"}, headers=auth("viewer")
    )

    assert response.status_code == 200
    assert response.json() == []


async def test_an_unknown_status_is_refused_with_422(
    client: httpx.AsyncClient, auth: Auth, collection_id: str
) -> None:
    response = await client.get(
        f"/collections/{collection_id}/runs", params={"status": "DONE"}, headers=auth("viewer")
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "E_VALIDATION"
    assert ["query", "status"] in [d["loc"] for d in response.json()["error"]["details"]]


@pytest.mark.parametrize(("first", "count"), [(1, 1), (2, 2), (500, 3)])
async def test_first_limits_the_runs_listed_to_the_newest_ones(
    client: httpx.AsyncClient,
    auth: Auth,
    collection_id: str,
    three_runs: dict[str, str],
    first: int,
    count: int,
) -> None:
    response = await client.get(
        f"/collections/{collection_id}/runs", params={"first": first}, headers=auth("viewer")
    )

    assert response.status_code == 200
    newest_first = [three_runs["QUEUED"], three_runs["FAILED"], three_runs["SUCCEEDED"]]
    assert [r["id"] for r in response.json()] == newest_first[:count]


@pytest.mark.parametrize("first", [0, -1, 501, "many"])
async def test_first_outside_1_to_500_is_refused_with_422(
    client: httpx.AsyncClient, auth: Auth, collection_id: str, first: int | str
) -> None:
    response = await client.get(
        f"/collections/{collection_id}/runs", params={"first": first}, headers=auth("viewer")
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "E_VALIDATION"
    assert ["query", "first"] in [d["loc"] for d in response.json()["error"]["details"]]


async def test_the_runs_of_another_collection_are_not_listed(
    client: httpx.AsyncClient,
    auth: Auth,
    create_endpoint: CreateEndpoint,
    trigger: Trigger,
) -> None:
    mine = await create_endpoint("mine-db")
    other = await create_endpoint("other-db")
    my_run = await trigger(mine["collection_id"])
    await trigger(other["collection_id"])

    response = await client.get(
        f"/collections/{mine['collection_id']}/runs", headers=auth("viewer")
    )

    assert [r["id"] for r in response.json()] == [my_run["id"]]


async def test_the_runs_of_an_unknown_collection_are_404(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    response = await client.get(f"/collections/{uuid.uuid4()}/runs", headers=auth("viewer"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "E_COLLECTION_NOT_FOUND"


# Malformed ids.


@pytest.mark.parametrize(
    ("method", "template", "param"),
    [
        ("GET", "/endpoints/{}", "endpoint_id"),
        ("GET", "/collections/{}", "collection_id"),
        ("POST", "/collections/{}/trigger", "collection_id"),
        ("GET", "/collections/{}/runs", "collection_id"),
        ("GET", "/runs/{}", "run_id"),
        ("GET", "/datasets/{}", "dataset_id"),
    ],
)
async def test_a_malformed_uuid_in_a_path_is_refused_with_422(
    client: httpx.AsyncClient, auth: Auth, method: str, template: str, param: str
) -> None:
    response = await client.request(method, template.format("not-a-uuid"), headers=auth("admin"))

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "E_VALIDATION"
    assert [d["loc"] for d in error["details"]] == [["path", param]]
