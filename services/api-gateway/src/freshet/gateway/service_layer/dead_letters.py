"""Dead letters: list what the consumers gave up on, replay it, purge it (admin).

The messages live in the `.dlq` topics; the catalog keeps only operators' marks
(`freshet.catalog.dead_letters`). Replay writes the original value and headers to the original
topic through the outbox, in the transaction that records the replay: both happen or neither.
The original event id travels along, so a consumer that already applied the event (a second
replay) ignores it, and one that failed on it (its transaction rolled back) applies it now.

Purge cannot delete from Kafka (the embedded broker has neither retention nor delete-records):
it records a watermark per partition, the last purged offset with its message's digest. A
watermark whose message is no longer there, or differs (a broker that lost its topics starts
offsets again at 0), is ignored, so nothing new is ever hidden by an old purge.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from aiokafka import TopicPartition

from freshet.catalog import UnitOfWork
from freshet.catalog.dead_letters import PURGED, REPLAYED
from freshet.catalog.models import DeadLetterMark
from freshet.gateway import errors
from freshet.gateway.service_layer.caller import Caller
from freshet.kit import metrics
from freshet.kit.dead_letters import (
    DeadLetter,
    DeadLetterIdError,
    DeadLetterReader,
    dead_letter_topics,
    parse_id,
)
from freshet.kit.redaction import describe_error

log = structlog.get_logger("freshet.gateway")

# One replay-all request re-publishes at most this many messages; run it again for more.
REPLAY_ALL_LIMIT = 10_000


@dataclass(frozen=True)
class Listed:
    message: DeadLetter
    replays: list[DeadLetterMark]


@dataclass(frozen=True)
class ReplayOutcome:
    replayed: list[str]
    skipped_replayed: int
    not_replayable: list[str]


def topics_for(topic: str | None) -> list[str]:
    """All dead-letter topics, or the one of `topic` (given as the original or `.dlq` name)."""
    known = dead_letter_topics()
    if topic is None:
        return known
    name = topic if topic.endswith(".dlq") else f"{topic}.dlq"
    if name not in known:
        raise errors.ValidationFailed(
            "unknown topic", details=[{"loc": ["query", "topic"], "msg": "is not a Freshet topic"}]
        )
    return [name]


async def _starts(
    uow: UnitOfWork, reader: DeadLetterReader, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Where each partition's unpurged messages begin: after the newest valid watermark."""
    marks = await uow.dead_letters.purge_marks({tp.topic for tp in partitions})
    starts: dict[TopicPartition, int] = {}
    for tp in partitions:
        starts[tp] = 0
        for mark in marks.get((tp.topic, tp.partition), []):
            there = await reader.one(tp.topic, tp.partition, mark.offset)
            if there is not None and there.digest == mark.digest:
                starts[tp] = mark.offset + 1
                break
    return starts


def _not_found(dead_letter_id: str) -> errors.ApiError:
    return errors.DeadLetterNotFound(f"dead letter {dead_letter_id} does not exist")


@asynccontextmanager
async def _reading(caller: Caller) -> AsyncIterator[DeadLetterReader]:
    reader = DeadLetterReader(caller.settings)
    try:
        await reader.__aenter__()
    except Exception as exc:
        await reader.__aexit__(None, None, None)
        log.warning("dead-letter topics unreadable", error=describe_error(exc))
        raise errors.BrokerUnavailable("the broker did not answer; try again") from None
    try:
        yield reader
    finally:
        await reader.__aexit__(None, None, None)


