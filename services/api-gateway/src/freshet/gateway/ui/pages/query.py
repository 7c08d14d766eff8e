"""The query console: SQL over the cached tables through `POST /query`'s service-layer call,
the result as a table with its row limit, timing and the tables (and versions) it read;
refusals shown on the page with their stable codes, the SQL kept for another try."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from fastapi import Request, Response
from pydantic import ValidationError

from freshet.gateway import errors
from freshet.gateway.deps import ReadUow, Runtime, caller_for
from freshet.gateway.query.formats import Format
from freshet.gateway.query.schemas import QueryIn
from freshet.gateway.service_layer import queries
from freshet.gateway.service_layer.refresh_lookup import list_cached_tables
from freshet.gateway.ui.rendering import render
from freshet.gateway.ui.routing import ui_router
from freshet.gateway.ui.session import Viewer

router = ui_router()

# Tables listed as a reminder of what can be queried (the refreshes page lists them all).
LISTED_TABLES = 50
DEFAULT_LIMIT = 100
# Cells longer than this are cut on the page (the API returns them whole).
CELL_CHARS = 200


async def _page(
    request: Request,
    uow: ReadUow,
    user: Viewer,
    *,
    sql: str = "",
    limit: str = "",
    result: dict[str, Any] | None = None,
    problem: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    tables = await list_cached_tables(uow, first=LISTED_TABLES)
    if not sql and tables:
        first = tables[0]
        sql = f'SELECT * FROM "{first.endpoint_name}"."{first.schema_name}"."{first.table_name}"'
    return render(
        request,
        "query.html",
        {
            "sql": sql,
            "limit": limit or str(DEFAULT_LIMIT),
            "result": result,
            "problem": problem,
            "tables": tables,
            "cell_chars": CELL_CHARS,
        },
        status=status,
        user=user,
    )


@router.get("/query")
async def query_page(request: Request, uow: ReadUow, user: Viewer) -> Response:
    return await _page(request, uow, user)


@router.post("/query")
async def run_query(request: Request, uow: ReadUow, runtime: Runtime, user: Viewer) -> Response:
    form = await request.form()
    sql = str(form.get("sql") or "")
    limit = str(form.get("limit") or "").strip()
    try:
        body = QueryIn.model_validate({"sql": sql, "limit": limit or None})
    except ValidationError as exc:
        where = {str(e["loc"][-1]) for e in exc.errors()}
        message = "Enter a SELECT." if "sql" in where else "The row limit must be a whole number."
        problem = {"code": "E_VALIDATION", "message": message}
        return await _page(request, uow, user, sql=sql, limit=limit, problem=problem, status=422)
    try:
        ran = await queries.run_query(
            runtime.db,
            request.app.state.query_engine,
            request.app.state.sql_gate,
            caller_for(request, user.principal),
            body,
            Format.json.value,
        )
    except errors.ApiError as exc:
        problem = {"code": exc.code, "message": exc.message}
        return await _page(
            request, uow, user, sql=sql, limit=limit, problem=problem, status=exc.status
        )
    result = {
        "columns": [
            {"name": name, "type": kind}
            for name, kind in zip(ran.table.column_names, ran.types, strict=True)
        ],
        "rows": [[_cell(v) for v in row.values()] for row in ran.table.to_pylist()],
        **ran.meta(),
    }
    # Shown in the viewer's time zone, as every time on these pages.
    result["tables"] = [
        {**t, "synced_at": datetime.fromisoformat(t["synced_at"])} for t in result["tables"]
    ]
    return await _page(request, uow, user, sql=sql, limit=limit, result=result)


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value
