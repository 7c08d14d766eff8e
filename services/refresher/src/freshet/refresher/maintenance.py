"""Cache upkeep, run by one refresher at a time (a lease): pending deletions, orphan files,
expired reader leases, and the cache gauges.

- Deletions: a file queued in `cache_deletions` is deleted once its `not_before` passed and
  no live reader lease holds it; a failed delete is tried again later. The queue is a table,
  so deletions survive restarts.
- Reconciliation: files under the cache root that nothing in the catalog knows (no pointer,
  no pending deletion, no reader, not the target of an active refresh) and that are older
  than `orphan_min_age` are deleted: what a refresher killed mid-write left behind, or the
  files of a deleted endpoint. The files are listed *before* the catalog is read, so a file
  created meanwhile is either known already or not listed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

import structlog

from freshet.cachestore import CacheStore
from freshet.catalog import Database, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.kit.redaction import describe_error
from freshet.kit.refresh_metrics import (
    CACHE_AGE,
    CACHE_BYTES,
    CACHE_DELETE_FAILURES,
    CACHE_FILES_DELETED,
    CACHE_PENDING_DELETIONS,
)

log = structlog.get_logger("freshet.refresher")

LEASE = "refresher-maintenance"
_RETRY_AFTER = timedelta(seconds=30)


@dataclass
class MaintenanceSettings:
    interval: timedelta
    reconcile_every: timedelta
    orphan_min_age: timedelta
    lease_ttl: timedelta = timedelta(seconds=15)


class Maintenance:
    def __init__(
        self, db: Database, store: CacheStore, holder: str, settings: MaintenanceSettings
    ) -> None:
        self.db = db
        self.store = store
        self.holder = holder
        self.settings = settings
        self._task: asyncio.Task[None] | None = None
        self._last_reconcile = 0.0
        self._wake = asyncio.Event()
        self._labels: set[tuple[str, str]] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="cache-maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            async with UnitOfWork(self.db) as uow:
                await uow.leases.release(LEASE, self.holder)
                await uow.commit()

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()  # before the pass: a wake during it is not lost
            try:
                if await self._lead():
                    await self.delete_due()
                    await self.update_gauges()
                    if (
                        loop.time() - self._last_reconcile
                        >= self.settings.reconcile_every.total_seconds()
                    ):
                        self._last_reconcile = loop.time()
                        await self.reconcile()
                else:
                    self._clear_gauges()
            except Exception as exc:
                log.warning("cache maintenance failed", error=describe_error(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.interval.total_seconds())

    async def _lead(self) -> bool:
        async with UnitOfWork(self.db) as uow:
            leading = await uow.leases.try_acquire(LEASE, self.holder, self.settings.lease_ttl)
            await uow.commit()
            return leading

    async def delete_due(self) -> int:
        """Delete the queued files that are due and unread; how many were deleted."""
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            await uow.caches.prune_readers(now)
            due = await uow.caches.due_deletions(now)
            await uow.commit()
        deleted = 0
        for deletion in due:
            try:
                await asyncio.to_thread(self._delete_file, deletion.uri)
            except Exception as exc:
                CACHE_DELETE_FAILURES.inc()
                error = describe_error(exc)
                log.warning("could not delete a cache file", uri=deletion.uri, error=error)
                async with UnitOfWork(self.db) as uow:
                    await uow.caches.deletion_failed(deletion.id, error, utcnow() + _RETRY_AFTER)
                    await uow.commit()
                continue
            async with UnitOfWork(self.db) as uow:
                forgotten = await uow.caches.deleted(deletion.id, utcnow())
                await uow.commit()
            if forgotten:
                deleted += 1
                CACHE_FILES_DELETED.labels(deletion.reason).inc()
                log.info("cache file deleted", uri=deletion.uri, reason=deletion.reason)
        return deleted

    def _delete_file(self, uri: str) -> None:
        try:
            self.store.delete(uri)
        except ValueError:
            # Not a file of this store (the root moved): nothing of ours to delete.
            log.warning("queued file is outside the cache root; forgotten", uri=uri)

    async def reconcile(self) -> list[str]:
        """Delete orphan files; their URIs."""
        files = await asyncio.to_thread(lambda: list(self.store.files()))
        async with UnitOfWork(self.db, read_only=True) as uow:
            known = await uow.caches.known_uris()
        cutoff = utcnow() - self.settings.orphan_min_age
        orphans = [
            f.uri
            for f in files
            if f.uri not in known and (f.modified_at is None or f.modified_at < cutoff)
        ]
        for uri in orphans:
            try:
                await asyncio.to_thread(self.store.delete, uri)
            except Exception as exc:
                CACHE_DELETE_FAILURES.inc()
                log.warning(
                    "could not delete an orphan cache file", uri=uri, error=describe_error(exc)
                )
                continue
            CACHE_FILES_DELETED.labels("orphan").inc()
            log.info("orphan cache file deleted", uri=uri)
        return orphans

    async def update_gauges(self) -> None:
        now = utcnow()
        async with UnitOfWork(self.db, read_only=True) as uow:
            pending = await uow.caches.pending_deletions()
            pointers = await uow.caches.pointers()
        CACHE_PENDING_DELETIONS.set(pending)
        seen: set[tuple[str, str]] = set()
        sizes: defaultdict[tuple[str, str], float] = defaultdict(float)
        for cache, endpoint, schema_name, table in pointers:
            labels = (endpoint, f"{schema_name}.{table}")
            seen.add(labels)
            if cache.synced_at is not None:
                CACHE_AGE.labels(*labels).set((now - cache.synced_at).total_seconds())
            sizes[labels] = float(cache.bytes or 0)
        for labels, size in sizes.items():
            CACHE_BYTES.labels(*labels).set(size)
        for gone in self._labels - seen:
            with contextlib.suppress(KeyError):
                CACHE_AGE.remove(*gone)
                CACHE_BYTES.remove(*gone)
        self._labels = seen

    def _clear_gauges(self) -> None:
        # Only the leader reports cache gauges, so a sum over replicas counts each once.
        for labels in self._labels:
            with contextlib.suppress(KeyError):
                CACHE_AGE.remove(*labels)
                CACHE_BYTES.remove(*labels)
        self._labels = set()
