"""Previews: read the stored sample (with its age and staleness), ask for a fresh one, and the
preview settings of endpoints (policy, masks) and datasets (opt-out).

The gateway never samples a source itself: a manual preview is a request row plus a
`PreviewRequested(refresh_source="manual")` in one transaction, so the previewer's endpoint
limits apply to it as to any other; the caller then waits on the catalog for the answer.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from freshet.catalog import Database, Dataset, Endpoint, PreviewRequest, UnitOfWork
from freshet.catalog import previews as status
from freshet.catalog.clock import utcnow
from freshet.catalog.datasets import preview_time
from freshet.catalog.masks import MaskError, compile_masks
from freshet.catalog.previews import OPT_OUT_KEY
from freshet.contracts import PreviewRequested
from freshet.gateway import errors
from freshet.gateway.service_layer.caller import Caller

log = structlog.get_logger("freshet.gateway")

AUDIT_REQUEST = "preview.request"
AUDIT_SETTINGS = "preview.settings"
AUDIT_PURGE = "preview.purge"
# How often a waiting caller looks at its request: starts fast, backs off to this.
MAX_POLL_S = 0.2


@dataclass(frozen=True)
class PreviewView:
    """A dataset's preview as the API shows it: the stored sample plus what it means."""

    dataset: Dataset
    endpoint: Endpoint
    preview: dict[str, Any] | None
    cached: bool
    age_seconds: float | None
    stale: bool
    stale_after_seconds: float
    request: PreviewRequest | None = None

    @property
    def sampled_at(self) -> datetime | None:
        return preview_time(self.preview)

    @property
    def last_error(self) -> dict[str, Any] | None:
        error = self.dataset.payload.get("previewError")
        return error if isinstance(error, dict) else None

    @property
    def opted_out(self) -> bool:
        return bool(self.dataset.payload.get(OPT_OUT_KEY))

    def fields(self) -> dict[str, Any]:
        """The view's plain fields, snake_case, as REST and GraphQL both show them."""
        p = self.preview or {}
        return {
            "dataset_id": self.dataset.id,
            "endpoint_id": self.endpoint.id,
            "cached": self.cached,
            "sampled": self.preview is not None,
            "columns": [str(c) for c in p.get("columns", [])],
            "rows": list(p.get("rows", [])),
            "row_count": int(p.get("rowCount", 0)),
            "sampled_at": self.sampled_at,
            "sampled_by": p.get("sampledBy"),
            "refresh_source": p.get("refreshSource"),
            "run_id": p.get("runId"),
            "truncated": bool(p.get("truncated", False)),
            "truncation": p.get("truncation") or None,
            "masked_columns": [str(c) for c in p.get("maskedColumns") or []],
            "age_seconds": self.age_seconds,
            "stale": self.stale,
            "stale_after_seconds": self.stale_after_seconds,
            "preview_policy": self.endpoint.preview_policy,
            "opted_out": self.opted_out,
        }


def view(
    dataset: Dataset,
    endpoint: Endpoint,
    staleness_s: float,
    *,
    request: PreviewRequest | None = None,
    now: datetime | None = None,
) -> PreviewView:
    """Never-sampled datasets have no sampledAt and count as stale: nothing pretends to be
    fresh. `cached` is false only for the sample taken for `request`."""
    preview = dataset.payload.get("preview")
    preview = preview if isinstance(preview, dict) else None
    sampled_at = preview_time(preview)
    age = ((now or utcnow()) - sampled_at).total_seconds() if sampled_at else None
    fresh_for_request = (
        request is not None and preview is not None and preview.get("requestId") == str(request.id)
    )
    return PreviewView(
        dataset=dataset,
        endpoint=endpoint,
        preview=preview,
        cached=not fresh_for_request,
        age_seconds=max(age, 0.0) if age is not None else None,
        stale=age is None or age > staleness_s,
        stale_after_seconds=staleness_s,
        request=request,
    )


async def _dataset_and_endpoint(uow: UnitOfWork, dataset_id: uuid.UUID) -> tuple[Dataset, Endpoint]:
    dataset = await uow.datasets.get(dataset_id)
    endpoint = await uow.endpoints.get(dataset.endpoint_id) if dataset else None
    if dataset is None or endpoint is None:
        raise errors.DatasetNotFound(f"dataset {dataset_id} does not exist")
    return dataset, endpoint


