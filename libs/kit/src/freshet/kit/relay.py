"""The outbox relay: publishes committed outbox rows to Kafka, in order, from one process.

One relay is active at a time (a lease in the catalog), because per-key order is only kept
if one publisher sends rows in id order, and because SQLite cannot share work between relays
(FACTS.md). Any process may take over when the active one dies.

A row is marked published only after the broker acknowledged it (acks=all). If a send fails,
the rows from the first failure on are sent again later, so nothing is lost and order per key
holds; a consumer may see a duplicate, which its inbox absorbs.

Events committed by this process wake the relay at once; those of other processes reach it as
database notices (`freshet.catalog.outbox_notices`: LISTEN/NOTIFY on PostgreSQL, a cheap
`PRAGMA data_version` probe on SQLite). The outbox itself is read only on a notice or every
`relay_poll_interval_s` as a safety net, so an idle relay costs next to nothing.

A broker that keeps nothing (the embedded Tansu) loses every topic on restart, including
events that were acknowledged but not yet consumed. The relay notices that its topics are
gone, recreates them, and sends again everything it published within the retention window.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from datetime import timedelta

import structlog
from aiokafka import AIOKafkaProducer

from freshet.catalog import Database, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.outbox_notices import OutboxNotices
from freshet.contracts import all_topic_names
from freshet.kit import metrics
from freshet.kit.broker import ensure_topics
from freshet.kit.redaction import describe_error
from freshet.kit.settings import Settings

LEASE_NAME = "outbox-relay"
TOPIC_CHECK_INTERVAL_S = 2.0
BACKLOG_INTERVAL_S = 5.0
HOUSEKEEPING_INTERVAL_S = 60.0
log = structlog.get_logger("freshet.relay")


def holder_id(service: str) -> str:
    return f"{service}@{socket.gethostname()}:{os.getpid()}"


class OutboxRelay:
    def __init__(
        self, settings: Settings, db: Database, producer: AIOKafkaProducer, holder: str
    ) -> None:
        self.settings = settings
        self.db = db
        self.producer = producer
        self.holder = holder
        self.is_leader = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lease_renewed_at = -1e9
        self._topics_checked_at = -1e9
        self._housekeeping_at = -1e9
        self._backlog_at = -1e9
        self._failures = 0
        db.on_outbox_commit(self.wake)
        self.notices = OutboxNotices(
            db, self.wake, probe_interval_s=settings.relay_probe_interval_s
        )

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        await self.notices.start()
        self._task = asyncio.create_task(self._run(), name="outbox relay")

    async def stop(self) -> None:
        self._stopping = True
        await self.notices.stop()
        self.wake()
        if self._task is not None:
            # One last pass so events committed just before shutdown leave now.
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self.is_leader:
            with contextlib.suppress(Exception):
                async with UnitOfWork(self.db) as uow:
                    await uow.leases.release(LEASE_NAME, self.holder)
                    await uow.commit()
        metrics.RELAY_LEADER.set(0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        ttl = self.settings.relay_lease_ttl_s
        while True:
            stopping = self._stopping
            # Cleared before the pass, not after: a commit during the pass must wake the wait
            # below at once (clearing after it lost that wake, and the rows waited for the
            # safety poll, 5 s).
            self._wake.clear()
            try:
                if loop.time() - self._lease_renewed_at >= ttl / 3:
                    await self._renew_lease()
                    self._lease_renewed_at = loop.time()
                sent = 0
                if self.is_leader:
                    if loop.time() - self._topics_checked_at >= TOPIC_CHECK_INTERVAL_S:
                        await self._check_topics()
                        self._topics_checked_at = loop.time()
                    sent = await self.publish_pending()
                    if loop.time() - self._backlog_at >= BACKLOG_INTERVAL_S:
                        await self._export_backlog()
                        self._backlog_at = loop.time()
                    if loop.time() - self._housekeeping_at >= HOUSEKEEPING_INTERVAL_S:
                        await self._housekeeping()
                        self._housekeeping_at = loop.time()
                self._failures = 0
            except Exception as exc:
                self._failures += 1
                metrics.OUTBOX_PUBLISH_FAILURES.inc()
                self._topics_checked_at = -1e9  # a failure may mean the broker was replaced
                log.warning("outbox relay pass failed", error=describe_error(exc))
                sent = 0
            if stopping:
                return
            if sent >= self.settings.relay_batch_size:
                continue
            wait = (
                min(self.settings.retry_max_s, 0.2 * 2**self._failures)
                if self._failures
                else self.settings.relay_poll_interval_s
                if self.is_leader
                else ttl / 3
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _renew_lease(self) -> None:
        async with UnitOfWork(self.db) as uow:
            leader = await uow.leases.try_acquire(
                LEASE_NAME, self.holder, timedelta(seconds=self.settings.relay_lease_ttl_s)
            )
            await uow.commit()
        if leader != self.is_leader:
            log.info("outbox relay leadership changed", leader=leader, holder=self.holder)
        self.is_leader = leader
        metrics.RELAY_LEADER.set(1 if leader else 0)

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows in id order; return how many were published."""
        async with UnitOfWork(self.db, read_only=True) as uow:
            rows = await uow.outbox.pending(self.settings.relay_batch_size)
        if not rows:
            return 0
        futures = [
            await self.producer.send(
                row.topic,
                value=row.value.encode(),
                key=row.key.encode(),
                headers=[(k, v.encode()) for k, v in row.headers],
            )
            for row in rows
        ]
        done: list[int] = []
        error: BaseException | None = None
        for row, future in zip(rows, futures, strict=True):
            try:
                await future
            except Exception as exc:
                error = exc
                break
            done.append(row.id)
            metrics.OUTBOX_PUBLISHED.labels(row.topic).inc()
        async with UnitOfWork(self.db) as uow:
            await uow.outbox.mark_published(done)
            if error is not None:
                await uow.outbox.count_attempt([r.id for r in rows[len(done) :]])
            await uow.commit()
        if error is not None:
            raise error
        return len(done)

    async def _check_topics(self) -> None:
        # The producer's own connection: a new admin client every check cost more CPU than
        # everything else an idle relay does.
        existing = (await self.producer.client.fetch_all_metadata()).topics()
        missing = [n for n in all_topic_names() if n not in existing]
        if not missing:
            return
        log.warning("broker is missing topics; recreating and re-sending", missing=missing)
        await ensure_topics(
            self.settings.kafka_bootstrap,
            replication_factor=self.settings.topic_replication_factor,
            settings=self.settings,
        )
        if len(missing) == len(all_topic_names()):
            # Every topic gone: the broker lost its state. Events it acknowledged may never
            # have been consumed, so send again what was published within the window.
            since = utcnow() - timedelta(hours=self.settings.outbox_retention_hours)
            async with UnitOfWork(self.db) as uow:
                requeued = await uow.outbox.requeue_published_since(since)
                await uow.commit()
            metrics.OUTBOX_REPLAYS.inc()
            log.warning("re-sending events after broker loss", events=requeued)

    async def _export_backlog(self) -> None:
        async with UnitOfWork(self.db, read_only=True) as uow:
            count, oldest = await uow.outbox.backlog()
        metrics.OUTBOX_BACKLOG.set(count)
        metrics.OUTBOX_OLDEST_AGE.set((utcnow() - oldest).total_seconds() if oldest else 0)

    async def _housekeeping(self) -> None:
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            pruned = await uow.outbox.prune(
                now - timedelta(hours=self.settings.outbox_retention_hours)
            )
            await uow.inbox.prune(now - timedelta(hours=self.settings.inbox_retention_hours))
            await uow.commit()
        if pruned:
            log.info("pruned published outbox events", events=pruned)
