"""At-least-once delivery against the running system: duplicates and bad messages."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from freshet.contracts import CollectionRequested, RunCompleted, decode, encode
from freshet.devstack.testing import eventually, read_topics
from tests.e2e.conftest import System

# One worker runs every e2e test, so each catalog kind starts its system once.
pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.xdist_group("e2e")]


async def new_endpoint(http: httpx.AsyncClient, system: System, name: str) -> dict[str, Any]:
    response = await http.post(
        "/endpoints", json={"name": name, "kind": "sqlite", "config": {"path": str(system.demo)}}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_request_delivered_three_times_makes_one_run_and_one_set_of_datasets(
    system: System,
) -> None:
    bootstrap = system.stack.bootstrap
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers) as http:
        endpoint = await new_endpoint(http, system, f"dup-{uuid.uuid4().hex[:6]}")
        run_id = uuid.uuid4()
        request = CollectionRequested(
            collection_id=endpoint["collection_id"], run_id=run_id, requested_by="outside-etl"
        )
        same = encode(request, source="/outside")
        other = encode(request, source="/outside")  # same run id, a different event id
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            for msg in (same, same, same, other):
                await producer.send_and_wait(
                    "freshet.collection.requested", msg.value, key=msg.key, headers=msg.headers
                )
        finally:
            await producer.stop()

        async def succeeded() -> dict[str, Any] | None:
            response = await http.get(f"/runs/{run_id}")
            return (
                response.json()
                if response.status_code == 200 and response.json()["status"] == "SUCCEEDED"
                else None
            )

        run = await eventually(succeeded, timeout=60)
        assert run["trigger_source"] == "event"
        assert run["requested_by"] == "outside-etl"
        runs = (await http.get(f"/collections/{endpoint['collection_id']}/runs")).json()
        datasets = (await http.get("/datasets", params={"endpoint_id": endpoint["id"]})).json()
    assert [r["id"] for r in runs] == [str(run_id)]
    assert len(datasets) == 5
    completed = [
        event
        for r in await read_topics(bootstrap, "freshet.run.completed")
        if isinstance(event := decode(r.value, r.headers).data, RunCompleted)
        and event.run_id == run_id
    ]
    assert len(completed) == 1


async def test_a_malformed_message_is_dead_lettered_and_the_next_one_still_runs(
    system: System,
) -> None:
    bootstrap = system.stack.bootstrap
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers) as http:
        endpoint = await new_endpoint(http, system, f"dlq-{uuid.uuid4().hex[:6]}")
        key = endpoint["collection_id"].encode()  # same partition as the good one that follows
        marker = uuid.uuid4().hex
        run_id = uuid.uuid4()
        good = encode(
            CollectionRequested(collection_id=endpoint["collection_id"], run_id=run_id),
            source="/outside",
        )
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            await producer.send_and_wait(
                "freshet.collection.requested",
                f'{{"marker": "{marker}"'.encode(),
                key=key,
                headers=[(k, v) for k, v in good.headers if k != "ce_id"]
                + [("ce_id", marker.encode())],
            )
            await producer.send_and_wait(
                "freshet.collection.requested", good.value, key=good.key, headers=good.headers
            )
        finally:
            await producer.stop()

        async def done() -> bool:
            response = await http.get(f"/runs/{run_id}")
            return response.status_code == 200 and response.json()["status"] == "SUCCEEDED"

        await eventually(done, timeout=60)
    dead = await read_topics(bootstrap, "freshet.collection.requested.dlq")
    mine = [r for r in dead if dict(r.headers).get("ce_id") == marker.encode()]
    assert len(mine) == 1
    headers = {k: v.decode() for k, v in mine[0].headers}
    assert headers["freshet_dlq_reason"] == "malformed_value"
    assert headers["freshet_dlq_group"] == "freshet-collector"
    metrics = httpx.get(f"{system.stack.url('collector')}/metrics").text
    counter = (
        'freshet_dead_letters_total{group="freshet-collector",'
        'reason="malformed_value",topic="freshet.collection.requested"} 1.0'
    )
    assert counter in metrics