async def get_preview(uow: UnitOfWork, dataset_id: uuid.UUID, staleness_s: float) -> PreviewView:
    dataset, endpoint = await _dataset_and_endpoint(uow, dataset_id)
    return view(dataset, endpoint, staleness_s)


async def get_request(uow: UnitOfWork, request_id: uuid.UUID) -> PreviewRequest:
    request = await uow.previews.get(request_id)
    if request is None:
        raise errors.PreviewRequestNotFound(f"preview request {request_id} does not exist")
    return request


def _refusal(dataset: Dataset, endpoint: Endpoint) -> errors.ApiError | None:
    if dataset.removed_at is not None:
        return errors.DatasetRemoved(f"dataset {dataset.id} was removed from its endpoint")
    if endpoint.preview_policy == "disabled":
        return errors.PreviewDisabled(f"previews are disabled for endpoint {endpoint.name}")
    if dataset.payload.get(OPT_OUT_KEY):
        return errors.PreviewOptedOut(f"dataset {dataset.id} is opted out of previews")
    return None


async def request_preview(uow: UnitOfWork, caller: Caller, dataset_id: uuid.UUID) -> PreviewRequest:
    """Record a manual preview request and its PreviewRequested; refusals are audited too."""
    dataset, endpoint = await _dataset_and_endpoint(uow, dataset_id)
    refusal = _refusal(dataset, endpoint)
    actor = caller.principal.name
    if refusal is not None:
        uow.audit.add(
            actor=actor,
            action=AUDIT_REQUEST,
            target_type="dataset",
            target_id=dataset.id,
            outcome="refused",
            reason=refusal.message,
            details={"code": refusal.code, "endpointId": str(endpoint.id)},
            correlation_id=caller.correlation_id,
        )
        await uow.commit()
        raise refusal
    request = uow.previews.stage(
        dataset_id=dataset.id,
        endpoint_id=endpoint.id,
        refresh_source="manual",
        requested_by=actor,
        correlation_id=caller.correlation_id,
        status=status.REQUESTED,
    )
    uow.outbox.stage(
        PreviewRequested(
            dataset_id=dataset.id,
            endpoint_id=endpoint.id,
            refresh_source="manual",
            requested_by=actor,
            request_id=request.id,
        ),
        source=caller.source,
        correlation_id=caller.correlation_id,
    )
    uow.audit.add(
        actor=actor,
        action=AUDIT_REQUEST,
        target_type="dataset",
        target_id=dataset.id,
        outcome="requested",
        reason="manual preview",
        details={"requestId": str(request.id), "endpointId": str(endpoint.id)},
        correlation_id=caller.correlation_id,
    )
    await uow.commit()
    log.info("preview requested", dataset_id=str(dataset.id), request_id=str(request.id))
    return request


