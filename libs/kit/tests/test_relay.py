"""The outbox relay: in order per key, one leader, and nothing lost when the broker restarts."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from freshet.catalog import Database, UnitOfWork
from freshet.contracts import CollectionRequested
from freshet.devstack.broker import EmbeddedBroker
from freshet.devstack.testing import eventually
from freshet.kit.broker import ensure_topics, make_producer
from freshet.kit.relay import OutboxRelay
from freshet.kit.settings import Settings

pytestmark = pytest.mark.broker
TOPIC = "freshet.collection.requested"


async def write_events(db: Database, collection_ids: list[uuid.UUID], per_key: int) -> None:
    async with UnitOfWork(db) as uow:
        for i in range(per_key):
            for cid in collection_ids:
                await uow.outbox.add(
                    CollectionRequested(collection_id=cid, requested_by=str(i)), source="/test"
                )
        await uow.commit()


async def consume(bootstrap: str, count: int, timeout: float = 20) -> list[tuple[str, str]]:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"r-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    out: list[tuple[str, str]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out += [(r.key.decode(), json.loads(r.value)["requested_by"]) for r in records]
    finally:
        await consumer.stop()
    return out


async def pending(db: Database) -> int:
    async with UnitOfWork(db) as uow:
        return (await uow.outbox.backlog())[0]


async def test_relay_publishes_in_order_per_key(
    catalog_url: str, embedded_broker: EmbeddedBroker
) -> None:
    settings = Settings(kafka_bootstrap=embedded_broker.bootstrap, database_url=catalog_url)
    await ensure_topics(embedded_broker.bootstrap)
    db = Database(catalog_url)
    producer = make_producer(settings, "relay-test")
    await producer.start()
    relay = OutboxRelay(settings, db, producer, holder="test")
    keys = [uuid.uuid4() for _ in range(4)]
    try:
        await write_events(db, keys, per_key=25)
        await relay.start()
        await eventually(lambda: _zero(db))
        got = await consume(embedded_broker.bootstrap, 100)
    finally:
        await relay.stop()
        await producer.stop()
        await db.dispose()
    assert len(got) == 100
    for key in keys:
        assert [v for k, v in got if k == str(key)] == [str(i) for i in range(25)]


async def _zero(db: Database) -> bool:
    return await pending(db) == 0


async def test_relay_survives_a_broker_restart_and_resends_what_was_lost(
    catalog_url: str, embedded_broker: EmbeddedBroker
) -> None:
    settings = Settings(
        kafka_bootstrap=embedded_broker.bootstrap, database_url=catalog_url, retry_max_s=0.5
    )
    await ensure_topics(embedded_broker.bootstrap)
    db = Database(catalog_url)
    producer = make_producer(settings, "relay-test")
    await producer.start()
    relay = OutboxRelay(settings, db, producer, holder="test")
    key = uuid.uuid4()
    try:
        await relay.start()
        await write_events(db, [key], per_key=5)
        await eventually(lambda: _zero(db))
        # The broker acknowledged these five; now it restarts and loses them (memory storage),
        # and five more are written while it is down.
        embedded_broker.stop()
        async with UnitOfWork(db) as uow:
            for i in range(5, 10):
                await uow.outbox.add(
                    CollectionRequested(collection_id=key, requested_by=str(i)), source="/t"
                )
            await uow.commit()
        await asyncio.sleep(1)
        assert await pending(db) == 5  # nothing marked published while the broker is away
        embedded_broker.start()
        await eventually(lambda: _zero(db), timeout=40)
        got = await consume(embedded_broker.bootstrap, 10)
    finally:
        await relay.stop()
        await producer.stop()
        await db.dispose()
    # All ten are on the new broker, in order: the lost five were re-sent first.
    assert [v for _, v in got] == [str(i) for i in range(10)]


async def test_only_one_relay_leads(catalog_url: str, embedded_broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap=embedded_broker.bootstrap, database_url=catalog_url)
    db = Database(catalog_url)
    producer = make_producer(settings, "relay-test")
    await producer.start()
    relays = [OutboxRelay(settings, db, producer, holder=f"r{i}") for i in range(2)]
    try:
        for relay in relays:
            await relay.start()
        await eventually(lambda: asyncio.sleep(0, any(r.is_leader for r in relays)))
        await asyncio.sleep(0.5)
        assert sum(r.is_leader for r in relays) == 1
    finally:
        for relay in relays:
            await relay.stop()
        await producer.stop()
        await db.dispose()


async def test_events_another_process_commits_leave_on_its_notice_not_at_the_next_poll(
    catalog_url: str, embedded_broker: EmbeddedBroker
) -> None:
    """The relay reads the outbox only when the database says something was committed (or at
    its safety poll, set far beyond this test's patience here)."""
    settings = Settings(
        kafka_bootstrap=embedded_broker.bootstrap,
        database_url=catalog_url,
        relay_poll_interval_s=60,
        relay_probe_interval_s=0.02,
    )
    await ensure_topics(embedded_broker.bootstrap)
    relay_db, other_process = Database(catalog_url), Database(catalog_url)
    producer = make_producer(settings, "relay-test")
    await producer.start()
    relay = OutboxRelay(settings, relay_db, producer, holder="test")
    try:
        await relay.start()
        await eventually(lambda: asyncio.sleep(0, result=relay.is_leader))
        await asyncio.sleep(0.5)  # past the first poll that every start makes
        await write_events(other_process, [uuid.uuid4()], per_key=3)
        await eventually(lambda: _zero(relay_db), timeout=5)
    finally:
        await relay.stop()
        await producer.stop()
        await relay_db.dispose()
        await other_process.dispose()


async def test_events_committed_while_the_relay_publishes_leave_at_once(
    catalog_url: str, embedded_broker: EmbeddedBroker
) -> None:
    """A commit that wakes the relay while a pass is running must not wait for the safety
    poll (the wake used to be cleared after the pass, and with it lost)."""
    settings = Settings(
        kafka_bootstrap=embedded_broker.bootstrap,
        database_url=catalog_url,
        relay_poll_interval_s=60,
    )
    await ensure_topics(embedded_broker.bootstrap)
    db = Database(catalog_url)
    producer = make_producer(settings, "relay-test")
    await producer.start()
    relay = OutboxRelay(settings, db, producer, holder="test")
    in_pass, go_on = asyncio.Event(), asyncio.Event()
    real_pass = relay.publish_pending

    async def slow_pass() -> int:
        sent = await real_pass()
        if not go_on.is_set():
            in_pass.set()  # the outbox is read (empty); the pass has not ended
            await go_on.wait()
        return sent

    relay.publish_pending = slow_pass  # type: ignore[method-assign]
    try:
        await relay.start()
        await asyncio.wait_for(in_pass.wait(), 10)
        # While that pass runs, this process commits (the commit wakes the relay), then
        # the pass ends having read an outbox that did not have the rows yet.
        async with UnitOfWork(db) as uow:
            uow.outbox.stage(CollectionRequested(collection_id=uuid.uuid4()), source="/t")
            await uow.commit()
        async with UnitOfWork(db) as uow:
            before = await uow.outbox.pending(10)
        assert before, "the event is committed"
        go_on.set()
        await eventually(lambda: _zero(db), timeout=5)
    finally:
        await relay.stop()
        await producer.stop()
        await db.dispose()
