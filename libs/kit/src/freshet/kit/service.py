"""What every Freshet service process is made of, started and stopped in one place.

    runtime = ServiceRuntime("collector", settings)
    runtime.subscribe(topic_for(CollectionRequested), "freshet-collector", handler)
    app = runtime.app()          # FastAPI: /health, /ready, /metrics (+ the service's routes)
    serve(app, settings)         # uvicorn; SIGINT/SIGTERM shut down gracefully

Start order: database check, broker producer, outbox relay, consumers. Stop order is the
reverse, and in-flight handlers get `graceful_timeout_s` to finish and commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import structlog
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from freshet.catalog import Database, redact
from freshet.contracts import Topic
from freshet.kit import audit
from freshet.kit.broker import make_producer
from freshet.kit.consumer import Consumer, Handler, Subscription
from freshet.kit.logging import configure_logging
from freshet.kit.redaction import describe_error
from freshet.kit.relay import OutboxRelay, holder_id
from freshet.kit.settings import Settings

READY_TIMEOUT_S = 3.0
log = structlog.get_logger("freshet.service")

Hook = Callable[[], Awaitable[None]]


class ServiceRuntime:
    def __init__(self, name: str, settings: Settings, *, run_relay: bool = True) -> None:
        self.name = name
        self.settings = settings
        self.source = f"/freshet/{name}"
        self.holder = holder_id(name)
        self.db = Database(settings.database_url)
        audit.install(self.db)
        self.run_relay = run_relay
        # aiokafka clients must be made inside the running event loop: see start().
        self._producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self.subscriptions: list[Subscription] = []
        self.consumers: list[Consumer] = []
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self._on_exit_requested: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = False

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._producer

    def subscribe(
        self, topic: Topic, group: str, handler: Handler, *, fetch_max_wait_ms: int | None = None
    ) -> None:
        self.subscriptions.append(Subscription(topic, group, handler, fetch_max_wait_ms))

    def on_start(self, hook: Hook) -> None:
        self._on_start.append(hook)

    def on_stop(self, hook: Hook) -> None:
        self._on_stop.append(hook)

    def on_exit_requested(self, hook: Callable[[], None]) -> None:
        """Run `hook` in the event loop as soon as a stop is asked for (SIGTERM, Ctrl-C),
        before the server waits for open connections: for responses that never end by
        themselves (server-sent events), which would otherwise hold the stop up."""
        self._on_exit_requested.append(hook)

    def request_exit(self) -> None:
        """Called from a signal handler: hand the hooks to the loop, thread-safely."""
        if self._loop is None:
            return
        for hook in self._on_exit_requested:
            self._loop.call_soon_threadsafe(hook)

    async def start(self) -> None:
        configure_logging(self.name, self.settings.log_level, self.settings.log_format)
        self._loop = asyncio.get_running_loop()
        log.info(
            "starting",
            database=redact(str(self.db.url)),
            kafka=self.settings.kafka_bootstrap,
            subscriptions=[f"{s.topic.name}/{s.group}" for s in self.subscriptions],
        )
        await self.db.ping()
        self._producer = make_producer(self.settings, client_id=self.holder)
        await self._producer.start()
        if self.run_relay:
            self.relay = OutboxRelay(self.settings, self.db, self._producer, self.holder)
            await self.relay.start()
        consumers = [
            Consumer(self.settings, sub, self.producer, client_id=self.holder)
            for sub in self.subscriptions
        ]
        self.consumers.extend(consumers)
        # Each start waits for its group's first assignment (about 5 s on the embedded broker):
        # all at once, so a service with three subscriptions is not ready three times later.
        await asyncio.gather(*(c.start() for c in consumers))
        for hook in self._on_start:
            await hook()
        self.started = True
        log.info("started")

    async def stop(self) -> None:
        log.info("stopping")
        self.started = False
        for hook in reversed(self._on_stop):
            await hook()
        await asyncio.gather(*(c.stop() for c in self.consumers), return_exceptions=True)
        if self.relay is not None:
            await self.relay.stop()
        if self._producer is not None:
            await self._producer.stop()
        await self.db.dispose()
        log.info("stopped")

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}

        async def check(name: str, probe: Awaitable[Any]) -> None:
            try:
                await asyncio.wait_for(probe, READY_TIMEOUT_S)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = describe_error(exc, limit=200)

        await check("database", self.db.ping())
        if self._producer is None:
            checks["broker"] = "not started"
        else:
            await check("broker", self._producer.client.fetch_all_metadata())
        checks["consumers"] = (
            "ok" if all(c.running for c in self.consumers) and self.started else "not running"
        )
        if self.run_relay:
            checks["outbox_relay"] = (
                "ok" if self.relay is not None and self.relay.running else "not running"
            )
        return checks

    def app(self, **fastapi_kwargs: Any) -> FastAPI:
        runtime = self

        @asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await runtime.start()
            try:
                yield
            finally:
                await runtime.stop()

        app = FastAPI(title=f"freshet-{self.name}", lifespan=lifespan, **fastapi_kwargs)
        app.state.runtime = self

        @app.get("/health", tags=["operations"])
        async def health() -> dict[str, str | int]:
            """Liveness: the process answers."""
            return {"status": "ok", "service": runtime.name, "pid": os.getpid()}

        @app.get("/ready", tags=["operations"])
        async def ready() -> JSONResponse:
            """Readiness: the catalog database and the broker answer, consumers run."""
            checks = await runtime.readiness()
            ok = all(v == "ok" for v in checks.values())
            return JSONResponse(
                {
                    "status": "ready" if ok else "not_ready",
                    "service": runtime.name,
                    "pid": os.getpid(),
                    "checks": checks,
                },
                status_code=200 if ok else 503,
            )

        @app.get("/metrics", tags=["operations"], include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

        return app


class _Server(uvicorn.Server):
    """Tells the app's runtime when a stop is asked for (see `on_exit_requested`), and ticks
    once a second instead of uvicorn's ten times: its tick only refreshes the Date header
    (whole seconds) and looks for a stop, which now also wakes it at once. Ten wake-ups a
    second were a tenth of what an idle service costs."""

    tick_s = 1.0

    def __init__(self, config: uvicorn.Config, runtime: ServiceRuntime | None) -> None:
        super().__init__(config)
        self.runtime = runtime
        self._exit_asked: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._exit_asked is not None:
            # A signal handler may run in the middle of the loop's own work: only the
            # thread-safe call may touch it.
            self._loop.call_soon_threadsafe(self._exit_asked.set)
        if self.runtime is not None:
            self.runtime.request_exit()

    async def main_loop(self) -> None:
        self._loop, self._exit_asked = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            # uvicorn refreshes the Date header when counter % 10 == 0: every tick, here.
            counter = (counter + 10) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_asked.wait(), timeout=self.tick_s)


def serve(app: FastAPI, settings: Settings) -> None:
    """Run the app until SIGINT/SIGTERM; uvicorn then runs the lifespan shutdown."""
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
        lifespan="on",
    )
    _Server(config, getattr(app.state, "runtime", None)).run()
