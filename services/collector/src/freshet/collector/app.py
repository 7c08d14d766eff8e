"""The collector service: consumes CollectionRequested and runs collections."""

from __future__ import annotations

from fastapi import FastAPI

from freshet.collector.handlers import CollectorDeps, handle_collection_requested
from freshet.connectors import connector_factory
from freshet.contracts import CollectionRequested, Envelope, topic_for
from freshet.kit.secrets import secret_box
from freshet.kit.service import ServiceRuntime
from freshet.kit.settings import Settings

GROUP = "freshet-collector"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime("collector", settings)
    deps = CollectorDeps(
        db=runtime.db,
        secrets=secret_box(settings),
        source=runtime.source,
        connect=connector_factory(settings.source_timeout_s),
    )

    async def on_request(env: Envelope) -> None:
        await handle_collection_requested(env, deps)

    runtime.subscribe(topic_for(CollectionRequested), GROUP, on_request)
    return runtime.app()
