"""POST /query: SQL over the parquet caches (viewer)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from freshet.gateway.deps import Runtime, ViewerCaller
from freshet.gateway.query.formats import Format, render
from freshet.gateway.query.schemas import QueryIn, QueryOut
from freshet.gateway.service_layer import queries

router = APIRouter(tags=["query"])

_FORMATS = {
    200: {
        "model": QueryOut,
        "content": {
            Format.arrow.value: {"schema": {"type": "string", "format": "binary"}},
            Format.csv.value: {"schema": {"type": "string"}},
        },
    }
}


@router.post("/query", response_model=QueryOut, responses=_FORMATS)  # type: ignore[arg-type]
async def query(
    body: QueryIn, request: Request, caller: ViewerCaller, runtime: Runtime
) -> Response:
    """Run one SELECT over cached tables, named `"<connection>"."<schema>"."<table>"`.

    JSON by default; `Accept: application/vnd.apache.arrow.stream` or `text/csv` for those.
    Each table's current cache version is fixed when the query starts (a refresh finishing
    meanwhile changes nothing for it); a table with no usable cache is fetched first when
    lazy fetch is on (E_QUERY_NOT_CACHED / E_QUERY_SCHEMA_STALE otherwise). Read-only and
    confined: anything but a single SELECT over cached tables is refused with its code."""
    result = await queries.run_query(
        runtime.db,
        request.app.state.query_engine,
        request.app.state.sql_gate,
        caller,
        body,
        request.headers.get("accept"),
    )
    return render(result.format, result.table, result.types, result.meta())
