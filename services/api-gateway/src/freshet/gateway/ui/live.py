"""Runs that change while a page is open, pushed to the browser as server-sent events.

Two feeds, one in-process hub (`LiveRuns`) per gateway process:

- **RunCompleted**: the gateway consumes `freshet.run.completed` (group `freshet-gateway.live`,
  through the kit's consumer wrapper). A finished run reaches open pages within milliseconds
  of the collector's commit.
- **The catalog**: while at least one page listens, the hub reads the active (QUEUED and
  RUNNING) runs every `FRESHET_UI_LIVE_POLL_S` (one indexed query per process, whatever the
  number of pages). This shows QUEUED → RUNNING, which has no event, and finishes that another
  gateway replica consumed: replicas share the consumer group, so each sees only some
  partitions' events.

The stream carries only what changed (run, collection, endpoint, status). The page then
fetches the rows it shows again (`/ui/runs/{id}/row`, `/ui/endpoints/{id}/row`), through the
same role checks as any page, so an event never carries more than its listener may read.
A change announced twice (event and poll) costs one more fetch, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request, Response
from fastapi.responses import StreamingResponse
from prometheus_client import Counter, Gauge

from freshet.catalog import CollectionRun, Database, UnitOfWork
from freshet.catalog.models import ACTIVE_STATUSES
from freshet.contracts import Envelope, RunCompleted
from freshet.gateway.auth import Role
from freshet.gateway.ui.routing import ui_router
from freshet.gateway.ui.session import UiUser, user_with

log = structlog.get_logger("freshet.gateway.ui")

GROUP = "freshet-gateway.live"
HEARTBEAT_S = 15.0
QUEUE_SIZE = 256
REMEMBERED = 10_000
WATCH_LIMIT = 1_000

STREAMS = Gauge("freshet_ui_live_streams", "Open live-update streams of the web UI.")
CHANGES = Counter(
    "freshet_ui_live_changes_total",
    "Run changes pushed to web UI pages, by what noticed them (event, poll).",
    ["source"],
)

router = ui_router()


@dataclass(frozen=True)
class RunChange:
    run_id: str
    collection_id: str | None
    endpoint_id: str
    status: str

    @classmethod
    def of_run(cls, run: CollectionRun) -> RunChange:
        return cls(
            str(run.id),
            str(run.collection_id) if run.collection_id else None,
            str(run.endpoint_id),
            run.status,
        )

    @classmethod
    def of_event(cls, event: RunCompleted) -> RunChange:
        return cls(
            str(event.run_id), str(event.collection_id), str(event.endpoint_id), event.status
        )


class LiveRuns:
    """Fans run changes out to every open stream of this process."""

    def __init__(self, db: Database, poll_s: float) -> None:
        self.db = db
        self.poll_s = poll_s
        self._queues: set[asyncio.Queue[RunChange | None]] = set()
        # The status last announced per run, so the event and the poll announce a change once.
        self._announced: OrderedDict[str, str] = OrderedDict()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def listeners(self) -> int:
        return len(self._queues)

    def publish(self, change: RunChange, source: str) -> None:
        if self._announced.get(change.run_id) == change.status:
            return
        self._announced[change.run_id] = change.status
        self._announced.move_to_end(change.run_id)
        while len(self._announced) > REMEMBERED:
            self._announced.popitem(last=False)
        CHANGES.labels(source).inc()
        for queue in list(self._queues):
            if queue.full():
                # A listener this far behind reloads its rows anyway: drop its oldest change.
                queue.get_nowait()
            queue.put_nowait(change)

    async def on_run_completed(self, env: Envelope) -> None:
        """The consumer's handler: nothing to store, so redelivery is harmless."""
        assert isinstance(env.data, RunCompleted)
        self.publish(RunChange.of_event(env.data), "event")

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[RunChange | None]]:
        queue: asyncio.Queue[RunChange | None] = asyncio.Queue(QUEUE_SIZE)
        if self._closed:
            queue.put_nowait(None)
        self._queues.add(queue)
        STREAMS.inc()
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="ui live runs")
        try:
            yield queue
        finally:
            self._queues.discard(queue)
            STREAMS.dec()
            if not self._queues and self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None

    def close(self) -> None:
        """End every stream (the gateway is stopping); browsers reconnect elsewhere."""
        self._closed = True
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    async def _watch(self) -> None:
        previous: dict[uuid.UUID, str] = {}
        while self._queues:
            try:
                previous = await self._poll(previous)
            except Exception as exc:
                log.warning("live runs poll failed", error=type(exc).__name__)
            await asyncio.sleep(self.poll_s)

    async def _poll(self, previous: dict[uuid.UUID, str]) -> dict[uuid.UUID, str]:
        async with UnitOfWork(self.db, read_only=True) as uow:
            active = await uow.runs.find(statuses=ACTIVE_STATUSES, limit=WATCH_LIMIT)
            current = {run.id: run.status for run in active}
            for run in active:
                if previous.get(run.id) != run.status:
                    self.publish(RunChange.of_run(run), "poll")
            for run_id in previous.keys() - current.keys():
                finished = await uow.runs.get(run_id)
                if finished is not None:
                    self.publish(RunChange.of_run(finished), "poll")
        return current


def _format(change: RunChange) -> str:
    return f"event: run\ndata: {json.dumps(asdict(change))}\n\n"


@router.get("/live/runs")
async def stream(
    request: Request, _user: Annotated[UiUser, Depends(user_with(Role.viewer))]
) -> Response:
    hub: LiveRuns = request.app.state.live_runs

    async def events() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        async with hub.listen() as queue:
            while True:
                try:
                    change = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if change is None:
                    return
                yield _format(change)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
