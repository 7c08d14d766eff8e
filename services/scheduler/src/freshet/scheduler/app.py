"""The scheduler service: keeps schedules in step with collections and fires them."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from freshet.catalog import UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.schedules import COLLECTION, PREVIEW_SWEEP, PREVIEW_SWEEP_ID, TABLE_REFRESH
from freshet.contracts import CollectionChanged, Envelope, topic_for
from freshet.kit.service import ServiceRuntime
from freshet.kit.settings import Settings
from freshet.scheduler.actions import FireCollections, RefreshTables, SweepPreviews
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
        actions={
            COLLECTION: FireCollections(runtime.source),
            PREVIEW_SWEEP: SweepPreviews(
                runtime.source,
                staleness=timedelta(seconds=settings.preview_staleness_s),
                batch=settings.preview_sweep_batch,
                auto=settings.preview_auto,
            ),
            TABLE_REFRESH: RefreshTables(runtime.source),
        },
    )

    async def on_change(env: Envelope) -> None:
        await handle_collection_changed(env, runtime.db, ticker.wake)

    async def plan_preview_sweep() -> None:
        """Every replica says the same; an unchanged interval keeps its next tick."""
        interval = settings.preview_sweep_interval_s or None
        async with UnitOfWork(runtime.db) as uow:
            await uow.schedules.set_interval(PREVIEW_SWEEP_ID, PREVIEW_SWEEP, interval, utcnow())
            await uow.commit()

    runtime.subscribe(
        topic_for(CollectionChanged),
        "freshet-scheduler",
        on_change,
        fetch_max_wait_ms=settings.scheduler_fetch_max_wait_ms,
    )
    runtime.on_start(plan_preview_sweep)
    runtime.on_start(ticker.start)
    runtime.on_stop(ticker.stop)
    return runtime.app()
