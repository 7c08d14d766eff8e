"""Kafka clients made the same way everywhere, with the settings FACTS.md calls for."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from freshet.contracts import TOPICS, Topic
from freshet.kit.settings import Settings


def make_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    # No idempotent producer or transactions: the embedded broker cannot do them and the
    # design relies on the outbox plus idempotent consumers instead.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=settings.max_message_bytes + 64 * 1024,
        request_timeout_ms=15_000,
    )


def wanted_topics(topics: Iterable[Topic] = TOPICS) -> dict[str, int]:
    """Topic name -> partitions, dead-letter topics included."""
    out: dict[str, int] = {}
    for t in topics:
        out[t.name] = t.partitions
        out[t.dead_letter] = t.dead_letter_partitions
    return out


async def ensure_topics(
    bootstrap: str, topics: Iterable[Topic] = TOPICS, *, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet, with their partition counts; return those made.

    Created explicitly because brokers that auto-create topics pick their own partition count.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = {n: p for n, p in wanted_topics(topics).items() if n not in existing}
        if missing:
            # Another process may have created them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(n, p, replication_factor) for n, p in missing.items()]
                )
        return sorted(missing)
    finally:
        await admin.close()
