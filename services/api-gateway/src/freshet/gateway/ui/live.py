"""Runs and refreshes that change while a page is open, pushed to the browser as server-sent
events.

One hub per kind and gateway process (`LiveFeed`): `LiveRuns` (`/ui/live/runs`) and
`LiveRefreshes` (`/ui/live/refreshes`). While at least one page listens to a hub, it reads
what is active from the catalog every `FRESHET_UI_LIVE_POLL_S` (one indexed query per process
and kind, whatever the number of pages):

- runs: the active (QUEUED and RUNNING) runs. This shows QUEUED -> RUNNING, which has no
  event, and finishes that another gateway replica consumed. Runs also have an event feed:
  the gateway consumes `freshet.run.completed` (group `freshet-gateway.live`, through the
  kit's consumer wrapper), so a finished run reaches open pages within milliseconds.
- refreshes: the open (queued and in progress) refresh jobs and their tables counted by
  status; a table starting, ending or failing changes the job's counts. No event feed: the
  refresher publishes per-table events, but the poll sees every change within the interval,
  and a consumer group more would cost more than the second it saves.

A page connects its stream a moment after it was rendered, and reconnects after a network
blip; what the hub announced in between would be lost to it. So the page names when the server
began reading it (`?since=`, epoch seconds), and a new stream first gets the changes announced
after that (the newest per item, at most `REPLAY_S` seconds back): a run that started or ended
between render and connect still reaches the page, and what the page already shows is not
sent again.

The stream carries only what changed (ids, status, counts). The page then fetches what it
shows again (`/ui/runs/{id}/row`, `/ui/refreshes/{id}/card`, …), through the same role checks
as any page, so an event never carries more than its listener may read. A change announced
twice (event and poll) costs one more fetch, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any, ClassVar, Generic, Protocol, TypeVar

import structlog
from fastapi import Query, Request, Response
from fastapi.responses import StreamingResponse
from prometheus_client import Counter, Gauge

from freshet.catalog import CollectionRun, Database, UnitOfWork
from freshet.catalog.models import ACTIVE_STATUSES, RefreshJob
from freshet.catalog.refresh_listing import JobFilter, find_jobs, progress_of
from freshet.catalog.refreshes import Progress
from freshet.contracts import Envelope, RunCompleted
from freshet.gateway.refresh_schemas import seed_status
from freshet.gateway.ui.routing import ui_router
from freshet.gateway.ui.session import Viewer

log = structlog.get_logger("freshet.gateway.ui")

GROUP = "freshet-gateway.live"
HEARTBEAT_S = 15.0
QUEUE_SIZE = 256
REMEMBERED = 10_000
# How far back a new stream is caught up: longer than a page takes to render and connect, or
# to reconnect after a blip, on a loaded machine.
REPLAY_S = 60.0
WATCH_LIMIT = 1_000

STREAMS = Gauge(
    "freshet_ui_live_streams", "Open live-update streams of the web UI, by kind.", ["kind"]
)
CHANGES = Counter(
    "freshet_ui_live_changes_total",
    "Changes pushed to web UI pages, by kind (run, refresh) and what noticed them (event, poll).",
    ["kind", "source"],
)

router = ui_router()
# When the page was read (epoch seconds); a page that gives none is caught up with nothing.
Since = Annotated[float | None, Query(ge=0, le=1e11)]


class Change(Protocol):
    """A dataclass (its fields are the event's data) that says what it is about."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def key(self) -> str:
        """What changed (one run, one refresh)."""

    @property
    def signature(self) -> str:
        """Its state: announced again only when this differs from the last one announced."""


@dataclass(frozen=True)
class RunChange:
    run_id: str
    collection_id: str | None
    endpoint_id: str
    status: str

    @property
    def key(self) -> str:
        return self.run_id

    @property
    def signature(self) -> str:
        return self.status

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


@dataclass(frozen=True)
class RefreshChange:
    refresh_id: str
    endpoint_id: str
    # The seed's job status (in_progress, completed, failed) and the tables counted by state.
    status: str
    tables_total: int
    tables_running: int
    tables_done: int
    tables_failed: int

    @property
    def key(self) -> str:
        return self.refresh_id

    @property
    def signature(self) -> str:
        return (
            f"{self.status}:{self.tables_total}:{self.tables_running}:"
            f"{self.tables_done}:{self.tables_failed}"
        )

    @classmethod
    def of_job(cls, job: RefreshJob, progress: Progress) -> RefreshChange:
        return cls(
            str(job.id),
            str(job.endpoint_id),
            seed_status(job.status),
            progress.total,
            progress.running,
            progress.completed,
            progress.failed,
        )


C = TypeVar("C", bound=Change)


class LiveFeed(ABC, Generic[C]):
    """Fans changes of one kind out to every open stream of this process, and polls the
    catalog for them while at least one stream is open."""

    kind: ClassVar[str]

    def __init__(self, db: Database, poll_s: float, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.poll_s = poll_s
        self._clock = clock
        self._queues: set[asyncio.Queue[C | None]] = set()
        # The state last announced per item, so the event and the poll announce a change once.
        self._announced: OrderedDict[str, str] = OrderedDict()
        # The newest change per item with when it was announced, oldest first: what a new
        # stream is caught up with.
        self._recent: OrderedDict[str, tuple[float, C]] = OrderedDict()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def listeners(self) -> int:
        return len(self._queues)

    def publish(self, change: C, source: str) -> None:
        if self._announced.get(change.key) == change.signature:
            return
        self._announced[change.key] = change.signature
        self._announced.move_to_end(change.key)
        while len(self._announced) > REMEMBERED:
            self._announced.popitem(last=False)
        now = self._clock()
        self._recent[change.key] = (now, change)
        self._recent.move_to_end(change.key)
        self._forget_before(now - REPLAY_S)
        CHANGES.labels(self.kind, source).inc()
        for queue in list(self._queues):
            if queue.full():
                # A listener this far behind reloads its rows anyway: drop its oldest change.
                queue.get_nowait()
            queue.put_nowait(change)

    @contextlib.asynccontextmanager
    async def listen(self, since: float | None = None) -> AsyncIterator[asyncio.Queue[C | None]]:
        """A stream of changes; with `since` (epoch seconds, when its page was read), first
        the changes announced after it."""
        queue: asyncio.Queue[C | None] = asyncio.Queue(QUEUE_SIZE)
        if self._closed:
            queue.put_nowait(None)
        elif since is not None:
            self._forget_before(self._clock() - REPLAY_S)
            missed = [c for at, c in self._recent.values() if at >= since]
            for change in missed[-QUEUE_SIZE:]:
                queue.put_nowait(change)
        self._queues.add(queue)
        STREAMS.labels(self.kind).inc()
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name=f"ui live {self.kind}")
        try:
            yield queue
        finally:
            self._queues.discard(queue)
            STREAMS.labels(self.kind).dec()
            if not self._queues and self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None

    def _forget_before(self, cutoff: float) -> None:
        while self._recent:
            announced_at, _ = next(iter(self._recent.values()))
            if announced_at >= cutoff:
                return
            self._recent.popitem(last=False)

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
                log.warning("live poll failed", kind=self.kind, error=type(exc).__name__)
            await asyncio.sleep(self.poll_s)

    @abstractmethod
    async def _poll(self, previous: dict[uuid.UUID, str]) -> dict[uuid.UUID, str]:
        """Publish what changed since `previous` (the active items' signatures); the active
        items' signatures now."""

    def format(self, change: C) -> str:
        return f"event: {self.kind}\ndata: {json.dumps(asdict(change))}\n\n"


class LiveRuns(LiveFeed[RunChange]):
    kind = "run"

    async def on_run_completed(self, env: Envelope) -> None:
        """The consumer's handler: nothing to store, so redelivery is harmless."""
        assert isinstance(env.data, RunCompleted)
        self.publish(RunChange.of_event(env.data), "event")

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


class LiveRefreshes(LiveFeed[RefreshChange]):
    kind = "refresh"

    async def _poll(self, previous: dict[uuid.UUID, str]) -> dict[uuid.UUID, str]:
        async with UnitOfWork(self.db, read_only=True) as uow:
            active = await find_jobs(uow.session, JobFilter(open=True), first=WATCH_LIMIT)
            ended: list[RefreshJob] = []
            for job_id in previous.keys() - {job.id for job in active}:
                job = await uow.refreshes.get(job_id)
                if job is not None:
                    ended.append(job)
            progress = await progress_of(uow.session, [job.id for job in [*active, *ended]])
        still_open = {job.id for job in active}
        current: dict[uuid.UUID, str] = {}
        for job in [*active, *ended]:
            change = RefreshChange.of_job(job, progress[job.id])
            if job.id in still_open:
                current[job.id] = change.signature
            if previous.get(job.id) != change.signature:
                self.publish(change, "poll")
        return current


def _stream(feed: LiveFeed[Any], since: float | None) -> Response:
    async def events() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        async with feed.listen(since) as queue:
            while True:
                try:
                    change = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if change is None:
                    return
                yield feed.format(change)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@router.get("/live/runs")
async def run_stream(request: Request, _user: Viewer, since: Since = None) -> Response:
    feed: LiveRuns = request.app.state.live_runs
    return _stream(feed, since)


@router.get("/live/refreshes")
async def refresh_stream(request: Request, _user: Viewer, since: Since = None) -> Response:
    feed: LiveRefreshes = request.app.state.live_refreshes
    return _stream(feed, since)
