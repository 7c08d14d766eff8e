"""The interface every source connector implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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
