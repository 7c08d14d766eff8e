"""Datasets: search by name, endpoint and label; one dataset with its columns, keys, edges and
the stored preview with its provenance and age.

The stored preview is the **Cached** one. The live sample (**Preview dataset**, a **Fresh**
badge) arrives with the preview API: the template leaves a `preview_actions` block for it.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request, Response

from freshet.catalog.clock import utcnow
from freshet.catalog.dataset_search import DatasetQuery, dataset_cursor, known_labels
from freshet.gateway import errors
from freshet.gateway.auth import Role
from freshet.gateway.deps import ReadUow
from freshet.gateway.service_layer import dataset_lookup
from freshet.gateway.settings import GatewaySettings
from freshet.gateway.ui.rendering import render
from freshet.gateway.ui.routing import ui_router
from freshet.gateway.ui.session import UiUser, user_with

router = ui_router()

Viewer = Annotated[UiUser, Depends(user_with(Role.viewer))]

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
    dataset_id: uuid.UUID, request: Request, uow: ReadUow, user: Viewer
) -> Response:
    dataset, edges = await dataset_lookup.get_dataset(uow, dataset_id)
    related_ids = {e.source_dataset_id for e in edges} | {e.target_dataset_id for e in edges}
    related = await uow.datasets.many(related_ids - {dataset.id})
    endpoint = await uow.endpoints.get(dataset.endpoint_id)
    settings: GatewaySettings = request.app.state.settings
    preview = dataset.payload.get("preview")
    return render(
        request,
        "dataset.html",
        {
            "dataset": dataset,
            "endpoint": endpoint,
            "outgoing": [e for e in edges if e.source_dataset_id == dataset.id],
            "incoming": [e for e in edges if e.target_dataset_id == dataset.id],
            "related": related,
            "preview": preview if isinstance(preview, dict) else None,
            "preview_error": dataset.payload.get("previewError"),
            "opted_out": bool(dataset.payload.get("previewOptOut")),
            "age": dataset_lookup.preview_age(
                preview if isinstance(preview, dict) else None,
                staleness_s=settings.preview_staleness_s,
                now=utcnow(),
            ),
            "staleness_s": settings.preview_staleness_s,
            "primary_key": [str(c) for c in dataset.primary_key],
        },
        user=user,
    )
