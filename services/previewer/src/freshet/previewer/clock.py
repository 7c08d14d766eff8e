"""The time as the previewer sees it: injectable, so tests can check backoff timing exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from freshet.catalog.clock import utcnow


@dataclass(frozen=True)
class Clock:
    now: Callable[[], datetime] = utcnow
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
