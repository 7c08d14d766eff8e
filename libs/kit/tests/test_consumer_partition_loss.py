"""A consumer that loses its partition mid-batch stops there instead of retrying forever.

Losing a partition between handling and committing (a session timeout, a rebalance) cannot be
provoked on demand on a real broker, so this drives the wrapper with a stand-in client.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from freshet.contracts import CollectionRequested, Envelope, encode, topic_for
from freshet.kit.consumer import Consumer, Subscription
from freshet.kit.settings import Settings

TOPIC = topic_for(CollectionRequested)
TP = TopicPartition(TOPIC.name, 0)


class LosesPartitionOnCommit:
    def __init__(self) -> None:
        self.assigned = {TP}
        self.commits = 0
        self.resumed: list[TopicPartition] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits += 1
        self.assigned = set()  # the group gave the partition to another member
        raise CommitFailedError("partition was reassigned")

    def resume(self, tp: TopicPartition) -> None:
        self.resumed.append(tp)


def record(offset: int) -> ConsumerRecord[bytes, bytes]:
    msg = encode(CollectionRequested(collection_id=uuid.uuid4()), source="/t")
    return ConsumerRecord(
        topic=TP.topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=msg.key,
        value=msg.value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=msg.headers,
    )


async def test_losing_the_partition_ends_the_batch_without_retrying() -> None:
    handled: list[Envelope] = []

    async def handler(env: Envelope) -> None:
        handled.append(env)

    consumer = Consumer(
        Settings(retry_initial_s=0.01),
        Subscription(TOPIC, "g", handler),
        producer=None,
        client_id="t",
    )
    kafka: Any = LosesPartitionOnCommit()
    consumer._kafka = kafka

    await consumer._work(TP, [record(0), record(1), record(2)])

    assert len(handled) == 1  # the rest of the batch belongs to the new owner
    assert kafka.commits == 1
    assert kafka.resumed == []  # not resumed: it is no longer ours
