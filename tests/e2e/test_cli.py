"""The `freshet` CLI against the real gateway of the running system: endpoints, collections,
runs (trigger, cancel, retry), previews (one dataset, all of an endpoint), refreshes (a table,
a connection, status), schedules (pause, resume) and dead letters (list, replay, purge).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from freshet.cli.app import app
from freshet.contracts import CollectionRequested, encode, topic_for
from freshet.devstack.testing import eventually
from tests.e2e.conftest import System

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.xdist_group("e2e")]

REQUESTS = topic_for(CollectionRequested)


def freshet(system: System, *args: str) -> Any:
    """Run `freshet --json ARGS` against the system; return the parsed output."""
    result = CliRunner().invoke(
        app,
        ["--json", *args],
        env={"FRESHET_GATEWAY_URL": system.gateway, "FRESHET_TOKEN": system.token},
    )
    assert system.token not in result.output
    assert result.exit_code == 0, result.output
    return json.loads(result.output) if result.output.strip() else None


def freshet_fails(system: System, *args: str) -> str:
    result = CliRunner().invoke(
        app, list(args), env={"FRESHET_GATEWAY_URL": system.gateway, "FRESHET_TOKEN": system.token}
    )
    assert result.exit_code == 1, result.output
    return str(result.output)


def register(system: System, **body: Any) -> dict[str, Any]:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=system.gateway, headers=system.headers) as http:
        response = http.post(
            "/endpoints",
            json={"name": name, "kind": "sqlite", "config": {"path": str(system.demo)}, **body},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())


def test_endpoints_collections_and_runs(system: System) -> None:
    endpoint = register(system)
    assert endpoint["name"] in [e["name"] for e in freshet(system, "endpoints", "list")]
    assert freshet(system, "endpoints", "show", endpoint["name"])["id"] == endpoint["id"]
    assert freshet(system, "endpoints", "test", endpoint["name"])["ok"] is True
    listed = freshet(system, "collections", "list", "--endpoint", endpoint["name"])
    assert [c["id"] for c in listed] == [endpoint["collection_id"]]

    filters = json.dumps({"include_tables": ["customers"]})
    run = freshet(
        system, "runs", "trigger", endpoint["collection_id"], "--filters", filters, "--wait"
    )
    assert run["status"] == "SUCCEEDED"
    assert run["datasets_total"] == 1

    retried = freshet(system, "runs", "retry", run["id"], "--wait")
    assert retried["id"] != run["id"]
    assert retried["status"] == "SUCCEEDED"
    assert retried["filters"] == run["filters"]
    history = freshet(system, "runs", "list", "--collection", endpoint["collection_id"])
    assert [r["id"] for r in history] == [retried["id"], run["id"]]

    assert "E_RUN_FINISHED" in freshet_fails(system, "runs", "cancel", run["id"])


def test_previews_of_one_dataset_and_of_a_whole_endpoint(system: System) -> None:
    endpoint = register(system)
    freshet(system, "runs", "trigger", endpoint["collection_id"], "--wait")
    with httpx.Client(base_url=system.gateway, headers=system.headers) as http:
        datasets = http.get("/datasets", params={"endpoint_id": endpoint["id"]}).json()
    one = next(d for d in datasets if d["name"] == "customers")

    sampled = freshet(system, "previews", "refresh", one["id"])
    requested = freshet(system, "previews", "refresh-endpoint", endpoint["name"])

    assert sampled["cached"] is False
    assert sampled["refresh_source"] == "manual"
    assert sampled["rows"]
    assert sorted(r["dataset"] for r in requested) == sorted(
        f"{d['schema_name']}.{d['name']}" for d in datasets
    )


def test_a_table_and_a_connection_are_refreshed_and_their_status_read(system: System) -> None:
    endpoint = register(system)
    freshet(system, "runs", "trigger", endpoint["collection_id"], "--wait")

    table = freshet(system, "refreshes", "start", endpoint["name"], "--table", "main.customers")
    connection = freshet(
        system,
        "refreshes",
        "start",
        endpoint["name"],
        "--table",
        "main.customers",
        "--table",
        "main.orders",
        "--async",
    )
    status = freshet(system, "refreshes", "status", connection["refresh_id"], "--wait")

    assert (table["status"], table["table"]) == ("completed", "customers")
    assert table["rows_synced"] > 0
    assert (status["status"], status["tables_total"], status["tables_failed"]) == (
        "completed",
        2,
        0,
    )


def test_a_running_run_is_cancelled(system: System) -> None:
    # An ingestion command that takes its time keeps the run RUNNING while we cancel it.
    endpoint = register(system, ingest_command=["sh", "-c", "sleep 30"])
    run = freshet(system, "runs", "trigger", endpoint["collection_id"])

    def running() -> bool:
        return bool(freshet(system, "runs", "show", run["id"])["status"] == "RUNNING")

    deadline = datetime.now(UTC).timestamp() + 30
    while not running():
        assert datetime.now(UTC).timestamp() < deadline, "the run never started"
        time.sleep(0.2)
    cancelled = freshet(system, "runs", "cancel", run["id"])
    assert cancelled["id"] == run["id"]
    assert freshet(system, "runs", "show", run["id"])["status"] == "CANCELLED"


def test_schedules_are_paused_and_resumed(system: System) -> None:
    endpoint = register(system)
    with httpx.Client(base_url=system.gateway, headers=system.headers) as http:
        http.patch(
            f"/collections/{endpoint['collection_id']}", json={"schedule_cron": "0 3 * * *"}
        ).raise_for_status()
    schedule_id = f"collection::{endpoint['collection_id']}"

    def listed() -> dict[str, Any] | None:
        found = [s for s in freshet(system, "schedules", "list") if s["id"] == schedule_id]
        return found[0] if found else None

    deadline = datetime.now(UTC).timestamp() + 30
    while listed() is None:  # the scheduler syncs it from CollectionChanged
        assert datetime.now(UTC).timestamp() < deadline
        time.sleep(0.2)
    paused = freshet(system, "schedules", "pause", schedule_id)
    assert paused["paused"] is True
    assert paused["paused_by"] == "dev-admin"
    resumed = freshet(system, "schedules", "resume", schedule_id)
    assert resumed["paused"] is False
    assert "E_SCHEDULE_NOT_FOUND" in freshet_fails(system, "schedules", "pause", "nope")


async def test_dead_letters_are_listed_replayed_and_purged(system: System) -> None:
    endpoint = register(system)
    producer = AIOKafkaProducer(bootstrap_servers=system.stack.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        # Garbage on the request topic: the collector dead-letters it.
        await producer.send_and_wait(
            REQUESTS.name, b"{not json", key=b"x", headers=[("ce_type", b"nonsense")]
        )

        async def garbage_listed() -> list[dict[str, Any]] | None:
            found = freshet(system, "dead-letters", "list", "--topic", REQUESTS.name)
            return [d for d in found if d["value"] == "{not json"] or None

        garbage = (await eventually(garbage_listed, timeout=60))[0]
        assert garbage["reason"] in ("missing_header", "malformed_value")
        assert garbage["topic"] == REQUESTS.name

        # A request that failed earlier (as if the catalog had been away), now replayable:
        # the original event with the headers the consumer wrapper adds.
        run_id = uuid.uuid4()
        msg = encode(
            CollectionRequested(
                collection_id=uuid.UUID(endpoint["collection_id"]),
                endpoint_id=uuid.UUID(endpoint["id"]),
                run_id=run_id,
                trigger_source="event",
            ),
            source="/outside",
        )
        dlq_headers = [
            ("freshet_dlq_reason", b"handler_exhausted"),
            ("freshet_dlq_error", b"OperationalError: database is away"),
            ("freshet_dlq_topic", REQUESTS.name.encode()),
            ("freshet_dlq_attempts", b"5"),
        ]
        await producer.send_and_wait(
            REQUESTS.dead_letter, msg.value, key=msg.key, headers=[*msg.headers, *dlq_headers]
        )
    finally:
        await producer.stop()

    listed = freshet(system, "dead-letters", "list", "--topic", REQUESTS.name)
    failed = next(d for d in listed if d["reason"] == "handler_exhausted")
    replayed = freshet(system, "dead-letters", "replay", failed["id"])
    assert replayed["replays"]

    async def run_done() -> dict[str, Any] | None:
        async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers) as http:
            response = await http.get(f"/runs/{run_id}")
        if response.status_code != 200:
            return None
        run: dict[str, Any] = response.json()
        return run if run["status"] not in ("QUEUED", "RUNNING") else None

    assert (await eventually(run_done, timeout=60))["status"] == "SUCCEEDED"

    # Replaying all skips what was replayed; a second replay of the request changes nothing.
    outcome = freshet(system, "dead-letters", "replay", "--all", "--topic", REQUESTS.name)
    assert failed["id"] not in outcome["replayed"]
    assert outcome["skipped_already_replayed"] >= 1

    purged = freshet(system, "dead-letters", "purge", "--topic", REQUESTS.name, "--yes")
    assert purged["purged"] >= 2
    assert freshet(system, "dead-letters", "list", "--topic", REQUESTS.name) == []
