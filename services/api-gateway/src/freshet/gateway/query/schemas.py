"""Request and response bodies of POST /query."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Statements longer than this are refused before anything parses them.
MAX_SQL_CHARS = 100_000


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(
        min_length=1,
        max_length=MAX_SQL_CHARS,
        pattern=r"^[^\x00]*$",
        description='One SELECT; tables are named "<connection>"."<schema>"."<table>".',
    )
    limit: int | None = Field(
        default=None,
        ge=1,
        description="Most rows returned (default FRESHET_QUERY_DEFAULT_ROW_LIMIT, at most "
        "FRESHET_QUERY_MAX_ROW_LIMIT); `truncated` says whether rows were left out.",
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Statement timeout (default and maximum FRESHET_QUERY_TIMEOUT_S).",
    )


class ColumnOut(BaseModel):
    name: str
    type: str = Field(description="DuckDB's type name.")


class TableRead(BaseModel):
    """A table the query read, and which version of its cache."""

    name: str = Field(description='"<connection>"."<schema>"."<table>"')
    connection: str
    schema_name: str = Field(alias="schema")
    table: str
    version: str
    synced_at: datetime
    rows: int
    fetched: bool = Field(description="Fetched (or brought up to date) for this query first.")
    refresh_id: uuid.UUID | None = Field(description="The refresh it fetched with or joined.")
    joined: bool = Field(description="Joined a refresh that was already running.")

    model_config = ConfigDict(populate_by_name=True)


class QueryOut(BaseModel):
    """The JSON result (Arrow and CSV carry the rows; the rest travels in headers)."""

    query_id: uuid.UUID
    columns: list[ColumnOut]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(description="More rows matched than `limit`; they were left out.")
    limit: int
    tables: list[TableRead]
    timings: dict[str, float] = Field(
        description="Milliseconds: resolve (pointers and reader lease, one transaction), "
        "fetch (lazy fetches), setup (the query's DuckDB instance and views), execute, "
        "release (the lease), total."
    )
