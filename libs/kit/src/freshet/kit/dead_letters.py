"""Reading dead-letter topics: what the consumer wrapper wrote there, for people to act on.

Every `<topic>.dlq` message is the original value, key and headers plus `freshet_dlq_*`
headers (see `freshet.kit.consumer`). A message is named `<dlq topic>:<partition>:<offset>`.
Reads use a consumer without a group: listing commits nothing and moves no one's position.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from freshet.contracts import TOPICS
from freshet.kit.broker import kafka_client_options
from freshet.kit.consumer import DLQ_PREFIX
from freshet.kit.settings import Settings

READ_TIMEOUT_S = 10.0


class DeadLetterIdError(ValueError):
    """Not a `<dlq topic>:<partition>:<offset>` name of a known dead-letter topic."""


def dead_letter_topics() -> list[str]:
    return [t.dead_letter for t in TOPICS]


@dataclass(frozen=True)
class DeadLetter:
    dlq_topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.dlq_topic}:{self.partition}:{self.offset}"

    @property
    def digest(self) -> str:
        """Identifies this message's content, to tell it from another at a reused offset."""
        h = hashlib.sha256()
        for part in (
            self.key or b"",
            self.value,
            *(k.encode() + b"=" + v for k, v in self.headers),
        ):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        return h.hexdigest()

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode(errors="replace")
        return None

    def dlq(self, name: str) -> str | None:
        return self.header(DLQ_PREFIX + name)

    @property
    def original_topic(self) -> str:
        return self.dlq("topic") or self.dlq_topic.removesuffix(".dlq")

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the message had before it was dead-lettered."""
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_PREFIX)]

    @property
    def failed_at(self) -> datetime | None:
        raw = self.dlq("failed_at")
        try:
            return datetime.fromisoformat(raw) if raw else None
        except ValueError:
            return None

    @property
    def dead_lettered_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


def parse_id(dead_letter_id: str) -> tuple[str, int, int]:
    topic, _, rest = dead_letter_id.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    try:
        position = (topic, int(partition), int(rest))
    except ValueError:
        raise DeadLetterIdError("not a <dlq topic>:<partition>:<offset> name") from None
    if topic not in dead_letter_topics() or position[1] < 0 or position[2] < 0:
        raise DeadLetterIdError("not a dead-letter message of a known topic")
    return position


class DeadLetterReader:
    """One short-lived, group-less consumer over the dead-letter topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._kafka: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> DeadLetterReader:
        self._kafka = AIOKafkaConsumer(
            **kafka_client_options(self.settings),
            group_id=None,
            client_id=f"freshet-dead-letters-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=self.settings.max_message_bytes + 64 * 1024,
            request_timeout_ms=int(READ_TIMEOUT_S * 1000),
        )
        await asyncio.wait_for(self._kafka.start(), READ_TIMEOUT_S)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._kafka is not None:
            await self._kafka.stop()

    @property
    def kafka(self) -> AIOKafkaConsumer:
        assert self._kafka is not None, "use `async with DeadLetterReader(...)`"
        return self._kafka

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        known = await self.kafka.topics()  # refreshes the cluster metadata
        out: list[TopicPartition] = []
        for topic in topics:
            if topic in known:
                parts = self.kafka.partitions_for_topic(topic) or set()
                out += [TopicPartition(topic, p) for p in sorted(parts)]
        return out

    async def end_offset(self, tp: TopicPartition, probe_from: int = 0) -> int:
        """The partition's high watermark, as a fetch reports it.

        Not `end_offsets()`: the embedded broker answers ListOffsets with the base offset of
        the last record batch plus one, which is short by the rest of a multi-record batch
        (seen: three dead letters sent in one batch, end offset 1). Fetches report it right.
        """
        kafka = self.kafka
        kafka.assign([tp])
        kafka.seek(tp, probe_from)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT_S
        while loop.time() < deadline:
            await kafka.getmany(tp, timeout_ms=100, max_records=1)
            high = kafka.highwater(tp)
            if high is not None:
                return int(high)
        raise TimeoutError(f"no fetch answer for {tp.topic}:{tp.partition}")

    async def read(self, tp: TopicPartition, start: int, limit: int) -> list[DeadLetter]:
        """Messages of one partition from `start` to its end, at most `limit`."""
        if limit <= 0:
            return []
        kafka = self.kafka
        kafka.assign([tp])
        kafka.seek(tp, start)
        out: list[DeadLetter] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT_S
        while len(out) < limit and loop.time() < deadline:
            batch = await kafka.getmany(tp, timeout_ms=100, max_records=min(limit, 500))
            out.extend(
                DeadLetter(
                    dlq_topic=tp.topic,
                    partition=tp.partition,
                    offset=record.offset,
                    timestamp_ms=record.timestamp,
                    key=record.key,
                    value=record.value or b"",
                    headers=tuple(record.headers or ()),
                )
                for record in batch.get(tp, [])[: limit - len(out)]
            )
            high = kafka.highwater(tp)
            if high is not None and await kafka.position(tp) >= high:
                break
        return out

    async def one(self, dlq_topic: str, partition: int, offset: int) -> DeadLetter | None:
        tp = TopicPartition(dlq_topic, partition)
        if tp not in await self.partitions([dlq_topic]):
            return None
        if offset >= await self.end_offset(tp, probe_from=offset):
            return None
        found = await self.read(tp, offset, 1)
        return found[0] if found and found[0].offset == offset else None
