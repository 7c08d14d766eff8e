"""Trigger -> preview persisted latency for one dataset, with the whole system running.

The endpoint is registered and triggered through the gateway's REST API, as a user would. The
bench then polls the catalog database directly (read-only, every few ms) for the dataset's
`payload.preview.sampledAt`, so no HTTP request sits inside the measured interval but the
trigger itself.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.stack import BenchStack, cpu_snapshot, cpu_used, read_only_engine
from bench.stats import summary_ms
from freshet.catalog.datasets import preview_time
from freshet.catalog.models import CollectionRun, Dataset, Lease
from freshet.kit.relay import LEASE_NAME

FIRST_PREVIEW_TIMEOUT_S = 60.0
PAUSE_BETWEEN_S = 0.1


class CatalogReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def datasets(self, endpoint_id: uuid.UUID) -> list[uuid.UUID]:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(Dataset.id).where(
                    Dataset.endpoint_id == endpoint_id, Dataset.removed_at.is_(None)
                )
            )
            return list(result.scalars())

    async def sampled_at(self, dataset_id: uuid.UUID) -> datetime | None:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(Dataset.payload).where(Dataset.id == dataset_id))
            payload = result.scalar_one_or_none()
        if not isinstance(payload, dict):
            return None
        preview = payload.get("preview")
        return preview_time(preview if isinstance(preview, dict) else None)

    async def run_times(self, run_id: uuid.UUID) -> tuple[datetime | None, datetime | None]:
        """A run's started_at and completed_at."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(CollectionRun.started_at, CollectionRun.completed_at).where(
                        CollectionRun.id == run_id
                    )
                )
            ).one_or_none()
        return (row[0], row[1]) if row is not None else (None, None)

    async def relay_leader(self) -> str | None:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(Lease.holder).where(Lease.name == LEASE_NAME))
            return result.scalar_one_or_none()


async def wait_newer(
    reader: CatalogReader,
    dataset_id: uuid.UUID,
    than: datetime | None,
    *,
    interval_s: float,
    timeout_s: float,
) -> tuple[datetime, int]:
    """Poll until the dataset's preview is newer than `than`; its sampledAt and the poll count."""
    deadline = time.perf_counter() + timeout_s
    polls = 0
    while True:
        polls += 1
        sampled = await reader.sampled_at(dataset_id)
        if sampled is not None and (than is None or sampled > than):
            return sampled, polls
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no newer preview of {dataset_id} within {timeout_s:.0f}s")
        await asyncio.sleep(interval_s)


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()


async def run(
    stack: BenchStack,
    token: str,
    *,
    iterations: int,
    source: Path,
    poll_interval_s: float,
    timeout_s: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    engine = read_only_engine(stack.catalog_url)
    reader = CatalogReader(engine)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, headers=headers, timeout=10.0
        ) as http:
            response = await http.post(
                "/endpoints",
                json={
                    "name": "bench-preview",
                    "kind": "sqlite",
                    "config": {"path": str(source)},
                    "labels": ["bench"],
                },
            )
            if response.status_code != 201:
                raise RuntimeError(
                    f"registering the endpoint: {response.status_code} {response.text}"
                )
            endpoint = response.json()
            endpoint_id = uuid.UUID(endpoint["id"])
            trigger_path = f"/collections/{endpoint['collection_id']}/trigger"

            # First run and preview: not measured (consumer groups settle, the dataset appears).
            first_started = time.perf_counter()
            (await http.post(trigger_path)).raise_for_status()
            deadline = time.perf_counter() + FIRST_PREVIEW_TIMEOUT_S
            datasets: list[uuid.UUID] = []
            while not datasets:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"the first run made no dataset; see {stack.data_dir}")
                datasets = await reader.datasets(endpoint_id)
                await asyncio.sleep(0.02)
            if len(datasets) != 1:
                raise RuntimeError(f"expected exactly one dataset, found {len(datasets)}")
            dataset_id = datasets[0]
            await wait_newer(
                reader,
                dataset_id,
                None,
                interval_s=poll_interval_s,
                timeout_s=FIRST_PREVIEW_TIMEOUT_S,
            )
            first_s = time.perf_counter() - first_started
            if progress is not None:
                progress(f"first run and preview in {first_s:.2f}s; measuring {iterations}")

            cpu_before = cpu_snapshot(stack.pids())
            samples: list[dict[str, Any]] = []
            for i in range(iterations):
                before = await reader.sampled_at(dataset_id)
                await asyncio.sleep(PAUSE_BETWEEN_S)
                started = time.perf_counter()
                started_wall = datetime.now(UTC)
                response = await http.post(trigger_path)
                answered = time.perf_counter()
                if response.status_code != 202:
                    raise RuntimeError(f"trigger {i}: {response.status_code} {response.text[:200]}")
                sampled, polls = await wait_newer(
                    reader, dataset_id, before, interval_s=poll_interval_s, timeout_s=timeout_s
                )
                seen = time.perf_counter()
                seen_wall = datetime.now(UTC)
                run_started, completed = await reader.run_times(uuid.UUID(response.json()["id"]))
                samples.append(
                    {
                        "total_s": seen - started,
                        "trigger_http_s": answered - started,
                        "polls": polls,
                        # Stages, from the catalog's own timestamps (one clock, one machine):
                        "trigger_to_run_started_s": _seconds(run_started, started_wall),
                        "run_started_to_completed_s": _seconds(completed, run_started),
                        "run_completed_to_sampled_s": _seconds(sampled, completed),
                        "sampled_to_seen_persisted_s": _seconds(seen_wall, sampled),
                    }
                )
            cpu_after = cpu_snapshot(stack.pids())
        leader = await reader.relay_leader()
    finally:
        await engine.dispose()

    def stage(name: str) -> dict[str, float]:
        return summary_ms([s[name] for s in samples if s[name] is not None])

    return {
        "iterations": len(samples),
        "dataset_id": str(dataset_id),
        "first_run_and_preview_s": round(first_s, 3),
        "poll_interval_ms": round(poll_interval_s * 1000, 2),
        "polls_per_iteration_mean": round(sum(s["polls"] for s in samples) / len(samples), 1)
        if samples
        else 0,
        "trigger_to_preview_persisted_ms": stage("total_s"),
        "stages_ms": {
            "trigger_http": stage("trigger_http_s"),
            "trigger_to_run_started": stage("trigger_to_run_started_s"),
            "run_started_to_completed": stage("run_started_to_completed_s"),
            "run_completed_to_sampled": stage("run_completed_to_sampled_s"),
            "sampled_to_seen_persisted": stage("sampled_to_seen_persisted_s"),
        },
        "relay_leader": leader,
        "cpu_seconds": cpu_used(cpu_before, cpu_after),
        "raw_ms": [round(s["total_s"] * 1000, 2) for s in samples],
    }
