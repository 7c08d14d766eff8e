"""Leased background work: an item claimed twice at once executes once."""

from __future__ import annotations

import asyncio

from freshet.kit.background import BackgroundWork


class Recorder(BackgroundWork[str, str]):
    """Items are their own keys; executing one records it and waits to be let go."""

    def __init__(self) -> None:
        super().__init__(max_concurrent=4, name="probe")
        self.executed: list[str] = []
        self.finish = asyncio.Event()

    def key(self, held: str) -> str:
        return held

    async def execute(self, held: str) -> None:
        self.executed.append(held)
        await self.finish.wait()

    async def still_ours(self, held: str) -> bool:
        return True

    async def sweep(self) -> int:
        return 0

    async def release(self, keys: list[str]) -> None:
        pass


async def test_an_item_claimed_by_a_request_and_a_sweep_at_once_executes_once() -> None:
    work = Recorder()
    both_claiming = asyncio.Barrier(2)

    async def claim() -> str:
        # The lease is this process's for both callers: each claim succeeds.
        await both_claiming.wait()
        return "job-1"

    keys = await asyncio.gather(work.submit(claim), work.submit(claim))

    assert list(keys) == ["job-1", "job-1"]
    await asyncio.sleep(0)
    assert work.executed == ["job-1"]
    work.finish.set()
    await work.wait_idle()
    assert work.executed == ["job-1"]
    # Both slots are free again: the duplicate claim gave its slot back.
    assert all([await asyncio.wait_for(work.slots.acquire(), 1) for _ in range(4)])
