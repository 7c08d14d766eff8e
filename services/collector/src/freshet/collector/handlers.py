"""The collector's consumer handler: claim the requested run and hand it to the runner.

The run itself executes off the consumer path (`runner.py`), so the request's offset commits
as soon as the run is RUNNING under this process's lease.
"""

from __future__ import annotations

import structlog

from freshet.collector import workflow
from freshet.collector.runner import Runner
from freshet.contracts import CollectionRequested, Envelope


async def handle_collection_requested(env: Envelope, runner: Runner) -> None:
    cmd = env.data
    assert isinstance(cmd, CollectionRequested)
    run_id = workflow.run_id_for(cmd, env.id)
    with structlog.contextvars.bound_contextvars(run_id=str(run_id)):
        await runner.submit(lambda: workflow.claim(cmd, run_id, env.correlation_id, runner.deps))
