"""The refresher service: parquet cache refreshes, discovery-driven refreshes, cache upkeep."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from freshet.cachestore import store_from_settings
from freshet.connectors import connector_factory
from freshet.contracts import Envelope, RefreshRequested, RunCompleted, topic_for
from freshet.kit.secrets import secret_box
from freshet.kit.service import ServiceRuntime
from freshet.kit.settings import Settings
from freshet.refresher.handlers import handle_refresh_requested, handle_run_completed
from freshet.refresher.jobs import JobDeps
from freshet.refresher.maintenance import Maintenance, MaintenanceSettings
from freshet.refresher.runner import RefreshLimits, Runner


def create_app(settings: Settings | None = None, *, failpoint: str = "") -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime("refresher", settings)
    store = store_from_settings(settings)
    deps = JobDeps(
        db=runtime.db,
        secrets=secret_box(settings),
        source=runtime.source,
        owner=runtime.holder,
        lease_ttl=timedelta(seconds=settings.refresh_lease_ttl_s),
        min_interval=timedelta(seconds=settings.refresh_min_interval_s),
        grace=timedelta(seconds=settings.cache_grace_s),
    )
    runner = Runner(
        deps,
        store,
        # Reading a whole table is bounded by the refresh timeout, not the statement one.
        connector_factory(settings.source_timeout_s),
        RefreshLimits(
            batch_rows=settings.refresh_batch_rows,
            max_concurrent=settings.refresh_max_concurrent,
            max_per_endpoint=settings.refresh_max_per_endpoint,
            table_timeout_s=settings.refresh_timeout_s,
            failpoint=failpoint,
        ),
    )
    maintenance = Maintenance(
        runtime.db,
        store,
        runtime.holder,
        MaintenanceSettings(
            interval=timedelta(seconds=settings.cache_maintenance_interval_s),
            reconcile_every=timedelta(seconds=settings.cache_reconcile_interval_s),
            orphan_min_age=timedelta(seconds=settings.cache_orphan_min_age_s),
        ),
    )

    async def on_request(env: Envelope) -> None:
        await handle_refresh_requested(env, runner)

    async def on_run(env: Envelope) -> None:
        await handle_run_completed(env, runner)

    runtime.subscribe(topic_for(RefreshRequested), "freshet-refresher", on_request)
    runtime.subscribe(topic_for(RunCompleted), "freshet-refresher.runs", on_run)
    runtime.on_start(runner.start)
    runtime.on_start(maintenance.start)
    runtime.on_stop(maintenance.stop)
    runtime.on_stop(runner.stop)
    app = runtime.app()
    app.state.runner = runner
    app.state.maintenance = maintenance
    app.state.store = store
    return app
