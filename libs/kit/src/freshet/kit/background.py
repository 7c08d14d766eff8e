"""Leased work executed off the consumer path, each item in a task of its own.

The collector's runs and the refresher's jobs share this shape: a consumer handler claims an
item (a lease in the catalog) and hands it here, so its offset commits at once; a watcher
renews the lease while the item executes and cancels the work once the item is no longer
ours; a sweeper takes over items whose lease lapsed (their process died); a graceful stop
cancels what runs and releases the leases so another process resumes at once. At most
`max_concurrent` items execute per process; claiming more waits (backpressure).

Subclasses say how to claim, execute, watch, sweep and release (`Key` names an item).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

from freshet.kit.redaction import describe_error

log = structlog.get_logger("freshet.background")

Key = TypeVar("Key")
Held = TypeVar("Held")


class BackgroundWork(ABC, Generic[Key, Held]):
    def __init__(self, *, max_concurrent: int, name: str) -> None:
        self.name = name
        self.slots = asyncio.Semaphore(max_concurrent)
        self.tasks: dict[Key, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False

    # --- what a subclass provides --------------------------------------------------------

    @abstractmethod
    def key(self, held: Held) -> Key: ...

    @abstractmethod
    async def execute(self, held: Held) -> None:
        """The work; cancelled when `watch` returns False or the process stops."""

    @abstractmethod
    async def still_ours(self, held: Held) -> bool:
        """Called every `watch_interval_s` while the work runs: renew the lease or check the
        item; False cancels the work. Exceptions are logged and the work goes on."""

    @abstractmethod
    async def sweep(self) -> int:
        """Take over items whose lease lapsed; how many were taken."""

    @abstractmethod
    async def release(self, keys: list[Key]) -> None:
        """Let the leases of these items lapse now (a graceful stop)."""

    watch_interval_s: float = 1.0
    sweep_interval_s: float = 15.0

    def on_spawn(self, held: Held) -> None:
        """Hook (metrics) when an item starts executing."""

    def on_done(self, held: Held) -> None:
        """Hook when it ended, however."""

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name=f"{self.name}-sweeper")

    async def stop(self) -> None:
        """Cancel running work and release its leases, so another process resumes it now."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        held = list(self.tasks)
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if held:
            try:
                await self.release(held)
            except Exception as exc:
                # The leases then lapse on their own; takeover just waits for that.
                log.warning("could not release leases", work=self.name, error=describe_error(exc))

    async def wait_idle(self) -> None:
        """For tests: until every item this process started has ended."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks.values()), return_exceptions=True)

    # --- entry -------------------------------------------------------------------------------

    async def submit(self, claim: Callable[[], Awaitable[Held | None]]) -> Key | None:
        """Wait for a free slot, claim an item, and execute it in the background."""
        await self.slots.acquire()
        try:
            held = await claim()
        except BaseException:
            self.slots.release()
            raise
        if held is None:
            self.slots.release()
            return None
        key = self.key(held)
        if key in self.tasks:
            # Claimed twice at once (a consumer's request and a sweep, say): the lease is this
            # process's either way, and a second execution would do the work twice.
            self.slots.release()
            return key
        task = asyncio.create_task(self._run(held), name=f"{self.name}-{key}")
        self.tasks[key] = task
        self.on_spawn(held)

        def done(_: asyncio.Task[None]) -> None:
            self.tasks.pop(key, None)
            self.on_done(held)
            self.slots.release()

        task.add_done_callback(done)
        return key

    async def _run(self, held: Held) -> None:
        work = asyncio.create_task(self.execute(held))
        watch = asyncio.create_task(self._watch(held, work))
        try:
            await work
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is None or not me.cancelling():
                # The watcher cancelled the work: the item is no longer ours.
                log.info(
                    f"{self.name} stopped: it was cancelled, deleted or taken over",
                    **{f"{self.name}_id": str(self.key(held))},
                )
                return
            # This process is stopping; `stop` releases the lease.
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            raise
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    async def _watch(self, held: Held, work: asyncio.Task[None]) -> None:
        while not work.done():
            await asyncio.sleep(self.watch_interval_s)
            try:
                ours = await self.still_ours(held)
            except Exception as exc:
                # A database hiccup: keep working; the lease has time to spare.
                log.warning("lease check failed", work=self.name, error=describe_error(exc))
                continue
            if not ours:
                work.cancel()
                return

    async def _sweep_forever(self) -> None:
        while not self._stopping:
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("sweep failed", work=self.name, error=describe_error(exc))
            await asyncio.sleep(self.sweep_interval_s)