async def list_dead_letters(
    uow: UnitOfWork,
    caller: Caller,
    *,
    topic: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> list[Listed]:
    """Unpurged dead letters, ordered by topic (registry order), partition and offset."""
    topics = topics_for(topic)
    after_position: tuple[str, int, int] | None = None
    if after is not None:
        try:
            after_position = parse_id(after)
        except DeadLetterIdError:
            raise errors.ValidationFailed(
                "after is not a dead-letter id",
                details=[{"loc": ["query", "after"], "msg": "invalid dead-letter id"}],
            ) from None
    found: list[DeadLetter] = []
    async with _reading(caller) as reader:
        partitions = await reader.partitions(topics)
        starts = await _starts(uow, reader, partitions)
        for tp in partitions:
            start = starts[tp]
            if after_position is not None and after_position[0] in topics:
                order = (topics.index(tp.topic), tp.partition)
                after_order = (topics.index(after_position[0]), after_position[1])
                if order < after_order:
                    continue
                if order == after_order:
                    start = max(start, after_position[2] + 1)
            found += await reader.read(tp, start, limit - len(found))
            if len(found) >= limit:
                break
    return await _with_replays(uow, found)


async def _with_replays(uow: UnitOfWork, messages: list[DeadLetter]) -> list[Listed]:
    by_partition: dict[tuple[str, int], list[DeadLetter]] = {}
    for m in messages:
        by_partition.setdefault((m.dlq_topic, m.partition), []).append(m)
    replays: dict[tuple[str, int, int], list[DeadLetterMark]] = {}
    for (dlq_topic, partition), group in by_partition.items():
        marks = await uow.dead_letters.replays(dlq_topic, partition, [m.offset for m in group])
        for m in group:
            replays[(dlq_topic, partition, m.offset)] = [
                r for r in marks.get(m.offset, []) if r.digest == m.digest
            ]
    return [Listed(m, replays[(m.dlq_topic, m.partition, m.offset)]) for m in messages]


async def _replay(uow: UnitOfWork, caller: Caller, message: DeadLetter) -> None:
    """Write the original message to the outbox and mark it replayed (caller commits)."""
    try:
        value = message.value.decode()
        headers = [(k, v.decode()) for k, v in message.original_headers()]
        key = (message.key or b"").decode()
    except UnicodeDecodeError:
        raise errors.DeadLetterNotReplayable(
            f"dead letter {message.id} is not UTF-8 text; it cannot be replayed "
            "(it would only fail again)"
        ) from None
    await uow.outbox.add_raw(
        topic=message.original_topic,
        key=key,
        value=value,
        headers=headers,
        event_type=message.header("ce_type") or "unknown",
        row_id=f"replay-{uuid.uuid4()}",
    )
    await uow.dead_letters.mark(
        REPLAYED,
        message.dlq_topic,
        message.partition,
        message.offset,
        message.digest,
        caller.principal.name,
    )
    uow.audit.add(
        actor=caller.principal.name,
        action="dead_letter.replay",
        target_type="dead_letter",
        target_id=message.id,
        outcome="replayed",
        details={"topic": message.original_topic, "event_id": message.header("ce_id")},
        correlation_id=caller.correlation_id,
    )
    metrics.DEAD_LETTER_REPLAYS.labels(message.original_topic).inc()
    log.info(
        "dead letter replayed",
        dead_letter=message.id,
        topic=message.original_topic,
        event_id=message.header("ce_id"),
        by=caller.principal.name,
    )


async def replay_one(uow: UnitOfWork, caller: Caller, dead_letter_id: str) -> Listed:
    try:
        dlq_topic, partition, offset = parse_id(dead_letter_id)
    except DeadLetterIdError:
        raise _not_found(dead_letter_id) from None
    async with _reading(caller) as reader:
        message = await reader.one(dlq_topic, partition, offset)
        if message is None:
            raise _not_found(dead_letter_id)
        starts = await _starts(uow, reader, [TopicPartition(dlq_topic, partition)])
    if offset < starts[TopicPartition(dlq_topic, partition)]:
        raise errors.DeadLetterPurged(f"dead letter {dead_letter_id} was purged")
    await _replay(uow, caller, message)
    await uow.commit()
    return (await _with_replays(uow, [message]))[0]


async def replay_all(
    uow: UnitOfWork, caller: Caller, *, topic: str | None = None, include_replayed: bool = False
) -> ReplayOutcome:
    """Replay every unpurged dead letter (of a topic), by default those not replayed yet."""
    listed = await list_dead_letters(uow, caller, topic=topic, limit=REPLAY_ALL_LIMIT)
    replayed: list[str] = []
    skipped = 0
    refused: list[str] = []
    for item in listed:
        if item.replays and not include_replayed:
            skipped += 1
            continue
        try:
            await _replay(uow, caller, item.message)
        except errors.DeadLetterNotReplayable:
            refused.append(item.message.id)
            continue
        replayed.append(item.message.id)
    await uow.commit()
    return ReplayOutcome(replayed=replayed, skipped_replayed=skipped, not_replayable=refused)


async def purge(uow: UnitOfWork, caller: Caller, *, topic: str | None = None) -> int:
    """Hide every dead letter there is now (of a topic); return how many were hidden."""
    topics = topics_for(topic)
    purged = 0
    async with _reading(caller) as reader:
        partitions = await reader.partitions(topics)
        starts = await _starts(uow, reader, partitions)
        for tp in partitions:
            end = await reader.end_offset(tp, probe_from=starts[tp])
            if end <= starts[tp]:
                continue
            last = await reader.one(tp.topic, tp.partition, end - 1)
            if last is None:
                continue
            await uow.dead_letters.mark(
                PURGED, tp.topic, tp.partition, last.offset, last.digest, caller.principal.name
            )
            purged += end - starts[tp]
    uow.audit.add(
        actor=caller.principal.name,
        action="dead_letter.purge",
        target_type="dead_letter_topic",
        target_id=topic or "*",
        outcome="purged",
        details={"messages": purged},
        correlation_id=caller.correlation_id,
    )
    await uow.commit()
    log.info("dead letters purged", topics=topics, messages=purged, by=caller.principal.name)
    return purged
