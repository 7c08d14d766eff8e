"""Refresh jobs execute off the consumer path, each in a task of its own.

The consumer handler only makes sure a job exists and claims it (a lease); the job then runs
here, so a slow table never holds up the requests behind it. While a job runs, its lease is
renewed every third of its TTL; when renewal fails (another refresher took it over), the
work is cancelled and whatever was half-written is removed. Every refresher sweeps for jobs
whose lease lapsed (their refresher died) and takes them over; a graceful stop releases the
leases so the takeover is immediate.

Concurrency: a job refreshes up to its own `concurrency` tables at once; across every job of
this process at most `max_per_endpoint` tables of one endpoint and `max_concurrent` in all
run at once (semaphores taken in that order, endpoint before global, so tables waiting for
their endpoint never hold a global slot that another endpoint could use).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pyarrow as pa
import stamina
import structlog

from freshet.cachestore import CacheStore, new_version, write_version
from freshet.catalog.models import RefreshJob
from freshet.catalog.refreshes import FAILED
from freshet.connectors import ConnectorError, ConnectorFactory, sanitise
from freshet.kit.background import BackgroundWork
from freshet.kit.redaction import describe_error
from freshet.kit.refresh_metrics import (
    REFRESH_BYTES,
    REFRESH_IN_PROGRESS,
    REFRESH_ROWS,
    REFRESH_SECONDS,
)
from freshet.refresher import jobs
from freshet.refresher.jobs import ItemOutcome, JobDeps, TablePlan

log = structlog.get_logger("freshet.refresher")

# Jobs one process holds at once; more wait (the partition pauses: backpressure).
MAX_JOBS = 32
MIN_QUEUED_GRACE = timedelta(seconds=5)


@dataclass
class RefreshLimits:
    batch_rows: int
    max_concurrent: int
    max_per_endpoint: int
    table_timeout_s: float
    attempts: int = 3
    # Test-only: kill this process with SIGKILL at a point of a refresh ("mid_write": after
    # the first batch reached the file; "before_pointer": file complete and durable, pointer
    # not moved). Empty in every real deployment.
    failpoint: str = ""


class Runner(BackgroundWork[uuid.UUID, RefreshJob]):
    def __init__(
        self, deps: JobDeps, store: CacheStore, connect: ConnectorFactory, limits: RefreshLimits
    ) -> None:
        super().__init__(max_concurrent=MAX_JOBS, name="refresh")
        self.deps = deps
        self.store = store
        self.connect = connect
        self.limits = limits
        self.watch_interval_s = deps.lease_ttl.total_seconds() / 3
        self.sweep_interval_s = max(0.5, deps.lease_ttl.total_seconds() / 2)
        # A queued job nobody claimed is treated like a lapsed lease only after a whole TTL:
        # its request is normally claimed in milliseconds, but a replica that is busy or
        # rebalancing must not have its partitions' work taken by whichever sweep runs first.
        self.queued_grace = max(MIN_QUEUED_GRACE, deps.lease_ttl)
        self.global_slots = asyncio.Semaphore(limits.max_concurrent)
        self.endpoint_slots: defaultdict[uuid.UUID, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(limits.max_per_endpoint)
        )
        self.running_tables = 0
        self.peak_tables = 0

    def key(self, held: RefreshJob) -> uuid.UUID:
        return held.id

    async def claim(self, refresh_id: uuid.UUID) -> bool:
        """Claim the job and run it in the background; False when there is nothing to do or
        another refresher holds it."""
        if refresh_id in self.tasks:
            return True
        return await self.submit(lambda: jobs.claim(refresh_id, self.deps)) is not None

    async def execute(self, held: RefreshJob) -> None:
        with structlog.contextvars.bound_contextvars(
            refresh_id=str(held.id), correlation_id=held.correlation_id or str(held.id)
        ):
            try:
                await self._work(held)
            except Exception as exc:
                # Items end themselves; this is a bug or a catalog that stayed away. The lease
                # lapses and another refresher resumes the job.
                log.error("refresh job stopped by an unexpected error", error=describe_error(exc))

    async def still_ours(self, held: RefreshJob) -> bool:
        return await jobs.renew(held.id, self.deps)

    async def release(self, keys: list[uuid.UUID]) -> None:
        await jobs.release(keys, self.deps)

    async def _work(self, job: RefreshJob) -> None:
        items = await jobs.open_items(job.id, self.deps)
        per_job = asyncio.Semaphore(max(1, job.concurrency))

        async def one(dataset_id: uuid.UUID) -> None:
            async with (
                per_job,
                self.endpoint_slots[job.endpoint_id],
                self.global_slots,
            ):
                await self._table(job, dataset_id)

        # One table's failure never stops the others: each ends its own item.
        await asyncio.gather(*(one(d) for d in items))

    # --- one table -------------------------------------------------------------------------

    async def _table(self, job: RefreshJob, dataset_id: uuid.UUID) -> None:
        planned = await jobs.plan(job, dataset_id, self.deps)
        if isinstance(planned, ItemOutcome):
            await jobs.end(job, None, dataset_id, planned, self.deps)
            return
        table = planned
        self.running_tables += 1
        self.peak_tables = max(self.peak_tables, self.running_tables)
        REFRESH_IN_PROGRESS.inc()
        started = time.monotonic()
        try:
            outcome = await self._refresh(job, table)
        finally:
            self.running_tables -= 1
            REFRESH_IN_PROGRESS.dec()
            REFRESH_SECONDS.observe(time.monotonic() - started)
        if outcome is not None:
            await jobs.end(job, table.dataset, dataset_id, outcome, self.deps)

    async def _refresh(self, job: RefreshJob, table: TablePlan) -> ItemOutcome | None:
        """Write a new version and move the pointer; the outcome when it failed."""
        dataset = table.dataset
        with structlog.contextvars.bound_contextvars(
            dataset_id=str(dataset.id), table=f"{dataset.schema_name}.{dataset.name}"
        ):
            try:
                async for attempt in stamina.retry_context(
                    on=lambda e: isinstance(e, ConnectorError) and e.transient,
                    attempts=self.limits.attempts,
                    wait_initial=0.5,
                    wait_max=5.0,
                    timeout=None,
                ):
                    with attempt:
                        return await self._attempt(job, table)
            except TimeoutError:
                error = f"timed out after {self.limits.table_timeout_s:g} s"
            except ConnectorError as exc:
                error = sanitise(exc.message, table.secrets)
            except Exception as exc:
                error = describe_error(exc, table.secrets.values())
            log.warning("table refresh failed", error=error)
            return ItemOutcome(FAILED, error)

    async def _attempt(self, job: RefreshJob, table: TablePlan) -> ItemOutcome | None:
        dataset = table.dataset
        version = new_version()
        path = self.store.version_path(
            dataset.endpoint_id, dataset.schema_name, dataset.name, version
        )
        uri = self.store.uri(path)
        if not await jobs.begin(job, dataset.id, version, uri, self.deps):
            log.info("table refresh no longer ours; not started")
            return None
        connector = self.connect(table.kind, table.config, table.secrets)
        batches = connector.stream(
            dataset.schema_name, dataset.name, batch_rows=self.limits.batch_rows
        )
        async with asyncio.timeout(self.limits.table_timeout_s):
            written = await write_version(self.store, path, self._failpoint(batches))
        if self.limits.failpoint == "before_pointer":
            _die()
        moved = await jobs.succeed(
            job,
            table,
            version=version,
            uri=uri,
            rows=written.rows,
            size=written.size,
            schema_fingerprint=written.schema_fingerprint,
            deps=self.deps,
        )
        if not moved:
            log.info("table refresh no longer ours; its file is discarded")
            await asyncio.to_thread(self.store.remove_partial, path)
            return None
        REFRESH_ROWS.inc(written.rows)
        REFRESH_BYTES.inc(written.size)
        log.info("table refreshed", version=version, rows=written.rows, bytes=written.size)
        return None

    async def _failpoint(
        self, batches: AsyncIterator[pa.RecordBatch]
    ) -> AsyncIterator[pa.RecordBatch]:
        written = 0
        async for batch in batches:
            if self.limits.failpoint == "mid_write" and written == 1:
                _die()
            yield batch
            written += 1

    # --- takeover --------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Take over jobs whose lease lapsed, and jobs whose request never reached anyone."""
        found = await jobs.expired(self.deps, queued_grace=self.queued_grace)
        taken = 0
        for refresh_id in found:
            if refresh_id not in self.tasks and await self.claim(refresh_id):
                log.warning("took over a refresh job", refresh_id=str(refresh_id))
                taken += 1
        return taken


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
