"""Seed 003's acceptance criteria against the running system (AC2, the schedule firing, is
the scheduler's): per-endpoint triggers, isolation, the status machine, history, disable and
delete, cancel, concurrency and redelivery, external ingestion."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from freshet.contracts import CollectionRequested, encode
from freshet.devstack.testing import eventually
from tests.e2e.conftest import SOURCE_PASSWORD, System

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.xdist_group("e2e")]

FINAL = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def register(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/endpoints", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def sqlite_endpoint(http: httpx.AsyncClient, system: System) -> dict[str, Any]:
    return await register(
        http, {"name": unique("demo"), "kind": "sqlite", "config": {"path": str(system.demo)}}
    )


async def postgres_endpoint(
    http: httpx.AsyncClient, system: System, *, run_timeout_s: int, **config: Any
) -> dict[str, Any]:
    return await register(
        http,
        {
            "name": unique("pg"),
            "kind": "postgres",
            "config": {**system.pg_source, **config},
            "secrets": {"password": SOURCE_PASSWORD},
            "run_timeout_s": run_timeout_s,
        },
    )


async def trigger(http: httpx.AsyncClient, collection_id: str, **body: Any) -> dict[str, Any]:
    response = await http.post(f"/collections/{collection_id}/trigger", json=body or None)
    assert response.status_code == 202, response.text
    return dict(response.json())


async def run_of(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    return dict((await http.get(f"/runs/{run_id}")).json())


async def finished(http: httpx.AsyncClient, run_id: str, timeout: float = 60) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        run = await run_of(http, run_id)
        return run if run["status"] in FINAL else None

    return dict(await eventually(probe, timeout=timeout))


async def runs_of(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    return list((await http.get("/runs", params=params)).json())


async def test_ac1_a_trigger_runs_only_its_own_endpoint(
    http: httpx.AsyncClient, system: System
) -> None:
    mine = await sqlite_endpoint(http, system)
    other = await sqlite_endpoint(http, system)

    by_collection = await finished(http, (await trigger(http, mine["collection_id"]))["id"])
    response = await http.post(f"/endpoints/{mine['id']}/trigger")
    assert response.status_code == 202, response.text
    by_endpoint = await finished(http, response.json()["id"])

    assert (by_collection["status"], by_endpoint["status"]) == ("SUCCEEDED", "SUCCEEDED")
    assert by_endpoint["collection_id"] == mine["collection_id"]
    assert await runs_of(http, endpoint_id=other["id"]) == []
    assert (await http.get("/datasets", params={"endpoint_id": other["id"]})).json() == []
    assert len(await runs_of(http, endpoint_id=mine["id"])) == 2


async def test_ac3_failing_and_hanging_endpoints_delay_no_healthy_one(
    http: httpx.AsyncClient, system: System, silent_port: int
) -> None:
    hanging = await postgres_endpoint(
        http, system, run_timeout_s=3, host="127.0.0.1", port=silent_port
    )
    failing = await postgres_endpoint(http, system, run_timeout_s=60, database="no_such_db")
    healthy = await sqlite_endpoint(http, system)

    hung = await trigger(http, hanging["collection_id"])
    failed = await trigger(http, failing["collection_id"])
    ok = await trigger(http, healthy["collection_id"])

    ok_run = await finished(http, ok["id"], timeout=30)
    assert ok_run["status"] == "SUCCEEDED"
    still = await run_of(http, hung["id"])
    assert still["status"] == "RUNNING", "the healthy run finished while the hanging one ran"
    hung_run = await finished(http, hung["id"], timeout=30)
    assert (hung_run["status"], hung_run["error"]) == ("FAILED", "timed out after 3 s")
    assert datetime.fromisoformat(ok_run["completed_at"]) < datetime.fromisoformat(
        hung_run["completed_at"]
    )
    failed_run = await finished(http, failed["id"])
    assert failed_run["status"] == "FAILED"
    assert failed_run["error"]
    assert SOURCE_PASSWORD not in failed_run["error"]


async def test_ac4_a_run_walks_the_status_machine_and_then_never_changes(
    http: httpx.AsyncClient, system: System
) -> None:
    endpoint = await sqlite_endpoint(http, system)
    queued = await trigger(http, endpoint["collection_id"])
    assert queued["status"] == "QUEUED"
    done = await finished(http, queued["id"])
    assert done["status"] == "SUCCEEDED"
    assert done["started_at"]
    assert done["completed_at"]
    assert done["duration_ms"] is not None
    assert (done["datasets_total"], done["datasets_added"]) == (5, 5)
    refused = await http.post(f"/runs/{done['id']}/cancel")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "E_RUN_FINISHED")
    assert await run_of(http, done["id"]) == done

    skipped = await finished(
        http,
        (await trigger(http, endpoint["collection_id"], filters={"include_schemas": ["nope"]}))[
            "id"
        ],
    )
    assert (skipped["status"], skipped["error"]) == (
        "SKIPPED",
        "filters match no dataset of the endpoint",
    )


async def test_ac5_history_filters_and_pages_over_rest_and_graphql(
    http: httpx.AsyncClient, system: System
) -> None:
    endpoint = await postgres_endpoint(http, system, run_timeout_s=60, database="no_such_db")
    collection_id = endpoint["collection_id"]
    failed = [await finished(http, (await trigger(http, collection_id))["id"]) for _ in range(2)]
    skipped = await finished(
        http, (await trigger(http, collection_id, filters={"include_tables": ["x"]}))["id"]
    )
    assert [r["status"] for r in failed] == ["FAILED", "FAILED"]
    assert skipped["status"] == "FAILED", "filters are applied after ingest, which fails here"

    only_failed = await runs_of(http, collection_id=collection_id, status="FAILED")
    assert len(only_failed) == 3
    first = await runs_of(http, collection_id=collection_id, first=2)
    rest = await runs_of(http, collection_id=collection_id, first=2, after=first[-1]["cursor"])
    assert [r["id"] for r in first + rest] == [skipped["id"], failed[1]["id"], failed[0]["id"]]
    window = await runs_of(
        http,
        collection_id=collection_id,
        **{"from": failed[1]["requested_at"], "to": skipped["requested_at"]},
    )
    assert [r["id"] for r in window] == [failed[1]["id"]]

    query = (
        "query($c: ID!) { collectionRuns(collectionId: $c, status: FAILED, first: 2) "
        "{ id status endpoint { name } } }"
    )
    body = await http.post("/graphql", json={"query": query, "variables": {"c": collection_id}})
    runs = body.json()["data"]["collectionRuns"]
    assert [r["id"] for r in runs] == [skipped["id"], failed[1]["id"]]
    assert {r["endpoint"]["name"] for r in runs} == {endpoint["name"]}


async def test_ac6_disabled_and_deleted_collections_take_no_runs(
    http: httpx.AsyncClient, system: System
) -> None:
    endpoint = await sqlite_endpoint(http, system)
    collection_id = endpoint["collection_id"]
    scheduled = await http.patch(
        f"/collections/{collection_id}", json={"schedule_cron": "0 3 * * *", "is_enabled": False}
    )
    assert scheduled.status_code == 200, scheduled.text
    refused = await http.post(f"/collections/{collection_id}/trigger")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "E_COLLECTION_DISABLED")
    deleted = await http.delete(f"/collections/{collection_id}")
    assert deleted.status_code == 204
    gone = await http.post(f"/collections/{collection_id}/trigger")
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "E_COLLECTION_NOT_FOUND")
    assert await runs_of(http, endpoint_id=endpoint["id"]) == []

    def scheduler_saw_delete() -> bool:
        return any(
            collection_id in line and '"deleted": true' in line and "scheduler" in line
            for line in system.log_text().splitlines()
        )

    await eventually(lambda: asyncio.sleep(0, result=scheduler_saw_delete()), timeout=15)


async def test_cancel_stops_a_running_collection_promptly(
    http: httpx.AsyncClient, system: System, silent_port: int
) -> None:
    endpoint = await postgres_endpoint(
        http, system, run_timeout_s=120, host="127.0.0.1", port=silent_port
    )
    run = await trigger(http, endpoint["collection_id"])
    running = await eventually(lambda: _status_is(http, run["id"], "RUNNING"), timeout=15)
    assert running
    cancelled = await http.post(f"/runs/{run['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"

    def collector_stopped() -> bool:
        return any(
            run["id"] in line and "run stopped" in line for line in system.log_text().splitlines()
        )

    await eventually(lambda: asyncio.sleep(0, result=collector_stopped()), timeout=5)
    final = await run_of(http, run["id"])
    assert (final["status"], final["error"]) == ("CANCELLED", "cancelled by dev-admin")


async def _status_is(http: httpx.AsyncClient, run_id: str, status: str) -> bool:
    return bool((await run_of(http, run_id))["status"] == status)


async def test_twenty_parallel_triggers_make_one_run(
    http: httpx.AsyncClient, system: System, silent_port: int
) -> None:
    # A source that never answers keeps the one run active for the whole burst.
    endpoint = await postgres_endpoint(
        http, system, run_timeout_s=120, host="127.0.0.1", port=silent_port
    )
    url = f"/collections/{endpoint['collection_id']}/trigger"
    responses = await asyncio.gather(*(http.post(url) for _ in range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] + [409] * 19
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "E_COLLECTION_IN_PROGRESS"
    }
    [accepted] = [r.json() for r in responses if r.status_code == 202]
    assert [r["id"] for r in await runs_of(http, endpoint_id=endpoint["id"])] == [accepted["id"]]
    assert (await http.post(f"/runs/{accepted['id']}/cancel")).status_code == 200


async def test_one_event_delivered_three_times_while_and_after_running_makes_one_run(
    http: httpx.AsyncClient, system: System
) -> None:
    endpoint = await sqlite_endpoint(http, system)
    request = CollectionRequested(collection_id=endpoint["collection_id"], requested_by="etl")
    message = encode(request, source="/outside/etl", event_id=f"etl-{uuid.uuid4().hex}")
    producer = AIOKafkaProducer(bootstrap_servers=system.stack.bootstrap, enable_idempotence=False)
    topic = "freshet.collection.requested"
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(
                "freshet.collection.requested",
                message.value,
                key=message.key,
                headers=message.headers,
            )
        [run] = await eventually(lambda: runs_of(http, endpoint_id=endpoint["id"]), timeout=30)
        await finished(http, run["id"])
        await producer.send_and_wait(topic, message.value, key=message.key, headers=message.headers)
    finally:
        await producer.stop()
    await asyncio.sleep(1)  # give a wrongly-made second run the time to appear
    runs = await runs_of(http, endpoint_id=endpoint["id"])
    assert [(r["status"], r["trigger_source"]) for r in runs] == [("SUCCEEDED", "event")]
    datasets = (await http.get("/datasets", params={"endpoint_id": endpoint["id"]})).json()
    assert len(datasets) == 5


INGEST = r"""
import json, sys
with open(sys.argv[1], "w") as out:
    for name in ("events", "sessions"):
        out.write(json.dumps({"schema_name": "lake", "name": name,
            "columns": [{"name": "id", "data_type": "BIGINT", "nullable": False}],
            "primary_key": ["id"]}) + "\n")
