"""One measured run of the refresh benchmark, in a process of its own (see bench.refresh).

    python -m bench.refresh_child floor|refresh <database url> <work folder> <batch rows>

Prints one JSON line: rows, seconds, rows/s, peak RSS (MB).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bench.refresh import COLUMNS_SQL, _dsn
from freshet.cachestore import CacheStore, new_version, write_version
from freshet.connectors import connector_for


async def floor(url: str) -> int:
    """Raw COPY output read and discarded; the row count from the server's own count."""
    conn = await asyncpg.connect(_dsn(url))
    received = 0

    async def sink(chunk: bytes) -> None:
        nonlocal received
        received += len(chunk)

    try:
        status = await conn.copy_from_query(COLUMNS_SQL, output=sink)
    finally:
        await conn.close()
    return int(str(status).split()[-1])


async def refresh(url: str, folder: Path, batch_rows: int) -> tuple[int, int]:
    parsed = make_url(url)
    connector = connector_for(
        "postgres",
        {
            "host": parsed.host or "127.0.0.1",
            "port": parsed.port or 5432,
            "database": parsed.database,
            "user": parsed.username or "postgres",
        },
        {"password": parsed.password or ""},
        timeout_s=60,
    )
    store = CacheStore.local(folder / "cache")
    path = store.version_path(uuid.uuid4(), "bench", "orders", new_version())
    written = await write_version(
        store, path, connector.stream("bench", "orders", batch_rows=batch_rows)
    )
    return written.rows, written.size


def main(argv: list[str]) -> int:
    mode, url, folder, batch_rows = argv[0], argv[1], Path(argv[2]), int(argv[3])
    started = time.perf_counter()
    result: dict[str, Any] = {"mode": mode}
    if mode == "floor":
        rows = asyncio.run(floor(url))
    else:
        rows, size = asyncio.run(refresh(url, folder, batch_rows))
        result["bytes"] = size
    seconds = time.perf_counter() - started
    result |= {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": rows / seconds,
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
