"""Preview fan-out throughput: one endpoint with many small tables, limits raised.

The endpoint is registered and triggered through the gateway. Once its run is SUCCEEDED (its
`completed_at` is when RunCompleted was written), the bench polls the catalog directly
(read-only) until every dataset holds a preview of that run, then reads the catalog's own
timestamps: the run's completion, and each dataset's `updated_at` when its preview was
persisted. Previews per second = datasets / (last persisted - RunCompleted).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.stack import BenchStack, cpu_snapshot, cpu_used, read_only_engine
from freshet.catalog.models import CollectionRun, Dataset, PreviewRequest

# The limits the scenario raises (the defaults are 2 at once and 5 per second per endpoint).
ENV = {
    "FRESHET_PREVIEW_ENDPOINT_CONCURRENCY": "16",
    "FRESHET_PREVIEW_ENDPOINT_RATE": "100000",
    "FRESHET_PREVIEW_ENDPOINT_BACKLOG": "256",
    "FRESHET_PREVIEW_DATASET_INTERVAL_S": "0",
}


async def run(
    stack: BenchStack,
    token: str,
    *,
    tables: int,
    source: Any,
    timeout_s: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    engine = read_only_engine(stack.catalog_url)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, headers=headers, timeout=30.0
        ) as http:
            response = await http.post(
                "/endpoints",
                json={"name": "bench-fanout", "kind": "sqlite", "config": {"path": str(source)}},
            )
            if response.status_code != 201:
                raise RuntimeError(f"registering: {response.status_code} {response.text}")
            endpoint = response.json()
            cpu_before = cpu_snapshot(stack.pids())
            started = time.perf_counter()
            trigger = await http.post(f"/collections/{endpoint['collection_id']}/trigger")
            trigger.raise_for_status()
            run_id = uuid.UUID(trigger.json()["id"])

        deadline = time.perf_counter() + timeout_s
        completed_at: datetime | None = None
        while completed_at is None:
            if time.perf_counter() > deadline:
                raise TimeoutError("the run did not finish")
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(CollectionRun.status, CollectionRun.completed_at).where(
                            CollectionRun.id == run_id
                        )
                    )
                ).one_or_none()
            if row is not None and row[0] not in ("QUEUED", "RUNNING"):
                if row[0] != "SUCCEEDED":
                    raise RuntimeError(f"the run ended {row[0]}")
                completed_at = row[1]
            await asyncio.sleep(0.02)
        run_done = time.perf_counter()
        if progress is not None:
            progress(f"run finished in {run_done - started:.1f}s; waiting for {tables} previews")

        endpoint_id = uuid.UUID(endpoint["id"])
        done = 0
        while done < tables:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {done} of {tables} previews within {timeout_s:.0f}s")
            async with engine.connect() as conn:
                done = int(
                    (
                        await conn.execute(
                            select(func.count()).where(
                                Dataset.endpoint_id == endpoint_id,
                                Dataset.preview_sampled_at.is_not(None),
                            )
                        )
                    ).scalar_one()
                )
            await asyncio.sleep(0.05)
        seen_all = time.perf_counter()
        cpu_after = cpu_snapshot(stack.pids())
        async with engine.connect() as conn:
            last_persisted = (
                await conn.execute(
                    select(func.max(Dataset.updated_at)).where(Dataset.endpoint_id == endpoint_id)
                )
            ).scalar_one()
            first_started, last_started = (
                await conn.execute(
                    select(
                        func.min(PreviewRequest.started_at), func.max(PreviewRequest.started_at)
                    ).where(PreviewRequest.endpoint_id == endpoint_id)
                )
            ).one()
            statuses = dict(
                (
                    await conn.execute(
                        select(PreviewRequest.status, func.count())
                        .where(PreviewRequest.endpoint_id == endpoint_id)
                        .group_by(PreviewRequest.status)
                    )
                ).all()
            )
    finally:
        await engine.dispose()

    assert completed_at is not None
    last = _aware(last_persisted)
    wall = (last - completed_at).total_seconds()
    return {
        "tables": tables,
        "limits": ENV,
        "run_s": round(run_done - started, 2),
        "run_completed_to_last_persisted_s": round(wall, 2),
        "previews_per_s": round(tables / wall, 1) if wall > 0 else None,
        "run_completed_to_first_sample_started_s": round(
            (_aware(first_started) - completed_at).total_seconds(), 3
        ),
        "sampling_span_s": round((_aware(last_started) - _aware(first_started)).total_seconds(), 2),
        "observed_s": round(seen_all - run_done, 2),
        "request_statuses": {str(k): int(v) for k, v in statuses.items()},
        "cpu_seconds": cpu_used(cpu_before, cpu_after),
    }


def _aware(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
