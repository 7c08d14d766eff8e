"""The consumer wrapper on a real broker: retries, dead letters, commits after the handler."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from freshet.contracts import CollectionRequested, Envelope, Topic, encode
from freshet.devstack.testing import eventually
from freshet.kit.broker import ensure_topics, make_producer
from freshet.kit.consumer import Consumer, Subscription
from freshet.kit.errors import PermanentError
from freshet.kit.service import ServiceRuntime
from freshet.kit.settings import Settings

pytestmark = pytest.mark.broker


@pytest.fixture
async def topic(kafka_bootstrap: str) -> Topic:
    t = Topic(f"test.{uuid.uuid4().hex[:10]}", CollectionRequested, partitions=3)
    await ensure_topics(kafka_bootstrap, [t])
    return t


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        retry_attempts=4,
        retry_initial_s=0.05,
        retry_max_s=0.2,
        graceful_timeout_s=2,
        session_timeout_ms=6000,
    )


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = make_producer(settings, "test")
    await p.start()
    yield p
    await p.stop()


async def publish(producer: AIOKafkaProducer, topic: Topic, event: CollectionRequested) -> str:
    msg = encode(event, source="/test")
    await producer.send_and_wait(topic.name, msg.value, key=msg.key, headers=msg.headers)
    return dict(msg.headers)["ce_id"].decode()


async def read_all(
    bootstrap: str, name: str, count: int, timeout: float = 15
) -> list[ConsumerRecord]:
    consumer = AIOKafkaConsumer(
        name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    out: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


async def run_consumer(
    settings: Settings, sub: Subscription, producer: AIOKafkaProducer
) -> Consumer:
    consumer = Consumer(settings, sub, producer, client_id="test")
    await consumer.start()
    return consumer


async def test_malformed_message_goes_to_the_dead_letter_topic_and_the_next_is_processed(
    settings: Settings, topic: Topic, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    handled: list[Envelope] = []

    async def handler(env: Envelope) -> None:
        handled.append(env)

    key = b"same-key"  # one partition, so "next" is well defined
    await producer.send_and_wait(topic.name, b"{broken", key=key, headers=[("ce_type", b"x")])
    good = CollectionRequested(collection_id=uuid.uuid4())
    msg = encode(good, source="/test")
    await producer.send_and_wait(topic.name, msg.value, key=key, headers=msg.headers)

    consumer = await run_consumer(
        settings, Subscription(topic, "g-" + topic.name, handler), producer
    )
    try:
        await eventually(lambda: asyncio.sleep(0, len(handled) == 1))
        dead = await read_all(kafka_bootstrap, topic.dead_letter, 1)
    finally:
        await consumer.stop()
    assert handled[0].data == good
    assert len(dead) == 1
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert dead[0].value == b"{broken"
    assert headers["freshet_dlq_reason"] == "missing_header"
    assert "ce_specversion" in headers["freshet_dlq_error"]
    assert headers["freshet_dlq_topic"] == topic.name
    assert headers["freshet_dlq_group"] == "g-" + topic.name


async def test_a_transient_failure_is_retried_with_backoff_and_then_succeeds(
    settings: Settings, topic: Topic, producer: AIOKafkaProducer
) -> None:
    attempts: list[float] = []

    async def flaky(env: Envelope) -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("database went away")

    await publish(producer, topic, CollectionRequested(collection_id=uuid.uuid4()))
    consumer = await run_consumer(settings, Subscription(topic, "g-" + topic.name, flaky), producer)
    try:
        await eventually(lambda: asyncio.sleep(0, len(attempts) >= 3))
        await asyncio.sleep(0.3)
    finally:
        await consumer.stop()
    assert len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # Exponential backoff from 0.05 s (plus jitter): each wait is at least the base delay.
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1


async def test_exhausted_and_permanent_failures_are_dead_lettered_with_a_sanitised_reason(
    settings: Settings, topic: Topic, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    calls: dict[str, int] = {}

    async def handler(env: Envelope) -> None:
        assert isinstance(env.data, CollectionRequested)
        who = env.data.requested_by or ""
        calls[who] = calls.get(who, 0) + 1
        if who == "always-transient":
            raise ConnectionError("could not reach postgresql://app:hunter2@db:5432/x")
        raise PermanentError("password=hunter2 is not accepted")

    await publish(
        producer,
        topic,
        CollectionRequested(collection_id=uuid.uuid4(), requested_by="always-transient"),
    )
    await publish(
        producer, topic, CollectionRequested(collection_id=uuid.uuid4(), requested_by="permanent")
    )
    consumer = await run_consumer(
        settings, Subscription(topic, "g-" + topic.name, handler), producer
    )
    try:
        dead = await read_all(kafka_bootstrap, topic.dead_letter, 2)
    finally:
        await consumer.stop()
    assert calls == {"always-transient": settings.retry_attempts, "permanent": 1}
    reasons = {}
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        assert "hunter2" not in str(headers)
        reasons[headers["freshet_dlq_reason"]] = headers
    assert reasons["handler_exhausted"]["freshet_dlq_attempts"] == str(settings.retry_attempts)
    assert "[redacted]" in reasons["handler_exhausted"]["freshet_dlq_error"]
    assert reasons["handler_rejected"]["freshet_dlq_attempts"] == "1"


async def test_an_offset_is_committed_only_after_the_handler_finished(
    settings: Settings, topic: Topic, producer: AIOKafkaProducer
) -> None:
    """A consumer stopped mid-handler does not commit: the next consumer gets the message."""
    started = asyncio.Event()
    seen: list[str] = []

    async def slow(env: Envelope) -> None:
        started.set()
        await asyncio.sleep(30)

    async def fast(env: Envelope) -> None:
        seen.append(env.id)

    event_id = await publish(producer, topic, CollectionRequested(collection_id=uuid.uuid4()))
    group = "g-" + topic.name
    short = settings.model_copy(update={"graceful_timeout_s": 0.2})
    first = await run_consumer(short, Subscription(topic, group, slow), producer)
    await asyncio.wait_for(started.wait(), 20)
    await first.stop()  # the handler is cut off after the graceful timeout

    second = await run_consumer(settings, Subscription(topic, group, fast), producer)
    try:
        await eventually(lambda: asyncio.sleep(0, seen == [event_id]), timeout=30)
    finally:
        await second.stop()


async def test_a_service_joins_the_groups_of_all_its_subscriptions_at_once(
    settings: Settings, kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group's first assignment takes seconds; a service with three subscriptions must not
    wait for them one after another before it is ready."""
    topics = [
        Topic(f"test.{uuid.uuid4().hex[:10]}", CollectionRequested, partitions=1) for _ in range(3)
    ]
    await ensure_topics(kafka_bootstrap, topics)
    runtime = ServiceRuntime(
        "probe",
        settings.model_copy(update={"database_url": f"sqlite:///{tmp_path}/c.db"}),
        run_relay=False,
    )

    async def ignore(env: Envelope) -> None:
        pass

    for t in topics:
        runtime.subscribe(t, f"probe-{t.name}", ignore)
    joins: list[str] = []
    real_start = Consumer.start

    async def recorded_start(consumer: Consumer) -> None:
        joins.append("enter")
        await real_start(consumer)
        joins.append("exit")

    monkeypatch.setattr(Consumer, "start", recorded_start)
    # A service configures the process's logging; this test's worker runs other tests after it.
    monkeypatch.setattr("freshet.kit.service.configure_logging", lambda *args: None)
    await runtime.start()
    try:
        assert joins == ["enter"] * 3 + ["exit"] * 3
    finally:
        await runtime.stop()
