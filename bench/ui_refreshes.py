"""The web UI's refreshes page and live refresh feed over a catalog with many refresh jobs.

Refresh jobs are never pruned and a scheduled table refresh adds one per tick, so the page's
newest-first listing and the feed's poll of open jobs must not grow with the history. This
fills a catalog (SQLite in the bench's folder, or a scratch PostgreSQL database with
--postgres) with `jobs` finished connection jobs of `tables` tables each plus `open_jobs`
running ones, then times, in this process (the gateway app through ASGI, no network):

- `GET /ui/refreshes` as a signed-in viewer: the running jobs, the first page of finished ones,
  their progress and tables, and the cached tables;
- one poll of `LiveRefreshes` (what every gateway does each `FRESHET_UI_LIVE_POLL_S` while a
  refreshes page is open);
- the same page without the index of migration 0010 (`ix_refresh_jobs_requested_at_id`),
  to show what it is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import insert, text

from bench.stats import summary_ms
from freshet.catalog import Database, DatasetSpec, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.migrate import migrate
from freshet.catalog.models import RefreshItem, RefreshJob
from freshet.catalog.secrets import generate_key
from freshet.devstack.ui_client import UiClient
from freshet.gateway.app import create_app
from freshet.gateway.settings import GatewaySettings
from freshet.gateway.ui.live import LiveRefreshes
from freshet.kit.tokens import new_token, token_entry

INSERT_BATCH = 5_000
REPEATS = 7


async def _fill(db: Database, jobs: int, tables: int, open_jobs: int) -> None:
    async with UnitOfWork(db) as uow:
        endpoint = await uow.endpoints.add(name="bench-refreshes", kind="postgres", config={})
        await uow.datasets.sync(
            endpoint_id=endpoint.id,
            endpoint_kind="postgres",
            run_id=uuid.uuid4(),
            specs=[
                DatasetSpec(
                    schema_name="public",
                    name=f"t{i}",
                    kind="table",
                    columns=[{"name": "id", "data_type": "integer", "nullable": False}],
                    primary_key=["id"],
                    foreign_keys=[],
                    fingerprint=f"fp{i}",
                )
                for i in range(tables)
            ],
        )
        datasets = await uow.datasets.for_endpoint(endpoint.id)
        await uow.commit()
    now = utcnow()
    job_rows: list[dict[str, Any]] = []
    item_rows: list[dict[str, Any]] = []
    for j in range(jobs + open_jobs):
        job_id = uuid.uuid4()
        running = j >= jobs
        job_rows.append(
            {
                "id": job_id,
                "endpoint_id": endpoint.id,
                "scope": "connection",
                "status": "in_progress" if running else "completed",
                "trigger_source": "schedule",
                "requested_by": "bench",
                "force": False,
                "concurrency": 5,
                "tables_total": tables,
                "rows_synced": 0,
                "bytes_written": 0,
                "requested_at": now - timedelta(seconds=jobs + open_jobs - j),
                "created_at": now,
                "updated_at": now,
            }
        )
        item_rows.extend(
            {
                "refresh_id": job_id,
                "dataset_id": d.id,
                "schema_name": d.schema_name,
                "table_name": d.name,
                # Running jobs' tables wait (the one-active-item index allows one queued or
                # running item per table across all jobs).
                "status": "waiting" if running else "succeeded",
                "attempts": 1,
                "rows": 10,
                "bytes": 100,
            }
            for d in datasets
        )
    async with UnitOfWork(db) as uow:
        for rows, model in ((job_rows, RefreshJob), (item_rows, RefreshItem)):
            for start in range(0, len(rows), INSERT_BATCH):
                await uow.session.execute(insert(model), rows[start : start + INSERT_BATCH])
        await uow.commit()
    if db.dialect == "postgresql":
        # What autovacuum does soon after a bulk load: without statistics the planner takes
        # a million items for a few and scans them all (measured: 70 ms a query instead of 1).
        async with db.engine.begin() as conn:  # committed: ANALYZE is transactional
            await conn.execute(text("ANALYZE refresh_jobs"))
            await conn.execute(text("ANALYZE refresh_items"))


async def _time_page(url: str, folder: Path) -> tuple[list[float], int]:
    token = new_token()
    app = create_app(
        GatewaySettings(
            database_url=url,
            api_tokens=SecretStr(token_entry(token, "viewer", "bench")),
            secret_keys=SecretStr(generate_key()),
            data_dir=folder,
            kafka_bootstrap="127.0.0.1:1",  # no broker: pages only read the catalog
        )
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as http:
            ui = UiClient(http)
            await ui.sign_in(token)
            timings, size = [], 0
            for _ in range(REPEATS):
                started = time.perf_counter()
                page = await ui.get("/ui/refreshes")
                timings.append(time.perf_counter() - started)
                if page.status_code != 200:
                    raise RuntimeError(f"/ui/refreshes answered {page.status_code}")
                size = len(page.content)
            return timings, size
    finally:
        await app.state.runtime.db.dispose()


async def _time_poll(db: Database) -> list[float]:
    feed = LiveRefreshes(db, poll_s=1.0)
    previous: dict[uuid.UUID, str] = {}
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        previous = await feed._poll(previous)
        timings.append(time.perf_counter() - started)
    return timings


async def _measure(
    url: str, folder: Path, jobs: int, tables: int, open_jobs: int
) -> dict[str, Any]:
    db = Database(url)
    try:
        await migrate(url)
        started = time.perf_counter()
        await _fill(db, jobs, tables, open_jobs)
        fill_s = time.perf_counter() - started
        page, size = await _time_page(url, folder)
        poll = await _time_poll(db)
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_refresh_jobs_requested_at_id"))
        unindexed, _ = await _time_page(url, folder)
    finally:
        await db.dispose()
    return {
        "jobs": jobs,
        "tables_per_job": tables,
        "open_jobs": open_jobs,
        "fill_s": round(fill_s, 1),
        "page_ms": summary_ms(page),
        "page_kib": size // 1024,
        "poll_ms": summary_ms(poll),
        "page_without_index_ms": summary_ms(unindexed),
    }


def run(
    catalog: Callable[[], contextlib.AbstractContextManager[str | None]],
    folder: Path,
    *,
    jobs: int,
    tables: int,
    open_jobs: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    with catalog() as url:
        target = url or f"sqlite:///{folder / 'ui-refreshes.db'}"
        progress(f"ui refreshes: {jobs} jobs of {tables} tables, {open_jobs} running")
        result = asyncio.run(_measure(target, folder, jobs, tables, open_jobs))
    result["catalog"] = "postgresql" if url else "sqlite"
    progress(
        f"ui refreshes: page p50 {result['page_ms']['p50']} ms "
        f"(without the index {result['page_without_index_ms']['p50']} ms), "
        f"live poll p50 {result['poll_ms']['p50']} ms"
    )
    return result


def report_lines(r: dict[str, Any]) -> Iterator[str]:
    yield ""
    yield (
        f"6. Web UI refreshes page ({r['catalog']} catalog, in-process): {r['jobs']:,} finished "
        f"jobs of {r['tables_per_job']} tables, {r['open_jobs']} running"
    )
    page, poll, bare = r["page_ms"], r["poll_ms"], r["page_without_index_ms"]
    yield (
        f"   GET /ui/refreshes             p50 {page['p50']} ms, max {page['max']} ms "
        f"({r['page_kib']} KiB)"
    )
    yield f"   without ix_..._requested_at_id p50 {bare['p50']} ms, max {bare['max']} ms"
    yield f"   one live refresh poll         p50 {poll['p50']} ms, max {poll['max']} ms"
