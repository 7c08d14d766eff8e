"""/dead-letters against a real broker: messages the consumer wrapper dead-lettered are listed
with their failure headers, replayed through the outbox with their original headers, and
purged by a durable watermark that a broker which lost its topics does not fool."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from fastapi import FastAPI

from freshet.contracts import CollectionRequested, encode, topic_for
from freshet.devstack.broker import EmbeddedBroker
from freshet.devstack.testing import eventually
from freshet.kit.broker import ensure_topics, make_producer
from freshet.kit.consumer import Consumer, Subscription
from freshet.kit.dead_letters import DeadLetterReader
from freshet.kit.errors import PermanentError
from freshet.kit.settings import Settings

pytestmark = [pytest.mark.broker]

TOPIC = topic_for(CollectionRequested)
DLQ = TOPIC.dead_letter


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own: the dead-letter topic names are the real ones."""
    with EmbeddedBroker(log_file=tmp_path / "broker.log") as b:
        asyncio.run(ensure_topics(b.bootstrap))
        yield b


@pytest.fixture
async def catalog_url(new_database: Any) -> str:
    """SQLite only: what is tested here is the broker side; the marks' table is covered on
    both databases by the migration tests."""
    url: str = await new_database("sqlite")
    return url


@pytest.fixture(autouse=True)
def use_the_broker(gateway_app: FastAPI, broker: EmbeddedBroker) -> None:
    gateway_app.state.settings.kafka_bootstrap = broker.bootstrap


def request_event() -> CollectionRequested:
    return CollectionRequested(
        collection_id=uuid.uuid4(), endpoint_id=uuid.uuid4(), trigger_source="event"
    )


