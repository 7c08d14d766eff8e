"""The previewer's consumer handlers: fan out after a run, accept a preview request, persist a
sample (newer wins). Each is one short transaction and never waits on a source: sampling runs
off the consumer path (`dispatcher`), so a slow endpoint never holds up a partition.

Idempotency: the fan-out and persist claim the event id in the inbox; a request is keyed by its
request id (given, or derived from the event id), so redelivery changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from freshet.catalog import Database, Dataset, Endpoint, PreviewRequest, UnitOfWork
from freshet.catalog import previews as status
from freshet.catalog.datasets import preview_time
from freshet.catalog.masks import MaskError, compile_masks
from freshet.catalog.previews import OPT_OUT_KEY
from freshet.catalog.secrets import SecretBox
from freshet.connectors import ConnectorFactory
from freshet.contracts import Envelope, PreviewRequested, PreviewSampled, RunCompleted
from freshet.kit import metrics
from freshet.previewer.bounds import Limits, bound
from freshet.previewer.clock import Clock

log = structlog.get_logger("freshet.previewer")

FANOUT = "previewer.fanout"
SAMPLE = "previewer.sample"
PERSIST = "previewer.persist"
SAMPLED_BY = "freshet-previewer"
# Request ids derived from what asked: a replayed fan-out or event is the same request.
REQUEST_ID_NAMESPACE = uuid.UUID("0b7c1f4e-5a0e-4b8e-9d7e-2f6f0c3a9e55")

AUDIT_FANOUT = "preview.fanout"
AUDIT_SAMPLE = "preview.sample"
AUDIT_PERSIST = "preview.persist"


@dataclass
class PreviewerDeps:
    db: Database
    secrets: SecretBox
    source: str
    connect: ConnectorFactory
    sampled_by: str = SAMPLED_BY
    auto: bool = True
    limits: Limits = field(default_factory=Limits)
    dataset_interval: timedelta = timedelta(hours=1)
    clock: Clock = field(default_factory=Clock)
    # Called with an endpoint id once a request of it is queued (wakes that endpoint's worker).
    notify: Callable[[uuid.UUID], None] = lambda _endpoint_id: None


def request_id_for(request: PreviewRequested, event_id: str) -> uuid.UUID:
    return request.request_id or uuid.uuid5(REQUEST_ID_NAMESPACE, f"event:{event_id}")


def fanout_request_id(run_id: uuid.UUID, dataset_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(REQUEST_ID_NAMESPACE, f"run:{run_id}:{dataset_id}")


def is_opted_out(dataset: Dataset) -> bool:
    return bool(dataset.payload.get(OPT_OUT_KEY))


def actor_of(refresh_source: str, requested_by: str | None, deps: PreviewerDeps) -> str:
    """Who or what asked: the person or schedule when known, else this previewer."""
    if requested_by:
        return requested_by
    return deps.sampled_by if refresh_source == "collection" else refresh_source


# --- fan-out ---------------------------------------------------------------------------------


async def handle_run_completed(env: Envelope, deps: PreviewerDeps) -> None:
    """A SUCCEEDED run asks for a preview of every previewable dataset of its endpoint."""
    event = env.data
    assert isinstance(event, RunCompleted)
    requested = 0
    async with UnitOfWork(deps.db) as uow:
        if not await uow.inbox.claim(FANOUT, env.id):
            return
        endpoint = await uow.endpoints.get(event.endpoint_id)
        if event.status != "SUCCEEDED" or endpoint is None:
            await uow.commit()
            return
        refusal = None
        if not deps.auto:
            refusal = "automatic previews are off (FRESHET_PREVIEW_AUTO=false)"
        elif endpoint.preview_policy != "auto":
            refusal = f"the endpoint's preview policy is {endpoint.preview_policy}"
        opted_out = 0
        if refusal is None:
            for dataset in await uow.datasets.for_endpoint(event.endpoint_id):
                if is_opted_out(dataset):
                    opted_out += 1
                    continue
                uow.outbox.stage(
                    PreviewRequested(
                        dataset_id=dataset.id,
                        endpoint_id=event.endpoint_id,
                        refresh_source="collection",
                        run_id=event.run_id,
                        request_id=fanout_request_id(event.run_id, dataset.id),
                    ),
                    source=deps.source,
                    correlation_id=env.correlation_id,
                )
                requested += 1
        uow.audit.add(
            actor=deps.sampled_by,
            action=AUDIT_FANOUT,
            target_type="endpoint",
            target_id=event.endpoint_id,
            outcome="refused" if refusal else "requested",
            reason=refusal or f"collection run {event.run_id} succeeded",
            details={"runId": str(event.run_id), "requested": requested, "optedOut": opted_out},
            correlation_id=env.correlation_id,
        )
        await uow.commit()
    log.info("preview fan-out", run_id=str(event.run_id), requested=requested, refused=refusal)


# --- requests --------------------------------------------------------------------------------


def _refusal(
    request: PreviewRequested, dataset: Dataset, endpoint: Endpoint, deps: PreviewerDeps
) -> tuple[str, str] | None:
    """(status, reason) when the request must not be sampled, from policy alone."""
    if dataset.removed_at is not None:
        return status.DROPPED, "the dataset was removed from its endpoint"
    if endpoint.preview_policy == "disabled":
        return status.REFUSED, "previews are disabled for the endpoint"
    if is_opted_out(dataset):
        return status.REFUSED, "the dataset is opted out of previews"
    if request.refresh_source == "manual":
        return None
    if not deps.auto:
        return status.REFUSED, "automatic previews are off (FRESHET_PREVIEW_AUTO=false)"
    if endpoint.preview_policy != "auto":
        return status.REFUSED, f"the endpoint's preview policy is {endpoint.preview_policy}"
    return None


def _waits_for_next_run(request: PreviewRequested, dataset: Dataset) -> bool:
    """A sweep request for a dataset whose last sample failed waits for the next run."""
    if request.refresh_source != "schedule":
        return False
    error = dataset.payload.get("previewError")
    if not isinstance(error, dict):
        return False
    failed_at = _parse_time(error.get("at"))
    sampled_at = preview_time(dataset.payload.get("preview"))
    return failed_at is not None and (sampled_at is None or failed_at > sampled_at)


async def handle_preview_requested(env: Envelope, deps: PreviewerDeps) -> None:
    """Record the request: queued for a worker, or refused, throttled or dropped (audited)."""
    request = env.data
    assert isinstance(request, PreviewRequested)
    request_id = request_id_for(request, env.id)
    now = deps.clock.now()
    queued_for: uuid.UUID | None = None
    async with UnitOfWork(deps.db) as uow:
        row = await uow.previews.get(request_id, for_update=True)
        if row is not None and row.status != status.REQUESTED:
            return  # delivered before: already decided
        dataset = await uow.datasets.get(request.dataset_id)
        endpoint = await uow.endpoints.get(dataset.endpoint_id) if dataset else None
        if dataset is None or endpoint is None:
            # Nothing to hang a request row on (the dataset is gone): the inbox keeps it once.
            if await uow.inbox.claim(SAMPLE, env.id):
                finish_metrics_and_log(request.refresh_source, status.DROPPED, "unknown dataset")
                await uow.commit()
            return
        decided = _refusal(request, dataset, endpoint, deps)
        if decided is None and _waits_for_next_run(request, dataset):
            decided = (
                status.DROPPED,
                "the last sample failed; waiting for the next collection run",
            )
        if (
            decided is None
            and request.refresh_source != "manual"
            and deps.dataset_interval > timedelta(0)
            and await uow.previews.refreshed_since(dataset.id, now - deps.dataset_interval)
        ):
            decided = (
                status.THROTTLED,
                f"refreshed automatically less than {deps.dataset_interval.total_seconds():g}s ago",
            )
        new_status, reason = decided or (status.QUEUED, None)
        if row is None:
            row = uow.previews.stage(
                id=request_id,
                dataset_id=dataset.id,
                endpoint_id=endpoint.id,
                refresh_source=request.refresh_source,
                requested_by=request.requested_by,
                run_id=request.run_id,
                correlation_id=env.correlation_id,
                requested_at=now,
                status=new_status,
            )
        row.status = new_status
        row.reason = reason
        if new_status == status.QUEUED:
            row.due_at = now
            queued_for = endpoint.id
        else:
            row.finished_at = now
            audit_request(uow, deps, row, new_status, reason)
        await uow.commit()
    if queued_for is not None:
        deps.notify(queued_for)
    else:
        finish_metrics_and_log(request.refresh_source, new_status, reason, dataset_id=dataset.id)


def audit_request(
    uow: UnitOfWork,
    deps: PreviewerDeps,
    row: PreviewRequest,
    outcome: str,
    reason: str | None,
    **details: Any,
) -> None:
    uow.audit.add(
        actor=actor_of(row.refresh_source, row.requested_by, deps),
        action=AUDIT_SAMPLE,
        target_type="dataset",
        target_id=row.dataset_id,
        outcome=outcome,
        reason=reason,
        details={
            "requestId": str(row.id),
            "endpointId": str(row.endpoint_id),
            "refreshSource": row.refresh_source,
            "runId": str(row.run_id) if row.run_id else None,
            **details,
        },
        correlation_id=row.correlation_id,
    )


def finish_metrics_and_log(source: str, outcome: str, reason: str | None, **fields: Any) -> None:
    metrics.PREVIEW_REQUESTS.labels(source, outcome).inc()
    log.info(
        "preview request " + outcome,
        refresh_source=source,
        reason=reason,
        **{k: str(v) for k, v in fields.items()},
    )


# --- persistence -----------------------------------------------------------------------------


def _parse_time(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def _merged_truncation(sample: PreviewSampled, recut: dict[str, Any] | None, more: bool) -> Any:
    """What the sample says was cut, plus what bounding it again here cut (outside samples)."""
    reported = sample.truncation
    if reported is None:
        return recut
    if not more or recut is None:
        return reported
    return {**recut, "reported": reported}


async def handle_preview_sampled(env: Envelope, deps: PreviewerDeps) -> None:
    """Write a sample into the dataset's `payload.preview`, unless a newer one is there.

    Whoever sampled it, it is checked again: the endpoint's policy and the dataset's opt-out
    (refused), the endpoint's masks and the size caps (applied), so an outside sampler cannot
    store what the previewer would not.
    """
    sample = env.data
    assert isinstance(sample, PreviewSampled)
    outside = sample.sampled_by != deps.sampled_by
    async with UnitOfWork(deps.db) as uow:
        if not await uow.inbox.claim(PERSIST, env.id):
            return
        dataset = await uow.datasets.get(sample.dataset_id, for_update=True)
        endpoint = await uow.endpoints.get(dataset.endpoint_id) if dataset else None
        if dataset is None or endpoint is None:
            log.warning("sample for an unknown dataset dropped", dataset_id=str(sample.dataset_id))
            await uow.commit()
            metrics.PREVIEWS_PERSISTED.labels("unknown_dataset").inc()
            return
        refusal = None
        if endpoint.preview_policy == "disabled":
            refusal = "previews are disabled for the endpoint"
        elif is_opted_out(dataset):
            refusal = "the dataset is opted out of previews"
        try:
            masks = compile_masks(endpoint.preview_masks)
        except MaskError:
            refusal = "the endpoint's preview masks are invalid; fix them to store previews"
        if refusal is not None:
            outcome = "refused"
            if sample.request_id is not None:
                await uow.previews.move(
                    sample.request_id, [status.SAMPLED], status.REFUSED, reason=refusal
                )
        else:
            rows, masked = masks.apply(sample.columns, sample.rows)
            bounded = bound(sample.columns, rows, deps.limits)
            truncation = _merged_truncation(
                sample, bounded.truncation, bounded.cut_more_than_binary
            )
            preview: dict[str, Any] = {
                "columns": bounded.columns,
                "rows": bounded.rows,
                "rowCount": len(bounded.rows),
                "sampledAt": sample.sampled_at.isoformat(),
                "sampledBy": sample.sampled_by,
                "refreshSource": sample.refresh_source,
                "truncated": bool(sample.truncated or truncation),
                "truncation": truncation,
                "maskedColumns": sorted(set(masked) | set(sample.masked_columns or [])),
                "runId": str(sample.run_id) if sample.run_id else None,
                "requestId": str(sample.request_id) if sample.request_id else None,
            }
            stored = await uow.datasets.set_preview(dataset.id, preview)
            if stored:
                _clear_older_error(dataset, sample.sampled_at)
            outcome = "stored" if stored else "stale_ignored"
            if sample.request_id is not None:
                await uow.previews.move(
                    sample.request_id,
                    [status.SAMPLED],
                    status.PERSISTED,
                    reason=None if stored else "a newer preview was already stored",
                )
        if outside or refusal is not None:
            uow.audit.add(
                actor=sample.sampled_by,
                action=AUDIT_PERSIST,
                target_type="dataset",
                target_id=dataset.id,
                outcome=outcome,
                reason=refusal or f"sample from {sample.refresh_source}",
                details={
                    "sampledAt": sample.sampled_at.isoformat(),
                    "refreshSource": sample.refresh_source,
                    "rows": len(sample.rows),
                    "requestId": str(sample.request_id) if sample.request_id else None,
                },
                correlation_id=env.correlation_id,
            )
        await uow.commit()
    metrics.PREVIEWS_PERSISTED.labels(outcome).inc()
    log.info(
        "preview persisted" if outcome == "stored" else "preview not stored",
        dataset_id=str(sample.dataset_id),
        outcome=outcome,
        sampled_by=sample.sampled_by,
        reason=refusal,
    )


def _clear_older_error(dataset: Dataset, sampled_at: datetime) -> None:
    error = dataset.payload.get("previewError")
    failed_at = _parse_time(error.get("at")) if isinstance(error, dict) else None
    if error is not None and (failed_at is None or failed_at <= sampled_at):
        dataset.payload = {k: v for k, v in dataset.payload.items() if k != "previewError"}
