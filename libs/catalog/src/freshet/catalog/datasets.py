"""Datasets (tables and views of an endpoint), the edges between them, and their previews."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.clock import utcnow
from freshet.catalog.models import Dataset, DatasetEdge, Endpoint


@dataclass(frozen=True)
class ForeignKeySpec:
    columns: list[str]
    referred_schema: str
    referred_table: str
    referred_columns: list[str]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as a source describes it, before it is in the catalog."""

    schema_name: str
    name: str
    kind: str
    columns: list[dict[str, Any]]
    primary_key: list[str]
    foreign_keys: list[ForeignKeySpec]
    fingerprint: str
    row_estimate: int | None = None


@dataclass
class SyncResult:
    total: int = 0
    added: list[Dataset] = field(default_factory=list)
    removed: list[Dataset] = field(default_factory=list)
    schema_changed: list[Dataset] = field(default_factory=list)


def edge_name(source: Dataset, fk: ForeignKeySpec) -> str:
    return (
        f"{source.schema_name}.{source.name}({','.join(fk.columns)})->"
        f"{fk.referred_schema}.{fk.referred_table}({','.join(fk.referred_columns)})"
    )


def preview_time(preview: dict[str, Any] | None) -> datetime | None:
    raw = (preview or {}).get("sampledAt")
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


class DatasetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, dataset_id: uuid.UUID, *, for_update: bool = False) -> Dataset | None:
        stmt = select(Dataset).where(Dataset.id == dataset_id)
        if for_update:
            stmt = stmt.with_for_update()
        result = await self.session.execute(stmt)
        return result.scalar_one_or_none()

    async def many(self, dataset_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Dataset]:
        ids = list(dataset_ids)
        if not ids:
            return {}
        result = await self.session.execute(select(Dataset).where(Dataset.id.in_(ids)))
        return {d.id: d for d in result.scalars()}

    async def stale_previews(self, sampled_before: datetime, *, limit: int) -> list[Dataset]:
        """Datasets of auto-preview endpoints whose preview is older than `sampled_before`, or
        that were never sampled; never-sampled first, then oldest first."""
        stmt = (
            select(Dataset)
            .join(Endpoint, Endpoint.id == Dataset.endpoint_id)
            .where(
                Endpoint.preview_policy == "auto",
                Dataset.removed_at.is_(None),
                or_(
                    Dataset.preview_sampled_at.is_(None),
                    Dataset.preview_sampled_at < sampled_before,
                ),
            )
            .order_by(Dataset.preview_sampled_at.is_not(None), Dataset.preview_sampled_at)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def for_endpoint(
        self, endpoint_id: uuid.UUID, *, include_removed: bool = False
    ) -> list[Dataset]:
        stmt = select(Dataset).where(Dataset.endpoint_id == endpoint_id)
        if not include_removed:
            stmt = stmt.where(Dataset.removed_at.is_(None))
        result = await self.session.execute(stmt.order_by(Dataset.schema_name, Dataset.name))
        return list(result.scalars())

    async def find(
        self, *, endpoint_id: uuid.UUID | None = None, limit: int = 200
    ) -> list[Dataset]:
        stmt = select(Dataset).where(Dataset.removed_at.is_(None))
        if endpoint_id is not None:
            stmt = stmt.where(Dataset.endpoint_id == endpoint_id)
        stmt = stmt.order_by(Dataset.schema_name, Dataset.name, Dataset.id).limit(limit)
        result = await self.session.execute(stmt)
        return list(result.scalars())

    async def edges_of(self, dataset_id: uuid.UUID) -> list[DatasetEdge]:
        result = await self.session.execute(
            select(DatasetEdge)
            .where(
                (DatasetEdge.source_dataset_id == dataset_id)
                | (DatasetEdge.target_dataset_id == dataset_id)
            )
            .order_by(DatasetEdge.name)
        )
        return list(result.scalars())

    async def sync(
        self,
        *,
        endpoint_id: uuid.UUID,
        endpoint_kind: str,
        run_id: uuid.UUID,
        specs: Sequence[DatasetSpec],
        scope: Callable[[str, str], bool] | None = None,
    ) -> SyncResult:
        """Make the endpoint's datasets match what the source reported, and say what changed.

        Idempotent: syncing the same specs again changes nothing and reports no change.
        Datasets that disappeared are marked removed (not deleted), so their history and
        preview stay readable and a table that comes back keeps its id. With `scope` (a run
        with filters), only datasets in scope can be marked removed: the rest were not looked at.
        """
        now = utcnow()
        existing = {
            (d.schema_name, d.name): d
            for d in await self.for_endpoint(endpoint_id, include_removed=True)
        }
        result = SyncResult(total=len(specs))
        seen: dict[tuple[str, str], Dataset] = {}
        for spec in specs:
            key = (spec.schema_name, spec.name)
            dataset = existing.get(key)
            if dataset is None:
                dataset = Dataset(
                    id=uuid.uuid4(),
                    endpoint_id=endpoint_id,
                    schema_name=spec.schema_name,
                    name=spec.name,
                    labels=[f"endpoint:{endpoint_id}", f"source:{endpoint_kind}"],
                    payload={},
                    first_seen_run_id=run_id,
                )
                self.session.add(dataset)
                result.added.append(dataset)
            elif dataset.removed_at is not None:
                dataset.removed_at = None
                result.added.append(dataset)
            elif dataset.fingerprint != spec.fingerprint:
                result.schema_changed.append(dataset)
            dataset.kind = spec.kind
            dataset.columns = spec.columns
            dataset.primary_key = spec.primary_key
            dataset.fingerprint = spec.fingerprint
            dataset.row_estimate = spec.row_estimate
            dataset.last_seen_run_id = run_id
            seen[key] = dataset
        for key, dataset in existing.items():
            if scope is not None and not scope(*key):
                continue
            if key not in seen and dataset.removed_at is None:
                dataset.removed_at = now
                result.removed.append(dataset)
        await self.session.flush()
        out_of_scope = (
            set()
            if scope is None
            else {d.id for key, d in existing.items() if not scope(*key) and key not in seen}
        )
        live = {k: d for k, d in existing.items() if d.removed_at is None} | seen
        await self._sync_edges(endpoint_id, specs, seen, live, out_of_scope)
        return result

    async def _sync_edges(
        self,
        endpoint_id: uuid.UUID,
        specs: Sequence[DatasetSpec],
        datasets: dict[tuple[str, str], Dataset],
        targets: dict[tuple[str, str], Dataset],
        untouched: set[uuid.UUID],
    ) -> None:
        """Foreign-key edges of the synced datasets; edges of `untouched` sources stay as is."""
        wanted: dict[str, tuple[Dataset, Dataset, ForeignKeySpec]] = {}
        for spec in specs:
            source = datasets[(spec.schema_name, spec.name)]
            for fk in spec.foreign_keys:
                target = targets.get((fk.referred_schema, fk.referred_table))
                if target is not None:
                    wanted[edge_name(source, fk)] = (source, target, fk)
        result = await self.session.execute(
            select(DatasetEdge).where(
                DatasetEdge.endpoint_id == endpoint_id, DatasetEdge.kind == "foreign_key"
            )
        )
        have = {e.name: e for e in result.scalars()}
        stale = [
            e.id
            for name, e in have.items()
            if name not in wanted and e.source_dataset_id not in untouched
        ]
        if stale:
            await self.session.execute(delete(DatasetEdge).where(DatasetEdge.id.in_(stale)))
        for name, (source, target, fk) in wanted.items():
            if name not in have:
                self.session.add(
                    DatasetEdge(
                        id=uuid.uuid4(),
                        endpoint_id=endpoint_id,
                        source_dataset_id=source.id,
                        target_dataset_id=target.id,
                        kind="foreign_key",
                        name=name,
                        details={"columns": fk.columns, "referred_columns": fk.referred_columns},
                    )
                )
        await self.session.flush()

    async def set_preview(self, dataset_id: uuid.UUID, preview: dict[str, Any]) -> bool:
        """Store a preview unless the dataset already has one sampled at the same time or later.

        Newer wins, so a sample that arrives late never replaces a fresher one, and the same
        sample delivered twice changes nothing. Returns whether the preview was stored.
        """
        dataset = await self.get(dataset_id, for_update=True)
        if dataset is None:
            raise LookupError(f"dataset {dataset_id} does not exist")
        incoming = preview_time(preview)
        if incoming is None:
            raise ValueError("a preview needs sampledAt")
        current = preview_time(dataset.payload.get("preview"))
        if current is not None and current >= incoming:
            return False
        # A new dict, so SQLAlchemy sees the JSON column change.
        dataset.payload = {**dataset.payload, "preview": preview}
        dataset.preview_sampled_at = incoming
        await self.session.flush()
        return True
