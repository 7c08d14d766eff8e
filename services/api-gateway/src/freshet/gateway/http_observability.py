"""Correlation ids and request metrics for every HTTP request to the gateway."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram

CORRELATION_HEADER = "X-Correlation-ID"

REQUESTS = Counter(
    "freshet_http_requests_total",
    "HTTP requests by route, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "freshet_http_request_duration_seconds",
    "HTTP request latency by route.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
log = structlog.get_logger("freshet.http")


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        supplied = request.headers.get(CORRELATION_HEADER, "")
        cid = supplied if 0 < len(supplied) <= 100 and supplied.isprintable() else str(uuid.uuid4())
        request.state.correlation_id = cid
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(correlation_id=cid):
            try:
                response = await call_next(request)
            except Exception:
                # Starlette would answer outside every middleware: no body, no correlation id,
                # not counted. Answer here so 5xx alerts and the logs see it.
                log.exception("unhandled error", method=request.method, path=request.url.path)
                response = JSONResponse(
                    {"error": {"code": "E_INTERNAL", "message": "internal error"}},
                    status_code=500,
                )
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            REQUESTS.labels(path, request.method, str(response.status_code)).inc()
            LATENCY.labels(path, request.method).observe(elapsed)
            if path not in ("/metrics", "/health", "/ready"):
                log.info(
                    "http request",
                    method=request.method,
                    route=path,
                    status=response.status_code,
                    ms=round(elapsed * 1000, 1),
                )
        response.headers[CORRELATION_HEADER] = cid
        return response
