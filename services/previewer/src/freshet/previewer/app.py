"""The previewer service: preview fan-out, request intake, sampling and persistence."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from freshet.connectors import connector_factory
from freshet.contracts import Envelope, PreviewRequested, PreviewSampled, RunCompleted, topic_for
from freshet.kit.secrets import secret_box
from freshet.kit.service import ServiceRuntime
from freshet.kit.settings import Settings
from freshet.previewer.bounds import Limits
from freshet.previewer.dispatcher import DispatchConfig, Dispatcher
from freshet.previewer.freshness import Freshness
from freshet.previewer.handlers import (
    PreviewerDeps,
    handle_preview_requested,
    handle_preview_sampled,
    handle_run_completed,
)
from freshet.previewer.sampling import Backoff, Sampler


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime("previewer", settings)
    limits = Limits(
        max_rows=settings.preview_max_rows,
        max_value_bytes=settings.preview_max_value_bytes,
        max_bytes=settings.preview_max_bytes,
    )
    connect = connector_factory(settings.preview_statement_timeout_s)
    deps = PreviewerDeps(
        db=runtime.db,
        secrets=secret_box(settings),
        source=runtime.source,
        connect=connect,
        auto=settings.preview_auto,
        limits=limits,
        dataset_interval=timedelta(seconds=settings.preview_dataset_interval_s),
    )
    sampler = Sampler(
        connect=connect,
        limits=limits,
        timeout_s=settings.preview_statement_timeout_s,
        backoff=Backoff(
            max_attempts=settings.preview_max_attempts,
            initial_s=settings.preview_retry_initial_s,
            max_s=settings.preview_retry_max_s,
            jitter_s=settings.preview_retry_jitter_s,
        ),
    )
    dispatcher = Dispatcher(
        deps=deps,
        sampler=sampler,
        holder=runtime.holder,
        config=DispatchConfig(
            concurrency=settings.preview_endpoint_concurrency,
            rate_per_s=settings.preview_endpoint_rate,
            backlog=settings.preview_endpoint_backlog,
            max_endpoints=settings.preview_max_endpoints,
            lease_ttl_s=settings.preview_lease_ttl_s,
            poll_interval_s=settings.preview_poll_interval_s,
        ),
    )
    deps.notify = dispatcher.notify
    freshness = Freshness(
        db=runtime.db,
        staleness=timedelta(seconds=settings.preview_staleness_s),
        interval_s=settings.preview_gauge_interval_s,
        request_retention=timedelta(hours=settings.preview_request_retention_hours),
        audit_retention=timedelta(days=settings.audit_retention_days),
    )

    async def fanout(env: Envelope) -> None:
        await handle_run_completed(env, deps)

    async def intake(env: Envelope) -> None:
        await handle_preview_requested(env, deps)

    async def persist(env: Envelope) -> None:
        await handle_preview_sampled(env, deps)

    runtime.subscribe(topic_for(RunCompleted), "freshet-previewer.fanout", fanout)
    runtime.subscribe(topic_for(PreviewRequested), "freshet-previewer.sample", intake)
    runtime.subscribe(topic_for(PreviewSampled), "freshet-previewer.persist", persist)
    runtime.on_start(dispatcher.start)
    runtime.on_start(freshness.start)
    runtime.on_stop(dispatcher.stop)
    runtime.on_stop(freshness.stop)
    app = runtime.app()
    app.state.dispatcher = dispatcher
    return app
