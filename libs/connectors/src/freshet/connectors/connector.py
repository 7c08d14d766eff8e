"""The interface every source connector implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import pyarrow as pa

from freshet.connectors.models import Sample, TableInfo


@runtime_checkable
class Connector(Protocol):
    """One configured source. Every method opens its own connection and closes it again.

    Every method raises `ConnectorError` (and nothing else, apart from cancellation) on failure.
    """

    kind: str

    async def test(self) -> None:
        """Connect and run a trivial query; return normally when the source is usable."""
        ...

    async def introspect(self) -> list[TableInfo]:
        """Every table and view the connector can read, sorted by (schema_name, name)."""
        ...

    async def sample(self, schema_name: str, table: str, limit: int) -> Sample:
        """At most `limit` rows of a table or view, without scanning all of it."""
        ...

    def stream(
        self, schema_name: str, table: str, *, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        """Every row of a table or view as Arrow record batches of at most `batch_rows` rows,
        all of one schema (one empty batch for an empty table), read as it is consumed
        (memory bounded by the batch size). Not bound by the statement timeout: the caller
        bounds the whole read. Failures raise ConnectorError from the iteration."""
        ...
