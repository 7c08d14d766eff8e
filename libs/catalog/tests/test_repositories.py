"""Catalog repositories behave the same on SQLite and on PostgreSQL (every test runs on both)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.pool import QueuePool

from freshet.catalog import Database, DatasetSpec, ForeignKeySpec, RunStatus, UnitOfWork
from freshet.catalog.endpoints import collection_cursor
from freshet.catalog.runs import RunFilter, run_cursor
from freshet.contracts import CollectionRequested


@pytest.fixture
async def db(catalog_url: str) -> AsyncIterator[Database]:
    database = Database(catalog_url)
    yield database
    await database.dispose()


async def make_collection(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    async with UnitOfWork(db) as uow:
        endpoint = await uow.endpoints.add(
            name=f"ep-{uuid.uuid4().hex[:6]}", kind="sqlite", config={}
        )
        collection = await uow.collections.add(endpoint_id=endpoint.id)
        await uow.commit()
        return endpoint.id, collection.id


async def make_run(db: Database, collection_id: uuid.UUID, endpoint_id: uuid.UUID) -> uuid.UUID:
    async with UnitOfWork(db) as uow:
        run = await uow.runs.add(
            collection_id=collection_id, endpoint_id=endpoint_id, trigger_source="manual"
        )
        await uow.commit()
        return run.id


async def status_of(db: Database, run_id: uuid.UUID) -> str:
    async with UnitOfWork(db) as uow:
        run = await uow.runs.get(run_id)
        assert run is not None
        return run.status


# --- runs -----------------------------------------------------------------------------------


async def test_a_run_moves_queued_running_succeeded_and_then_never_changes(db: Database) -> None:
    endpoint_id, collection_id = await make_collection(db)
    run_id = await make_run(db, collection_id, endpoint_id)
    async with UnitOfWork(db) as uow:
        assert await uow.runs.transition(run_id, RunStatus.RUNNING)
        assert await uow.runs.transition(run_id, RunStatus.SUCCEEDED)
        await uow.commit()
    async with UnitOfWork(db) as uow:
        for target in RunStatus:
            if target is not RunStatus.QUEUED:
                assert not await uow.runs.transition(run_id, target), target
        run = await uow.runs.get(run_id)
        assert run is not None
        assert run.status == "SUCCEEDED"
        assert run.started_at is not None
        assert run.completed_at is not None
        assert run.completed_at >= run.started_at
        assert run.started_at.tzinfo is not None


async def test_a_queued_run_cannot_succeed_without_running(db: Database) -> None:
    endpoint_id, collection_id = await make_collection(db)
    run_id = await make_run(db, collection_id, endpoint_id)
    async with UnitOfWork(db) as uow:
        assert not await uow.runs.transition(run_id, RunStatus.SUCCEEDED)
        assert await uow.runs.transition(run_id, RunStatus.CANCELLED)
        await uow.commit()
    assert await status_of(db, run_id) == "CANCELLED"


async def test_the_database_keeps_a_collection_to_one_active_run(db: Database) -> None:
    endpoint_id, collection_id = await make_collection(db)
    first = await make_run(db, collection_id, endpoint_id)
    async with UnitOfWork(db) as uow:
        # A second QUEUED run is refused by the partial unique index, not by code...
        assert (
            await uow.runs.enqueue(
                collection_id=collection_id, endpoint_id=endpoint_id, trigger_source="manual"
            )
            is None
        )
        # ...and the refusal did not spoil the transaction: a SKIPPED record still commits.
        skipped = await uow.runs.add(
            collection_id=collection_id,
            endpoint_id=endpoint_id,
            trigger_source="schedule",
            status=RunStatus.SKIPPED,
            error="previous run still running",
        )
        assert await uow.runs.transition(first, RunStatus.RUNNING)
        await uow.commit()
    assert await status_of(db, skipped.id) == "SKIPPED"
    async with UnitOfWork(db) as uow:
        assert (
            await uow.runs.enqueue(
                collection_id=collection_id, endpoint_id=endpoint_id, trigger_source="manual"
            )
            is None
        )
        active = await uow.runs.active_for(collection_id)
        assert active is not None
        assert active.id == first
    # Another collection is not affected.
    other_endpoint, other_collection = await make_collection(db)
    other = await make_run(db, other_collection, other_endpoint)
    async with UnitOfWork(db) as uow:
        assert await uow.runs.transition(other, RunStatus.RUNNING)
        await uow.commit()
    # Once the first run is final, the collection takes a new one.
    async with UnitOfWork(db) as uow:
        assert await uow.runs.transition(first, RunStatus.SUCCEEDED)
        again = await uow.runs.enqueue(
            collection_id=collection_id, endpoint_id=endpoint_id, trigger_source="manual"
        )
        assert again is not None
        await uow.commit()


async def test_concurrent_enqueues_make_exactly_one_run(db: Database) -> None:
    endpoint_id, collection_id = await make_collection(db)

    async def try_enqueue() -> bool:
        async with UnitOfWork(db) as uow:
            run = await uow.runs.enqueue(
                collection_id=collection_id, endpoint_id=endpoint_id, trigger_source="manual"
            )
            await uow.commit()
            return run is not None

    results = await asyncio.gather(*(try_enqueue() for _ in range(10)))
    assert sorted(results) == [False] * 9 + [True]


async def test_a_running_run_skips_when_prepare_finds_nothing_to_do(db: Database) -> None:
    endpoint_id, collection_id = await make_collection(db)
    run_id = await make_run(db, collection_id, endpoint_id)
    async with UnitOfWork(db) as uow:
        assert await uow.runs.transition(run_id, RunStatus.RUNNING)
        assert await uow.runs.transition(run_id, RunStatus.SKIPPED, error="filters match nothing")
        await uow.commit()
    assert await status_of(db, run_id) == "SKIPPED"


async def test_a_lease_is_renewed_by_its_owner_and_taken_over_once_expired(db: Database) -> None:
    endpoint_id, collection_id = await make_collection(db)
    run_id = await make_run(db, collection_id, endpoint_id)
    ttl = timedelta(seconds=30)
    async with UnitOfWork(db) as uow:
        assert await uow.runs.transition(
            run_id,
            RunStatus.RUNNING,
            lease_owner="collector-a",
            lease_expires_at=datetime.now(UTC) + ttl,
        )
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert await uow.runs.renew_lease(run_id, "collector-a", ttl)
        assert not await uow.runs.renew_lease(run_id, "collector-b", ttl)
        # A live lease is not taken over, and is not listed as expired.
        assert not await uow.runs.take_over(run_id, "collector-b", ttl)
        assert run_id not in await uow.runs.expired()
        await uow.runs.release_lease(run_id, "collector-a")
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert run_id in await uow.runs.expired()
        assert await uow.runs.take_over(run_id, "collector-b", ttl)
        await uow.commit()
    async with UnitOfWork(db) as uow:
        # The old owner learns it lost the run.
        assert not await uow.runs.renew_lease(run_id, "collector-a", ttl)
        assert await uow.runs.transition(run_id, RunStatus.SUCCEEDED)
        await uow.commit()
    async with UnitOfWork(db) as uow:
        run = await uow.runs.get(run_id)
        assert run is not None
        assert (run.lease_owner, run.lease_expires_at) == (None, None)
        assert not await uow.runs.renew_lease(run_id, "collector-b", ttl)


async def test_running_for_and_find_filter_runs(db: Database) -> None:
    endpoint_id, collection_id = await make_collection(db)
    a = await make_run(db, collection_id, endpoint_id)
    async with UnitOfWork(db) as uow:
        await uow.runs.transition(a, RunStatus.RUNNING)
        b = (
            await uow.runs.add(
                collection_id=collection_id,
                endpoint_id=endpoint_id,
                trigger_source="manual",
                status=RunStatus.SKIPPED,
            )
        ).id
        await uow.commit()
    async with UnitOfWork(db) as uow:
        running = await uow.runs.running_for(collection_id)
        assert running is not None
        assert running.id == a
        skipped = await uow.runs.find(collection_id=collection_id, statuses=[RunStatus.SKIPPED])
        assert [r.id for r in skipped] == [b]
        assert {r.id for r in await uow.runs.find(endpoint_id=endpoint_id)} == {a, b}


async def test_run_pages_follow_cursors_without_repeats_and_filter_by_time(db: Database) -> None:
    endpoint_id, collection_id = await make_collection(db)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    async with UnitOfWork(db) as uow:
        for i in range(7):
            run = await uow.runs.add(
                collection_id=collection_id,
                endpoint_id=endpoint_id,
                trigger_source="manual",
                status=RunStatus.SUCCEEDED if i % 2 else RunStatus.FAILED,
                # Two runs share each timestamp: the id breaks the tie.
                requested_at=base + timedelta(minutes=i // 2),
            )
            ids.append(run.id)
        await uow.commit()
    where = RunFilter(collection_id=collection_id)
    seen: list[uuid.UUID] = []
    after = None
    async with UnitOfWork(db, read_only=True) as uow:
        while True:
            page = await uow.runs.page(where, first=3, after=after)
            if not page:
                break
            seen += [r.id for r in page]
            after = run_cursor(page[-1])
        assert sorted(seen) == sorted(ids)
        assert len(seen) == len(set(seen))
        times = [r.requested_at for r in await uow.runs.page(where, first=10)]
        assert times == sorted(times, reverse=True)
        window = await uow.runs.page(
            RunFilter(
                collection_id=collection_id,
                statuses=[RunStatus.FAILED],
                requested_from=base + timedelta(minutes=1),
                requested_to=base + timedelta(minutes=3),
            )
        )
        assert {r.requested_at for r in window} == {
            base + timedelta(minutes=1),
            base + timedelta(minutes=2),
        }
        assert all(r.status == "FAILED" for r in window)
        with pytest.raises(ValueError, match="invalid cursor"):
            await uow.runs.page(where, after="not-a-cursor")


async def test_collections_page_by_endpoint_and_enabled(db: Database) -> None:
    made = [await make_collection(db) for _ in range(3)]
    async with UnitOfWork(db) as uow:
        third = await uow.collections.get(made[2][1])
        assert third is not None
        await uow.collections.update(
            third, schedule_cron="0 * * * *", schedule_timezone="UTC", is_enabled=False
        )
        await uow.commit()
        assert third.schedule_id == f"collection::{third.id}"
    async with UnitOfWork(db, read_only=True) as uow:
        mine = {c for _, c in made}
        every = [c.id for c in await uow.collections.page() if c.id in mine]
        assert every == [c for _, c in made]
        one = await uow.collections.page(endpoint_id=made[1][0])
        assert [c.id for c in one] == [made[1][1]]
        disabled = {c.id for c in await uow.collections.page(is_enabled=False)}
        assert made[2][1] in disabled
        assert made[0][1] not in disabled
        first = await uow.collections.page(first=1)
        rest = await uow.collections.page(after=collection_cursor(first[0]))
        assert first[0].id not in {c.id for c in rest}


# --- datasets -------------------------------------------------------------------------------


def spec(name: str, columns: list[str], fks: list[ForeignKeySpec] | None = None) -> DatasetSpec:
    return DatasetSpec(
        schema_name="main",
        name=name,
        kind="table",
        columns=[{"name": c, "data_type": "TEXT"} for c in columns],
        primary_key=[columns[0]],
        foreign_keys=fks or [],
        fingerprint="|".join(columns),
    )


ORDERS_FK = ForeignKeySpec(["customer_id"], "main", "customers", ["id"])


async def test_sync_reports_added_removed_and_changed_and_is_idempotent(db: Database) -> None:
    endpoint_id, _ = await make_collection(db)
    first = [spec("customers", ["id", "name"]), spec("orders", ["id", "customer_id"], [ORDERS_FK])]
    async with UnitOfWork(db) as uow:
        result = await uow.datasets.sync(
            endpoint_id=endpoint_id, endpoint_kind="sqlite", run_id=uuid.uuid4(), specs=first
        )
        await uow.commit()
    assert sorted(d.name for d in result.added) == ["customers", "orders"]
    assert result.total == 2

    async with UnitOfWork(db) as uow:
        again = await uow.datasets.sync(
            endpoint_id=endpoint_id, endpoint_kind="sqlite", run_id=uuid.uuid4(), specs=first
        )
        await uow.commit()
    assert (again.added, again.removed, again.schema_changed) == ([], [], [])

    second = [spec("customers", ["id", "name", "email"]), spec("products", ["sku"])]
    async with UnitOfWork(db) as uow:
        diff = await uow.datasets.sync(
            endpoint_id=endpoint_id, endpoint_kind="sqlite", run_id=uuid.uuid4(), specs=second
        )
        await uow.commit()
    assert [d.name for d in diff.added] == ["products"]
    assert [d.name for d in diff.removed] == ["orders"]
    assert [d.name for d in diff.schema_changed] == ["customers"]

    async with UnitOfWork(db) as uow:
        live = await uow.datasets.for_endpoint(endpoint_id)
        assert [d.name for d in live] == ["customers", "products"]
        everything = await uow.datasets.for_endpoint(endpoint_id, include_removed=True)
        assert len(everything) == 3
        customers = live[0]
        assert customers.labels == [f"endpoint:{endpoint_id}", "source:sqlite"]
        # The foreign-key edge went with the removed table.
        assert await uow.datasets.edges_of(customers.id) == []


async def test_sync_records_foreign_key_edges_once(db: Database) -> None:
    endpoint_id, _ = await make_collection(db)
    specs = [spec("customers", ["id"]), spec("orders", ["id", "customer_id"], [ORDERS_FK])]
    for _ in range(2):
        async with UnitOfWork(db) as uow:
            await uow.datasets.sync(
                endpoint_id=endpoint_id, endpoint_kind="sqlite", run_id=uuid.uuid4(), specs=specs
            )
            await uow.commit()
    async with UnitOfWork(db) as uow:
        orders = next(d for d in await uow.datasets.for_endpoint(endpoint_id) if d.name == "orders")
        edges = await uow.datasets.edges_of(orders.id)
    assert [e.name for e in edges] == ["main.orders(customer_id)->main.customers(id)"]
    assert edges[0].details == {"columns": ["customer_id"], "referred_columns": ["id"]}


async def test_newer_preview_wins_and_the_same_sample_twice_changes_nothing(db: Database) -> None:
    endpoint_id, _ = await make_collection(db)
    async with UnitOfWork(db) as uow:
        result = await uow.datasets.sync(
            endpoint_id=endpoint_id,
            endpoint_kind="sqlite",
            run_id=uuid.uuid4(),
            specs=[spec("t", ["a"])],
        )
        await uow.commit()
    dataset_id = result.added[0].id
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def preview(at: datetime, value: int) -> dict[str, object]:
        return {"rows": [[value]], "columns": ["a"], "sampledAt": at.isoformat()}

    async with UnitOfWork(db) as uow:
        assert (await uow.datasets.get(dataset_id)).payload == {}  # type: ignore[union-attr]
        assert await uow.datasets.set_preview(dataset_id, preview(t0, 1))
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert not await uow.datasets.set_preview(dataset_id, preview(t0, 1))
        assert not await uow.datasets.set_preview(dataset_id, preview(t0 - timedelta(hours=1), 2))
        assert await uow.datasets.set_preview(dataset_id, preview(t0 + timedelta(seconds=1), 3))
        await uow.commit()
    async with UnitOfWork(db) as uow:
        dataset = await uow.datasets.get(dataset_id)
        assert dataset is not None
        assert dataset.payload["preview"]["rows"] == [[3]]


# --- inbox, outbox, leases -----------------------------------------------------------------


async def test_inbox_claims_an_event_once_per_consumer_and_rollback_releases_it(
    db: Database,
) -> None:
    async with UnitOfWork(db) as uow:
        assert await uow.inbox.claim("c1", "ev-1")
        assert not await uow.inbox.claim("c1", "ev-1")
        assert await uow.inbox.claim("c2", "ev-1")
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert not await uow.inbox.claim("c1", "ev-1")
        assert await uow.inbox.claim("c1", "ev-2")
        # no commit: rolled back
    async with UnitOfWork(db) as uow:
        assert await uow.inbox.claim("c1", "ev-2")
        await uow.commit()


async def test_outbox_keeps_order_and_can_requeue_after_broker_loss(db: Database) -> None:
    collection = uuid.uuid4()
    async with UnitOfWork(db) as uow:
        for i in range(5):
            await uow.outbox.add(
                CollectionRequested(collection_id=collection, requested_by=f"u{i}"),
                source="/test",
                correlation_id="corr",
            )
        await uow.commit()
    async with UnitOfWork(db) as uow:
        pending = await uow.outbox.pending(10)
        assert [r.topic for r in pending] == ["freshet.collection.requested"] * 5
        assert [r.id for r in pending] == sorted(r.id for r in pending)
        assert all(r.key == str(collection) for r in pending)
        assert dict(pending[0].headers)["ce_correlationid"] == "corr"
        await uow.outbox.mark_published([r.id for r in pending[:3]])
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert len(await uow.outbox.pending(10)) == 2
        assert (await uow.outbox.backlog())[0] == 2
        requeued = await uow.outbox.requeue_published_since(datetime.now(UTC) - timedelta(hours=1))
        await uow.commit()
    assert requeued == 3
    async with UnitOfWork(db) as uow:
        assert len(await uow.outbox.pending(10)) == 5


async def test_a_lease_has_one_holder_until_it_expires(db: Database) -> None:
    ttl = timedelta(seconds=30)
    async with UnitOfWork(db) as uow:
        assert await uow.leases.try_acquire("relay", "a", ttl)
        assert not await uow.leases.try_acquire("relay", "b", ttl)
        assert await uow.leases.try_acquire("relay", "a", ttl)  # renewal
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert await uow.leases.try_acquire("relay", "a", timedelta(seconds=-1))  # expire it
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert await uow.leases.try_acquire("relay", "b", ttl)
        await uow.leases.release("relay", "b")
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert await uow.leases.try_acquire("relay", "c", ttl)
        await uow.commit()


async def test_a_read_only_unit_of_work_reads_but_cannot_commit(db: Database) -> None:
    endpoint_id, _ = await make_collection(db)
    async with UnitOfWork(db, read_only=True) as uow:
        assert await uow.endpoints.get(endpoint_id) is not None
        with pytest.raises(RuntimeError, match="cannot commit"):
            await uow.commit()


async def test_sqlite_readers_do_not_wait_for_a_writer(db: Database) -> None:
    """A reader must not queue behind an open write transaction (it used to, on SQLite)."""
    endpoint_id, _ = await make_collection(db)
    async with UnitOfWork(db) as writer:
        await writer.endpoints.add(name="held-open", kind="sqlite", config={})
        async with UnitOfWork(db, read_only=True) as reader:
            found = await asyncio.wait_for(reader.endpoints.get(endpoint_id), timeout=2)
        assert found is not None
        await writer.commit()


async def test_concurrent_writers_of_one_process_all_commit(db: Database) -> None:
    """Writers that overlap take turns; none fails with a lock error. On SQLite they queue
    for the process's one writer connection rather than in SQLite's sleeping busy handler."""
    in_use: list[int] = []

    async def write(i: int) -> None:
        async with UnitOfWork(db) as uow:
            await uow.endpoints.add(name=f"turn-{i}", kind="sqlite", config={})
            pool = db.engine.pool
            assert isinstance(pool, QueuePool)
            in_use.append(pool.checkedout())
            await asyncio.sleep(0.005)  # holds the transaction open across an await
            await uow.commit()

    await asyncio.gather(*(write(i) for i in range(30)))
    async with UnitOfWork(db, read_only=True) as uow:
        names = {e.name for e in await uow.endpoints.all()}
    assert {f"turn-{i}" for i in range(30)} <= names
    if db.dialect == "sqlite":
        assert max(in_use) == 1
