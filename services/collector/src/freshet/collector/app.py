"""The collector service: consumes CollectionRequested and runs collections."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from freshet.collector.handlers import handle_collection_requested
from freshet.collector.run_gauges import RunGauges
from freshet.collector.runner import Runner
from freshet.collector.workflow import CollectorDeps
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
        owner=runtime.holder,
        lease_ttl=timedelta(seconds=settings.run_lease_ttl_s),
        run_timeout_s=settings.run_timeout_s,
        ingest_workdir=settings.data_dir / "ingest",
        ingest_commands_allowed=settings.ingest_commands_allowed,
        cache_grace=timedelta(seconds=settings.cache_grace_s),
    )
    runner = Runner(
        deps,
        max_concurrent=settings.max_concurrent_runs,
        check_interval_s=settings.run_check_interval_s,
    )

    async def on_request(env: Envelope) -> None:
        await handle_collection_requested(env, runner)

    runtime.subscribe(topic_for(CollectionRequested), GROUP, on_request)
    runtime.on_start(runner.start)
    runtime.on_stop(runner.stop)
    gauges = RunGauges(runtime.db)
    runtime.on_start(gauges.start)
    runtime.on_stop(gauges.stop)
    app = runtime.app()
    app.state.runner = runner
    return app
