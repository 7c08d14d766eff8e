"""Datasets: search by name, endpoint and label; one dataset with its columns, keys, edges and
the stored preview with its provenance and age.

The stored preview is the **Cached** one; **Preview dataset** (`pages/previews.py`) takes a
live one, shown **Fresh**. The page also shows the table's cache and its refresh actions
(`pages/refreshes.py`).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Request, Response

from freshet.catalog.clock import utcnow
from freshet.catalog.dataset_search import DatasetQuery, dataset_cursor, known_labels
from freshet.gateway import errors
from freshet.gateway.deps import ReadUow
from freshet.gateway.refresh_schemas import CacheOut
from freshet.gateway.service_layer import dataset_lookup
from freshet.gateway.settings import GatewaySettings
from freshet.gateway.ui.preview_panel import load_panel
from freshet.gateway.ui.rendering import render
from freshet.gateway.ui.routing import ui_router
from freshet.gateway.ui.session import Viewer

router = ui_router()


PAGE_SIZE = 50
MAX_TEXT = 200


@router.get("/datasets")
async def search_page(
    request: Request,
    uow: ReadUow,
    user: Viewer,
    q: str = "",
    endpoint: str = "",
    label: str = "",
    after: str = "",
) -> Response:
    endpoint_id = None
    if endpoint:
        try:
            endpoint_id = uuid.UUID(endpoint)
        except ValueError:
            raise errors.ValidationFailed(
                "endpoint is not an endpoint id",
                details=[{"loc": ["query", "endpoint"], "msg": "not an id"}],
            ) from None
    query = DatasetQuery(
        text=q.strip()[:MAX_TEXT] or None, endpoint_id=endpoint_id, label=label.strip() or None
    )
    found = await dataset_lookup.search(uow, query, first=PAGE_SIZE + 1, after=after or None)
    page = found[:PAGE_SIZE]
    all_endpoints = await uow.endpoints.all()
    settings: GatewaySettings = request.app.state.settings
    now = utcnow()
    return render(
        request,
        "datasets.html",
        {
            "datasets": page,
            "ages": {
                d.id: dataset_lookup.preview_age(
                    d.payload.get("preview"), staleness_s=settings.preview_staleness_s, now=now
                )
                for d in page
            },
            "endpoints": all_endpoints,
            "names": {e.id: e.name for e in all_endpoints},
            "labels": await known_labels(uow.session),
            "q": q,
            "endpoint": endpoint,
            "label": label,
            "after": after,
            "next_after": dataset_cursor(page[-1]) if len(found) > PAGE_SIZE else None,
            "filtered": bool(q or endpoint or label),
        },
        user=user,
    )


@router.get("/datasets/{dataset_id}")
async def dataset_page(
    dataset_id: uuid.UUID,
    request: Request,
    uow: ReadUow,
    user: Viewer,
    follow: Annotated[uuid.UUID | None, Query(alias="request")] = None,
) -> Response:
    """`request`: a manual preview request to follow (the page polls it until answered)."""
    dataset, edges = await dataset_lookup.get_dataset(uow, dataset_id)
    related_ids = {e.source_dataset_id for e in edges} | {e.target_dataset_id for e in edges}
    related = await uow.datasets.many(related_ids - {dataset.id})
    settings: GatewaySettings = request.app.state.settings
    panel = await load_panel(uow, dataset.id, settings.preview_staleness_s, follow)
    endpoint = panel.endpoint
    cache = CacheOut.of(
        endpoint.name,
        dataset.schema_name,
        dataset.name,
        dataset.id,
        dataset.fingerprint,
        await uow.caches.get(dataset.id),
    )
    active = await uow.refreshes.active_item(dataset.id)
    return render(
        request,
        "dataset.html",
        {
            "dataset": dataset,
            "endpoint": endpoint,
            "outgoing": [e for e in edges if e.source_dataset_id == dataset.id],
            "incoming": [e for e in edges if e.target_dataset_id == dataset.id],
            "related": related,
            "panel": panel,
            "staleness_s": settings.preview_staleness_s,
            "primary_key": [str(c) for c in dataset.primary_key],
            "cache": cache,
            "active_refresh": active,
            "min_interval_s": int(settings.min_schedule_interval_s),
        },
        user=user,
    )
