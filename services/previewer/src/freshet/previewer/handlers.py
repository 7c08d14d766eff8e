"""Previews: fan out after a run, sample a dataset, persist a sample (newer wins).

Each handler claims the event id in the inbox inside the transaction that applies it, so a
redelivered event changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from freshet.catalog import Database, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.inbox import claim_once
from freshet.catalog.secrets import SecretBox
from freshet.connectors import ConnectorError, ConnectorFactory
from freshet.contracts import Envelope, PreviewRequested, PreviewSampled, RunCompleted
from freshet.contracts.events import MAX_PREVIEW_ROWS
from freshet.kit import metrics
from freshet.kit.redaction import describe_error

log = structlog.get_logger("freshet.previewer")

FANOUT = "previewer.fanout"
SAMPLE = "previewer.sample"
PERSIST = "previewer.persist"


@dataclass
class PreviewerDeps:
    db: Database
    secrets: SecretBox
    source: str
    connect: ConnectorFactory
    sampled_by: str = "freshet-previewer"
    auto: bool = True
    max_rows: int = MAX_PREVIEW_ROWS


async def handle_run_completed(env: Envelope, deps: PreviewerDeps) -> None:
    """A SUCCEEDED run asks for a preview of every previewable dataset of its endpoint."""
    event = env.data
    assert isinstance(event, RunCompleted)
    async with UnitOfWork(deps.db) as uow:
        if not await uow.inbox.claim(FANOUT, env.id):
            return
        endpoint = await uow.endpoints.get(event.endpoint_id)
        wanted = (
            event.status == "SUCCEEDED"
            and deps.auto
            and endpoint is not None
            and endpoint.preview_policy == "auto"
        )
        requested = 0
        if wanted:
            for dataset in await uow.datasets.for_endpoint(event.endpoint_id):
                if dataset.payload.get("previewOptOut"):
                    continue
                await uow.outbox.add(
                    PreviewRequested(
                        dataset_id=dataset.id,
                        endpoint_id=event.endpoint_id,
                        refresh_source="collection",
                        run_id=event.run_id,
                    ),
                    source=deps.source,
                    correlation_id=env.correlation_id,
                )
                requested += 1
        await uow.commit()
    log.info("preview fan-out", run_id=str(event.run_id), requested=requested)


async def handle_preview_requested(env: Envelope, deps: PreviewerDeps) -> None:
    """Sample one dataset through its connector and publish the rows as PreviewSampled."""
    request = env.data
    assert isinstance(request, PreviewRequested)
    async with UnitOfWork(deps.db, read_only=True) as uow:
        dataset = await uow.datasets.get(request.dataset_id)
        endpoint = await uow.endpoints.get(request.endpoint_id)
    if dataset is None or endpoint is None or dataset.removed_at is not None:
        await _claim_only(env, deps, SAMPLE, "dataset gone; preview request dropped")
        return
    if endpoint.preview_policy == "disabled":
        await _claim_only(env, deps, SAMPLE, "previews disabled for endpoint; request dropped")
        return
    secrets = deps.secrets.decrypt(endpoint.secret_ciphertext)
    connector = deps.connect(endpoint.kind, dict(endpoint.config), secrets)
    try:
        sample = await connector.sample(dataset.schema_name, dataset.name, deps.max_rows)
    except ConnectorError as exc:
        metrics.PREVIEW_SAMPLES.labels("failed").inc()
        if exc.transient:
            raise  # the consumer retries with backoff
        await _record_failure(env, deps, request, describe_error(exc, secrets.values()))
        return
    metrics.PREVIEW_SAMPLES.labels("ok").inc()
    rows = sample.rows[: deps.max_rows]
    async with UnitOfWork(deps.db) as uow:
        if not await uow.inbox.claim(SAMPLE, env.id):
            return
        await uow.outbox.add(
            PreviewSampled(
                dataset_id=request.dataset_id,
                endpoint_id=request.endpoint_id,
                columns=sample.columns,
                rows=rows,
                sampled_at=utcnow(),
                sampled_by=deps.sampled_by,
                refresh_source=request.refresh_source,
                truncated=len(sample.rows) > len(rows),
                row_count=len(rows),
                run_id=request.run_id,
            ),
            source=deps.source,
            correlation_id=env.correlation_id,
        )
        await uow.commit()


async def handle_preview_sampled(env: Envelope, deps: PreviewerDeps) -> None:
    """Write a sample into the dataset's `payload.preview`, unless a newer one is there."""
    sample = env.data
    assert isinstance(sample, PreviewSampled)
    async with UnitOfWork(deps.db) as uow:
        if not await uow.inbox.claim(PERSIST, env.id):
            return
        dataset = await uow.datasets.get(sample.dataset_id)
        if dataset is None:
            log.warning("sample for an unknown dataset dropped", dataset_id=str(sample.dataset_id))
            await uow.commit()
            return
        stored = await uow.datasets.set_preview(sample.dataset_id, preview_payload(sample))
        await uow.commit()
    outcome = "stored" if stored else "stale_ignored"
    metrics.PREVIEWS_PERSISTED.labels(outcome).inc()
    log.info("preview persisted", dataset_id=str(sample.dataset_id), outcome=outcome)


def preview_payload(sample: PreviewSampled) -> dict[str, Any]:
    return {
        "columns": sample.columns,
        "rows": sample.rows,
        "rowCount": sample.row_count,
        "sampledAt": sample.sampled_at.isoformat(),
        "sampledBy": sample.sampled_by,
        "refreshSource": sample.refresh_source,
        "truncated": sample.truncated,
        "runId": str(sample.run_id) if sample.run_id else None,
    }


async def _claim_only(env: Envelope, deps: PreviewerDeps, consumer: str, message: str) -> None:
    if await claim_once(deps.db, consumer, env.id):
        log.info(message)


async def _record_failure(
    env: Envelope, deps: PreviewerDeps, request: PreviewRequested, reason: str
) -> None:
    """A permanent sampling failure stops for this dataset until the next run asks again."""
    async with UnitOfWork(deps.db) as uow:
        if not await uow.inbox.claim(SAMPLE, env.id):
            return
        dataset = await uow.datasets.get(request.dataset_id, for_update=True)
        if dataset is not None:
            dataset.payload = {
                **dataset.payload,
                "previewError": {"at": utcnow().isoformat(), "reason": reason},
            }
        await uow.commit()
    log.warning("preview sampling failed", dataset_id=str(request.dataset_id), reason=reason)
