"""Collections: POST /collections, PATCH and DELETE /collections/{id} (admin), with their
schedules validated up front and every change announced as a CollectionChanged event.
Every test runs on a SQLite and a PostgreSQL catalog.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

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
COMPLETED = "freshet.run.completed.v1"


@pytest.fixture
async def endpoint(bare_endpoint: BareEndpoint) -> dict[str, Any]:
    """An endpoint without a collection, so that one can be created."""
    return await bare_endpoint("shop-db")


@pytest.fixture
def create_collection(
    client: httpx.AsyncClient, auth: Auth
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """POST /collections as admin; returns the 201 body."""

    async def create(endpoint_id: str, **fields: Any) -> dict[str, Any]:
        response = await client.post(
            "/collections", json={"endpoint_id": endpoint_id, **fields}, headers=auth("admin")
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    return create


@pytest.fixture
async def scheduled(
    endpoint: dict[str, Any], create_collection: Callable[..., Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """An enabled collection firing at 02:30 in Asia/Kolkata."""
    return await create_collection(
        endpoint["id"], schedule_cron="30 2 * * *", schedule_timezone="Asia/Kolkata"
    )


def state(collection_or_event: dict[str, Any]) -> tuple[Any, ...]:
    c = collection_or_event
    return (c["schedule_cron"], c["schedule_timezone"], c["is_enabled"])


# Creating a collection.


async def test_a_collection_is_created_manual_only_enabled_in_utc_by_default(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any]
) -> None:
    response = await client.post(
        "/collections", json={"endpoint_id": endpoint["id"]}, headers=auth("admin")
    )

    assert response.status_code == 201, response.text
    created = response.json()
    uuid.UUID(created["id"])
    assert created["endpoint_id"] == endpoint["id"]
    assert (created["schedule_cron"], created["schedule_timezone"], created["is_enabled"]) == (
        None,
        "UTC",
        True,
    )
    assert created["schedule_id"] is None, "manual-only collections have no schedule"
    assert created["cursor"]
    fetched = await client.get(f"/collections/{created['id']}", headers=auth("viewer"))
    assert fetched.json() == created


async def test_a_collection_created_with_a_cron_has_the_schedule_id_collection_id(
    create_collection: Callable[..., Awaitable[dict[str, Any]]], endpoint: dict[str, Any]
) -> None:
    created = await create_collection(endpoint["id"], schedule_cron="0 */6 * * *")

    assert created["schedule_cron"] == "0 */6 * * *"
    assert created["schedule_id"] == f"collection::{created['id']}"


async def test_a_collection_can_be_created_disabled_in_a_time_zone(
    create_collection: Callable[..., Awaitable[dict[str, Any]]], endpoint: dict[str, Any]
) -> None:
    created = await create_collection(
        endpoint["id"],
        schedule_cron="30 2 * * 1-5",
        schedule_timezone="America/New_York",
        is_enabled=False,
    )

    assert state(created) == ("30 2 * * 1-5", "America/New_York", False)
    assert created["schedule_id"] == f"collection::{created['id']}", "paused keeps its id"


async def test_the_endpoint_names_its_new_collection(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_collection: Callable[..., Awaitable[dict[str, Any]]],
) -> None:
    created = await create_collection(endpoint["id"])

    fetched = await client.get(f"/endpoints/{endpoint['id']}", headers=auth("viewer"))
    assert fetched.json()["collection_id"] == created["id"]


async def test_creating_a_collection_announces_it_once_with_its_state(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox: Outbox,
) -> None:
    response = await client.post(
        "/collections",
        json={"endpoint_id": endpoint["id"], "schedule_cron": "0 3 * * *"},
        headers={**auth("admin"), "X-Correlation-ID": "create-collection-7"},
    )

    created = response.json()
    [row] = [r for r in await outbox() if r["key"] == created["id"]]
    assert row["event_type"] == CHANGED
    assert row["headers"]["ce_correlationid"] == "create-collection-7"
    assert row["value"]["collection_id"] == created["id"]
    assert row["value"]["endpoint_id"] == endpoint["id"]
    assert state(row["value"]) == ("0 3 * * *", "UTC", True)
    assert row["value"]["deleted"] is False


async def test_a_second_collection_for_an_endpoint_is_refused_with_e_validation(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_collection: Callable[..., Awaitable[dict[str, Any]]],
    outbox: Outbox,
    expect_error: ExpectError,
) -> None:
    first = await create_collection(endpoint["id"])
    before = await outbox()

    response = await client.post(
        "/collections",
        json={"endpoint_id": endpoint["id"], "schedule_cron": "0 3 * * *"},
        headers=auth("admin"),
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert ["input", "endpoint_id"] in [d["loc"] for d in error["details"]]
    assert await outbox() == before
    listed = await client.get(
        "/collections", params={"endpoint_id": endpoint["id"]}, headers=auth("viewer")
    )
    assert [c["id"] for c in listed.json()] == [first["id"]]


async def test_of_concurrent_creations_for_one_endpoint_exactly_one_succeeds(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox_events: OutboxEvents,
    expect_error: ExpectError,
) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/collections", json={"endpoint_id": endpoint["id"]}, headers=auth("admin"))
            for _ in range(10)
        )
    )

    assert sorted(r.status_code for r in responses) == [201] + [422] * 9
    for response in responses:
        if response.status_code == 422:
            expect_error(response, 422, "E_VALIDATION")
    created = next(r.json() for r in responses if r.status_code == 201)
    announced = [e for e in await outbox_events(CHANGED) if e["endpoint_id"] == endpoint["id"]]
    # The first is the collection the endpoint was registered with (since removed).
    assert [e["collection_id"] for e in announced[1:]] == [created["id"]]


async def test_a_collection_for_an_unknown_endpoint_is_404(
    client: httpx.AsyncClient, auth: Auth, outbox: Outbox, expect_error: ExpectError
) -> None:
    response = await client.post(
        "/collections", json={"endpoint_id": str(uuid.uuid4())}, headers=auth("admin")
    )

    expect_error(response, 404, "E_ENDPOINT_NOT_FOUND")
    assert await outbox() == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"endpoint_id": ...}, ["body", "endpoint_id"], id="missing endpoint_id"),
        pytest.param({"endpoint_id": "shop-db"}, ["body", "endpoint_id"], id="not a uuid"),
        pytest.param({"endpoint_id": None}, ["body", "endpoint_id"], id="null endpoint_id"),
        pytest.param({"is_enabled": "maybe"}, ["body", "is_enabled"], id="not a boolean"),
        pytest.param({"schedule_cron": 5}, ["body", "schedule_cron"], id="cron not a string"),
        pytest.param(
            {"schedule_id": "mine"}, ["body", "schedule_id"], id="schedule_id is not input"
        ),
    ],
)
async def test_a_malformed_collection_body_is_refused_naming_the_field(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    expect_error: ExpectError,
    body: dict[str, Any],
    loc: list[str],
) -> None:
    sent = {k: v for k, v in {"endpoint_id": endpoint["id"], **body}.items() if v is not ...}

    response = await client.post("/collections", json=sent, headers=auth("admin"))

    error = expect_error(response, 422, "E_VALIDATION")
    assert loc in [d["loc"] for d in error["details"]]


# Schedules: 5-field crons that fire no more often than the minimum interval, IANA zones.

BAD_CRONS = {
    "four fields": "* * * *",
    "seven fields": "0 0 1 1 * 2030 x",
    "six fields firing every minute": "0 * * * * *",
    "a word": "daily",
    "a macro": "@hourly",
    "blank": "   ",
    "empty": "",
    "minute out of range": "61 * * * *",
    "day that never comes": "0 0 31 2 *",
    "shell after the cron": "0 0 * * *; rm -rf /",
    "quotes": "0 0 * * '1'",
    "unicode digits": "\uff10 \uff10 * * *",  # fullwidth zeros
    "every minute": "* * * * *",
    "every two minutes": "*/2 * * * *",
    "every four minutes": "*/4 * * * *",
    "daily but twice a minute apart": "0,1 0 * * *",
}
BAD_ZONES = {
    "unknown": "Mars/Olympus",
    "path traversal": "../../etc/passwd",
    "traversal inside a name": "Europe/../../etc/passwd",
    "absolute path": "/etc/localtime",
    "nul": "UTC\x00",
    "leading space": " UTC",
    "empty": "",
    "sql": "UTC'; DROP TABLE collections; --",
}


@pytest.mark.parametrize("cron", [pytest.param(c, id=name) for name, c in BAD_CRONS.items()])
async def test_a_bad_cron_is_refused_on_create_naming_schedule_cron(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox: Outbox,
    expect_error: ExpectError,
    cron: str,
) -> None:
    before = await outbox()

    response = await client.post(
        "/collections",
        json={"endpoint_id": endpoint["id"], "schedule_cron": cron},
        headers=auth("admin"),
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert [d["loc"] for d in error["details"]] == [["input", "schedule_cron"]]
    assert await outbox() == before


@pytest.mark.parametrize("cron", [pytest.param(c, id=name) for name, c in BAD_CRONS.items()])
async def test_a_bad_cron_is_refused_on_update_and_the_collection_keeps_its_schedule(
    client: httpx.AsyncClient,
    auth: Auth,
    scheduled: dict[str, Any],
    outbox: Outbox,
    expect_error: ExpectError,
    cron: str,
) -> None:
    url = f"/collections/{scheduled['id']}"
    before = await outbox()

    response = await client.patch(url, json={"schedule_cron": cron}, headers=auth("admin"))

    error = expect_error(response, 422, "E_VALIDATION")
    assert [d["loc"] for d in error["details"]] == [["input", "schedule_cron"]]
    assert (await client.get(url, headers=auth("viewer"))).json() == scheduled
    assert await outbox() == before


@pytest.mark.parametrize("zone", [pytest.param(z, id=name) for name, z in BAD_ZONES.items()])
async def test_a_bad_time_zone_is_refused_on_create_and_update_without_echoing_it(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_endpoint: CreateEndpoint,
    expect_error: ExpectError,
    zone: str,
) -> None:
    created = await client.post(
        "/collections",
        json={"endpoint_id": endpoint["id"], "schedule_timezone": zone},
        headers=auth("admin"),
    )
    existing = await create_endpoint("with-collection")
    updated = await client.patch(
        f"/collections/{existing['collection_id']}",
        json={"schedule_timezone": zone},
        headers=auth("admin"),
    )

    for response in (created, updated):
        error = expect_error(response, 422, "E_VALIDATION")
        assert [d["loc"] for d in error["details"]] == [["input", "schedule_timezone"]]
        if len(zone.strip()) > 3:
            assert zone not in response.text


async def test_a_time_zone_checked_even_for_a_manual_only_collection(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], expect_error: ExpectError
) -> None:
    response = await client.post(
        "/collections",
        json={"endpoint_id": endpoint["id"], "schedule_cron": None, "schedule_timezone": "Nowhere"},
        headers=auth("admin"),
    )

    expect_error(response, 422, "E_VALIDATION")


@pytest.mark.parametrize(
    ("field", "value"), [("schedule_cron", "0 " * 61), ("schedule_timezone", "Europe/" + "x" * 60)]
)
async def test_an_overlong_schedule_field_is_refused_by_request_validation(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    expect_error: ExpectError,
    field: str,
    value: str,
) -> None:
    response = await client.post(
        "/collections", json={"endpoint_id": endpoint["id"], field: value}, headers=auth("admin")
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert [d["loc"] for d in error["details"]] == [["body", field]]


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/New_York", "Etc/GMT+5"])
async def test_an_iana_time_zone_is_stored_as_sent(
    create_collection: Callable[..., Awaitable[dict[str, Any]]],
    endpoint: dict[str, Any],
    zone: str,
) -> None:
    created = await create_collection(
        endpoint["id"], schedule_cron="0 4 * * *", schedule_timezone=zone
    )

    assert created["schedule_timezone"] == zone


@pytest.mark.parametrize("cron", ["*/5 * * * *", "0 * * * *", "15 3 * * 1-5", "0 0 1 1 *"])
async def test_a_cron_firing_at_most_every_five_minutes_is_accepted_by_default(
    create_collection: Callable[..., Awaitable[dict[str, Any]]],
    endpoint: dict[str, Any],
    gateway_app: FastAPI,
    cron: str,
) -> None:
    assert gateway_app.state.settings.min_schedule_interval_s == 300

    created = await create_collection(endpoint["id"], schedule_cron=cron)

    assert created["schedule_cron"] == cron


async def test_the_refusal_of_a_too_frequent_cron_says_the_minimum_interval(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], expect_error: ExpectError
) -> None:
    response = await client.post(
        "/collections",
        json={"endpoint_id": endpoint["id"], "schedule_cron": "*/4 * * * *"},
        headers=auth("admin"),
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert "5 min" in error["message"]


@pytest.fixture
def one_minute_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    """FRESHET_MIN_SCHEDULE_INTERVAL_S=60, set before the app reads its settings."""
    monkeypatch.setenv("FRESHET_MIN_SCHEDULE_INTERVAL_S", "60")


@pytest.mark.usefixtures("one_minute_minimum")
@pytest.mark.parametrize("cron", ["* * * * *", "*/2 * * * *", "0,1 0 * * *"])
async def test_a_lower_configured_minimum_interval_admits_more_frequent_crons(
    create_collection: Callable[..., Awaitable[dict[str, Any]]],
    endpoint: dict[str, Any],
    gateway_app: FastAPI,
    cron: str,
) -> None:
    assert gateway_app.state.settings.min_schedule_interval_s == 60

    created = await create_collection(endpoint["id"], schedule_cron=cron)

    assert created["schedule_cron"] == cron


@pytest.mark.usefixtures("one_minute_minimum")
async def test_a_lower_configured_minimum_interval_still_bounds_the_schedule(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], expect_error: ExpectError
) -> None:
    response = await client.post(
        "/collections",
        json={"endpoint_id": endpoint["id"], "schedule_cron": "*/30 * * * * *"},
        headers=auth("admin"),
    )

    expect_error(response, 422, "E_VALIDATION")


# Changing a collection: only the fields sent change.


@pytest.mark.parametrize(
    "change",
    [
        {"schedule_cron": "45 23 * * *"},
        {"schedule_timezone": "Europe/Berlin"},
        {"is_enabled": False},
    ],
    ids=lambda change: next(iter(change)),
)
async def test_patching_one_field_changes_that_field_and_keeps_the_others(
    client: httpx.AsyncClient, auth: Auth, scheduled: dict[str, Any], change: dict[str, Any]
) -> None:
    url = f"/collections/{scheduled['id']}"

    response = await client.patch(url, json=change, headers=auth("admin"))

    assert response.status_code == 200, response.text
    patched = response.json()
    assert state(patched) == state({**scheduled, **change})
    assert (patched["id"], patched["endpoint_id"], patched["created_at"]) == (
        scheduled["id"],
        scheduled["endpoint_id"],
        scheduled["created_at"],
    )
    assert patched["updated_at"] >= scheduled["updated_at"]
    assert (await client.get(url, headers=auth("viewer"))).json() == patched


async def test_an_empty_patch_changes_nothing(
    client: httpx.AsyncClient, auth: Auth, scheduled: dict[str, Any]
) -> None:
    response = await client.patch(f"/collections/{scheduled['id']}", json={}, headers=auth("admin"))

    assert state(response.json()) == state(scheduled)
    assert response.json()["schedule_id"] == scheduled["schedule_id"]


async def test_a_null_cron_makes_the_collection_manual_only(
    client: httpx.AsyncClient, auth: Auth, scheduled: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/collections/{scheduled['id']}", json={"schedule_cron": None}, headers=auth("admin")
    )

    manual = response.json()
    assert (manual["schedule_cron"], manual["schedule_id"]) == (None, None)
    assert (manual["schedule_timezone"], manual["is_enabled"]) == ("Asia/Kolkata", True)


async def test_setting_a_cron_on_a_manual_only_collection_gives_it_a_schedule_id(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_collection: Callable[..., Awaitable[dict[str, Any]]],
) -> None:
    manual = await create_collection(endpoint["id"])

    response = await client.patch(
        f"/collections/{manual['id']}", json={"schedule_cron": "0 5 * * *"}, headers=auth("admin")
    )

    assert response.json()["schedule_id"] == f"collection::{manual['id']}"


async def test_a_disabled_collection_keeps_its_schedule_and_schedule_id(
    client: httpx.AsyncClient, auth: Auth, scheduled: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/collections/{scheduled['id']}", json={"is_enabled": False}, headers=auth("admin")
    )

    paused = response.json()
    assert (paused["schedule_cron"], paused["schedule_id"]) == (
        scheduled["schedule_cron"],
        scheduled["schedule_id"],
    )


async def test_changing_only_the_zone_revalidates_the_stored_cron_in_it(
    client: httpx.AsyncClient,
    auth: Auth,
    scheduled: dict[str, Any],
    expect_error: ExpectError,
) -> None:
    response = await client.patch(
        f"/collections/{scheduled['id']}",
        json={"schedule_timezone": "Not/AZone"},
        headers=auth("admin"),
    )

    expect_error(response, 422, "E_VALIDATION")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"endpoint_id": str(uuid.uuid4())}, ["body", "endpoint_id"], id="endpoint"),
        pytest.param({"schedule_id": "x"}, ["body", "schedule_id"], id="schedule_id"),
        pytest.param({"is_enabled": [True]}, ["body", "is_enabled"], id="is_enabled as a list"),
        pytest.param({"schedule_timezone": 7}, ["body", "schedule_timezone"], id="zone as number"),
    ],
)
async def test_a_patch_with_an_unknown_or_mistyped_field_is_refused(
    client: httpx.AsyncClient,
    auth: Auth,
    scheduled: dict[str, Any],
    expect_error: ExpectError,
    body: dict[str, Any],
    loc: list[str],
) -> None:
    response = await client.patch(
        f"/collections/{scheduled['id']}", json=body, headers=auth("admin")
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert loc in [d["loc"] for d in error["details"]]


async def test_patching_an_unknown_collection_is_404(
    client: httpx.AsyncClient, auth: Auth, expect_error: ExpectError
) -> None:
    response = await client.patch(
        f"/collections/{uuid.uuid4()}", json={"is_enabled": False}, headers=auth("admin")
    )

    expect_error(response, 404, "E_COLLECTION_NOT_FOUND")


# Disabled means no runs at all (seed 003, Q2).


async def test_a_disabled_collection_refuses_both_triggers_with_409_and_queues_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    scheduled: dict[str, Any],
    outbox_events: OutboxEvents,
    expect_error: ExpectError,
) -> None:
    await client.patch(
        f"/collections/{scheduled['id']}", json={"is_enabled": False}, headers=auth("admin")
    )

    by_collection = await client.post(
        f"/collections/{scheduled['id']}/trigger", headers=auth("operator")
    )
    by_endpoint = await client.post(
        f"/endpoints/{scheduled['endpoint_id']}/trigger", headers=auth("operator")
    )

    expect_error(by_collection, 409, "E_COLLECTION_DISABLED")
    expect_error(by_endpoint, 409, "E_COLLECTION_DISABLED")
    runs = await client.get(f"/collections/{scheduled['id']}/runs", headers=auth("viewer"))
    assert runs.json() == []
    assert await outbox_events(REQUESTED) == []


async def test_a_re_enabled_collection_takes_triggers_again(
    client: httpx.AsyncClient, auth: Auth, scheduled: dict[str, Any]
) -> None:
    url = f"/collections/{scheduled['id']}"
    await client.patch(url, json={"is_enabled": False}, headers=auth("admin"))
    await client.patch(url, json={"is_enabled": True}, headers=auth("admin"))

    response = await client.post(f"{url}/trigger", headers=auth("operator"))

    assert response.status_code == 202


# Every change is announced: one CollectionChanged per create, update and delete.


async def test_each_create_update_and_delete_announces_the_new_state_once(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    outbox: Outbox,
) -> None:
    admin = auth("admin")
    created = (
        await client.post(
            "/collections",
            json={"endpoint_id": endpoint["id"], "schedule_cron": "0 1 * * *"},
            headers=admin,
        )
    ).json()
    url = f"/collections/{created['id']}"
    await client.patch(url, json={"schedule_timezone": "Asia/Tokyo"}, headers=admin)
    await client.patch(url, json={"is_enabled": False}, headers=admin)
    await client.patch(url, json={"schedule_cron": None}, headers=admin)
    await client.delete(url, headers=admin)

    rows = [r for r in await outbox() if r["key"] == created["id"]]
    assert {r["event_type"] for r in rows} == {CHANGED}
    assert [(*state(r["value"]), r["value"]["deleted"]) for r in rows] == [
        ("0 1 * * *", "UTC", True, False),
        ("0 1 * * *", "Asia/Tokyo", True, False),
        ("0 1 * * *", "Asia/Tokyo", False, False),
        (None, "Asia/Tokyo", False, False),
        (None, "Asia/Tokyo", False, True),
    ]
    assert {r["value"]["endpoint_id"] for r in rows} == {endpoint["id"]}


async def test_a_refused_change_announces_nothing(
    client: httpx.AsyncClient, auth: Auth, scheduled: dict[str, Any], outbox: Outbox
) -> None:
    before = await outbox()

    await client.patch(
        f"/collections/{scheduled['id']}",
        json={"schedule_cron": "* * * * *"},
        headers=auth("admin"),
    )
    await client.patch(
        f"/collections/{scheduled['id']}", json={"is_enabled": False}, headers=auth("viewer")
    )

    assert await outbox() == before


# Deleting a collection: its schedule goes, its history stays.


async def test_deleting_a_collection_answers_204_and_it_is_gone(
    client: httpx.AsyncClient, auth: Auth, scheduled: dict[str, Any], expect_error: ExpectError
) -> None:
    response = await client.delete(f"/collections/{scheduled['id']}", headers=auth("admin"))

    assert response.status_code == 204
    assert response.content == b""
    gone = await client.get(f"/collections/{scheduled['id']}", headers=auth("viewer"))
    expect_error(gone, 404, "E_COLLECTION_NOT_FOUND")
    endpoint = await client.get(f"/endpoints/{scheduled['endpoint_id']}", headers=auth("viewer"))
    assert endpoint.json()["collection_id"] is None


async def test_deleting_a_collection_keeps_its_runs_without_a_collection(
    client: httpx.AsyncClient,
    auth: Auth,
    scheduled: dict[str, Any],
    trigger: Trigger,
    move_run: MoveRun,
) -> None:
    succeeded = await trigger(scheduled["id"])
    await move_run(succeeded["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
    failed = await trigger(scheduled["id"])
    await move_run(failed["id"], RunStatus.FAILED)
    viewer = auth("viewer")
    before = (await client.get(f"/runs/{succeeded['id']}", headers=viewer)).json()

    await client.delete(f"/collections/{scheduled['id']}", headers=auth("admin"))

    history = await client.get(
        "/runs", params={"endpoint_id": scheduled["endpoint_id"]}, headers=viewer
    )
    assert [(r["id"], r["status"], r["collection_id"]) for r in history.json()] == [
        (failed["id"], "FAILED", None),
        (succeeded["id"], "SUCCEEDED", None),
    ]
    kept = (await client.get(f"/runs/{succeeded['id']}", headers=viewer)).json()
    assert kept == {**before, "collection_id": None}, "only the link to the collection goes"
    by_collection = await client.get(
        "/runs", params={"collection_id": scheduled["id"]}, headers=viewer
    )
    assert by_collection.json() == []


@pytest.mark.parametrize("active", [RunStatus.QUEUED, RunStatus.RUNNING])
async def test_deleting_a_collection_cancels_its_active_run_and_announces_it(
    client: httpx.AsyncClient,
    auth: Auth,
    scheduled: dict[str, Any],
    trigger: Trigger,
    move_run: MoveRun,
    outbox_events: OutboxEvents,
    active: RunStatus,
) -> None:
    finished = await trigger(scheduled["id"])
    await move_run(finished["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
    run = await trigger(scheduled["id"])
    if active is RunStatus.RUNNING:
        await move_run(run["id"], RunStatus.RUNNING)

    await client.delete(f"/collections/{scheduled['id']}", headers=auth("admin"))

    cancelled = (await client.get(f"/runs/{run['id']}", headers=auth("viewer"))).json()
    assert (cancelled["status"], cancelled["error"]) == ("CANCELLED", "collection deleted")
    assert cancelled["completed_at"] is not None
    finished_now = (await client.get(f"/runs/{finished['id']}", headers=auth("viewer"))).json()
    assert finished_now["status"] == "SUCCEEDED"
    [completed] = await outbox_events(COMPLETED)
    assert (completed["run_id"], completed["status"], completed["error"]) == (
        run["id"],
        "CANCELLED",
        "collection deleted",
    )
    assert completed["collection_id"] == scheduled["id"]
    assert completed["endpoint_id"] == scheduled["endpoint_id"]
    assert completed["trigger_source"] == "api"


async def test_deleting_a_collection_without_an_active_run_announces_no_run(
    client: httpx.AsyncClient,
    auth: Auth,
    scheduled: dict[str, Any],
    outbox_events: OutboxEvents,
) -> None:
    await client.delete(f"/collections/{scheduled['id']}", headers=auth("admin"))

    assert await outbox_events(COMPLETED) == []


async def test_a_deleted_collection_is_404_for_every_collection_route(
    client: httpx.AsyncClient, auth: Auth, scheduled: dict[str, Any], expect_error: ExpectError
) -> None:
    url = f"/collections/{scheduled['id']}"
    await client.delete(url, headers=auth("admin"))

    responses = [
        await client.post(f"{url}/trigger", headers=auth("operator")),
        await client.patch(url, json={"is_enabled": True}, headers=auth("admin")),
        await client.delete(url, headers=auth("admin")),
        await client.get(f"{url}/runs", headers=auth("viewer")),
    ]

    for response in responses:
        expect_error(response, 404, "E_COLLECTION_NOT_FOUND")


async def test_after_deletion_the_endpoint_trigger_makes_a_manual_only_collection_and_a_run(
    client: httpx.AsyncClient,
    auth: Auth,
    scheduled: dict[str, Any],
    outbox_events: OutboxEvents,
) -> None:
    endpoint_id = scheduled["endpoint_id"]
    await client.delete(f"/collections/{scheduled['id']}", headers=auth("admin"))

    response = await client.post(f"/endpoints/{endpoint_id}/trigger", headers=auth("operator"))

    assert response.status_code == 202, response.text
    run = response.json()
    new_id = run["collection_id"]
    assert new_id not in (None, scheduled["id"])
    assert (run["status"], run["endpoint_id"], run["trigger_source"]) == (
        "QUEUED",
        endpoint_id,
        "api",
    )
    fresh = (await client.get(f"/collections/{new_id}", headers=auth("viewer"))).json()
    assert (fresh["schedule_cron"], fresh["schedule_id"], fresh["is_enabled"]) == (None, None, True)
    endpoint = (await client.get(f"/endpoints/{endpoint_id}", headers=auth("viewer"))).json()
    assert endpoint["collection_id"] == new_id
    [created] = [e for e in await outbox_events(CHANGED) if e["collection_id"] == new_id]
    assert (created["schedule_cron"], created["deleted"]) == (None, False)
    [requested] = await outbox_events(REQUESTED)
    assert (requested["collection_id"], requested["run_id"]) == (new_id, run["id"])


async def test_after_deletion_a_new_collection_can_be_created_for_the_endpoint(
    client: httpx.AsyncClient,
    auth: Auth,
    scheduled: dict[str, Any],
    create_collection: Callable[..., Awaitable[dict[str, Any]]],
) -> None:
    await client.delete(f"/collections/{scheduled['id']}", headers=auth("admin"))

    created = await create_collection(scheduled["endpoint_id"], schedule_cron="0 6 * * *")

    assert created["id"] != scheduled["id"]


async def test_of_concurrent_deletes_of_a_collection_one_wins_and_one_deletion_is_announced(
    client: httpx.AsyncClient,
    auth: Auth,
    scheduled: dict[str, Any],
    trigger: Trigger,
    outbox_events: OutboxEvents,
    expect_error: ExpectError,
) -> None:
    await trigger(scheduled["id"])

    responses = await asyncio.gather(
        *(client.delete(f"/collections/{scheduled['id']}", headers=auth("admin")) for _ in range(5))
    )

    assert sorted(r.status_code for r in responses) == [204, 404, 404, 404, 404]
    for response in responses:
        if response.status_code == 404:
            expect_error(response, 404, "E_COLLECTION_NOT_FOUND")
    changes = [e for e in await outbox_events(CHANGED) if e["collection_id"] == scheduled["id"]]
    assert [e["deleted"] for e in changes] == [False, True]
    assert [e["status"] for e in await outbox_events(COMPLETED)] == ["CANCELLED"]


# --- jitter -------------------------------------------------------------------------------------


async def test_a_collection_takes_a_schedule_jitter_and_keeps_it_across_patches(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_collection: Callable[..., Awaitable[dict[str, Any]]],
    outbox_events: OutboxEvents,
) -> None:
    created = await create_collection(
        endpoint["id"], schedule_cron="0 * * * *", schedule_jitter_s=90
    )
    assert created["schedule_jitter_s"] == 90
    url = f"/collections/{created['id']}"

    kept = await client.patch(url, json={"is_enabled": False}, headers=auth("admin"))
    changed = await client.patch(url, json={"schedule_jitter_s": 5}, headers=auth("admin"))

    assert kept.json()["schedule_jitter_s"] == 90
    assert changed.json()["schedule_jitter_s"] == 5
    announced = [e for e in await outbox_events(CHANGED) if e["collection_id"] == created["id"]]
    assert [e["schedule_jitter_s"] for e in announced] == [90, 90, 5]


@pytest.mark.parametrize("jitter", [-1, 86_401, "soon"])
async def test_a_jitter_out_of_range_is_refused_naming_the_field(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    expect_error: ExpectError,
    jitter: Any,
) -> None:
    response = await client.post(
        "/collections",
        json={"endpoint_id": endpoint["id"], "schedule_jitter_s": jitter},
        headers=auth("admin"),
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert [d["loc"] for d in error["details"]] == [["body", "schedule_jitter_s"]]
