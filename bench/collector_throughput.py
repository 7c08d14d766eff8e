"""Collector path throughput: CollectionRequested -> RunCompleted, broker and collector only.

The endpoints and collections are written straight into the catalog (the gateway is not
running); the requests are published straight to the topic, the way an outside system would;
the RunCompleted events are read back from their topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from bench.stack import BenchStack, cpu_snapshot, cpu_used, scrape_metrics
from bench.stats import summary_ms
from freshet.catalog import Database, UnitOfWork
from freshet.contracts import (
    CollectionRequested,
    EnvelopeError,
    RunCompleted,
    decode,
    encode,
    topic_for,
)

SOURCE = "/freshet/bench"
REQUESTED_TOPIC = topic_for(CollectionRequested).name
COMPLETED_TOPIC = topic_for(RunCompleted).name


@dataclass
class Arrival:
    event: RunCompleted
    at: float  # perf_counter when the bench read it
    wall: datetime


def partition_of(collection_id: uuid.UUID, partitions: list[int]) -> int:
    """The partition the producer's default partitioner sends this collection's requests to."""
    key = CollectionRequested(collection_id=collection_id).key().encode()
    return int(DefaultPartitioner()(key, partitions, partitions))


@dataclass(frozen=True)
class EndpointSpec:
    """What one registered endpoint is: its connector kind, config and run timeout."""

    kind: str
    config: dict[str, Any]
    run_timeout_s: int | None = None


def sqlite_endpoint(source: Path) -> Callable[[int], EndpointSpec]:
    """Every endpoint reads the same SQLite source file."""
    spec = EndpointSpec(kind="sqlite", config={"path": str(source)})
    return lambda _index: spec


async def register_endpoints(
    catalog_url: str,
    count: int,
    partitions: list[int],
    endpoint: Callable[[int], EndpointSpec],
    *,
    prefix: str = "bench",
) -> dict[int, list[uuid.UUID]]:
    """`count` endpoints, each with its collection; `endpoint(i)` says what the i-th kept one is.

    A collection's requests all share one partition (its id is the key), and a partition is
    processed in order, so how the collection ids happen to hash would decide the critical path
    (20 random ids can leave a partition with none). So collections are kept only while their
    partition is short of its even share: the result is `count` collections spread as evenly as
    possible, by partition.
    """
    share = {
        p: count // len(partitions) + (i < count % len(partitions))
        for i, p in enumerate(partitions)
    }
    lanes: dict[int, list[uuid.UUID]] = {p: [] for p in partitions}
    db = Database(catalog_url)
    try:
        async with UnitOfWork(db) as uow:
            attempt = 0
            while any(len(lanes[p]) < share[p] for p in partitions):
                spec = endpoint(sum(len(kept) for kept in lanes.values()))
                added = await uow.endpoints.add(
                    name=f"{prefix}-{attempt:04d}",
                    kind=spec.kind,
                    config=spec.config,
                    labels=["bench"],
                    run_timeout_s=spec.run_timeout_s,
                )
                collection = await uow.collections.add(endpoint_id=added.id)
                attempt += 1
                partition = partition_of(collection.id, partitions)
                if len(lanes[partition]) < share[partition]:
                    lanes[partition].append(collection.id)
                else:
                    await uow.session.delete(collection)
                    await uow.session.delete(added)
                    await uow.session.flush()
            await uow.commit()
        return lanes
    finally:
        await db.dispose()


def collections_of(lanes: dict[int, list[uuid.UUID]]) -> list[uuid.UUID]:
    """Every collection of `register_endpoints`' result, partition by partition."""
    return [c for p in sorted(lanes) for c in lanes[p]]


