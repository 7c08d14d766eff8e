"""The previewer service: preview fan-out, sampling and persistence."""

from __future__ import annotations

from fastapi import FastAPI

from freshet.connectors import connector_factory
from freshet.contracts import Envelope, PreviewRequested, PreviewSampled, RunCompleted, topic_for
from freshet.kit.secrets import secret_box
from freshet.kit.service import ServiceRuntime
from freshet.kit.settings import Settings
from freshet.previewer.handlers import (
    PreviewerDeps,
    handle_preview_requested,
    handle_preview_sampled,
    handle_run_completed,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime("previewer", settings)

    deps = PreviewerDeps(
        db=runtime.db,
        secrets=secret_box(settings),
        source=runtime.source,
        connect=connector_factory(settings.source_timeout_s),
        auto=settings.preview_auto,
    )

    async def fanout(env: Envelope) -> None:
        await handle_run_completed(env, deps)

    async def sample(env: Envelope) -> None:
        await handle_preview_requested(env, deps)

    async def persist(env: Envelope) -> None:
        await handle_preview_sampled(env, deps)

    runtime.subscribe(topic_for(RunCompleted), "freshet-previewer.fanout", fanout)
    runtime.subscribe(topic_for(PreviewRequested), "freshet-previewer.sample", sample)
    runtime.subscribe(topic_for(PreviewSampled), "freshet-previewer.persist", persist)
    return runtime.app()
