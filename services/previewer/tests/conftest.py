"""The previewer on a real (SQLite) catalog with fake sources: one fake per endpoint name."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from freshet.catalog import Database, DatasetSpec, UnitOfWork
from freshet.catalog.models import AuditRecord, PreviewRequest
from freshet.catalog.secrets import SecretBox, generate_key
from freshet.connectors import Connector, ConnectorError, Sample, TableInfo
from freshet.contracts import Envelope, Event, RunCompleted
from freshet.devstack.testing import envelope_of
from freshet.previewer.handlers import PreviewerDeps

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class FakeSource:
    """A source whose sample answers, fails or hangs as the test says."""

    kind = "sqlite"

    def __init__(self) -> None:
        self.rows: list[list[Any]] = [[i, f"name {i}"] for i in range(80)]
        self.columns = ["id", "name"]
        self.errors: list[ConnectorError] = []  # raised in order, one per call
        self.hang = False
        self.calls: list[tuple[str, str, int]] = []
        self.running = 0
        self.max_running = 0
        self.release = asyncio.Event()

    async def test(self) -> None:
        return None

    async def introspect(self) -> list[TableInfo]:
        return []

    async def sample(self, schema_name: str, table: str, limit: int) -> Sample:
        self.calls.append((schema_name, table, limit))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.hang:
                await asyncio.Event().wait()
            if self.errors:
                raise self.errors.pop(0)
            # Yield, so concurrent samples overlap as real ones would.
            await asyncio.sleep(0.01)
            return Sample(columns=self.columns, rows=self.rows[:limit])
        finally:
            self.running -= 1

    def stream(
        self, schema_name: str, table: str, *, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        raise NotImplementedError


class Sources:
    """Fake sources by endpoint config `path`, so each endpoint can behave differently."""

    def __init__(self) -> None:
        self.by_path: dict[str, FakeSource] = {}
        self.secrets_seen: list[Mapping[str, str]] = []

    def __getitem__(self, path: str) -> FakeSource:
        return self.by_path.setdefault(path, FakeSource())

    def connect(
        self, kind: str, config: Mapping[str, object], secrets: Mapping[str, str]
    ) -> Connector:
        self.secrets_seen.append(secrets)
        return self[str(config.get("path", ""))]


@pytest.fixture
def sources() -> Sources:
    return Sources()


@pytest.fixture
def box() -> SecretBox:
    return SecretBox([generate_key()])


@pytest.fixture
def deps(sqlite_catalog: Database, sources: Sources, box: SecretBox) -> PreviewerDeps:
    return PreviewerDeps(
        db=sqlite_catalog, secrets=box, source="/freshet/previewer", connect=sources.connect
    )


class Helpers:
    """Arrange catalog state and read back what the previewer wrote."""

    def __init__(self, deps: PreviewerDeps) -> None:
        self.deps = deps

    @staticmethod
    def envelope(event: Event, event_id: str | None = None) -> Envelope:
        return envelope_of(event, event_id=event_id, correlation_id="corr-7")

    async def add_endpoint(
        self,
        tables: list[str],
        *,
        policy: str = "auto",
        path: str | None = None,
        masks: list[str] | None = None,
        secrets: dict[str, str] | None = None,
    ) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
        async with UnitOfWork(self.deps.db) as uow:
            endpoint = await uow.endpoints.add(
                name=f"ep-{uuid.uuid4().hex[:6]}",
                kind="sqlite",
                config={"path": path or f"/src/{uuid.uuid4().hex[:6]}.db"},
                preview_policy=policy,
                preview_masks=masks or [],
                secret_ciphertext=self.deps.secrets.encrypt(secrets or {}),
            )
            result = await uow.datasets.sync(
                endpoint_id=endpoint.id,
                endpoint_kind="sqlite",
                run_id=uuid.uuid4(),
                specs=[
                    DatasetSpec("main", t, "table", [{"name": "id"}], ["id"], [], t) for t in tables
                ],
            )
            await uow.commit()
            return endpoint.id, {d.name: d.id for d in result.added}

    @staticmethod
    def completed(endpoint_id: uuid.UUID, status: str = "SUCCEEDED") -> RunCompleted:
        return RunCompleted(
            run_id=uuid.uuid4(),
            collection_id=uuid.uuid4(),
            endpoint_id=endpoint_id,
            status=status,
            trigger_source="manual",
            completed_at=NOW,
        )

    async def outbox(self, topic: str) -> list[dict[str, Any]]:
        async with UnitOfWork(self.deps.db) as uow:
            rows = await uow.outbox.pending(5000)
        return [
            json.loads(r.value) | {"_headers": dict(r.headers)} for r in rows if r.topic == topic
        ]

    async def payload_of(self, dataset_id: uuid.UUID) -> dict[str, Any]:
        async with UnitOfWork(self.deps.db) as uow:
            dataset = await uow.datasets.get(dataset_id)
            assert dataset is not None
            return dict(dataset.payload)

    async def request_of(self, request_id: uuid.UUID | str) -> PreviewRequest:
        async with UnitOfWork(self.deps.db) as uow:
            row = await uow.previews.get(uuid.UUID(str(request_id)))
            assert row is not None
            return row

    async def requests_of(self, dataset_id: uuid.UUID) -> list[PreviewRequest]:
        from sqlalchemy import select

        async with UnitOfWork(self.deps.db) as uow:
            result = await uow.session.execute(
                select(PreviewRequest)
                .where(PreviewRequest.dataset_id == dataset_id)
                .order_by(PreviewRequest.requested_at)
            )
            return list(result.scalars())

    async def audit_of(self, **where: Any) -> list[AuditRecord]:
        from freshet.catalog.audit import AuditFilter

        async with UnitOfWork(self.deps.db) as uow:
            return list(reversed(await uow.audit.page(AuditFilter(**where), first=1000)))


@pytest.fixture
def h(deps: PreviewerDeps) -> Helpers:
    return Helpers(deps)
