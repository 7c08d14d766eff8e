"""Query overhead: what resolving pointers and registering reader leases costs a query, and
query latency while a refresh of the same table runs (the whole system running).

A PostgreSQL table (the refresh scenario's `bench.orders`, `--query-rows` rows) is registered,
discovered and refreshed once through the gateway. Then `--queries` aggregate queries run one
after another, twice: on a quiet system, and while forced refreshes of the same table follow
each other without pause. Each answer carries the gateway's own timings (`resolve`: pointers
plus lease in one catalog transaction; `release`: the lease; `setup`: the query's DuckDB
instance; `execute`); the client measures the whole request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from bench.refresh import _admin, create_source
from bench.stack import BenchStack
from bench.stats import summary_ms

SQL = 'SELECT count(*), sum(amount), max(label) FROM "{name}"."bench"."orders" WHERE id % 10 = 1'


async def _queries(
    http: httpx.AsyncClient, sql: str, count: int, versions: set[str]
) -> dict[str, list[float]]:
    seen: dict[str, list[float]] = {
        k: [] for k in ("client", "resolve", "release", "overhead", "setup", "execute")
    }
    for _ in range(count):
        started = time.perf_counter()
        response = await http.post("/query", json={"sql": sql})
        seen["client"].append(time.perf_counter() - started)
        response.raise_for_status()
        body = response.json()
        timings = body["timings"]
        for key in ("resolve", "release", "setup", "execute"):
            seen[key].append(timings[key] / 1000)
        seen["overhead"].append((timings["resolve"] + timings["release"]) / 1000)
        versions.add(body["tables"][0]["version"])
    return seen


async def _measure(
    stack: BenchStack, token: str, source: str, queries: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    src = make_url(source)
    name = f"bench-{uuid.uuid4().hex[:6]}"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=600) as http:
        created = await http.post(
            "/endpoints",
            json={
                "name": name,
                "kind": "postgres",
                "config": {
                    "host": src.host or "127.0.0.1",
                    "port": src.port or 5432,
                    "database": src.database,
                    "user": src.username or "postgres",
                },
            },
        )
        created.raise_for_status()
        (await http.post(f"/connections/{name}/discover")).raise_for_status()
        path = f"/connections/{name}/tables/bench/orders/refresh"
        first = await http.post(path)
        first.raise_for_status()
        progress(f"query: table cached ({first.json().get('duration_ms')} ms refresh)")
        sql = SQL.format(name=name)
        versions: set[str] = set()
        await _queries(http, sql, 5, versions)  # warm-up: spares opened, caches warm
        quiet = await _queries(http, sql, queries, versions)
        progress(f"query: {queries} queries on a quiet system")

        refreshing = asyncio.Event()
        stop = asyncio.Event()
        refreshes: list[float] = []

        async def refresh_loop() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                refreshing.set()
                answer = await http.post(path, params={"force": "true"})
                answer.raise_for_status()
                refreshes.append(time.perf_counter() - started)

        loop = asyncio.create_task(refresh_loop())
        await refreshing.wait()
        versions_during: set[str] = set()
        try:
            during = await _queries(http, sql, queries, versions_during)
        finally:
            stop.set()
            await loop
        progress(f"query: {queries} queries while {len(refreshes)} refreshes ran")
    return {
        "queries": queries,
        "quiet": {key: summary_ms(values) for key, values in quiet.items()},
        "during_refresh": {key: summary_ms(values) for key, values in during.items()},
        "refreshes_during": len(refreshes),
        "refresh_ms": summary_ms(refreshes),
        "versions_seen_during": len(versions_during),
    }


def run(
    stack: BenchStack,
    token: str,
    *,
    server: str,
    rows: int,
    queries: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    progress(f"query: creating a {rows:,}-row PostgreSQL table")
    source = asyncio.run(create_source(server, rows))
    try:
        result = asyncio.run(_measure(stack, token, source, queries, progress))
    finally:
        asyncio.run(
            _admin(server, f'DROP DATABASE IF EXISTS "{make_url(source).database}" WITH (FORCE)')
        )
    result["rows"] = rows
    return result
