"""/dead-letters: messages the consumers gave up on; list, replay, purge (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from freshet.gateway.deps import AdminCaller, Uow
from freshet.gateway.schemas import (
    DeadLetterOut,
    DeadLetterPurgeOut,
    DeadLetterReplayAllOut,
    DeadLetterScope,
)
from freshet.gateway.service_layer import dead_letters

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])

Topic = Annotated[
    str | None,
    Query(max_length=249, description="A topic (original or `.dlq` name); all when absent."),
]


@router.get("")
async def list_dead_letters(
    uow: Uow,
    caller: AdminCaller,
    topic: Topic = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: Annotated[str | None, Query(max_length=300, description="The last id seen.")] = None,
) -> list[DeadLetterOut]:
    """Dead letters not purged, with their failure headers and replays, oldest first."""
    found = await dead_letters.list_dead_letters(uow, caller, topic=topic, limit=limit, after=after)
    return [DeadLetterOut.of(item.message, item.replays) for item in found]


@router.post("/replay")
async def replay_all_dead_letters(
    uow: Uow,
    caller: AdminCaller,
    body: DeadLetterScope | None = Body(default=None),  # noqa: B008 - FastAPI's way
) -> DeadLetterReplayAllOut:
    """Re-publish every dead letter not purged (of a topic) to its original topic; those
    already replayed are skipped unless `include_replayed`."""
    scope = body or DeadLetterScope()
    outcome = await dead_letters.replay_all(
        uow, caller, topic=scope.topic, include_replayed=scope.include_replayed
    )
    return DeadLetterReplayAllOut(
        replayed=outcome.replayed,
        skipped_already_replayed=outcome.skipped_replayed,
        not_replayable=outcome.not_replayable,
    )


@router.post("/purge")
async def purge_dead_letters(
    uow: Uow,
    caller: AdminCaller,
    body: DeadLetterScope | None = Body(default=None),  # noqa: B008 - FastAPI's way
) -> DeadLetterPurgeOut:
    """Hide every dead letter there is now (of a topic) from the list, durably."""
    scope = body or DeadLetterScope()
    return DeadLetterPurgeOut(purged=await dead_letters.purge(uow, caller, topic=scope.topic))


@router.post("/{dead_letter_id}/replay")
async def replay_dead_letter(dead_letter_id: str, uow: Uow, caller: AdminCaller) -> DeadLetterOut:
    """Re-publish one dead letter's original value and headers to its original topic."""
    item = await dead_letters.replay_one(uow, caller, dead_letter_id)
    return DeadLetterOut.of(item.message, item.replays)
