"""Runs execute off the consumer path, each in a task of its own.

The consumer handler only claims a run (QUEUED -> RUNNING under this process's lease) and
hands it here, so its offset commits at once and a slow or hanging source never holds up
the requests behind it on the partition (AC3). What keeps a claimed run from being lost:

- while a run executes, a watcher renews its lease and checks, about every second, that the
  run is still RUNNING and still ours; when it was cancelled, deleted or taken over, the work
  is cancelled at once (an external command's whole process group is killed);
- every collector sweeps for RUNNING runs whose lease lapsed (their collector died) and
  takes them over; on a graceful stop, leases are released so the takeover is immediate.

At most `max_concurrent_runs` runs execute per process; beyond that, claiming waits, which
pauses the partition (backpressure) instead of piling up tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

from freshet.catalog import RunStatus, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.collector import ingest, workflow
from freshet.collector.workflow import Claim, CollectorDeps
from freshet.connectors import ConnectorError, TableInfo, sanitise
from freshet.kit import metrics
from freshet.kit.background import BackgroundWork
from freshet.kit.redaction import describe_error

log = structlog.get_logger("freshet.collector")

ClaimFn = Callable[[], Awaitable[Claim | None]]


class Runner(BackgroundWork[uuid.UUID, Claim]):
    def __init__(
        self,
        deps: CollectorDeps,
        *,
        max_concurrent: int,
        check_interval_s: float,
    ) -> None:
        super().__init__(max_concurrent=max_concurrent, name="run")
        self.deps = deps
        self.check_interval_s = check_interval_s
        self.watch_interval_s = check_interval_s
        self.sweep_interval_s = max(1.0, deps.lease_ttl.total_seconds() / 2)
        self._renewed_at: dict[uuid.UUID, datetime] = {}

    def key(self, held: Claim) -> uuid.UUID:
        return held.run_id

    def on_spawn(self, held: Claim) -> None:
        self._renewed_at[held.run_id] = utcnow()
        metrics.RUNS_IN_PROGRESS.inc()

    def on_done(self, held: Claim) -> None:
        self._renewed_at.pop(held.run_id, None)
        metrics.RUNS_IN_PROGRESS.dec()

    # --- one run -------------------------------------------------------------------------

    async def execute(self, held: Claim) -> None:
        with structlog.contextvars.bound_contextvars(
            run_id=str(held.run_id), correlation_id=held.correlation_id
        ):
            try:
                await self._work(held)
            except Exception as exc:
                # Steps retry what is transient themselves: this is a bug or a database that
                # stayed away. Fail the run rather than let collectors take it over forever;
                # if even that fails, the lease lapses and another collector tries again.
                error = describe_error(exc)
                log.error("run stopped by an unexpected error", error=error)
                with contextlib.suppress(Exception):
                    await workflow.finish(held, self.deps, RunStatus.FAILED, error=error)

    async def _work(self, held: Claim) -> None:
        deps = self.deps
        plan = await workflow.prepare(held, deps)
        if plan.skip_reason is not None:
            await workflow.finish(held, deps, RunStatus.SKIPPED, error=plan.skip_reason)
            return
        if plan.failure is not None:
            await workflow.finish(held, deps, RunStatus.FAILED, error=plan.failure)
            return
        secrets = plan.secrets
        try:
            async with asyncio.timeout(plan.timeout_s):
                tables = await self._ingest(held, plan)
        except TimeoutError:
            await workflow.finish(
                held, deps, RunStatus.FAILED, error=f"timed out after {plan.timeout_s:g} s"
            )
            return
        except (ConnectorError, ingest.IngestError) as exc:
            # Sanitised at the source already; again here, against these very secrets.
            error = sanitise(exc.message, secrets)
            await workflow.finish(held, deps, RunStatus.FAILED, error=error)
            return
        except Exception as exc:
            await workflow.finish(
                held, deps, RunStatus.FAILED, error=describe_error(exc, secrets.values())
            )
            return
        scoped = workflow.in_scope(tables, plan.filters)
        if not plan.filters.is_empty and not scoped:
            await workflow.finish(
                held, deps, RunStatus.SKIPPED, error="filters match no dataset of the endpoint"
            )
            return
        await workflow.finish(
            held,
            deps,
            RunStatus.SUCCEEDED,
            tables=scoped,
            kind=plan.kind,
            filters=plan.filters,
        )

    async def _ingest(self, held: Claim, plan: workflow.Plan) -> list[TableInfo]:
        if plan.ingest_command is not None:
            return await ingest.run_command(
                plan.ingest_command,
                workdir=self.deps.ingest_workdir,
                run_id=held.run_id,
                endpoint_id=held.endpoint_id,
                kind=plan.kind,
                config=plan.config,
                secrets=plan.secrets,
            )
        return await ingest.discover(
            self.deps.connect,
            plan.kind,
            plan.config,
            plan.secrets,
            attempts=self.deps.introspect_attempts,
        )

    async def still_ours(self, held: Claim) -> bool:
        """Renew the lease every third of its TTL; in between, a read that the run is still
        RUNNING and ours (a cancel is seen within `check_interval_s`)."""
        if utcnow() - self._renewed_at.get(held.run_id, utcnow()) >= self.deps.lease_ttl / 3:
            async with UnitOfWork(self.deps.db) as uow:
                ours = await uow.runs.renew_lease(held.run_id, self.deps.owner, self.deps.lease_ttl)
                await uow.commit()
            self._renewed_at[held.run_id] = utcnow()
            return ours
        async with UnitOfWork(self.deps.db, read_only=True) as uow:
            run = await uow.runs.get(held.run_id)
        return (
            run is not None
            and run.status == RunStatus.RUNNING.value
            and run.lease_owner == self.deps.owner
        )

    async def release(self, run_ids: list[uuid.UUID]) -> None:
        async with UnitOfWork(self.deps.db) as uow:
            for run_id in run_ids:
                await uow.runs.release_lease(run_id, self.deps.owner)
            await uow.commit()
        log.info("runs handed back: leases released", runs=[str(r) for r in run_ids])

    # --- takeover --------------------------------------------------------------------------

    def _taking_over(self, run_id: uuid.UUID) -> ClaimFn:
        return lambda: workflow.take_over(run_id, self.deps)

    async def sweep(self) -> int:
        """Take over RUNNING runs whose lease lapsed; how many were taken."""
        async with UnitOfWork(self.deps.db, read_only=True) as uow:
            expired = await uow.runs.expired()
        taken = 0
        for run_id in expired:
            if run_id in self.tasks:
                continue
            if await self.submit(self._taking_over(run_id)):
                taken += 1
        return taken
