"""The collection lifecycle over REST, on SQLite and PostgreSQL catalogs: endpoint changes,
collections with schedules, triggers under concurrency, run history and cancellation.

Outbox rows stand in for the events the relay would publish (the relay does not run here).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from freshet.catalog import Database, RunStatus, UnitOfWork

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
Trigger = Callable[[str], Awaitable[dict[str, Any]]]
MoveRun = Callable[..., Awaitable[None]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]
SyncDatasets = Callable[..., Awaitable[dict[str, str]]]

CHANGED = "freshet.collection.changed.v1"
REQUESTED = "freshet.collection.requested.v1"
COMPLETED = "freshet.run.completed.v1"


def events(rows: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [r["value"] for r in rows if r["event_type"] == event_type]


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


@pytest.fixture
async def endpoint(create_endpoint: CreateEndpoint) -> dict[str, Any]:
    return await create_endpoint()


# --- endpoints --------------------------------------------------------------------------------


async def test_patch_changes_only_what_was_sent_and_merges_secrets(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], catalog: Database
) -> None:
    url = f"/endpoints/{endpoint['id']}"
    response = await client.patch(
        url,
        json={"labels": ["team:sales"], "secrets": {"sslkey": "k-1"}, "run_timeout_s": 90},
        headers=auth("admin"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["labels"] == ["team:sales"]
    assert body["secret_fields"] == ["password", "sslkey"]
    assert body["run_timeout_s"] == 90
    assert body["config"] == endpoint["config"], "unchanged"
    assert "k-1" not in response.text

    removed = await client.patch(url, json={"secrets": {"password": None}}, headers=auth("admin"))
    assert removed.json()["secret_fields"] == ["sslkey"]
    renamed = await client.patch(url, json={"name": "shop-db-2"}, headers=auth("admin"))
    assert renamed.json()["name"] == "shop-db-2"


async def test_patch_refuses_a_taken_name_a_kind_change_and_secret_looking_config(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_endpoint: CreateEndpoint,
) -> None:
    await create_endpoint("other-db")
    url = f"/endpoints/{endpoint['id']}"
    taken = await client.patch(url, json={"name": "other-db"}, headers=auth("admin"))
    assert (taken.status_code, error_code(taken)) == (409, "E_ENDPOINT_NAME_TAKEN")
    kind = await client.patch(url, json={"kind": "sqlite"}, headers=auth("admin"))
    assert (kind.status_code, error_code(kind)) == (422, "E_VALIDATION")
    leaked = await client.patch(
        url, json={"config": {**endpoint["config"], "password": "x"}}, headers=auth("admin")
    )
    assert (leaked.status_code, error_code(leaked)) == (422, "E_VALIDATION")
    assert "x" not in str(leaked.json()["error"].get("details"))


async def test_ingest_commands_are_checked_when_set(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], password: str
) -> None:
    url = f"/endpoints/{endpoint['id']}"
    ok = await client.patch(
        url, json={"ingest_command": ["/usr/bin/ingest", "{output}"]}, headers=auth("admin")
    )
    assert ok.json()["ingest_command"] == ["/usr/bin/ingest", "{output}"]
    leaky = await client.patch(
        url, json={"ingest_command": ["ingest", f"--password={password}"]}, headers=auth("admin")
    )
    assert (leaky.status_code, error_code(leaky)) == (422, "E_VALIDATION")
    assert password not in leaky.text


async def test_ingest_commands_can_be_forbidden(
    client: httpx.AsyncClient, auth: Auth, gateway_app: Any, endpoint: dict[str, Any]
) -> None:
    gateway_app.state.settings.allow_ingest_commands = False
    response = await client.patch(
        f"/endpoints/{endpoint['id']}", json={"ingest_command": ["x"]}, headers=auth("admin")
    )
    assert (response.status_code, error_code(response)) == (422, "E_VALIDATION")
    assert "FRESHET_ALLOW_INGEST_COMMANDS" in response.json()["error"]["message"]


async def test_deleting_an_endpoint_removes_its_collection_runs_and_datasets(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    sync_datasets: SyncDatasets,
    catalog: Database,
    outbox: Outbox,
) -> None:
    await trigger(endpoint["collection_id"])
    await sync_datasets(endpoint["id"])

    response = await client.delete(f"/endpoints/{endpoint['id']}", headers=auth("admin"))

    assert response.status_code == 204
    gone = await client.get(f"/endpoints/{endpoint['id']}", headers=auth("viewer"))
    assert (gone.status_code, error_code(gone)) == (404, "E_ENDPOINT_NOT_FOUND")
    async with UnitOfWork(catalog) as uow:
        assert await uow.collections.get(uuid.UUID(endpoint["collection_id"])) is None
        assert await uow.runs.find(endpoint_id=uuid.UUID(endpoint["id"])) == []
        assert await uow.datasets.for_endpoint(uuid.UUID(endpoint["id"])) == []
    deleted = [e for e in events(await outbox(), CHANGED) if e["deleted"]]
    assert [e["collection_id"] for e in deleted] == [endpoint["collection_id"]]
    again = await client.delete(f"/endpoints/{endpoint['id']}", headers=auth("admin"))
    assert again.status_code == 404


async def test_connection_test_of_a_stored_endpoint_reports_ok_and_latency(
    client: httpx.AsyncClient, auth: Auth, tmp_path: Path
) -> None:
    source = tmp_path / "ok.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
    created = await client.post(
        "/endpoints",
        json={"name": "local", "kind": "sqlite", "config": {"path": str(source)}},
        headers=auth("admin"),
    )
    response = await client.post(
        f"/endpoints/{created.json()['id']}/test", headers=auth("operator")
    )
    assert response.status_code == 200
    result = response.json()
    assert (result["ok"], result["error"]) == (True, None)
    assert result["latency_ms"] >= 0


async def test_a_failed_connection_test_is_sanitised(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint, password: str
) -> None:
    unreachable = await create_endpoint(
        "down-db",
        config={"host": "127.0.0.1", "port": 1, "database": "shop", "user": "ro"},
    )
    response = await client.post(f"/endpoints/{unreachable['id']}/test", headers=auth("operator"))
    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert response.json()["error"]
    assert password not in response.text


async def test_unsaved_settings_can_be_tested_without_storing_anything(
    client: httpx.AsyncClient, auth: Auth, catalog: Database
) -> None:
    response = await client.post(
        "/endpoints/test",
        json={"name": "draft", "kind": "sqlite", "config": {"path": "/nowhere/x.db"}},
        headers=auth("admin"),
    )
    assert response.status_code == 200
    assert response.json()["ok"] is False
    async with UnitOfWork(catalog) as uow:
        assert await uow.endpoints.all() == []


@pytest.mark.parametrize(
    "name",
    ["we'ird", 'a"b', "a;drop", "ünï", "../up", "a\x00b", "x" * 10_000, "", " lead"],
)
async def test_hostile_endpoint_names_are_refused_with_a_stable_error(
    client: httpx.AsyncClient, auth: Auth, endpoint_body: Callable[..., dict[str, Any]], name: str
) -> None:
    response = await client.post("/endpoints", json=endpoint_body(name), headers=auth("admin"))
    assert (response.status_code, error_code(response)) == (422, "E_VALIDATION")
    assert response.json()["error"]["message"]


async def test_an_oversized_body_is_refused_before_it_is_parsed(
    client: httpx.AsyncClient, auth: Auth, endpoint_body: Callable[..., dict[str, Any]]
) -> None:
    body = endpoint_body("big", labels=["x" * 100] * 20_000)
    response = await client.post("/endpoints", json=body, headers=auth("admin"))
    assert (response.status_code, error_code(response)) == (413, "E_PAYLOAD_TOO_LARGE")
    assert response.headers["X-Correlation-ID"]

    async def chunks() -> Any:
        for _ in range(3):
            yield b"x" * 600_000

    streamed = await client.post(
        "/endpoints",
        content=chunks(),
        headers={**auth("admin"), "content-type": "application/json"},
    )
    assert streamed.status_code == 413, "counted as it arrives, not only by Content-Length"


async def test_malformed_json_and_non_uuid_ids_are_validation_errors(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    broken = await client.post(
        "/endpoints",
        content=b'{"name": ',
        headers={**auth("admin"), "content-type": "application/json"},
    )
    assert (broken.status_code, error_code(broken)) == (422, "E_VALIDATION")
    bad_id = await client.get("/runs/not-a-uuid", headers=auth("viewer"))
    assert (bad_id.status_code, error_code(bad_id)) == (422, "E_VALIDATION")


# --- collections ------------------------------------------------------------------------------


async def make_bare_endpoint(create_endpoint: CreateEndpoint, catalog: Database) -> str:
    """An endpoint whose collection was deleted, so one can be created."""
    endpoint = await create_endpoint(f"bare-{uuid.uuid4().hex[:6]}")
    async with UnitOfWork(catalog) as uow:
        collection = await uow.collections.get(uuid.UUID(endpoint["collection_id"]))
        assert collection is not None
        await uow.collections.delete(collection)
        await uow.commit()
    return str(endpoint["id"])


async def test_create_defaults_to_utc_enabled_with_a_schedule_id_when_cron_is_set(
    client: httpx.AsyncClient,
    auth: Auth,
    create_endpoint: CreateEndpoint,
    catalog: Database,
    outbox: Outbox,
) -> None:
    endpoint_id = await make_bare_endpoint(create_endpoint, catalog)
    response = await client.post(
        "/collections",
        json={"endpoint_id": endpoint_id, "schedule_cron": "0 */6 * * *"},
        headers=auth("admin"),
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["schedule_timezone"], created["is_enabled"]) == ("UTC", True)
    assert created["schedule_id"] == f"collection::{created['id']}"
    [change] = [e for e in events(await outbox(), CHANGED) if e["collection_id"] == created["id"]]
    assert (change["schedule_cron"], change["is_enabled"], change["deleted"]) == (
        "0 */6 * * *",
        True,
        False,
    )


async def test_an_endpoint_has_at_most_one_collection(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any]
) -> None:
    response = await client.post(
        "/collections", json={"endpoint_id": endpoint["id"]}, headers=auth("admin")
    )
    assert (response.status_code, error_code(response)) == (422, "E_VALIDATION")
    unknown = await client.post(
        "/collections", json={"endpoint_id": str(uuid.uuid4())}, headers=auth("admin")
    )
    assert (unknown.status_code, error_code(unknown)) == (404, "E_ENDPOINT_NOT_FOUND")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schedule_cron": "* * * *"}, "schedule_cron"),
        ({"schedule_cron": "0 * * * * *"}, "schedule_cron"),
        ({"schedule_cron": "*/2 * * * *"}, "schedule_cron"),
        ({"schedule_cron": "0,1 0 * * *"}, "schedule_cron"),
        ({"schedule_cron": "0 * * * *", "schedule_timezone": "Mars/Base"}, "schedule_timezone"),
        ({"schedule_timezone": "../../etc/passwd"}, "schedule_timezone"),
    ],
)
async def test_bad_schedules_are_refused_naming_the_field(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    change: dict[str, str],
    field: str,
) -> None:
    response = await client.patch(
        f"/collections/{endpoint['collection_id']}", json=change, headers=auth("admin")
    )
    assert (response.status_code, error_code(response)) == (422, "E_VALIDATION")
    assert response.json()["error"]["details"][0]["loc"][-1] == field


async def test_the_minimum_schedule_interval_is_a_setting(
    client: httpx.AsyncClient, auth: Auth, gateway_app: Any, endpoint: dict[str, Any]
) -> None:
    gateway_app.state.settings.min_schedule_interval_s = 60
    response = await client.patch(
        f"/collections/{endpoint['collection_id']}",
        json={"schedule_cron": "*/2 * * * *"},
        headers=auth("admin"),
    )
    assert response.status_code == 200, response.text


async def test_patch_keeps_absent_fields_and_null_cron_means_manual_only(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], outbox: Outbox
) -> None:
    url = f"/collections/{endpoint['collection_id']}"
    scheduled = await client.patch(
        url,
        json={"schedule_cron": "30 2 * * *", "schedule_timezone": "Asia/Kolkata"},
        headers=auth("admin"),
    )
    assert scheduled.json()["schedule_id"] == f"collection::{endpoint['collection_id']}"
    disabled = (await client.patch(url, json={"is_enabled": False}, headers=auth("admin"))).json()
    assert (disabled["schedule_cron"], disabled["schedule_timezone"]) == (
        "30 2 * * *",
        "Asia/Kolkata",
    )
    manual = (await client.patch(url, json={"schedule_cron": None}, headers=auth("admin"))).json()
    assert (manual["schedule_cron"], manual["schedule_id"], manual["is_enabled"]) == (
        None,
        None,
        False,
    )
    states = [(e["schedule_cron"], e["is_enabled"]) for e in events(await outbox(), CHANGED)][-3:]
    assert states == [("30 2 * * *", True), ("30 2 * * *", False), (None, False)]


async def test_a_disabled_collection_takes_no_trigger(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], catalog: Database
) -> None:
    url = f"/collections/{endpoint['collection_id']}"
    await client.patch(url, json={"is_enabled": False}, headers=auth("admin"))
    for path in (f"{url}/trigger", f"/endpoints/{endpoint['id']}/trigger"):
        response = await client.post(path, headers=auth("operator"))
        assert (response.status_code, error_code(response)) == (409, "E_COLLECTION_DISABLED")
    async with UnitOfWork(catalog) as uow:
        assert await uow.runs.find() == []


async def test_deleting_a_collection_cancels_its_active_run_and_keeps_history(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    move_run: MoveRun,
    catalog: Database,
    outbox: Outbox,
) -> None:
    collection_id = endpoint["collection_id"]
    finished = await trigger(collection_id)
    await move_run(finished["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
    active = await trigger(collection_id)

    response = await client.delete(f"/collections/{collection_id}", headers=auth("admin"))

    assert response.status_code == 204
    runs = (await client.get(f"/runs?endpoint_id={endpoint['id']}", headers=auth("viewer"))).json()
    by_id = {r["id"]: r for r in runs}
    assert by_id[finished["id"]]["status"] == "SUCCEEDED"
    assert by_id[active["id"]]["status"] == "CANCELLED"
    assert by_id[active["id"]]["error"] == "collection deleted"
    assert {r["collection_id"] for r in runs} == {None}
    rows = await outbox()
    assert [e["status"] for e in events(rows, COMPLETED)] == ["CANCELLED"]
    assert events(rows, CHANGED)[-1]["deleted"] is True
    gone = await client.post(f"/collections/{collection_id}/trigger", headers=auth("operator"))
    assert (gone.status_code, error_code(gone)) == (404, "E_COLLECTION_NOT_FOUND")

    # The endpoint trigger makes a new, manual-only collection and queues a run on it.
    again = await client.post(f"/endpoints/{endpoint['id']}/trigger", headers=auth("operator"))
    assert again.status_code == 202
    fresh = (await client.get(f"/endpoints/{endpoint['id']}", headers=auth("viewer"))).json()
    assert fresh["collection_id"] not in (None, collection_id)
    assert again.json()["collection_id"] == fresh["collection_id"]


# --- triggers ---------------------------------------------------------------------------------


async def test_twenty_concurrent_triggers_make_exactly_one_run(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    catalog: Database,
    outbox: Outbox,
) -> None:
    url = f"/collections/{endpoint['collection_id']}/trigger"
    responses = await asyncio.gather(
        *(client.post(url, headers=auth("operator")) for _ in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] + [409] * 19
    assert {error_code(r) for r in responses if r.status_code == 409} == {
        "E_COLLECTION_IN_PROGRESS"
    }
    async with UnitOfWork(catalog) as uow:
        runs = await uow.runs.find(collection_id=uuid.UUID(endpoint["collection_id"]))
    assert [r.status for r in runs] == ["QUEUED"]
    assert len(events(await outbox(), REQUESTED)) == 1


async def test_filters_travel_with_the_run_and_bad_ones_are_refused(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], outbox: Outbox
) -> None:
    url = f"/collections/{endpoint['collection_id']}/trigger"
    bad = await client.post(url, json={"filters": {"tables": ["x"]}}, headers=auth("operator"))
    assert (bad.status_code, error_code(bad)) == (422, "E_VALIDATION")
    filters = {"include_schemas": ["sales"], "exclude_tables": ["*_tmp"]}
    run = (await client.post(url, json={"filters": filters}, headers=auth("operator"))).json()
    assert run["filters"]["include_schemas"] == ["sales"]
    [event] = events(await outbox(), REQUESTED)
    assert event["filters"]["exclude_tables"] == ["*_tmp"]
    assert (event["trigger_source"], event["requested_by"]) == ("api", "otto-operator")


# --- runs -------------------------------------------------------------------------------------


async def add_runs(catalog: Database, endpoint: dict[str, Any], count: int) -> list[str]:
    """Finished runs an hour apart, oldest first, alternating SUCCEEDED and FAILED."""
    base = datetime(2026, 3, 1, tzinfo=UTC)
    ids = []
    async with UnitOfWork(catalog) as uow:
        for i in range(count):
            run = await uow.runs.add(
                collection_id=uuid.UUID(endpoint["collection_id"]),
                endpoint_id=uuid.UUID(endpoint["id"]),
                trigger_source="schedule",
                requested_at=base + timedelta(hours=i),
                status=RunStatus.FAILED if i % 2 else RunStatus.SUCCEEDED,
            )
            ids.append(str(run.id))
        await uow.commit()
    return ids


async def test_run_history_pages_by_cursor_without_repeats(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], catalog: Database
) -> None:
    ids = await add_runs(catalog, endpoint, 7)
    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"collection_id": endpoint["collection_id"], "first": 3}
        if after:
            params["after"] = after
        page = (await client.get("/runs", params=params, headers=auth("viewer"))).json()
        if not page:
            break
        seen += [r["id"] for r in page]
        after = page[-1]["cursor"]
    assert seen == list(reversed(ids)), "newest first, each once"
    bad = await client.get("/runs", params={"after": "nope"}, headers=auth("viewer"))
    assert (bad.status_code, error_code(bad)) == (422, "E_VALIDATION")


async def test_run_history_filters_by_status_and_time_window(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], catalog: Database
) -> None:
    ids = await add_runs(catalog, endpoint, 6)
    failed = (
        await client.get(
            f"/collections/{endpoint['collection_id']}/runs",
            params={"status": "FAILED"},
            headers=auth("viewer"),
        )
    ).json()
    assert {r["id"] for r in failed} == {ids[1], ids[3], ids[5]}
    for window in (
        {"from": "2026-03-01T01:00:00Z", "to": "2026-03-01T03:00:00Z"},
        {"from": "2026-03-01T06:30:00+05:30", "to": "2026-03-01T08:30:00+05:30"},
        {"from": "2026-03-01T01:00:00", "to": "2026-03-01T03:00:00"},  # naive means UTC
    ):
        found = (await client.get("/runs", params=window, headers=auth("viewer"))).json()
        assert {r["id"] for r in found} == {ids[1], ids[2]}, window
    backwards = await client.get(
        "/runs",
        params={"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
        headers=auth("viewer"),
    )
    assert (backwards.status_code, error_code(backwards)) == (422, "E_VALIDATION")


async def test_cancel_moves_an_active_run_to_cancelled_once(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    outbox: Outbox,
) -> None:
    run = await trigger(endpoint["collection_id"])
    response = await client.post(f"/runs/{run['id']}/cancel", headers=auth("operator"))
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["error"]) == (
        "CANCELLED",
        "cancelled by otto-operator",
    )
    assert response.json()["completed_at"] is not None
    [completed] = events(await outbox(), COMPLETED)
    assert (completed["status"], completed["run_id"]) == ("CANCELLED", run["id"])
    twice = await client.post(f"/runs/{run['id']}/cancel", headers=auth("operator"))
    assert (twice.status_code, error_code(twice)) == (409, "E_RUN_FINISHED")


async def test_a_finished_run_never_changes(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    move_run: MoveRun,
) -> None:
    run = await trigger(endpoint["collection_id"])
    await move_run(run["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
    before = (await client.get(f"/runs/{run['id']}", headers=auth("viewer"))).json()
    response = await client.post(f"/runs/{run['id']}/cancel", headers=auth("operator"))
    assert (response.status_code, error_code(response)) == (409, "E_RUN_FINISHED")
    after = (await client.get(f"/runs/{run['id']}", headers=auth("viewer"))).json()
    assert after == before
    assert after["duration_ms"] is not None
    unknown = await client.post(f"/runs/{uuid.uuid4()}/cancel", headers=auth("operator"))
    assert (unknown.status_code, error_code(unknown)) == (404, "E_RUN_NOT_FOUND")
