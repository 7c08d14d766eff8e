"""Per-endpoint limits on sampling: at most K samples at once and R started per second.

Each endpoint has its own limiter, held by the one worker that works on the endpoint (see
`dispatcher`): waiting for one endpoint's permit never delays another endpoint. The rate is a
leaky bucket (aiolimiter); the concurrency a semaphore. A permit is taken per attempt, so a
request backing off between attempts holds neither.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter


class EndpointLimiter:
    def __init__(self, concurrency: int, rate_per_s: float) -> None:
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        # Below one per second, one sample per 1/rate seconds; otherwise `rate` per second,
        # which also allows a burst of that many after a quiet spell.
        if rate_per_s >= 1:
            self._rate = AsyncLimiter(rate_per_s, 1.0)
        else:
            self._rate = AsyncLimiter(1, 1.0 / rate_per_s)
        self.running = 0

    @asynccontextmanager
    async def permit(self) -> AsyncIterator[None]:
        # The slot first: a rate token taken while waiting for a slot would be wasted.
        async with self._slots, self._rate:
            self.running += 1
            try:
                yield
            finally:
                self.running -= 1
