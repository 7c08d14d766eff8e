"""Writing one cache version: complete and durable, or nothing.

Batches are written as they arrive (memory bounded by the batch size), the file is closed,
made durable (`CacheStore.make_durable`), and only then does the caller move the catalog
pointer. Any failure, cancellation included, removes the partial file before the error goes
on, so a failed refresh leaves nothing behind and the old version keeps serving. A process
killed outright leaves its partial file to the reconciler (the target is recorded in the
catalog before the first byte, so it is never taken for an orphan while its writer lives).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from freshet.cachestore.store import CacheStore

COMPRESSION = "zstd"
# A row group never holds more than this; each batch becomes (at least) one row group, so
# memory stays at one batch and the group size follows FRESHET_REFRESH_BATCH_ROWS.
ROW_GROUP_ROWS = 1024 * 1024


@dataclass(frozen=True)
class Written:
    rows: int
    size: int
    schema_fingerprint: str


def schema_fingerprint(schema: pa.Schema) -> str:
    """sha256 of the Arrow schema (names, types, nullability; no metadata)."""
    return hashlib.sha256(schema.remove_metadata().serialize().to_pybytes()).hexdigest()


async def write_version(
    store: CacheStore, path: str, batches: AsyncIterator[pa.RecordBatch]
) -> Written:
    """Write every batch into a new parquet file at `path` and make it durable."""
    sink = None
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        async for batch in batches:
            if writer is None:
                sink = await asyncio.to_thread(store.open_output, path)
                writer = pq.ParquetWriter(
                    sink,
                    batch.schema,
                    compression=COMPRESSION,
                    # Measured on the benchmark table: dictionary pages cost CPU and, for the
                    # high-cardinality columns caches mostly hold, grow the file (30 vs 19 MB
                    # per million rows); zstd alone compresses repeated values well.
                    use_dictionary=False,
                    write_statistics=True,
                )
            # Compression is CPU work: off the event loop.
            await asyncio.to_thread(writer.write_batch, batch, row_group_size=ROW_GROUP_ROWS)
            rows += batch.num_rows
        if writer is None:
            raise ValueError("the source sent no batch, not even an empty one")
        schema = writer.schema
        await asyncio.to_thread(writer.close)
        writer = None
        assert sink is not None
        await asyncio.to_thread(sink.close)
        sink = None
        await asyncio.to_thread(store.make_durable, path)
        size = await asyncio.to_thread(store.size, path)
        return Written(rows=rows, size=size, schema_fingerprint=schema_fingerprint(schema))
    except BaseException:
        # Synchronously: a cancelled task must not leave before the partial file is gone.
        _discard(store, path, writer, sink)
        raise


def _discard(
    store: CacheStore, path: str, writer: pq.ParquetWriter | None, sink: pa.NativeFile | None
) -> None:
    for closer in (writer, sink):
        if closer is not None:
            with contextlib.suppress(Exception):
                closer.close()
    with contextlib.suppress(Exception):
        store.remove_partial(path)
