"""The scheduler service: keeps schedules in step with collections and fires them."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from freshet.contracts import CollectionChanged, Envelope, topic_for
from freshet.kit.service import ServiceRuntime
from freshet.kit.settings import Settings
from freshet.scheduler.handlers import handle_collection_changed
from freshet.scheduler.ticker import Ticker


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime("scheduler", settings)
    ticker = Ticker(
        runtime.db,
        holder=runtime.holder,
        source=runtime.source,
        catch_up=timedelta(seconds=settings.schedule_catch_up_s),
    )

    async def on_change(env: Envelope) -> None:
        await handle_collection_changed(env, runtime.db, ticker.wake)

    runtime.subscribe(topic_for(CollectionChanged), "freshet-scheduler", on_change)
    runtime.on_start(ticker.start)
    runtime.on_stop(ticker.stop)
    return runtime.app()
