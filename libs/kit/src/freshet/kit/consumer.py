"""The one consumer wrapper every subscriber uses.

What it guarantees, and why (FACTS.md lists the library defaults it avoids):
- An explicit group id, `auto_offset_reset="earliest"` (with "latest" a group that is new, or
  that lost its offsets when the broker restarted, skips messages) and no auto-commit.
- An offset is committed only after the handler returned, i.e. after its database transaction
  committed. A crash before that redelivers the message; handlers are idempotent.
- Transient failures are retried in place with exponential backoff and jitter, a bounded
  number of times. Then, or at once for a permanent failure or an undecodable message, the
  message goes to the topic's dead-letter topic with the reason in headers (secrets removed),
  and the partition moves on.
- Partitions are processed concurrently, each strictly in order, so a slow source on one
  partition does not hold up the others. A partition is paused while its batch is handled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import stamina
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from pydantic import ValidationError

from freshet.contracts import Envelope, EnvelopeError, Topic, decode
from freshet.kit import metrics
from freshet.kit.broker import kafka_client_options
from freshet.kit.errors import PermanentError
from freshet.kit.redaction import describe_error
from freshet.kit.settings import Settings

Handler = Callable[[Envelope], Awaitable[None]]

DLQ_PREFIX = "freshet_dlq_"
LAG_INTERVAL_S = 5.0
CONSUMER_TIMEOUT_MS = 1_000
log = structlog.get_logger("freshet.consumer")


@dataclass(frozen=True)
class Subscription:
    topic: Topic
    group: str
    handler: Handler
    # A consumer that may take its time (the scheduler's) waits longer per fetch: on the
    # embedded broker a 10 ms wait costs a few percent of a core in the consumer and the broker.
    fetch_max_wait_ms: int | None = None


def is_transient(exc: BaseException) -> bool:
    # Cancellation (shutdown, rebalance) must end the handler, never be retried.
    return isinstance(exc, Exception) and not isinstance(
        exc, PermanentError | EnvelopeError | ValidationError
    )


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Let in-flight batches finish (and commit) before the partitions move elsewhere.
        await self.consumer.drain(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        sub = self.consumer.sub
        # aiokafka rebalances eagerly: `assigned` is the whole new assignment.
        metrics.ASSIGNED_PARTITIONS.labels(sub.topic.name, sub.group).set(len(assigned))
        log.info(
            "partitions assigned",
            topic=sub.topic.name,
            group=sub.group,
            partitions=sorted(tp.partition for tp in assigned),
        )


class Consumer:
    def __init__(
        self,
        settings: Settings,
        subscription: Subscription,
        producer: AIOKafkaProducer,
        client_id: str,
    ) -> None:
        self.settings = settings
        self.sub = subscription
        self.producer = producer
        self.client_id = client_id
        self.topic = subscription.topic.name
        self._kafka: AIOKafkaConsumer | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._workers: dict[TopicPartition, asyncio.Task[None]] = {}
        self._commit_lock = asyncio.Lock()
        self._positions: dict[TopicPartition, int] = {}
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def start(self) -> None:
        self._kafka = AIOKafkaConsumer(
            **kafka_client_options(self.settings),
            group_id=self.sub.group,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.sub.fetch_max_wait_ms or self.settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=self.settings.max_message_bytes + 64 * 1024,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=max(self.settings.session_timeout_ms // 3, 100),
            # How often aiokafka's fetcher looks around while it waits (default 200 ms). What
            # it waits for (a fetch answered, records taken, a partition resumed or
            # reassigned) wakes it anyway; five idle wake-ups a second cost about a third of
            # an idle service's CPU.
            consumer_timeout_ms=CONSUMER_TIMEOUT_MS,
        )
        self._kafka.subscribe([self.topic], listener=_Revocations(self))
        await self._kafka.start()
        self._loop_task = asyncio.create_task(self._run(), name=f"consume {self.topic}")

    async def stop(self) -> None:
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.drain(set(self._workers))
        if self._kafka is not None:
            await self._kafka.stop()

    async def drain(self, partitions: set[TopicPartition]) -> None:
        """Wait up to the graceful timeout for these partitions' batches, then cancel them.

        A cancelled batch is not committed; its messages are delivered again.
        """
        tasks = [self._workers[tp] for tp in partitions if tp in self._workers]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.settings.graceful_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for tp in partitions:
            self._workers.pop(tp, None)

    async def _run(self) -> None:
        assert self._kafka is not None
        kafka = self._kafka
        next_lag = 0.0
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping:
            try:
                batches = await kafka.getmany(timeout_ms=1000, max_records=200)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The broker is away or the group is rebalancing: keep consuming when it is back.
                failures += 1
                log.warning("fetch failed", topic=self.topic, error=describe_error(exc))
                await asyncio.sleep(min(self.settings.retry_initial_s * 2**failures, 5.0))
                continue
            for tp, records in batches.items():
                if records:
                    kafka.pause(tp)
                    self._workers[tp] = asyncio.create_task(self._work(tp, records))
            if loop.time() >= next_lag:
                next_lag = loop.time() + LAG_INTERVAL_S
                self._export_lag()

    async def _work(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        assert self._kafka is not None
        try:
            for record in records:
                if not await self._deliver(tp, record):
                    break
        finally:
            self._workers.pop(tp, None)
            if tp in self._kafka.assignment():
                self._kafka.resume(tp)

    async def _deliver(self, tp: TopicPartition, record: ConsumerRecord) -> bool:
        """Handle one record until it is handled or dead-lettered, then commit it.

        False when the partition was lost meanwhile: the rest of the batch is not ours.
        """
        assert self._kafka is not None
        delay = self.settings.retry_initial_s
        while True:
            try:
                outcome = await self._handle(record)
                async with self._commit_lock:
                    await self._kafka.commit({tp: record.offset + 1})
                self._positions[tp] = record.offset + 1
                metrics.CONSUMED.labels(self.topic, self.sub.group, outcome).inc()
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if tp not in self._kafka.assignment():
                    # The partition moved to another consumer (e.g. after a session timeout);
                    # it will deliver this message again from the last commit.
                    log.warning(
                        "partition lost mid-batch; leaving the message to its new owner",
                        topic=self.topic,
                        partition=tp.partition,
                        offset=record.offset,
                    )
                    return False
                # Only infrastructure fails here (dead-letter publish, commit): keep the
                # message and try again; moving on would lose it.
                log.warning(
                    "could not finish message, will retry",
                    topic=self.topic,
                    partition=tp.partition,
                    offset=record.offset,
                    error=describe_error(exc),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_s)

    async def _handle(self, record: ConsumerRecord) -> str:
        try:
            envelope = decode(
                record.value, record.headers, max_bytes=self.settings.max_message_bytes
            )
        except EnvelopeError as exc:
            await self._dead_letter(record, exc.reason, str(exc), attempts=0)
            return "dead_lettered"
        with structlog.contextvars.bound_contextvars(
            correlation_id=envelope.correlation_id,
            event_id=envelope.id,
            event_type=envelope.type,
            topic=self.topic,
            partition=record.partition,
            offset=record.offset,
        ):
            started = asyncio.get_running_loop().time()
            attempts = 0
            try:
                async for attempt in stamina.retry_context(
                    on=is_transient,
                    attempts=self.settings.retry_attempts,
                    timeout=None,
                    wait_initial=self.settings.retry_initial_s,
                    wait_max=self.settings.retry_max_s,
                ):
                    with attempt:
                        attempts = attempt.num
                        if attempts > 1:
                            metrics.RETRIES.labels(self.topic, self.sub.group).inc()
                            log.info("retrying handler", attempt=attempts)
                        await self.sub.handler(envelope)
            except Exception as exc:
                reason = "handler_exhausted" if is_transient(exc) else "handler_rejected"
                log.error(
                    "handler failed, dead-lettering", reason=reason, error=describe_error(exc)
                )
                await self._dead_letter(record, reason, describe_error(exc), attempts=attempts)
                return "dead_lettered"
            finally:
                metrics.HANDLER_SECONDS.labels(self.topic, self.sub.group).observe(
                    asyncio.get_running_loop().time() - started
                )
        return "ok"

    async def _dead_letter(
        self, record: ConsumerRecord, reason: str, error: str, *, attempts: int
    ) -> None:
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith(DLQ_PREFIX)]
        headers += [
            (DLQ_PREFIX + "reason", reason.encode()),
            (DLQ_PREFIX + "error", describe_error(Exception(error)).encode()),
            (DLQ_PREFIX + "topic", record.topic.encode()),
            (DLQ_PREFIX + "partition", str(record.partition).encode()),
            (DLQ_PREFIX + "offset", str(record.offset).encode()),
            (DLQ_PREFIX + "group", self.sub.group.encode()),
            (DLQ_PREFIX + "attempts", str(attempts).encode()),
            (DLQ_PREFIX + "failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        await self.producer.send_and_wait(
            self.sub.topic.dead_letter, value=record.value, key=record.key, headers=headers
        )
        metrics.DEAD_LETTERS.labels(self.topic, self.sub.group, reason).inc()
        log.warning(
            "message dead-lettered",
            reason=reason,
            dead_letter_topic=self.sub.topic.dead_letter,
            partition=record.partition,
            offset=record.offset,
        )

    def _export_lag(self) -> None:
        if self._kafka is None:
            return
        lag = 0
        for tp in self._kafka.assignment():
            high = self._kafka.highwater(tp)
            if high is not None:
                lag += max(high - self._positions.get(tp, high), 0)
        metrics.CONSUMER_LAG.labels(self.topic, self.sub.group).set(lag)