async def wait_for_answer(db: Database, request_id: uuid.UUID, timeout_s: float) -> PreviewRequest:
    """The request once it is answered (persisted, refused, failed…), or as it stands when
    `timeout_s` ran out. Reads only: on SQLite they never wait for the write lock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pause = 0.01
    while True:
        async with UnitOfWork(db, read_only=True) as uow:
            request = await get_request(uow, request_id)
        if request.status in status.ANSWERED or loop.time() >= deadline:
            return request
        await asyncio.sleep(min(pause, max(deadline - loop.time(), 0)))
        pause = min(pause * 2, MAX_POLL_S)


def raise_if_unanswerable(request: PreviewRequest) -> None:
    """An answered request that produced no rows becomes its error."""
    reason = request.reason or request.status
    if request.status == status.FAILED:
        raise errors.PreviewFailed(f"sampling failed: {reason} (request {request.id})")
    if request.status in (status.REFUSED, status.THROTTLED):
        raise errors.PreviewDisabled(f"preview refused: {reason} (request {request.id})")
    if request.status == status.DROPPED:
        raise errors.DatasetRemoved(f"preview dropped: {reason} (request {request.id})")


async def answer(db: Database, request: PreviewRequest, staleness_s: float) -> PreviewView:
    async with UnitOfWork(db, read_only=True) as uow:
        dataset, endpoint = await _dataset_and_endpoint(uow, request.dataset_id)
    return view(dataset, endpoint, staleness_s, request=request)


async def await_preview(
    db: Database, request_id: uuid.UUID, *, timeout_s: float, staleness_s: float
) -> PreviewView:
    """What a manual preview answers once it was requested (REST, GraphQL and the web UI):
    the fresh rows (`cached` false), or, not answered within `timeout_s`, the stored preview
    with `request` to poll; an answer without rows raises its error."""
    answered = await wait_for_answer(db, request_id, timeout_s)
    raise_if_unanswerable(answered)
    return await answer(db, answered, staleness_s)


# --- settings ----------------------------------------------------------------------------------


def check_masks(masks: list[str], loc: list[str | int]) -> None:
    try:
        compile_masks(masks)
    except MaskError as exc:
        raise errors.ValidationFailed(
            f"preview mask {exc.index}: {exc.message}",
            details=[{"loc": [*loc, exc.index], "msg": exc.message}],
        ) from None


async def purge(
    uow: UnitOfWork,
    caller: Caller,
    reason: str,
    *,
    endpoint_id: uuid.UUID | None = None,
    dataset_id: uuid.UUID | None = None,
) -> int:
    """Remove stored samples and refuse open requests; audited. In the caller's transaction."""
    purged = await uow.previews.purge_samples(endpoint_id=endpoint_id, dataset_id=dataset_id)
    refused = await uow.previews.refuse_open(reason, endpoint_id=endpoint_id, dataset_id=dataset_id)
    target_type, target_id = (
        ("endpoint", endpoint_id) if endpoint_id is not None else ("dataset", dataset_id)
    )
    assert target_id is not None
    uow.audit.add(
        actor=caller.principal.name,
        action=AUDIT_PURGE,
        target_type=target_type,
        target_id=target_id,
        outcome="purged",
        reason=reason,
        details={"datasetsPurged": purged, "requestsRefused": len(refused)},
        correlation_id=caller.correlation_id,
    )
    log.info("previews purged", target=str(target_id), datasets=purged, requests=len(refused))
    return purged


async def endpoint_settings_changed(
    uow: UnitOfWork, caller: Caller, endpoint: Endpoint, before: dict[str, Any]
) -> None:
    """Audit a change of an endpoint's preview policy or masks; disabling purges samples."""
    after = {"policy": endpoint.preview_policy, "masks": list(endpoint.preview_masks)}
    if after == before:
        return
    uow.audit.add(
        actor=caller.principal.name,
        action=AUDIT_SETTINGS,
        target_type="endpoint",
        target_id=endpoint.id,
        outcome="changed",
        reason="endpoint preview settings changed",
        details={"before": before, "after": after},
        correlation_id=caller.correlation_id,
    )
    if after["policy"] == "disabled" and before["policy"] != "disabled":
        await purge(uow, caller, "previews were disabled for the endpoint", endpoint_id=endpoint.id)


def endpoint_settings(endpoint: Endpoint) -> dict[str, Any]:
    return {"policy": endpoint.preview_policy, "masks": list(endpoint.preview_masks)}


async def set_dataset_opt_out(
    uow: UnitOfWork, caller: Caller, dataset_id: uuid.UUID, opted_out: bool, staleness_s: float
) -> PreviewView:
    """Opt a dataset out of previews (its stored sample is purged) or back in."""
    dataset = await uow.datasets.get(dataset_id, for_update=True)
    endpoint = await uow.endpoints.get(dataset.endpoint_id) if dataset else None
    if dataset is None or endpoint is None:
        raise errors.DatasetNotFound(f"dataset {dataset_id} does not exist")
    was = bool(dataset.payload.get(OPT_OUT_KEY))
    if was != opted_out:
        payload = {k: v for k, v in dataset.payload.items() if k != OPT_OUT_KEY}
        dataset.payload = {**payload, OPT_OUT_KEY: True} if opted_out else payload
        dataset.updated_at = utcnow()
        await uow.session.flush()
        uow.audit.add(
            actor=caller.principal.name,
            action=AUDIT_SETTINGS,
            target_type="dataset",
            target_id=dataset.id,
            outcome="changed",
            reason="opted out of previews" if opted_out else "opted back in to previews",
            details={"before": {"optedOut": was}, "after": {"optedOut": opted_out}},
            correlation_id=caller.correlation_id,
        )
        if opted_out:
            await purge(uow, caller, "the dataset was opted out of previews", dataset_id=dataset.id)
        await uow.commit()
    return view(dataset, endpoint, staleness_s)
