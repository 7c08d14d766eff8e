"""Refresher handlers. This slice records what it is asked; the refresh itself is issue 6."""

from __future__ import annotations

import structlog
from prometheus_client import Counter

from freshet.catalog import Database
from freshet.catalog.inbox import claim_once
from freshet.contracts import Envelope, RefreshRequested, RunCompleted

log = structlog.get_logger("freshet.refresher")

REQUESTS = Counter(
    "freshet_refresh_requests_total", "RefreshRequested events received.", ["trigger_source"]
)
RUNS_SEEN = Counter(
    "freshet_refresher_runs_seen_total", "RunCompleted events seen by the refresher.", ["status"]
)


async def handle_refresh_requested(env: Envelope, db: Database) -> None:
    event = env.data
    assert isinstance(event, RefreshRequested)
    if not await claim_once(db, "refresher.requests", env.id):
        return
    REQUESTS.labels(event.trigger_source).inc()
    log.info(
        "refresh requested",
        endpoint_id=str(event.endpoint_id),
        tables=event.tables,
        force=event.force,
    )


async def handle_run_completed(env: Envelope, db: Database) -> None:
    event = env.data
    assert isinstance(event, RunCompleted)
    if not await claim_once(db, "refresher.runs", env.id):
        return
    RUNS_SEEN.labels(event.status).inc()
    log.info(
        "run completed seen",
        run_id=str(event.run_id),
        schema_changed=len(event.diff.schema_changed),
    )
