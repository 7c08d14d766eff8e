"""The refresher's consumer handlers: make sure a job exists, claim it, hand it to the runner.

Both are idempotent: the refresh id (given, or derived from the event id or the run id) names
the job, and a job that finished or that another refresher holds is left alone.
"""

from __future__ import annotations

import structlog

from freshet.contracts import Envelope, RefreshRequested, RunCompleted
from freshet.refresher import jobs
from freshet.refresher.runner import Runner


async def handle_refresh_requested(env: Envelope, runner: Runner) -> None:
    event = env.data
    assert isinstance(event, RefreshRequested)
    refresh_id = jobs.refresh_id_for(event, env.id)
    with structlog.contextvars.bound_contextvars(refresh_id=str(refresh_id)):
        if await jobs.accept(event, refresh_id, env.correlation_id, runner.deps):
            await runner.claim(refresh_id)


async def handle_run_completed(env: Envelope, runner: Runner) -> None:
    event = env.data
    assert isinstance(event, RunCompleted)
    refresh_id = await jobs.accept_schema_changes(event, env.correlation_id, runner.deps)
    if refresh_id is not None:
        await runner.claim(refresh_id)
