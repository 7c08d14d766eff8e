"""Running preview requests off the consumer path, one worker per endpoint.

The consumer handler only records a request as `queued` (a durable claim) and returns, so its
offset commits at once; nothing is lost if this process dies, because the request is in the
catalog. Here:

- The dispatcher looks for endpoints with due requests (woken at once by this process's
  handler, otherwise every `poll_interval_s`) and takes the endpoint's *preview lease*
  (`preview-endpoint::<id>`, in the `leases` table). One previewer process at a time works on
  an endpoint, so the endpoint's limits hold across every replica (they are global, not per
  process); different endpoints spread over the replicas.
- The endpoint's worker claims its queued requests (manual first), at most `backlog` at a time,
  and runs each in a task of its own. Each attempt takes the endpoint's permit (K at once, R per
  second), so waiting on one endpoint's limits never delays another endpoint, and a hanging
  source ties up only its own K slots.
- The worker renews its lease while it works and releases it when the endpoint has nothing
  left. A worker that dies leaves its requests `running`: the next holder of the lease puts them
  back in the queue. On a graceful stop they are put back and the leases released at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select

from freshet.catalog import PreviewRequest, UnitOfWork
from freshet.catalog import previews as status
from freshet.catalog.masks import MaskError, compile_masks
from freshet.catalog.models import Lease
from freshet.catalog.secrets import SecretError
from freshet.contracts import PreviewSampled
from freshet.kit import metrics
from freshet.kit.redaction import describe_error
from freshet.previewer.handlers import (
    PreviewerDeps,
    audit_request,
    finish_metrics_and_log,
    is_opted_out,
)
from freshet.previewer.limits import EndpointLimiter
from freshet.previewer.sampling import Sampled, SampleFailed, Sampler, Target

log = structlog.get_logger("freshet.previewer")

LEASE_PREFIX = "preview-endpoint::"
CLAIM_DEBOUNCE_S = 0.02


def lease_name(endpoint_id: uuid.UUID) -> str:
    return f"{LEASE_PREFIX}{endpoint_id}"


@dataclass(frozen=True)
class DispatchConfig:
    concurrency: int = 2
    rate_per_s: float = 5.0
    backlog: int = 32
    max_endpoints: int = 64
    lease_ttl_s: float = 15.0
    poll_interval_s: float = 0.5


class _Refused(Exception):
    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


@dataclass
class Dispatcher:
    deps: PreviewerDeps
    sampler: Sampler
    holder: str
    config: DispatchConfig = field(default_factory=DispatchConfig)
    workers: dict[uuid.UUID, EndpointWorker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def lease_ttl(self) -> timedelta:
        return timedelta(seconds=self.config.lease_ttl_s)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="preview-dispatcher")

    async def stop(self) -> None:
        """Stop sampling; put our running requests back and release our endpoint leases."""
        self._stopping = True
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        workers = list(self.workers.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*(w.task for w in workers if w.task), return_exceptions=True)
        if workers:
            await self._hand_back([w.endpoint_id for w in workers])

    def notify(self, endpoint_id: uuid.UUID) -> None:
        """A request of the endpoint was queued in this process: start or wake its worker."""
        worker = self.workers.get(endpoint_id)
        if worker is not None and not worker.finishing:
            worker.wake.set()
        else:
            self._wake.set()

    # --- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before the poll: a wake during it is not lost
            try:
                await self.poll()
            except Exception as exc:
                log.warning("preview dispatch failed", error=describe_error(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval_s)

    async def poll(self) -> None:
        """Start a worker for every endpoint with due requests that no live lease covers."""
        now = self.deps.clock.now()
        async with UnitOfWork(self.deps.db, read_only=True) as uow:
            due = await uow.previews.due_endpoints(now)
            held = await _live_leases(uow, now)
        for endpoint_id in due:
            worker = self.workers.get(endpoint_id)
            if worker is not None:
                worker.wake.set()
                continue
            if endpoint_id in held and held[endpoint_id] != self.holder:
                continue
            if len(self.workers) >= self.config.max_endpoints:
                break
            if await self._acquire(endpoint_id):
                self._spawn(endpoint_id)

    async def _acquire(self, endpoint_id: uuid.UUID) -> bool:
        async with UnitOfWork(self.deps.db) as uow:
            held = await uow.leases.try_acquire(
                lease_name(endpoint_id), self.holder, self.lease_ttl
            )
            await uow.commit()
        return held

    def _spawn(self, endpoint_id: uuid.UUID) -> None:
        worker = EndpointWorker(self, endpoint_id)
        self.workers[endpoint_id] = worker
        metrics.PREVIEW_ENDPOINTS_HELD.set(len(self.workers))
        worker.task = asyncio.create_task(worker.run(), name=f"previews-{endpoint_id}")

        def done(_: asyncio.Task[None]) -> None:
            if self.workers.get(endpoint_id) is worker:
                del self.workers[endpoint_id]
            metrics.PREVIEW_ENDPOINTS_HELD.set(len(self.workers))
            # A request may have been queued while the worker was finishing: look again now.
            self._wake.set()

        worker.task.add_done_callback(done)

    async def _hand_back(self, endpoint_ids: list[uuid.UUID]) -> None:
        try:
            async with UnitOfWork(self.deps.db) as uow:
                for endpoint_id in endpoint_ids:
                    await uow.previews.requeue_held(endpoint_id, self.holder)
                    await uow.leases.release(lease_name(endpoint_id), self.holder)
                await uow.commit()
        except Exception as exc:
            # The leases lapse on their own; the next holder requeues the requests then.
            log.warning("could not hand back preview work", error=describe_error(exc))


async def _live_leases(uow: UnitOfWork, now: Any) -> dict[uuid.UUID, str]:
    result = await uow.session.execute(
        select(Lease.name, Lease.holder).where(
            Lease.name.like(f"{LEASE_PREFIX}%"), Lease.expires_at > now
        )
    )
    held: dict[uuid.UUID, str] = {}
    for name, holder in result.all():
        with contextlib.suppress(ValueError):
            held[uuid.UUID(str(name)[len(LEASE_PREFIX) :])] = str(holder)
    return held


class EndpointWorker:
    """Works on one endpoint's requests while this process holds its preview lease."""

    def __init__(self, dispatcher: Dispatcher, endpoint_id: uuid.UUID) -> None:
        self.dispatcher = dispatcher
        self.deps = dispatcher.deps
        self.endpoint_id = endpoint_id
        config = dispatcher.config
        self.limiter = EndpointLimiter(config.concurrency, config.rate_per_s)
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None
        self.finishing = False

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.dispatcher.config
        holder = self.dispatcher.holder
        with structlog.contextvars.bound_contextvars(endpoint_id=str(self.endpoint_id)):
            try:
                async with UnitOfWork(self.deps.db) as uow:
                    orphans = await uow.previews.requeue_orphans(self.endpoint_id, holder)
                    await uow.commit()
                if orphans:
                    log.info("preview requests of a previous worker requeued", requests=orphans)
                renewed_at = loop.time()
                # Whether the last claim emptied the queue: then a finished task is no reason
                # to look again (a claim is a write); a wake-up or the poll tick is.
                drained = False
                while True:
                    if loop.time() - renewed_at >= config.lease_ttl_s / 3:
                        if not await self._renew():
                            log.warning("preview lease lost; another previewer took over")
                            return
                        renewed_at = loop.time()
                    room = config.backlog - len(self.tasks)
                    if room > 0 and (not drained or self.wake.is_set()):
                        self.wake.clear()
                        claimed = await self._claim(room)
                        drained = len(claimed) < room
                        for request in claimed:
                            self._start(request)
                    if not self.tasks and drained and not self.wake.is_set():
                        self.finishing = True
                        await self._release()
                        return
                    if not await self._wait(min(config.poll_interval_s, config.lease_ttl_s / 3)):
                        drained = False  # the poll tick: requests queued by other processes
            finally:
                for task in self.tasks:
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _wait(self, timeout: float) -> bool:
        """Until woken, a task ends, or `timeout`; False on the timeout."""
        if self.wake.is_set():
            return True
        waiter = asyncio.create_task(self.wake.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, *self.tasks}, timeout=timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            waiter.cancel()
        if waiter in done:
            # Requests come in bursts (a fan-out): let a few more arrive, claim them at once.
            await asyncio.sleep(CLAIM_DEBOUNCE_S)
        return bool(done)

    async def _renew(self) -> bool:
        try:
            async with UnitOfWork(self.deps.db) as uow:
                ours = await uow.leases.try_acquire(
                    lease_name(self.endpoint_id), self.dispatcher.holder, self.dispatcher.lease_ttl
                )
                await uow.commit()
            return ours
        except Exception as exc:
            # A database hiccup: keep working, the lease has time to spare.
            log.warning("preview lease renewal failed", error=describe_error(exc))
            return True

    async def _release(self) -> None:
        async with UnitOfWork(self.deps.db) as uow:
            await uow.leases.release(lease_name(self.endpoint_id), self.dispatcher.holder)
            await uow.commit()

    async def _claim(self, room: int) -> list[PreviewRequest]:
        if room <= 0:
            return []
        now = self.deps.clock.now()
        async with UnitOfWork(self.deps.db) as uow:
            claimed = await uow.previews.claim(
                self.endpoint_id, self.dispatcher.holder, limit=room, now=now
            )
            for request in claimed:
                audit_request(uow, self.deps, request, "started", _why(request))
            await uow.commit()
        return claimed

    def _start(self, request: PreviewRequest) -> None:
        task = asyncio.create_task(self._execute(request), name=f"preview-{request.id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- one request ---------------------------------------------------------------------

    async def _execute(self, request: PreviewRequest) -> None:
        with structlog.contextvars.bound_contextvars(
            request_id=str(request.id),
            dataset_id=str(request.dataset_id),
            correlation_id=request.correlation_id,
        ):
            try:
                target = await self._target(request)
                sampled = await self.dispatcher.sampler.sample(target, self.limiter)
            except _Refused as exc:
                await self._end(request, exc.outcome, exc.reason)
            except SampleFailed as exc:
                await self._end(request, status.FAILED, exc.reason, attempts=exc.attempts)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("preview request stopped by an unexpected error", exc_info=exc)
                await self._end(request, status.FAILED, describe_error(exc))
            else:
                await self._sampled(request, sampled)

    async def _target(self, request: PreviewRequest) -> Target:
        async with UnitOfWork(self.deps.db, read_only=True) as uow:
            dataset = await uow.datasets.get(request.dataset_id)
            endpoint = await uow.endpoints.get(request.endpoint_id)
        if dataset is None or endpoint is None or dataset.removed_at is not None:
            raise _Refused(status.DROPPED, "the dataset is gone")
        if endpoint.preview_policy == "disabled":
            raise _Refused(status.REFUSED, "previews are disabled for the endpoint")
        if is_opted_out(dataset):
            raise _Refused(status.REFUSED, "the dataset is opted out of previews")
        try:
            masks = compile_masks(endpoint.preview_masks)
        except MaskError:
            # Fail closed: sampling without the masks the endpoint asked for could leak.
            raise _Refused(
                status.REFUSED, "the endpoint's preview masks are invalid; fix them"
            ) from None
        try:
            secrets = self.deps.secrets.decrypt(endpoint.secret_ciphertext)
        except SecretError:
            raise SampleFailed(
                "the endpoint's secrets cannot be decrypted with the configured keys", 0
            ) from None
        return Target(
            request_id=request.id,
            dataset_id=dataset.id,
            endpoint_id=endpoint.id,
            schema_name=dataset.schema_name,
            table=dataset.name,
            kind=endpoint.kind,
            config=dict(endpoint.config),
            secrets=secrets,
            masks=masks,
        )

    async def _sampled(self, request: PreviewRequest, sampled: Sampled) -> None:
        now = self.deps.clock.now()
        bounded = sampled.bounded
        async with UnitOfWork(self.deps.db) as uow:
            if not await uow.previews.finish(
                request.id,
                self.dispatcher.holder,
                status.SAMPLED,
                attempts=sampled.attempts,
                sampled_at=now,
            ):
                log.info("preview request no longer ours; sample discarded")
                return
            uow.outbox.stage(
                PreviewSampled(
                    dataset_id=request.dataset_id,
                    endpoint_id=request.endpoint_id,
                    columns=bounded.columns,
                    rows=bounded.rows,
                    sampled_at=now,
                    sampled_by=self.deps.sampled_by,
                    refresh_source=request.refresh_source,
                    truncated=bounded.truncated,
                    row_count=len(bounded.rows),
                    run_id=request.run_id,
                    request_id=request.id,
                    truncation=bounded.truncation,
                    masked_columns=sampled.masked_columns or None,
                ),
                source=self.deps.source,
                correlation_id=request.correlation_id,
            )
            audit_request(
                uow,
                self.deps,
                request,
                "sampled",
                None,
                rows=len(bounded.rows),
                attempts=sampled.attempts,
                truncated=bounded.truncated,
                maskedColumns=sampled.masked_columns,
            )
            await uow.commit()
        finish_metrics_and_log(
            request.refresh_source, "sampled", None, dataset_id=request.dataset_id
        )

    async def _end(
        self, request: PreviewRequest, outcome: str, reason: str, *, attempts: int = 0
    ) -> None:
        """Finish a request that produced no sample; a failure is also kept on the dataset."""
        now = self.deps.clock.now()
        async with UnitOfWork(self.deps.db) as uow:
            if not await uow.previews.finish(
                request.id, self.dispatcher.holder, outcome, reason=reason, attempts=attempts
            ):
                return
            if outcome == status.FAILED:
                dataset = await uow.datasets.get(request.dataset_id, for_update=True)
                if dataset is not None:
                    dataset.payload = {
                        **dataset.payload,
                        "previewError": {
                            "at": now.isoformat(),
                            "reason": reason,
                            "attempts": attempts,
                            "refreshSource": request.refresh_source,
                            "requestId": str(request.id),
                        },
                    }
            audit_request(uow, self.deps, request, outcome, reason, attempts=attempts)
            await uow.commit()
        finish_metrics_and_log(
            request.refresh_source, outcome, reason, dataset_id=request.dataset_id
        )


def _why(request: PreviewRequest) -> str:
    if request.refresh_source == "collection":
        return f"collection run {request.run_id} succeeded"
    if request.refresh_source == "manual":
        return f"asked for by {request.requested_by or 'an operator'}"
    if request.refresh_source == "schedule":
        return "the preview was stale or missing (sweep)"
    return "requested from outside"
