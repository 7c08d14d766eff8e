"""The refresher records each request and run once (refreshing itself is issue 6)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from prometheus_client import REGISTRY

from freshet.catalog import Database
from freshet.contracts import RefreshRequested, RunCompleted
from freshet.devstack.testing import envelope_of
from freshet.refresher.handlers import handle_refresh_requested, handle_run_completed


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_refresh_request_is_counted_once_however_often_it_arrives(
    sqlite_catalog: Database,
) -> None:
    before = count("freshet_refresh_requests_total", trigger_source="api")
    env = envelope_of(RefreshRequested(endpoint_id=uuid.uuid4(), trigger_source="api"))
    for _ in range(3):
        await handle_refresh_requested(env, sqlite_catalog)
    assert count("freshet_refresh_requests_total", trigger_source="api") == before + 1


async def test_a_completed_run_is_seen_once(sqlite_catalog: Database) -> None:
    before = count("freshet_refresher_runs_seen_total", status="FAILED")
    event = RunCompleted(
        run_id=uuid.uuid4(),
        collection_id=uuid.uuid4(),
        endpoint_id=uuid.uuid4(),
        status="FAILED",
        trigger_source="manual",
        completed_at=datetime.now(UTC),
    )
    env = envelope_of(event)
    await handle_run_completed(env, sqlite_catalog)
    await handle_run_completed(env, sqlite_catalog)
    assert count("freshet_refresher_runs_seen_total", status="FAILED") == before + 1
