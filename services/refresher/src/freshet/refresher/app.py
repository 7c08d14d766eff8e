"""The refresher service: parquet cache refreshes (consumes RefreshRequested, RunCompleted)."""

from __future__ import annotations

from fastapi import FastAPI

from freshet.contracts import Envelope, RefreshRequested, RunCompleted, topic_for
from freshet.kit.service import ServiceRuntime
from freshet.kit.settings import Settings
from freshet.refresher.handlers import handle_refresh_requested, handle_run_completed


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime("refresher", settings)

    async def on_request(env: Envelope) -> None:
        await handle_refresh_requested(env, runtime.db)

    async def on_run(env: Envelope) -> None:
        await handle_run_completed(env, runtime.db)

    runtime.subscribe(topic_for(RefreshRequested), "freshet-refresher", on_request)
    runtime.subscribe(topic_for(RunCompleted), "freshet-refresher.runs", on_run)
    return runtime.app()