def plan(lanes: dict[int, list[uuid.UUID]], runs: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(collection id, run id) for each run: request i goes to partition i mod P, round-robin
    over that partition's collections, so every collection and partition gets its share."""
    ordered = [lanes[p] for p in sorted(lanes) if lanes[p]]
    requests = []
    for i in range(runs):
        lane = ordered[i % len(ordered)]
        requests.append((lane[(i // len(ordered)) % len(lane)], uuid.uuid4()))
    return requests


async def publish(
    producer: AIOKafkaProducer, requests: list[tuple[uuid.UUID, uuid.UUID]]
) -> Counter[int]:
    """Send (collection id, run id) requests in order; return messages per partition."""
    futures = []
    for collection_id, run_id in requests:
        msg = encode(
            CollectionRequested(
                collection_id=collection_id,
                run_id=run_id,
                requested_by="bench",
                requested_at=datetime.now(UTC),
            ),
            source=SOURCE,
        )
        futures.append(
            await producer.send(REQUESTED_TOPIC, msg.value, key=msg.key, headers=msg.headers)
        )
    partitions: Counter[int] = Counter()
    for metadata in await asyncio.gather(*futures):
        partitions[metadata.partition] += 1
    return partitions


async def collect(
    consumer: AIOKafkaConsumer, wanted: set[uuid.UUID], timeout_s: float
) -> tuple[dict[uuid.UUID, Arrival], int]:
    """Read RunCompleted until every wanted run arrived (or the timeout); also duplicates."""
    arrivals: dict[uuid.UUID, Arrival] = {}
    duplicates = 0
    deadline = time.perf_counter() + timeout_s
    while len(arrivals) < len(wanted) and time.perf_counter() < deadline:
        batches = await consumer.getmany(timeout_ms=100, max_records=1000)
        now, wall = time.perf_counter(), datetime.now(UTC)
        for records in batches.values():
            for record in records:
                try:
                    event = decode(record.value, record.headers).data
                except EnvelopeError:
                    continue
                if not isinstance(event, RunCompleted) or event.run_id not in wanted:
                    continue
                if event.run_id in arrivals:
                    duplicates += 1
                    continue
                arrivals[event.run_id] = Arrival(event, now, wall)
    return arrivals, duplicates


@contextlib.asynccontextmanager
async def kafka_clients(
    stack: BenchStack,
) -> AsyncIterator[tuple[AIOKafkaProducer, AIOKafkaConsumer]]:
    """A producer of CollectionRequested and a consumer of RunCompleted (from the start)."""
    consumer = AIOKafkaConsumer(
        COMPLETED_TOPIC,
        bootstrap_servers=stack.bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=False, linger_ms=5
    )
    try:
        await consumer.start()
        await producer.start()
        yield producer, consumer
    finally:
        await producer.stop()
        await consumer.stop()


async def warm_up(
    stack: BenchStack,
    producer: AIOKafkaProducer,
    consumer: AIOKafkaConsumer,
    collections: list[uuid.UUID],
    timeout_s: float,
) -> float:
    """One unmeasured run per collection; the seconds it took.

    It waits out the collector's group join and makes each endpoint's datasets, so the
    measured runs are steady-state ones.
    """
    warm = [(c, uuid.uuid4()) for c in collections]
    started = time.perf_counter()
    await publish(producer, warm)
    arrivals, _ = await collect(consumer, {r for _, r in warm}, timeout_s)
    if len(arrivals) < len(warm):
        raise RuntimeError(
            f"warm-up: only {len(arrivals)} of {len(warm)} runs completed "
            f"within {timeout_s:.0f}s; see {stack.data_dir / 'logs'}"
        )
    return time.perf_counter() - started


@dataclass
class Phase:
    """One measured batch: every request sent at once, then every RunCompleted read."""

    requests: list[tuple[uuid.UUID, uuid.UUID]]
    sent_to: Counter[int]
    published_s: float
    total_s: float  # first send -> last RunCompleted read
    arrivals: dict[uuid.UUID, Arrival]
    duplicates: int


async def measure(
    producer: AIOKafkaProducer,
    consumer: AIOKafkaConsumer,
    requests: list[tuple[uuid.UUID, uuid.UUID]],
    timeout_s: float,
) -> Phase:
    started = time.perf_counter()
    sent_to = await publish(producer, requests)
    published_s = time.perf_counter() - started
    arrivals, duplicates = await collect(consumer, {r for _, r in requests}, timeout_s)
    finished = max((a.at for a in arrivals.values()), default=time.perf_counter())
    return Phase(requests, sent_to, published_s, finished - started, arrivals, duplicates)


def phase_figures(phase: Phase) -> dict[str, Any]:
    """What the report shows of a measured batch: counts, throughput, per-run latencies."""
    events = [a.event for a in phase.arrivals.values()]
    total_s = phase.total_s
    statuses = Counter(e.status for e in events)
    errors = Counter(e.error for e in events if e.status != "SUCCEEDED")
    return {
        "runs_requested": len(phase.requests),
        "runs_completed": len(events),
        "complete": len(events) == len(phase.requests),
        "requests_per_partition": {str(p): n for p, n in sorted(phase.sent_to.items())},
        "publish_s": round(phase.published_s, 3),
        "total_s": round(total_s, 3),
        "runs_per_s": round(len(events) / total_s, 2) if total_s > 0 else 0.0,
        "statuses": dict(statuses),
        "errors": {str(k): n for k, n in errors.most_common(5)},
        "duplicate_run_completed": phase.duplicates,
        "datasets_total": dict(Counter(str(e.datasets_total) for e in events)),
        # completed_at - requested_at: the bench stamps requested_at when it publishes, so with
        # every request sent at once this is mostly time spent queued behind earlier runs.
        "requested_to_completed_ms": summary_ms(
            [(e.completed_at - e.requested_at).total_seconds() for e in events if e.requested_at]
        ),
        "requested_to_started_ms": summary_ms(
            [
                (e.started_at - e.requested_at).total_seconds()
                for e in events
                if e.started_at is not None and e.requested_at is not None
            ]
        ),
        "started_to_completed_ms": summary_ms(
            [
                (e.completed_at - e.started_at).total_seconds()
                for e in events
                if e.started_at is not None
            ]
        ),
        # From the run's final commit to the bench reading RunCompleted: relay + broker hop.
        "completed_to_received_ms": summary_ms(
            [(a.wall - a.event.completed_at).total_seconds() for a in phase.arrivals.values()]
        ),
    }


async def run(
    stack: BenchStack,
    *,
    runs: int,
    endpoints: int,
    source: Path,
    timeout_s: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    async with kafka_clients(stack) as (producer, consumer):
        partitions = sorted(await producer.partitions_for(REQUESTED_TOPIC))
        lanes = await register_endpoints(
            stack.catalog_url, endpoints, partitions, sqlite_endpoint(source)
        )
        collections = collections_of(lanes)
        warm_s = await warm_up(stack, producer, consumer, collections, timeout_s)
        if progress is not None:
            progress(
                f"warm-up: {len(collections)} runs in {warm_s:.1f}s; publishing {runs} requests"
            )

        pids = stack.pids()
        metrics_before = await scrape_metrics(stack.url("collector"))
        cpu_before = cpu_snapshot(pids)
        phase = await measure(producer, consumer, plan(lanes, runs), timeout_s)
        cpu_after = cpu_snapshot(pids)

    metrics_after = await scrape_metrics(stack.url("collector"))

    def delta(name: str) -> float:
        return metrics_after.get(name, 0.0) - metrics_before.get(name, 0.0)

    handled = delta("freshet_handler_duration_seconds_count")
    return {
        **phase_figures(phase),
        "endpoints": endpoints,
        "collections_per_partition": {str(p): len(c) for p, c in sorted(lanes.items())},
        "warmup_runs": len(collections),
        "warmup_s": round(warm_s, 3),
        # The collector's own histogram over the measured runs: time inside the handler.
        "collector_handler_mean_ms": round(
            delta("freshet_handler_duration_seconds_sum") / handled * 1000, 2
        )
        if handled
        else None,
        "collector_retries": delta("freshet_handler_retries_total"),
        "collector_dead_letters": delta("freshet_dead_letters_total"),
        "cpu_seconds": cpu_used(cpu_before, cpu_after),
    }