"""


async def test_an_external_ingestion_command_feeds_the_catalog(
    http: httpx.AsyncClient, system: System
) -> None:
    endpoint = await register(
        http,
        {
            "name": unique("lake"),
            "kind": "sqlite",
            "config": {"path": str(system.demo)},
            "ingest_command": [sys.executable, "-c", INGEST, "{output}"],
        },
    )
    run = await finished(http, (await trigger(http, endpoint["collection_id"]))["id"])
    assert (run["status"], run["datasets_total"]) == ("SUCCEEDED", 2)
    datasets = (await http.get("/datasets", params={"endpoint_id": endpoint["id"]})).json()
    assert sorted((d["schema_name"], d["name"]) for d in datasets) == [
        ("lake", "events"),
        ("lake", "sessions"),
    ]


async def test_ac2_a_schedule_fires_real_runs_and_shows_its_next_and_last_fire(
    http: httpx.AsyncClient, system: System
) -> None:
    endpoint = await sqlite_endpoint(http, system)
    collection_id = endpoint["collection_id"]
    # Seconds first (6 fields): every 3 s. Allowed here because the test system lowers
    # FRESHET_MIN_SCHEDULE_INTERVAL_S.
    response = await http.patch(
        f"/collections/{collection_id}", json={"schedule_cron": "*/3 * * * * *"}
    )
    assert response.status_code == 200, response.text

    async def two_scheduled_runs() -> list[dict[str, Any]] | None:
        runs = [
            r
            for r in await runs_of(http, collection_id=collection_id)
            if r["trigger_source"] == "schedule" and r["status"] in FINAL
        ]
        return runs if len(runs) >= 2 else None

    runs = await eventually(two_scheduled_runs, timeout=30)
    assert {r["status"] for r in runs} <= {"SUCCEEDED", "SKIPPED"}
    assert all(r["requested_by"] == f"collection::{collection_id}" for r in runs)
    shown = (await http.get(f"/collections/{collection_id}")).json()
    assert shown["next_fire_at"] is not None
    assert shown["last_run_id"] in {
        r["id"] for r in await runs_of(http, collection_id=collection_id)
    }
    listed = {s["id"]: s for s in (await http.get("/schedules")).json()}
    assert listed[f"collection::{collection_id}"]["paused"] is False

    # Disabling pauses the schedule: no fires after the scheduler saw the change.
    await http.patch(f"/collections/{collection_id}", json={"is_enabled": False})

    async def paused() -> bool:
        schedules = {s["id"]: s for s in (await http.get("/schedules")).json()}
        return bool(schedules[f"collection::{collection_id}"]["paused"])

    await eventually(paused, timeout=10)
    count = len(await runs_of(http, collection_id=collection_id))
    await asyncio.sleep(4)  # longer than one period: a paused schedule must not fire
    assert len(await runs_of(http, collection_id=collection_id)) == count
