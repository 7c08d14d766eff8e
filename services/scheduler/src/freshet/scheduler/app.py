"""The scheduler service: cron schedules and other timed events (consumes CollectionChanged)."""

from __future__ import annotations

from fastapi import FastAPI

from freshet.contracts import CollectionChanged, Envelope, topic_for
from freshet.kit.service import ServiceRuntime
from freshet.kit.settings import Settings
from freshet.scheduler.handlers import handle_collection_changed


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime("scheduler", settings)

    async def on_change(env: Envelope) -> None:
        await handle_collection_changed(env, runtime.db)

    runtime.subscribe(topic_for(CollectionChanged), "freshet-scheduler", on_change)
    return runtime.app()
