"""Refresh throughput: a PostgreSQL table into a parquet cache version, against the raw floor.

The floor is `COPY (SELECT …) TO STDOUT` read with asyncpg and discarded: what the server and
the wire can deliver here, measured in the same run. The refresh is the refresher's own path
(`PostgresConnector.stream` -> `write_version` into a local `CacheStore`: DuckDB's postgres
scanner, Arrow batches, zstd parquet, fsync). Each runs in a child process of its own, so its
peak RSS (`ru_maxrss`) is its own; the best of `rounds` runs of each is reported.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

COLUMNS_SQL = "SELECT id, amount, label, price, at, paid, note FROM bench.orders"


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(server: str, sql: str) -> None:
    conn = await asyncpg.connect(_dsn(server))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_source(server: str, rows: int) -> str:
    """A scratch database with bench.orders of `rows` rows: int, bigint, ~20-char text,
    numeric, timestamp, boolean and a nullable text column (a third NULL)."""
    name = f"freshet_bench_refresh_{uuid.uuid4().hex[:8]}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute(
            f"""
            CREATE SCHEMA bench;
            CREATE TABLE bench.orders AS
            SELECT g::int AS id,
                   (g::bigint * 7919) AS amount,
                   substr(md5(g::text), 1, 20) AS label,
                   round((g % 100000) / 7.0, 2)::numeric(12, 2) AS price,
                   timestamp '2026-01-01' + g * interval '1 second' AS at,
                   g % 2 = 0 AS paid,
                   CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || (g % 1000) END AS note
            FROM generate_series(1, {rows}) AS g;
            ANALYZE bench.orders;
            """
        )
    finally:
        await conn.close()
    return url


def _child(mode: str, url: str, workdir: Path, batch_rows: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.refresh_child", mode, url, str(workdir), str(batch_rows)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{mode} child failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(
    server: str,
    *,
    rows: int,
    rounds: int,
    batch_rows: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    progress(f"refresh: creating a {rows:,}-row PostgreSQL table")
    started = time.perf_counter()
    url = asyncio.run(create_source(server, rows))
    progress(f"refresh: source ready in {time.perf_counter() - started:.1f}s")
    floors: list[dict[str, Any]] = []
    refreshes: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="freshet-bench-refresh-") as folder:
            for index in range(rounds):
                floors.append(_child("floor", url, Path(folder), batch_rows))
                progress(
                    f"refresh: floor round {index + 1}: {floors[-1]['rows_per_s']:,.0f} rows/s"
                )
                refreshes.append(_child("refresh", url, Path(folder), batch_rows))
                progress(
                    f"refresh: refresh round {index + 1}: {refreshes[-1]['rows_per_s']:,.0f} rows/s"
                    f", peak RSS {refreshes[-1]['peak_rss_mb']:.0f} MB"
                )
    finally:
        asyncio.run(
            _admin(server, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        )
    floor = max(floors, key=lambda r: r["rows_per_s"])
    best = max(refreshes, key=lambda r: r["rows_per_s"])
    return {
        "rows": rows,
        "batch_rows": batch_rows,
        "rounds": rounds,
        "floor": floor,
        "refresh": best,
        "ratio": best["rows_per_s"] / floor["rows_per_s"],
        "all_floors": floors,
        "all_refreshes": refreshes,
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in refreshes),
        "target": {"ratio": 0.8, "peak_rss_mb": 300},
    }
