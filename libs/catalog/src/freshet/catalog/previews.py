"""Preview requests (the previewer's durable work items) and the stored samples they lead to.

A request's life: `requested` (the gateway wrote it, the previewer has not seen it) ->
`queued` (accepted: policy and throttle allow it) -> `running` (a worker holding the
endpoint's preview lease took it) -> `sampled` (PreviewSampled written) -> `persisted`; or it
ends `refused` (policy), `throttled` (per-dataset interval), `dropped` (dataset gone, or a
sweep request while the dataset's last sample failed) or `failed` (attempts exhausted).

Every change is a compare-and-set on the status (and, while running, on the worker), so a
redelivered event, a second worker or a late answer never moves a request twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, delete, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from freshet.catalog.clock import utcnow
from freshet.catalog.models import Dataset, Endpoint, PreviewRequest

REQUESTED = "requested"
QUEUED = "queued"
RUNNING = "running"
SAMPLED = "sampled"
PERSISTED = "persisted"
REFUSED = "refused"
THROTTLED = "throttled"
DROPPED = "dropped"
FAILED = "failed"

OPEN = (REQUESTED, QUEUED, RUNNING, SAMPLED)
# What a caller waiting for an answer waits for.
ANSWERED = (PERSISTED, REFUSED, THROTTLED, DROPPED, FAILED)
# Requests that did (or will) refresh a preview: what the per-dataset throttle counts.
REFRESHING = (QUEUED, RUNNING, SAMPLED, PERSISTED)
# Payload keys that hold sampled values or what was learnt sampling; purged together.
SAMPLE_KEYS = ("preview", "previewError")
OPT_OUT_KEY = "previewOptOut"


def opted_out() -> ColumnElement[bool]:
    """`payload.previewOptOut` is true, in SQL (JSON on SQLite, JSONB on PostgreSQL)."""
    return func.coalesce(Dataset.payload[OPT_OUT_KEY].as_boolean(), false())


@dataclass(frozen=True)
class EndpointFreshness:
    """Previewable datasets of one auto-policy endpoint and how old their previews are."""

    endpoint_id: uuid.UUID
    endpoint_name: str
    datasets: int
    stale_or_missing: int
    oldest_sampled_at: datetime | None


class PreviewRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- requests --------------------------------------------------------------------------

    def stage(self, **fields: Any) -> PreviewRequest:
        fields.setdefault("id", uuid.uuid4())
        fields.setdefault("requested_at", utcnow())
        request = PreviewRequest(**fields)
        self.session.add(request)
        return request

    async def get(
        self, request_id: uuid.UUID, *, for_update: bool = False
    ) -> PreviewRequest | None:
        stmt = select(PreviewRequest).where(PreviewRequest.id == request_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def refreshed_since(self, dataset_id: uuid.UUID, since: datetime) -> bool:
        """Whether an automatic request for the dataset, made at or after `since`, refreshed
        (or is about to refresh) its preview. Manual requests do not count."""
        stmt = (
            select(PreviewRequest.id)
            .where(
                PreviewRequest.dataset_id == dataset_id,
                PreviewRequest.requested_at >= since,
                PreviewRequest.refresh_source != "manual",
                PreviewRequest.status.in_(REFRESHING),
            )
            .limit(1)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def due_endpoints(self, now: datetime, *, limit: int = 1_000) -> list[uuid.UUID]:
        """Endpoints with queued requests that are due, or with running ones (whose worker
        may have died: the next holder of the endpoint's lease takes them back)."""
        stmt = (
            select(PreviewRequest.endpoint_id)
            .where(
                or_(
                    and_(PreviewRequest.status == QUEUED, PreviewRequest.due_at <= now),
                    PreviewRequest.status == RUNNING,
                )
            )
            .group_by(PreviewRequest.endpoint_id)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def requeue_orphans(self, endpoint_id: uuid.UUID, worker: str) -> int:
        """Requests of the endpoint left running by another worker: whoever holds the
        endpoint's lease now runs them again (a duplicate sample is harmless: newer wins)."""
        result = await self.session.execute(
            update(PreviewRequest)
            .where(
                PreviewRequest.endpoint_id == endpoint_id,
                PreviewRequest.status == RUNNING,
                or_(PreviewRequest.worker.is_(None), PreviewRequest.worker != worker),
            )
            .values(status=QUEUED, worker=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def requeue_held(self, endpoint_id: uuid.UUID, worker: str) -> int:
        """Put `worker`'s running requests of the endpoint back (it stops gracefully)."""
        result = await self.session.execute(
            update(PreviewRequest)
            .where(
                PreviewRequest.endpoint_id == endpoint_id,
                PreviewRequest.status == RUNNING,
                PreviewRequest.worker == worker,
            )
            .values(status=QUEUED, worker=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def claim(
        self, endpoint_id: uuid.UUID, worker: str, *, limit: int, now: datetime
    ) -> list[PreviewRequest]:
        """Take up to `limit` due queued requests of the endpoint: manual ones first (a
        person is waiting), then oldest first."""
        if limit <= 0:
            return []
        manual_first = case((PreviewRequest.refresh_source == "manual", 0), else_=1)
        ids = list(
            (
                await self.session.execute(
                    select(PreviewRequest.id)
                    .where(
                        PreviewRequest.endpoint_id == endpoint_id,
                        PreviewRequest.status == QUEUED,
                        PreviewRequest.due_at <= now,
                    )
                    .order_by(manual_first, PreviewRequest.due_at, PreviewRequest.id)
                    .limit(limit)
                )
            ).scalars()
        )
        if not ids:
            return []
        await self.session.execute(
            update(PreviewRequest)
            .where(PreviewRequest.id.in_(ids), PreviewRequest.status == QUEUED)
            .values(status=RUNNING, worker=worker, started_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(
            select(PreviewRequest)
            .where(
                PreviewRequest.id.in_(ids),
                PreviewRequest.status == RUNNING,
                PreviewRequest.worker == worker,
            )
            .execution_options(populate_existing=True)
        )
        return list(result.scalars())

    async def finish(self, request_id: uuid.UUID, worker: str, status: str, **values: Any) -> bool:
        """Move a running request of `worker` to `status`; False when it is no longer ours."""
        now = utcnow()
        values.setdefault("finished_at", now)
        result = await self.session.execute(
            update(PreviewRequest)
            .where(
                PreviewRequest.id == request_id,
                PreviewRequest.status == RUNNING,
                PreviewRequest.worker == worker,
            )
            .values(status=status, updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def move(
        self, request_id: uuid.UUID, from_: Iterable[str], to: str, **values: Any
    ) -> bool:
        """Compare-and-set on the status alone (for steps no worker owns)."""
        result = await self.session.execute(
            update(PreviewRequest)
            .where(PreviewRequest.id == request_id, PreviewRequest.status.in_(list(from_)))
            .values(status=to, updated_at=utcnow(), **values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def refuse_open(
        self,
        reason: str,
        *,
        endpoint_id: uuid.UUID | None = None,
        dataset_id: uuid.UUID | None = None,
    ) -> list[PreviewRequest]:
        """Refuse the requests not yet running of an endpoint or a dataset (previews were
        disabled there); running ones are refused when their sample arrives."""
        where: list[ColumnElement[bool]] = [PreviewRequest.status.in_((REQUESTED, QUEUED))]
        if endpoint_id is not None:
            where.append(PreviewRequest.endpoint_id == endpoint_id)
        if dataset_id is not None:
            where.append(PreviewRequest.dataset_id == dataset_id)
        found = list(
            (await self.session.execute(select(PreviewRequest).where(*where).with_for_update()))
            .scalars()
            .all()
        )
        now = utcnow()
        for request in found:
            request.status = REFUSED
            request.reason = reason
            request.finished_at = now
            request.updated_at = now
        await self.session.flush()
        return found

    async def count_by_status(self, statuses: Iterable[str]) -> dict[str, int]:
        result = await self.session.execute(
            select(PreviewRequest.status, func.count())
            .where(PreviewRequest.status.in_(list(statuses)))
            .group_by(PreviewRequest.status)
        )
        return {str(status): int(count) for status, count in result.all()}

    async def prune(self, finished_before: datetime) -> int:
        result = await self.session.execute(
            delete(PreviewRequest).where(
                PreviewRequest.status.not_in(OPEN), PreviewRequest.finished_at < finished_before
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # --- stored samples --------------------------------------------------------------------

    async def purge_samples(
        self, *, endpoint_id: uuid.UUID | None = None, dataset_id: uuid.UUID | None = None
    ) -> int:
        """Remove stored samples (and sampling errors) of an endpoint's or one dataset's
        datasets, removed ones included; how many datasets had one."""
        stmt = select(Dataset).with_for_update()
        if endpoint_id is not None:
            stmt = stmt.where(Dataset.endpoint_id == endpoint_id)
        if dataset_id is not None:
            stmt = stmt.where(Dataset.id == dataset_id)
        purged = 0
        for dataset in (await self.session.execute(stmt)).scalars():
            if not any(key in dataset.payload for key in SAMPLE_KEYS):
                continue
            # A new dict, so SQLAlchemy sees the JSON column change.
            dataset.payload = {k: v for k, v in dataset.payload.items() if k not in SAMPLE_KEYS}
            dataset.preview_sampled_at = None
            purged += 1
        await self.session.flush()
        return purged

    async def freshness(self, stale_before: datetime) -> list[EndpointFreshness]:
        """Per auto-policy endpoint: its previewable datasets (live, not opted out), how many
        have a preview older than `stale_before` or none, and the oldest preview's time."""
        stale = case(
            (
                or_(
                    Dataset.preview_sampled_at.is_(None),
                    Dataset.preview_sampled_at < stale_before,
                ),
                1,
            ),
            else_=0,
        )
        stmt = (
            select(
                Endpoint.id,
                Endpoint.name,
                func.count(Dataset.id),
                func.coalesce(func.sum(stale), 0),
                func.min(Dataset.preview_sampled_at),
            )
            .join(Dataset, Dataset.endpoint_id == Endpoint.id)
            .where(
                Endpoint.preview_policy == "auto",
                Dataset.removed_at.is_(None),
                ~opted_out(),
            )
            .group_by(Endpoint.id, Endpoint.name)
        )
        rows = (await self.session.execute(stmt)).all()
        return [
            EndpointFreshness(
                endpoint_id=row[0],
                endpoint_name=str(row[1]),
                datasets=int(row[2]),
                stale_or_missing=int(row[3]),
                oldest_sampled_at=_aware(row[4]),
            )
            for row in rows
        ]


def _aware(value: Any) -> datetime | None:
    """min() over a UTCDateTime column comes back raw (a string on SQLite)."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
