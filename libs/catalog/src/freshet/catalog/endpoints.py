"""Endpoints and their collections: the sources Freshet keeps fresh."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.models import Collection, Endpoint

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
    ) -> Collection:
        collection_id = uuid.uuid4()
        collection = Collection(
            id=collection_id,
            endpoint_id=endpoint_id,
            schedule_cron=schedule_cron,
            schedule_timezone=schedule_timezone,
            is_enabled=is_enabled,
            schedule_id=f"collection::{collection_id}" if schedule_cron else None,
        )
        self.session.add(collection)
        await self.session.flush()
        return collection

    async def get(self, collection_id: uuid.UUID) -> Collection | None:
        return await self.session.get(Collection, collection_id)

    async def for_endpoint(self, endpoint_id: uuid.UUID) -> Collection | None:
        result = await self.session.execute(
            select(Collection).where(Collection.endpoint_id == endpoint_id)
        )
        return result.scalar_one_or_none()

    async def all(self) -> list[Collection]:
        result = await self.session.execute(select(Collection).order_by(Collection.created_at))
        return list(result.scalars())