class Rejecter:
    """A real consumer wrapper whose handler rejects every request: it dead-letters them."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.settings = Settings(kafka_bootstrap=bootstrap, retry_attempts=1)
        self.producer = make_producer(self.settings, "test")

        async def reject(_env: object) -> None:
            raise PermanentError("no such collection")

        self.consumer = Consumer(
            self.settings, Subscription(TOPIC, "dlq-test", reject), self.producer, "test"
        )

    async def __aenter__(self) -> Rejecter:
        await self.producer.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def dead_letter(self, count: int) -> list[str]:
        """Publish `count` requests; return their event ids once all are dead-lettered."""
        before = await dlq_end(self.bootstrap)
        ids = []
        for _ in range(count):
            msg = encode(request_event(), source="/test")
            await self.producer.send_and_wait(
                TOPIC.name, msg.value, key=msg.key, headers=msg.headers
            )
            ids.append(dict(msg.headers)["ce_id"].decode())

        async def all_dead_lettered() -> bool:
            return await dlq_end(self.bootstrap) >= before + count

        await eventually(all_dead_lettered, timeout=30)
        return ids


async def dlq_end(bootstrap: str) -> int:
    async with DeadLetterReader(Settings(kafka_bootstrap=bootstrap)) as reader:
        return await reader.end_offset(TopicPartition(DLQ, 0))


async def test_dead_letters_are_listed_replayed_and_purged(
    client: httpx.AsyncClient,
    auth: Any,
    outbox: Any,
    broker: EmbeddedBroker,
    expect_error: Any,
) -> None:
    admin = auth("admin")
    assert (await client.get("/dead-letters", headers=admin)).json() == []
    async with Rejecter(broker.bootstrap) as rejecter:
        await check_list_replay_purge(client, admin, outbox, expect_error, rejecter)
        raw = (await client.get("/dead-letters", headers=admin)).json()[0]

    # The broker loses everything and starts offsets at 0 again: the old watermark (another
    # message at offset 2) must not hide new dead letters, nor old replay marks show on them.
    broker.restart()
    await ensure_topics(broker.bootstrap)
    producer = make_producer(Settings(kafka_bootstrap=broker.bootstrap), "test")
    await producer.start()
    try:
        headers = [(k, v.encode()) for k, v in raw["headers"].items() if k != "ce_id"]
        await producer.send_and_wait(
            DLQ, raw["value"].encode(), headers=[*headers, ("ce_id", b"after-restart")]
        )
    finally:
        await producer.stop()
    listed_after = (await client.get("/dead-letters", headers=admin)).json()
    assert [(d["id"], d["event_id"]) for d in listed_after] == [(f"{DLQ}:0:0", "after-restart")]
    assert listed_after[0]["replays"] == []


async def check_list_replay_purge(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    outbox: Any,
    expect_error: Any,
    rejecter: Rejecter,
) -> None:
    event_ids = await rejecter.dead_letter(3)

    listed = (await client.get("/dead-letters", headers=admin)).json()
    # Partitions of the original topic are consumed concurrently: any order.
    assert sorted(d["event_id"] for d in listed) == sorted(event_ids)
    first = listed[0]
    assert first["id"] == f"{DLQ}:0:0"
    assert first["topic"] == TOPIC.name
    assert first["reason"] == "handler_rejected"
    assert "no such collection" in first["error"]
    assert first["event_type"] == "freshet.collection.requested.v1"
    assert first["attempts"] == 1
    assert first["replays"] == []
    page = (await client.get("/dead-letters", params={"limit": 2}, headers=admin)).json()
    rest = (
        await client.get("/dead-letters", params={"after": page[-1]["id"]}, headers=admin)
    ).json()
    assert [d["id"] for d in page + rest] == [d["id"] for d in listed]

    # One replay: the original value and headers, to the original topic, via the outbox.
    replayed = await client.post(f"/dead-letters/{first['id']}/replay", headers=admin)
    assert replayed.status_code == 200, replayed.text
    assert [r["by"] for r in replayed.json()["replays"]] == ["ada-admin"]
    rows = await outbox()
    assert len(rows) == 1
    assert rows[0]["topic"] == TOPIC.name
    assert rows[0]["raw_value"] == first["value"]
    assert rows[0]["headers"]["ce_id"] == first["event_id"]
    assert not any(k.startswith("freshet_dlq_") for k in rows[0]["headers"])

    # Replay all skips what was replayed already.
    everything = (await client.post("/dead-letters/replay", headers=admin)).json()
    assert everything["replayed"] == [d["id"] for d in listed[1:]]
    assert everything["skipped_already_replayed"] == 1
    assert [r["headers"]["ce_id"] for r in await outbox()] == [d["event_id"] for d in listed]

    # Purge hides them for good; a purged one cannot be replayed; a new one shows.
    purged = await client.post("/dead-letters/purge", json={"topic": TOPIC.name}, headers=admin)
    assert purged.json() == {"purged": 3}
    assert (await client.get("/dead-letters", headers=admin)).json() == []
    expect_error(
        await client.post(f"/dead-letters/{first['id']}/replay", headers=admin),
        409,
        "E_DEAD_LETTER_PURGED",
    )
    later = await rejecter.dead_letter(1)
    assert [d["event_id"] for d in (await client.get("/dead-letters", headers=admin)).json()] == (
        later
    )


async def test_unknown_ids_topics_and_cursors_are_refused(
    client: httpx.AsyncClient, auth: Any, expect_error: Any
) -> None:
    admin = auth("admin")
    for bad in (f"{DLQ}:0:99", "nope:0:0", "garbage", f"{DLQ}:x:1"):
        expect_error(
            await client.post(f"/dead-letters/{bad}/replay", headers=admin),
            404,
            "E_DEAD_LETTER_NOT_FOUND",
        )
    expect_error(
        await client.get("/dead-letters", params={"topic": "other"}, headers=admin),
        422,
        "E_VALIDATION",
    )
    expect_error(
        await client.get("/dead-letters", params={"after": "x"}, headers=admin),
        422,
        "E_VALIDATION",
    )
    expect_error(
        await client.post("/dead-letters/purge", json={"surprise": 1}, headers=admin),
        422,
        "E_VALIDATION",
    )


async def test_a_broker_that_does_not_answer_is_a_503(
    client: httpx.AsyncClient, auth: Any, broker: EmbeddedBroker, expect_error: Any
) -> None:
    broker.stop()
    expect_error(
        await client.get("/dead-letters", headers=auth("admin")), 503, "E_BROKER_UNAVAILABLE"
    )
