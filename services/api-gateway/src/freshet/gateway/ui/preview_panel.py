"""The dataset page's preview panel: the stored sample (**Cached**) or the one a manual request
just took (**Fresh**), the request still sampling, or why it gave no rows.

Built from the service layer's `PreviewView` (the same one REST and GraphQL answer with) and
the request's handle, so the panel says exactly what `POST /datasets/{id}/preview` would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from freshet.catalog import Dataset, Endpoint, PreviewRequest, UnitOfWork
from freshet.catalog import previews as request_status
from freshet.gateway import errors
from freshet.gateway.service_layer import previews
from freshet.gateway.service_layer.previews import PreviewView
from freshet.gateway.ui.routing import ERROR_PAGES


@dataclass(frozen=True)
class Problem:
    """Why a preview request gave no rows, in the words of its stable error code."""

    code: str
    message: str

    @classmethod
    def of(cls, exc: errors.ApiError) -> Problem:
        return cls(exc.code, exc.message)

    @property
    def title(self) -> str:
        return ERROR_PAGES.get(self.code, ERROR_PAGES["E_INTERNAL"])[0]

    @property
    def advice(self) -> str:
        return ERROR_PAGES.get(self.code, ERROR_PAGES["E_INTERNAL"])[1]


@dataclass(frozen=True)
class Cut:
    kind: str
    size: int


@dataclass(frozen=True)
class PreviewPanel:
    view: PreviewView
    request: PreviewRequest | None = None
    problem: Problem | None = None
    # (row, column) -> what the previewer cut there (from `truncation.cuts`).
    cuts: dict[tuple[int, str], Cut] = field(default_factory=dict)

    @property
    def dataset(self) -> Dataset:
        return self.view.dataset

    @property
    def endpoint(self) -> Endpoint:
        return self.view.endpoint

    @property
    def preview(self) -> dict[str, Any] | None:
        return self.view.preview

    @property
    def fresh(self) -> bool:
        return self.view.preview is not None and not self.view.cached

    @property
    def pending(self) -> bool:
        """The request is still on its way: the page polls until it is answered."""
        return self.request is not None and self.request.status in request_status.OPEN

    @property
    def truncation(self) -> dict[str, Any]:
        value = (self.view.preview or {}).get("truncation")
        return value if isinstance(value, dict) else {}

    @property
    def masked(self) -> set[str]:
        return {str(c) for c in (self.view.preview or {}).get("maskedColumns") or []}

    @property
    def refusal(self) -> str | None:
        """Why no preview can be taken at all (the button is then not offered)."""
        if self.dataset.removed_at is not None:
            return "This dataset was removed from its endpoint, so it cannot be sampled."
        if self.endpoint.preview_policy == "disabled":
            return "Previews are disabled for this endpoint."
        if self.view.opted_out:
            return "This dataset is opted out of previews."
        return None


def _cuts(preview: dict[str, Any] | None) -> dict[tuple[int, str], Cut]:
    truncation = (preview or {}).get("truncation")
    listed = truncation.get("cuts") if isinstance(truncation, dict) else None
    found: dict[tuple[int, str], Cut] = {}
    for cut in listed if isinstance(listed, list) else []:
        if isinstance(cut, dict) and isinstance(cut.get("row"), int):
            size = cut.get("bytes")
            found[(cut["row"], str(cut.get("column")))] = Cut(
                str(cut.get("kind", "value")), size if isinstance(size, int) else 0
            )
    return found


def panel_of(
    view: PreviewView, request: PreviewRequest | None = None, problem: Problem | None = None
) -> PreviewPanel:
    if problem is None and request is not None and request.status in request_status.ANSWERED:
        try:
            previews.raise_if_unanswerable(request)
        except errors.ApiError as exc:
            problem = Problem.of(exc)
    return PreviewPanel(view=view, request=request, problem=problem, cuts=_cuts(view.preview))


async def load_panel(
    uow: UnitOfWork, dataset_id: uuid.UUID, staleness_s: float, request_id: uuid.UUID | None
) -> PreviewPanel:
    """The panel as it stands, following the request `request_id` when one is given (a
    request of another dataset is ignored: the address was edited)."""
    stored = await previews.get_preview(uow, dataset_id, staleness_s)
    request = None
    if request_id is not None:
        try:
            request = await previews.get_request(uow, request_id)
        except errors.PreviewRequestNotFound:
            request = None
        if request is not None and request.dataset_id != dataset_id:
            request = None
    if request is None:
        return panel_of(stored)
    return panel_of(
        previews.view(stored.dataset, stored.endpoint, staleness_s, request=request), request
    )
