"""Endpoints and their collections: the sources Freshet keeps fresh."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.clock import utcnow
from freshet.catalog.cursors import decode_cursor, encode_cursor
from freshet.catalog.models import Collection, Endpoint
from freshet.catalog.secrets import SecretBox

PREVIEW_POLICIES = ("auto", "manual-only", "disabled")


class EndpointRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        *,
        name: str,
        kind: str,
        config: dict[str, Any],
        secret_ciphertext: str | None = None,
        secret_names: Sequence[str] = (),
        preview_policy: str = "auto",
        labels: Sequence[str] = (),
        ingest_command: Sequence[str] | None = None,
        run_timeout_s: int | None = None,
        preview_masks: Sequence[str] = (),
    ) -> Endpoint:
        endpoint = Endpoint(
            id=uuid.uuid4(),
            name=name,
            kind=kind,
            config=config,
            secret_ciphertext=secret_ciphertext,
            secret_names=sorted(secret_names),
            preview_policy=preview_policy,
            labels=list(labels),
            ingest_command=list(ingest_command) if ingest_command else None,
            run_timeout_s=run_timeout_s,
            preview_masks=list(preview_masks),
        )
        self.session.add(endpoint)
        await self.session.flush()
        return endpoint

    async def get(self, endpoint_id: uuid.UUID) -> Endpoint | None:
        return await self.session.get(Endpoint, endpoint_id)

    async def get_by_name(self, name: str) -> Endpoint | None:
        result = await self.session.execute(select(Endpoint).where(Endpoint.name == name))
        return result.scalar_one_or_none()

    async def all(self) -> list[Endpoint]:
        result = await self.session.execute(select(Endpoint).order_by(Endpoint.name))
        return list(result.scalars())

    async def rotate_secrets(self, box: SecretBox) -> int:
        """Re-encrypt every endpoint's secrets with the box's first key; how many changed.

        Run after putting a new key first: afterwards the old key can be dropped.
        """
        result = await self.session.execute(
            select(Endpoint).where(Endpoint.secret_ciphertext.is_not(None)).with_for_update()
        )
        rotated = 0
        for endpoint in result.scalars():
            assert endpoint.secret_ciphertext is not None
            endpoint.secret_ciphertext = box.rotate(endpoint.secret_ciphertext)
            rotated += 1
        await self.session.flush()
        return rotated

    async def delete(self, endpoint_id: uuid.UUID) -> bool:
        """Delete an endpoint; its collection, runs, datasets and edges go with it (cascade)."""
        result = await self.session.execute(delete(Endpoint).where(Endpoint.id == endpoint_id))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


class CollectionState(NamedTuple):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    is_enabled: bool


class CollectionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        *,
        endpoint_id: uuid.UUID,
        schedule_cron: str | None = None,
        schedule_timezone: str = "UTC",
        is_enabled: bool = True,
        schedule_jitter_s: int = 0,
    ) -> Collection:
        collection_id = uuid.uuid4()
        collection = Collection(
            id=collection_id,
            endpoint_id=endpoint_id,
            schedule_cron=schedule_cron,
            schedule_timezone=schedule_timezone,
            schedule_jitter_s=schedule_jitter_s,
            is_enabled=is_enabled,
            schedule_id=schedule_id_for(collection_id) if schedule_cron else None,
        )
        self.session.add(collection)
        await self.session.flush()
        return collection

    async def get(self, collection_id: uuid.UUID) -> Collection | None:
        return await self.session.get(Collection, collection_id)

    async def states(self, collection_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, CollectionState]:
        """Whether each collection exists and is enabled (a scheduler batch asks this of
        hundreds at once; plain values, not ORM objects with their schedule loaded)."""
        ids = list(collection_ids)
        if not ids:
            return {}
        result = await self.session.execute(
            select(Collection.id, Collection.endpoint_id, Collection.is_enabled).where(
                Collection.id.in_(ids)
            )
        )
        return {row.id: CollectionState(*row) for row in result}

    async def for_endpoint(self, endpoint_id: uuid.UUID) -> Collection | None:
        result = await self.session.execute(
            select(Collection).where(Collection.endpoint_id == endpoint_id)
        )
        return result.scalar_one_or_none()

    async def all(self) -> list[Collection]:
        return await self.page()

    async def page(
        self,
        *,
        endpoint_id: uuid.UUID | None = None,
        is_enabled: bool | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> list[Collection]:
        """Collections oldest first; keyset pagination on (created_at, id) like runs."""
        stmt = select(Collection).order_by(Collection.created_at, Collection.id)
        if endpoint_id is not None:
            stmt = stmt.where(Collection.endpoint_id == endpoint_id)
        if is_enabled is not None:
            stmt = stmt.where(Collection.is_enabled == is_enabled)
        if after is not None:
            at_raw, id_raw = decode_cursor(after, parts=2)
            at, cid = datetime.fromisoformat(at_raw), uuid.UUID(id_raw)
            stmt = stmt.where(
                or_(
                    Collection.created_at > at,
                    and_(Collection.created_at == at, Collection.id > cid),
                )
            )
        if first is not None:
            stmt = stmt.limit(first)
        result = await self.session.execute(stmt)
        return list(result.scalars())

    async def update(
        self,
        collection: Collection,
        *,
        schedule_cron: str | None,
        schedule_timezone: str,
        is_enabled: bool,
        schedule_jitter_s: int | None = None,
    ) -> Collection:
        collection.schedule_cron = schedule_cron
        collection.schedule_timezone = schedule_timezone
        if schedule_jitter_s is not None:
            collection.schedule_jitter_s = schedule_jitter_s
        collection.is_enabled = is_enabled
        collection.schedule_id = schedule_id_for(collection.id) if schedule_cron else None
        collection.updated_at = utcnow()
        await self.session.flush()
        return collection

    async def delete(self, collection: Collection) -> None:
        """Delete a collection; its runs stay in history with no collection (SET NULL)."""
        await self.session.delete(collection)
        await self.session.flush()


def schedule_id_for(collection_id: uuid.UUID) -> str:
    return f"collection::{collection_id}"


def collection_cursor(collection: Collection) -> str:
    return encode_cursor(collection.created_at.isoformat(), str(collection.id))
