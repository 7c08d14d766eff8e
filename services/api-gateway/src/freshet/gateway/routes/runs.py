"""/runs: run history across collections, one run, and cancellation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from freshet.catalog import RunStatus
from freshet.catalog.runs import RunFilter
from freshet.gateway.deps import OperatorCaller, ReadUow, Uow, Viewer
from freshet.gateway.routes.collections import After, First
from freshet.gateway.schemas import RunOut
from freshet.gateway.service_layer import runs

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("")
async def list_runs(
    uow: ReadUow,
    _: Viewer,
    endpoint_id: uuid.UUID | None = None,
    collection_id: uuid.UUID | None = None,
    status_: Annotated[RunStatus | None, Query(alias="status")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    first: First = 50,
    after: After = None,
) -> list[RunOut]:
    """Runs newest first, filtered like GraphQL's `collectionRuns`."""
    where = RunFilter(
        endpoint_id=endpoint_id,
        collection_id=collection_id,
        statuses=[status_] if status_ else None,
        requested_from=from_,
        requested_to=to,
    )
    return [RunOut.of(r) for r in await runs.list_runs(uow, where, first=first, after=after)]


@router.get("/{run_id}")
async def get_run(run_id: uuid.UUID, uow: ReadUow, _: Viewer) -> RunOut:
    return RunOut.of(await runs.get_run(uow, run_id))


@router.post("/{run_id}/cancel")
async def cancel_run(run_id: uuid.UUID, uow: Uow, caller: OperatorCaller) -> RunOut:
    """Cancel a QUEUED or RUNNING run; E_RUN_FINISHED when it already finished."""
    return RunOut.of(await runs.cancel_run(uow, caller, run_id))
