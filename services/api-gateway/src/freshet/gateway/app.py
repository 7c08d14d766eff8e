"""The api-gateway: REST over the catalog (GraphQL and the web UI join it later)."""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from freshet.cachestore import store_from_settings
from freshet.gateway import errors, http_observability, ui
from freshet.gateway.auth import TokenStore
from freshet.gateway.body_limit import BodyLimit
from freshet.gateway.graphql import graphql_router
from freshet.gateway.query.engine import EngineLimits, QueryEngine
from freshet.gateway.query.gate import SqlGate
from freshet.gateway.routes import (
    audit,
    collections,
    datasets,
    endpoints,
    previews,
    runs,
    schedules,
)
from freshet.gateway.routes import connections as connection_routes
from freshet.gateway.routes import dead_letters as dead_letter_routes
from freshet.gateway.routes import query as query_routes
from freshet.gateway.settings import GatewaySettings
from freshet.kit.secrets import secret_box
from freshet.kit.service import ServiceRuntime

log = structlog.get_logger("freshet.gateway")


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    runtime = ServiceRuntime("gateway", settings)
    app = runtime.app(
        description=(
            "Freshet keeps a data catalog fresh. Authenticate with `Authorization: Bearer <token>`."
        ),
        version="0.1.0",
    )
    app.state.settings = settings
    app.state.tokens = TokenStore.from_settings(settings)

    async def warn_without_tokens() -> None:
        if not app.state.tokens:
            log.warning(
                "no API tokens configured: every request will be refused; "
                "set FRESHET_API_TOKENS or FRESHET_API_TOKENS_FILE"
            )

    runtime.on_start(warn_without_tokens)
    app.state.secret_box = secret_box(settings)
    errors.install(app)
    # Inside the observability middleware, so refusals are counted and carry a correlation id.
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    http_observability.install(app)
    for router in (
        endpoints.router,
        collections.router,
        runs.router,
        schedules.router,
        datasets.router,
        dead_letter_routes.router,
        previews.router,
        audit.router,
        connection_routes.router,
        query_routes.router,
    ):
        app.include_router(router)
    app.include_router(graphql_router())
    ui.install(app, runtime, settings)
    _install_query_path(app, runtime, settings)
    return app


def _install_query_path(app: FastAPI, runtime: ServiceRuntime, settings: GatewaySettings) -> None:
    """The SQL gate and the query engine over the cache store, closed when the gateway stops."""
    app.state.sql_gate = SqlGate()
    app.state.query_engine = QueryEngine(
        store_from_settings(settings),
        EngineLimits(
            threads=settings.query_threads,
            memory_limit=settings.query_memory_limit,
            max_concurrent=settings.query_max_concurrent,
            spares=settings.query_spare_instances,
        ),
    )

    async def close_query_path() -> None:
        app.state.query_engine.close()
        app.state.sql_gate.close()

    runtime.on_stop(close_query_path)
