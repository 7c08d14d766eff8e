"""The web UI: server-rendered pages on the gateway, under /ui.

Pages call the same service layer as REST and GraphQL (`freshet.gateway.service_layer`) and
its errors become pages (`routing.UiRoute`). `install(app)` adds the pages, the static files
and the live-update feed to the gateway app. How to add a page: docs/architecture.md, "Web UI".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from freshet.contracts import RunCompleted, topic_for
from freshet.gateway import errors
from freshet.gateway.settings import GatewaySettings
from freshet.gateway.ui import live
from freshet.gateway.ui.pages import (
    audit,
    auth,
    datasets,
    endpoints,
    previews,
    query,
    refreshes,
    runs,
)
from freshet.gateway.ui.rendering import STATIC
from freshet.gateway.ui.routing import ui_router
from freshet.kit.service import ServiceRuntime

fallback = ui_router()


@fallback.api_route("/{rest:path}", methods=["GET", "POST"])
async def not_found(rest: str) -> Response:
    """Any other address under /ui: a page, not the API's JSON 404."""
    raise errors.NotFound(f"no page at /ui/{rest}")


# Page routers in the order they are matched; a new section adds its module here.
PAGES = (auth, endpoints, runs, datasets, previews, refreshes, query, audit, live)


def install(app: FastAPI, runtime: ServiceRuntime, settings: GatewaySettings) -> None:
    hub = live.LiveRuns(runtime.db, settings.ui_live_poll_s)
    app.state.live_runs = hub
    runtime.subscribe(topic_for(RunCompleted), live.GROUP, hub.on_run_completed)
    refreshes_hub = live.LiveRefreshes(runtime.db, settings.ui_live_poll_s)
    app.state.live_refreshes = refreshes_hub
    for feed in (hub, refreshes_hub):
        runtime.on_exit_requested(feed.close)
        runtime.on_stop(_closer(feed))

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        """Browsers opening the gateway's address land in the UI; API clients get the API's
        404, as for any other path no route matches (`/endpoints/..` arrives here too)."""
        if "text/html" not in request.headers.get("accept", ""):
            raise errors.NotFound("no route at /; the API is described at /docs")
        return RedirectResponse("/ui/", 307)

    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    for module in PAGES:
        app.include_router(module.router)
    # What the navigation may link to: its optional sections show only once served.
    app.state.ui_paths = frozenset(
        path for module in PAGES for route in module.router.routes if (path := route.path)
    )
    app.include_router(fallback)


def _closer(feed: live.LiveFeed[Any]) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        feed.close()

    return close
