"""A stop request reaches the runtime's exit hooks in its event loop, before uvicorn waits
for open connections (server-sent event streams would hold the stop up)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from freshet.kit.service import ServiceRuntime, _Server
from freshet.kit.settings import Settings


async def test_a_stop_request_runs_the_exit_hooks_in_the_loop(tmp_path: Path) -> None:
    runtime = ServiceRuntime("probe", Settings(database_url=f"sqlite:///{tmp_path}/c.db"))
    called = asyncio.Event()
    runtime.on_exit_requested(called.set)
    runtime._loop = asyncio.get_running_loop()  # what start() records
    server = _Server(uvicorn.Config(FastAPI()), runtime)

    server.handle_exit(signal.SIGTERM, None)

    await asyncio.wait_for(called.wait(), 5)
    assert server.should_exit
    await runtime.db.dispose()


async def test_a_stop_request_before_the_start_does_nothing(tmp_path: Path) -> None:
    runtime = ServiceRuntime("probe", Settings(database_url=f"sqlite:///{tmp_path}/c.db"))

    def never() -> None:
        raise AssertionError("an exit hook ran before the runtime started")

    runtime.on_exit_requested(never)

    runtime.request_exit()

    await runtime.db.dispose()


async def test_the_server_loop_ticks_slowly_yet_stops_at_once_when_asked() -> None:
    config = uvicorn.Config(FastAPI())
    config.load()
    server = _Server(config, None)
    server.tick_s = 60.0  # a stop must not wait for the next tick
    loop_task = asyncio.create_task(server.main_loop())
    await asyncio.sleep(0.05)
    assert not loop_task.done()
    assert any(name == b"date" for name, _ in server.server_state.default_headers)

    server.handle_exit(signal.SIGTERM, None)

    await asyncio.wait_for(loop_task, 10)
