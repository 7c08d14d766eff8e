"""Streaming a whole table as Arrow record batches, with memory bounded by the batch size.

Readers block (DuckDB, sqlite3), so a worker thread produces batches into a queue of
`QUEUE_BATCHES` slots that the event loop drains: at most that many batches plus the one
being built and the one being written exist at a time, whatever the table's size. Closing
or cancelling the consumer stops the producer at its next batch (and interrupts a running
DuckDB statement), so an abandoned refresh does not keep reading the source.

DuckDB reads PostgreSQL through its postgres scanner, loaded from the
`duckdb-extension-postgres` wheel (no download at run time; see docs/architecture.md for the
measurements that chose it), and reads DuckDB files and CSV/Parquet folders natively.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from freshet.connectors.errors import ConnectorError

QUEUE_BATCHES = 2
# DuckDB's share of a refresh: two threads (the machine's cores) and a buffer-manager cap, so a
# refresh's memory stays bounded whatever the table.
STREAM_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "threads": 2,
    "memory_limit": "256MB",
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "temp_directory": "",
}
_POLL_S = 0.05
_DONE = object()

Produce = Callable[[threading.Event], Iterator[pa.RecordBatch]]


async def stream_batches(
    produce: Produce, describe: Callable[[BaseException], ConnectorError]
) -> AsyncIterator[pa.RecordBatch]:
    """Run `produce(cancelled)` in a thread and yield its batches here.

    An exception in the thread is raised here as `describe(exc)` (a ConnectorError), outside
    any `except` block so the driver's exception, whose text may hold secrets, does not ride
    along.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=QUEUE_BATCHES)
    cancelled = threading.Event()

    def put(item: object) -> bool:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while True:
            try:
                future.result(timeout=_POLL_S)
                return True
            except TimeoutError:
                if cancelled.is_set():
                    future.cancel()
                    return False

    def work() -> None:
        try:
            for batch in produce(cancelled):
                if cancelled.is_set() or not put(batch):
                    return
        except BaseException as exc:
            put(_Failure(exc))
            return
        put(_DONE)

    thread = threading.Thread(target=work, name="freshet-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                error = describe(item.exc)
                break
            assert isinstance(item, pa.RecordBatch)
            yield item
    finally:
        cancelled.set()
        # Drain so a producer blocked on a full queue sees the flag, then wait for it.
        while not queue.empty():
            queue.get_nowait()
        await asyncio.to_thread(thread.join)
    raise error


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def duckdb_batches(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[object],
    batch_rows: int,
    cancelled: threading.Event,
) -> Iterator[pa.RecordBatch]:
    """The rows of `sql` as record batches of at most `batch_rows`, closing `conn` at the end.

    A watchdog interrupts the statement once `cancelled` is set.
    """
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(_POLL_S):
            if cancelled.is_set():
                conn.interrupt()
                return

    watchdog = threading.Thread(target=watch, name="freshet-duckdb-watchdog", daemon=True)
    watchdog.start()
    try:
        reader = conn.execute(sql, params).to_arrow_reader(batch_rows)
        empty = True
        for batch in reader:
            if batch.num_rows:
                empty = False
                yield batch
        if empty:
            # An empty table still has a shape, and its cache file must keep it.
            yield pa.RecordBatch.from_pylist([], schema=reader.schema)
    finally:
        stop.set()
        watchdog.join()
        conn.close()


def new_duckdb(
    config: dict[str, str | bool | int | float | list[str]] | None = None,
) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(config={**STREAM_CONFIG, **(config or {})})


_extension_lock = threading.Lock()


def postgres_extension_path() -> Path:
    """The postgres scanner shipped in the `duckdb-extension-postgres` wheel, under the name
    DuckDB derives its entry point from (`postgres_scanner`), without installing it into the
    user's home."""
    version = f"v{duckdb.__version__}"
    shipped = (
        Path(str(importlib.resources.files("duckdb_extension_postgres") / "extensions" / version))
        / "postgres.duckdb_extension"
    )
    if not shipped.exists():
        raise ConnectorError(
            f"the postgres scanner for DuckDB {duckdb.__version__} is not installed "
            "(duckdb-extension-postgres must match the duckdb version)",
            transient=False,
        )
    base = Path(tempfile.gettempdir()) / f"freshet-duckdb-{os.getuid()}"
    link = base / version / "postgres_scanner.duckdb_extension"
    with _extension_lock:
        base.mkdir(exist_ok=True, mode=0o700)
        owner = base.stat()
        # Code loaded from here runs in this process: refuse a folder someone else made or
        # can write to (the temp folder is shared).
        if owner.st_uid != os.getuid() or owner.st_mode & 0o022:
            raise ConnectorError(f"{base} is not private to this user", transient=False)
        link.parent.mkdir(exist_ok=True, mode=0o700)
        if not (link.is_symlink() and link.resolve() == shipped.resolve()):
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(shipped)
    return link
