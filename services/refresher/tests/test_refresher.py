"""The refresher in-process: handlers, the runner's limits and failure handling, upkeep.

Sources are fakes here (the real readers are tested in libs/connectors and end to end in
tests/e2e); the catalog is a real SQLite database and the cache a real folder.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import stamina

from freshet.cachestore import CacheStore
from freshet.catalog import Database, Dataset, DatasetSpec, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.secrets import SecretBox, generate_key
from freshet.connectors import ConnectorError, Sample, TableInfo
from freshet.contracts import DatasetDiff, DatasetRef, RefreshRequested, RunCompleted
from freshet.devstack.testing import envelope_of, eventually
from freshet.refresher.handlers import handle_refresh_requested, handle_run_completed
from freshet.refresher.jobs import JobDeps
from freshet.refresher.maintenance import Maintenance, MaintenanceSettings
from freshet.refresher.runner import RefreshLimits, Runner


@pytest.fixture(autouse=True)
def no_retry_waits() -> Iterator[None]:
    stamina.set_testing(True, attempts=1)
    yield
    stamina.set_testing(False)


class FakeSource:
    """Streams `rows` rows per table in batches; the test can hold or fail a table."""

    kind = "sqlite"

    def __init__(self) -> None:
        self.rows = 25
        self.gate: asyncio.Event | None = None
        self.fail_after_first: set[str] = set()
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total_running = 0
        self.total_peak = 0
        self.endpoint_of: dict[str, str] = {}

    async def test(self) -> None:
        return None

    async def introspect(self) -> list[TableInfo]:
        return []

    async def sample(self, schema_name: str, table: str, limit: int) -> Sample:
        raise NotImplementedError

    async def stream(
        self, schema_name: str, table: str, *, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        endpoint = self.endpoint_of.get(table, "?")
        self.running[endpoint] += 1
        self.total_running += 1
        self.peak[endpoint] = max(self.peak[endpoint], self.running[endpoint])
        self.total_peak = max(self.total_peak, self.total_running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            for start in range(0, self.rows, batch_rows):
                yield pa.RecordBatch.from_pydict(
                    {"id": list(range(start, min(start + batch_rows, self.rows)))}
                )
                if table in self.fail_after_first:
                    raise ConnectorError("connection reset by peer", transient=False)
        finally:
            self.running[endpoint] -= 1
            self.total_running -= 1


class Harness:
    def __init__(self, db: Database, tmp: Path, limits: RefreshLimits) -> None:
        self.db = db
        self.source = FakeSource()
        self.store = CacheStore.local(tmp / "cache")
        self.deps = JobDeps(
            db=db,
            secrets=SecretBox([generate_key()]),
            source="/test/refresher",
            owner="refresher@test",
            lease_ttl=timedelta(seconds=30),
            min_interval=timedelta(minutes=5),
            grace=timedelta(0),
        )

        def connect(
            kind: str, config: Mapping[str, object], secrets: Mapping[str, str]
        ) -> FakeSource:
            return self.source

        self.runner = Runner(self.deps, self.store, connect, limits)

    async def endpoint(self, name: str, *tables: str) -> tuple[uuid.UUID, dict[str, Dataset]]:
        async with UnitOfWork(self.db) as uow:
            endpoint = await uow.endpoints.add(name=name, kind="sqlite", config={"path": "x"})
            result = await uow.datasets.sync(
                endpoint_id=endpoint.id,
                endpoint_kind="sqlite",
                run_id=uuid.uuid4(),
                specs=[
                    DatasetSpec(
                        schema_name="main",
                        name=t,
                        kind="table",
                        columns=[],
                        primary_key=[],
                        foreign_keys=[],
                        fingerprint=f"fp-{t}",
                    )
                    for t in tables
                ],
            )
            await uow.commit()
        for table in tables:
            self.source.endpoint_of[table] = name
        return endpoint.id, {d.name: d for d in result.added}

    async def request(self, endpoint_id: uuid.UUID, tables: list[str], **fields: Any) -> str:
        env = envelope_of(
            RefreshRequested(
                endpoint_id=endpoint_id, tables=[f"main.{t}" for t in tables], **fields
            )
        )
        await handle_refresh_requested(env, self.runner)
        return env.id

    async def pointer(self, dataset_id: uuid.UUID) -> str | None:
        async with UnitOfWork(self.db, read_only=True) as uow:
            cache = await uow.caches.get(dataset_id)
        return cache.uri if cache else None

    async def events(self) -> list[str]:
        async with UnitOfWork(self.db, read_only=True) as uow:
            return [row.event_type for row in await uow.outbox.pending(1000)]

    def files(self) -> list[Path]:
        return sorted(p for p in Path(self.store.root).rglob("*") if p.is_file())


@pytest.fixture
def harness(sqlite_catalog: Database, tmp_path: Path) -> Harness:
    return Harness(
        sqlite_catalog,
        tmp_path,
        RefreshLimits(batch_rows=10, max_concurrent=3, max_per_endpoint=2, table_timeout_s=30),
    )


async def test_an_outside_request_refreshes_once_however_often_it_arrives(
    harness: Harness,
) -> None:
    endpoint_id, tables = await harness.endpoint("shop", "orders")
    env = envelope_of(RefreshRequested(endpoint_id=endpoint_id, tables=["main.orders"]))
    for _ in range(3):
        await handle_refresh_requested(env, harness.runner)
        await harness.runner.wait_idle()
    uri = await harness.pointer(tables["orders"].id)
    assert uri is not None
    assert pq.read_table(harness.store.local_path(uri)).num_rows == 25
    assert harness.files() == [harness.store.local_path(uri)]
    events = await harness.events()
    assert events.count("freshet.table.refreshed.v1") == 1
    assert events.count("freshet.refresh.completed.v1") == 1


async def test_a_queued_job_whose_request_never_came_is_swept_after_a_lease_ttl(
    harness: Harness,
) -> None:
    _, tables = await harness.endpoint("shop", "orders")
    async with UnitOfWork(harness.db) as uow:
        # What the gateway writes; its RefreshRequested is lost, so nobody claims the job.
        queued = await uow.refreshes.join_or_start_table(
            tables["orders"], trigger_source="api", requested_by="x"
        )
        await uow.commit()
    # A replica that is slow to claim what its partitions bring keeps the job for a TTL.
    await _age_job(harness, queued.refresh_id, harness.deps.lease_ttl - timedelta(seconds=2))
    assert await harness.runner.sweep() == 0
    await _age_job(harness, queued.refresh_id, harness.deps.lease_ttl + timedelta(seconds=1))
    assert await harness.runner.sweep() == 1
    await harness.runner.wait_idle()
    assert await harness.pointer(tables["orders"].id) is not None


async def _age_job(harness: Harness, refresh_id: uuid.UUID, age: timedelta) -> None:
    async with UnitOfWork(harness.db) as uow:
        job = await uow.refreshes.get(refresh_id)
        assert job is not None
        job.requested_at = utcnow() - age
        await uow.commit()


async def test_concurrency_limits_hold_across_requests(harness: Harness) -> None:
    a_id, _ = await harness.endpoint("a", "a1", "a2", "a3", "a4", "a5")
    b_id, _ = await harness.endpoint("b", "b1", "b2")
    harness.source.gate = asyncio.Event()
    await harness.request(a_id, ["a1", "a2", "a3"], concurrency=5)
    await harness.request(a_id, ["a4", "a5"], concurrency=5)
    await harness.request(b_id, ["b1", "b2"], concurrency=5)

    async def saturated() -> bool:
        return harness.source.total_running == 3

    await eventually(saturated, timeout=10)
    # Endpoint a waits for its own slots without holding global ones: b runs beside it.
    assert harness.source.running["a"] == 2
    assert harness.source.running["b"] == 1
    harness.source.gate.set()
    await harness.runner.wait_idle()
    assert harness.source.peak["a"] == 2
    assert harness.source.total_peak == 3
    assert harness.runner.peak_tables == 3


async def test_a_failed_refresh_keeps_the_old_cache_and_leaves_no_file(
    harness: Harness,
) -> None:
    endpoint_id, tables = await harness.endpoint("shop", "orders", "customers")
    await harness.request(endpoint_id, ["orders", "customers"])
    await harness.runner.wait_idle()
    old = await harness.pointer(tables["orders"].id)
    assert old is not None
    harness.source.fail_after_first.add("orders")
    await harness.request(endpoint_id, ["orders", "customers"], force=True)
    await harness.runner.wait_idle()
    assert await harness.pointer(tables["orders"].id) == old
    # customers moved on; orders' partial file is gone; the old versions wait for deletion.
    async with UnitOfWork(harness.db, read_only=True) as uow:
        cache = await uow.caches.get(tables["orders"].id)
        assert cache is not None
        assert cache.last_error is not None
        assert "connection reset" in cache.last_error
        pending = await uow.caches.pending_deletions()
    assert len(harness.files()) == 2 + pending
    events = await harness.events()
    assert "freshet.table.refresh_failed.v1" in events


async def test_a_request_within_the_minimum_interval_is_skipped_unless_forced(
    harness: Harness,
) -> None:
    endpoint_id, tables = await harness.endpoint("shop", "orders")
    await harness.request(endpoint_id, ["orders"])
    await harness.runner.wait_idle()
    first = await harness.pointer(tables["orders"].id)
    await harness.request(endpoint_id, ["orders"])
    await harness.runner.wait_idle()
    assert await harness.pointer(tables["orders"].id) == first
    await harness.request(endpoint_id, ["orders"], force=True)
    await harness.runner.wait_idle()
    assert await harness.pointer(tables["orders"].id) != first


async def test_schema_changes_refresh_cached_tables_unless_the_policy_ignores_them(
    harness: Harness,
) -> None:
    endpoint_id, tables = await harness.endpoint("shop", "orders", "customers")
    async with UnitOfWork(harness.db) as uow:
        await uow.caches.configure(tables["orders"], utcnow(), cached=True)
        await uow.commit()

    def run_completed() -> RunCompleted:
        return RunCompleted(
            run_id=uuid.uuid4(),
            collection_id=uuid.uuid4(),
            endpoint_id=endpoint_id,
            status="SUCCEEDED",
            trigger_source="api",
            completed_at=datetime.now(UTC),
            diff=DatasetDiff(
                schema_changed=[
                    DatasetRef(dataset_id=d.id, schema_name="main", name=d.name)
                    for d in tables.values()
                ]
            ),
        )

    await handle_run_completed(envelope_of(run_completed()), harness.runner)
    await harness.runner.wait_idle()
    assert await harness.pointer(tables["orders"].id) is not None  # cached: refreshed
    assert await harness.pointer(tables["customers"].id) is None  # not cached: left alone

    async with UnitOfWork(harness.db) as uow:
        endpoint = await uow.endpoints.get(endpoint_id)
        assert endpoint is not None
        endpoint.schema_change_policy = "ignore"
        await uow.commit()
    before = await harness.pointer(tables["orders"].id)
    await handle_run_completed(envelope_of(run_completed()), harness.runner)
    await harness.runner.wait_idle()
    assert await harness.pointer(tables["orders"].id) == before


async def test_upkeep_deletes_unread_files_and_orphans_but_not_active_targets(
    harness: Harness,
) -> None:
    endpoint_id, tables = await harness.endpoint("shop", "orders")
    await harness.request(endpoint_id, ["orders"])
    await harness.runner.wait_idle()
    first = await harness.pointer(tables["orders"].id)
    assert first is not None
    async with UnitOfWork(harness.db) as uow:
        lease_id, _ = await uow.caches.register_readers([first], holder="q", ttl=timedelta(hours=1))
        await uow.commit()
    await harness.request(endpoint_id, ["orders"], force=True)
    await harness.runner.wait_idle()
    maintenance = Maintenance(
        harness.db,
        harness.store,
        "refresher@test",
        MaintenanceSettings(
            interval=timedelta(seconds=1),
            reconcile_every=timedelta(seconds=1),
            orphan_min_age=timedelta(0),
        ),
    )
    assert await maintenance.delete_due() == 0  # a reader holds the old version
    orphan = Path(harness.store.root) / str(endpoint_id) / "main" / "orders" / "stray.parquet"
    await asyncio.to_thread(orphan.write_bytes, b"PAR1")
    target = harness.store.version_path(endpoint_id, "main", "orders", "in-flight")
    async with UnitOfWork(harness.db) as uow:
        enqueued = await uow.refreshes.join_or_start_table(
            tables["orders"], trigger_source="api", requested_by="t"
        )
        assert await uow.refreshes.claim(enqueued.refresh_id, "other", timedelta(minutes=1))
        await uow.refreshes.begin_item(
            enqueued.refresh_id, tables["orders"].id, version="v", uri=harness.store.uri(target)
        )
        await uow.commit()
    await asyncio.to_thread(Path(target).write_bytes, b"PAR1")
    assert await maintenance.reconcile() == [harness.store.uri(str(orphan))]
    assert _exists(target)
    assert _exists(harness.store.local_path(first) or "")
    async with UnitOfWork(harness.db) as uow:
        await uow.caches.release_readers(lease_id)
        await uow.commit()
    assert await maintenance.delete_due() == 1
    assert not _exists(harness.store.local_path(first) or "")


def _exists(path: str | Path) -> bool:
    return os.path.exists(path)


def _size(path: str) -> int:
    return os.path.getsize(path)
