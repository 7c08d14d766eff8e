"""Isolation (AC3): healthy runs while some sources hang, broker and collector only.

K TCP servers run in the bench process: they accept connections and never answer, the way a
stuck database does. K postgres endpoints point at them (with a long `run_timeout_s`, so
their runs stay RUNNING throughout), next to H healthy sqlite endpoints. The same N healthy
runs are measured twice on one stack: first alone (the baseline), then after one request per
hanging endpoint has been published and the catalog shows those runs RUNNING. The collector
executes each run in a task of its own, so the second figures should match the first.

The hanging runs hold K of the collector's FRESHET_MAX_CONCURRENT_RUNS slots; the connector's
connect timeout (FRESHET_SOURCE_TIMEOUT_S, 30 s by default, retried) keeps them RUNNING far
longer than the measurement takes. At the end they are cancelled in the catalog (the collector
sees that at its next check and drops the connection) and the servers are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.collector_throughput import (
    REQUESTED_TOPIC,
    EndpointSpec,
    Phase,
    collections_of,
    kafka_clients,
    measure,
    phase_figures,
    plan,
    publish,
    register_endpoints,
    sqlite_endpoint,
    warm_up,
)
from bench.stack import BenchStack, cpu_snapshot, cpu_used, read_only_engine
from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.models import CollectionRun

# Long enough that the run timeout never ends a hanging run during the scenario.
HANGING_RUN_TIMEOUT_S = 120
# How long the hanging runs may take to be RUNNING with a connection open to their server.
HANGING_START_TIMEOUT_S = 30.0
# How long the collector may take to drop the connections of the cancelled runs (it checks
# every FRESHET_RUN_CHECK_INTERVAL_S, 1 s by default).
DROP_TIMEOUT_S = 10.0
POLL_S = 0.05
CANCEL_REASON = "cancelled by the bench at the end of the isolation scenario"


class HangingServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.accepted = 0
        self.open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._hang, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _hang(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open.add(writer)
        try:
            # Read and drop whatever the client sends (asyncpg's SSLRequest) until it goes away.
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        finally:
            self.open.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self.server is None:
            return
        self.server.close()
        # Python 3.11's Server.close leaves accepted connections open; close them too.
        for writer in list(self.open):
            writer.close()
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def hanging_servers(count: int) -> AsyncIterator[list[HangingServer]]:
    servers = [HangingServer() for _ in range(count)]
    try:
        for server in servers:
            await server.start()
        yield servers
    finally:
        for server in servers:
            await server.close()


def hanging_endpoint(servers: list[HangingServer]) -> Callable[[int], EndpointSpec]:
    """The i-th hanging endpoint: a postgres endpoint whose server is the i-th hanging one."""
    return lambda i: EndpointSpec(
        kind="postgres",
        config={
            "host": "127.0.0.1",
            "port": servers[i].port,
            "database": "bench",
            "user": "bench",
        },
        run_timeout_s=HANGING_RUN_TIMEOUT_S,
    )


async def run_states(engine: AsyncEngine, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Status of each run the catalog has (a run not claimed yet is missing)."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(CollectionRun.id, CollectionRun.status).where(CollectionRun.id.in_(run_ids))
        )
        return {row[0]: str(row[1]) for row in result}


async def wait_hanging(
    engine: AsyncEngine, run_ids: list[uuid.UUID], servers: list[HangingServer]
) -> float:
    """Until every hanging run is RUNNING and every server holds a connection; the seconds."""
    started = time.perf_counter()
    deadline = started + HANGING_START_TIMEOUT_S
    while True:
        states = await run_states(engine, run_ids)
        running = sum(s == RunStatus.RUNNING.value for s in states.values())
        connected = sum(bool(s.open) for s in servers)
        if running == len(run_ids) and connected == len(servers):
            return time.perf_counter() - started
        ended = Counter(s for s in states.values() if RunStatus(s).is_final)
        if ended or time.perf_counter() > deadline:
            raise RuntimeError(
                f"hanging runs: {running} of {len(run_ids)} RUNNING, {connected} of "
                f"{len(servers)} servers connected to, finished: {dict(ended)} "
                f"(after {time.perf_counter() - started:.1f}s)"
            )
        await asyncio.sleep(POLL_S)


async def cancel_runs(catalog_url: str, run_ids: list[uuid.UUID]) -> int:
    """Move the runs to CANCELLED in the catalog; how many were still active."""
    db = Database(catalog_url)
    try:
        async with UnitOfWork(db) as uow:
            cancelled = 0
            for run_id in run_ids:
                cancelled += await uow.runs.transition(
                    run_id, RunStatus.CANCELLED, error=CANCEL_REASON
                )
            await uow.commit()
        return cancelled
    finally:
        await db.dispose()


async def wait_dropped(servers: list[HangingServer]) -> float | None:
    """Until no server holds a connection; the seconds, or None if they stayed open."""
    started = time.perf_counter()
    while any(s.open for s in servers):
        if time.perf_counter() - started > DROP_TIMEOUT_S:
            return None
        await asyncio.sleep(POLL_S)
    return time.perf_counter() - started


def _ratio(after: float | None, before: float | None) -> float | None:
    if after is None or not before:
        return None
    return round(after / before, 3)


async def run(
    stack: BenchStack,
    *,
    runs: int,
    healthy: int,
    hanging: int,
    source: Path,
    timeout_s: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    def say(message: str) -> None:
        if progress is not None:
            progress(f"isolation: {message}")

    engine = read_only_engine(stack.catalog_url)
    try:
        async with (
            kafka_clients(stack) as (producer, consumer),
            hanging_servers(hanging) as servers,
        ):
            partitions = sorted(await producer.partitions_for(REQUESTED_TOPIC))
            lanes = await register_endpoints(
                stack.catalog_url, healthy, partitions, sqlite_endpoint(source)
            )
            # Spread by partition too, so every partition has a hanging run ahead of healthy ones.
            hanging_lanes = await register_endpoints(
                stack.catalog_url,
                hanging,
                partitions,
                hanging_endpoint(servers),
                prefix="bench-hanging",
            )
            warm_s = await warm_up(stack, producer, consumer, collections_of(lanes), timeout_s)
            say(f"warm-up: {healthy} runs in {warm_s:.1f}s; baseline: {runs} healthy runs")

            pids = stack.pids()

            async def measured() -> tuple[Phase, dict[str, float]]:
                cpu_before = cpu_snapshot(pids)
                phase = await measure(producer, consumer, plan(lanes, runs), timeout_s)
                return phase, cpu_used(cpu_before, cpu_snapshot(pids))

            baseline, baseline_cpu = await measured()
            say(f"baseline: {len(baseline.arrivals)} runs in {baseline.total_s:.2f}s")

            stuck = [(c, uuid.uuid4()) for c in collections_of(hanging_lanes)]
            stuck_ids = [r for _, r in stuck]
            await publish(producer, stuck)
            hanging_s = await wait_hanging(engine, stuck_ids, servers)
            say(
                f"{hanging} hanging runs RUNNING after {hanging_s:.2f}s; "
                f"{runs} healthy runs next to them"
            )

            loaded, loaded_cpu = await measured()
            say(f"with {hanging} hanging: {len(loaded.arrivals)} runs in {loaded.total_s:.2f}s")

            states_at_end = await run_states(engine, stuck_ids)
            connected_at_end = sum(bool(s.open) for s in servers)
            cancelled = await cancel_runs(stack.catalog_url, stuck_ids)
            dropped_s = await wait_dropped(servers)
            accepted = sum(s.accepted for s in servers)
    finally:
        await engine.dispose()

    before = phase_figures(baseline) | {"cpu_seconds": baseline_cpu}
    after = phase_figures(loaded) | {"cpu_seconds": loaded_cpu}
    return {
        "runs_per_phase": runs,
        "healthy_endpoints": healthy,
        "hanging_endpoints": hanging,
        "hanging_run_timeout_s": HANGING_RUN_TIMEOUT_S,
        "collections_per_partition": {str(p): len(c) for p, c in sorted(lanes.items())},
        "hanging_per_partition": {str(p): len(c) for p, c in sorted(hanging_lanes.items())},
        "warmup_runs": healthy,
        "warmup_s": round(warm_s, 3),
        "complete": before["complete"] and after["complete"],
        "baseline": before,
        "with_hanging": after,
        # with hanging / baseline: 1.0 is no effect; throughput below 1 and latency above 1
        # are the hanging sources' cost.
        "ratio": {
            "runs_per_s": _ratio(after["runs_per_s"], before["runs_per_s"]),
            "requested_to_completed_p50": _ratio(
                after["requested_to_completed_ms"].get("p50"),
                before["requested_to_completed_ms"].get("p50"),
            ),
            "requested_to_completed_p99": _ratio(
                after["requested_to_completed_ms"].get("p99"),
                before["requested_to_completed_ms"].get("p99"),
            ),
        },
        "hanging_running_after_s": round(hanging_s, 3),
        "hanging_still_running": sum(s == RunStatus.RUNNING.value for s in states_at_end.values()),
        "hanging_statuses_at_end": dict(Counter(states_at_end.values())),
        "hanging_connections_accepted": accepted,
        "hanging_servers_connected_at_end": connected_at_end,
        "hanging_cancelled": cancelled,
        "hanging_connections_dropped_after_s": None if dropped_s is None else round(dropped_s, 3),
        "hanging_drop_wait_s": DROP_TIMEOUT_S,
    }
