"""Catalog-wide run gauges: the oldest QUEUED and RUNNING runs, and recent runs per endpoint."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY

from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.collector.run_gauges import export_once


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_gauges_show_stuck_runs_and_each_endpoints_recent_outcomes(
    catalog_url: str,
) -> None:
    db = Database(catalog_url)
    now = utcnow()
    try:
        async with UnitOfWork(db) as uow:
            shop = await uow.endpoints.add(name="shop", kind="sqlite", config={"path": "/x"})
            for status, requested, started, completed in (
                (RunStatus.SUCCEEDED, 600, 590, 530),
                (RunStatus.FAILED, 400, 395, 390),
                (RunStatus.RUNNING, 120, 100, None),
                (RunStatus.QUEUED, 300, None, None),
                (RunStatus.SUCCEEDED, 90_000, 89_990, 89_980),  # older than a day
            ):
                run = await uow.runs.add(
                    endpoint_id=shop.id,
                    collection_id=None,  # history only: no one-active-run constraint
                    status=status,
                    trigger_source="api",
                    requested_at=now - timedelta(seconds=requested),
                )
                run.started_at = now - timedelta(seconds=started) if started else None
                run.completed_at = now - timedelta(seconds=completed) if completed else None
            await uow.commit()

        await export_once(db)

        queued = sample("freshet_collection_run_oldest_active_seconds", status="QUEUED")
        running = sample("freshet_collection_run_oldest_active_seconds", status="RUNNING")
        assert queued is not None
        assert 299 <= queued < 330
        assert running is not None
        assert 99 <= running < 130
        assert sample("freshet_endpoint_runs_recent", endpoint="shop", status="SUCCEEDED") == 1
        assert sample("freshet_endpoint_runs_recent", endpoint="shop", status="FAILED") == 1
        assert sample("freshet_endpoint_last_run_duration_seconds", endpoint="shop") == 5
    finally:
        await db.dispose()
