"""Refresh jobs and cached tables as overviews read them, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from freshet.catalog import Database, Dataset, DatasetSpec, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.refresh_listing import (
    CacheTotals,
    JobFilter,
    cache_totals,
    cached_tables,
    find_jobs,
    items_of,
    job_cursor,
    progress_of,
)


@pytest.fixture
async def db(catalog_url: str) -> AsyncIterator[Database]:
    database = Database(catalog_url)
    yield database
    await database.dispose()


async def make_tables(db: Database, name: str, *tables: str) -> tuple[uuid.UUID, list[Dataset]]:
    async with UnitOfWork(db) as uow:
        endpoint = await uow.endpoints.add(name=name, kind="postgres", config={})
        specs = [
            DatasetSpec(
                schema_name="public",
                name=table,
                kind="table",
                columns=[{"name": "id", "data_type": "integer", "nullable": False}],
                primary_key=["id"],
                foreign_keys=[],
                fingerprint=f"fp-{table}",
            )
            for table in tables
        ]
        result = await uow.datasets.sync(
            endpoint_id=endpoint.id, endpoint_kind="postgres", run_id=uuid.uuid4(), specs=specs
        )
        await uow.commit()
        return endpoint.id, sorted(result.added, key=lambda d: d.name)


async def test_jobs_come_newest_first_by_keyset_pages_and_filter_by_state_and_endpoint(
    db: Database,
) -> None:
    first_endpoint, [a] = await make_tables(db, "one", "a")
    second_endpoint, [b] = await make_tables(db, "two", "b")
    ids = []
    async with UnitOfWork(db) as uow:
        for i in range(5):
            job = await uow.refreshes.start_job(
                first_endpoint if i % 2 == 0 else second_endpoint,
                [],
                trigger_source="api",
                requested_by="x",
            )
            job.requested_at = utcnow() + timedelta(seconds=i)
            ids.append(job.id)
        open_job = await uow.refreshes.start_job(
            first_endpoint, [a], trigger_source="api", requested_by="x"
        )
        open_job.requested_at = utcnow() - timedelta(hours=1)
        await uow.commit()

    async with UnitOfWork(db, read_only=True) as uow:
        page = await find_jobs(uow.session, JobFilter(open=False), first=3)
        rest = await find_jobs(
            uow.session,
            JobFilter(open=False),
            first=3,
            after=job_cursor(page[-1].requested_at, page[-1].id),
        )
        running = await find_jobs(uow.session, JobFilter(open=True))
        of_first = await find_jobs(uow.session, JobFilter(endpoint_id=first_endpoint))
        with pytest.raises(ValueError, match="cursor"):
            await find_jobs(uow.session, JobFilter(), after="bm90LWEtY3Vyc29y")

    assert [j.id for j in page + rest] == ids[::-1]
    assert [j.id for j in running] == [open_job.id]
    assert [j.id for j in of_first] == [ids[4], ids[2], ids[0], open_job.id]
    assert b.endpoint_id == second_endpoint


async def test_progress_and_a_bounded_sample_of_tables_for_many_jobs_at_once(db: Database) -> None:
    endpoint, tables = await make_tables(db, "big", *(f"t{i}" for i in range(6)))
    async with UnitOfWork(db) as uow:
        job = await uow.refreshes.start_job(
            endpoint, tables, trigger_source="api", requested_by="x"
        )
        empty = await uow.refreshes.start_job(endpoint, [], trigger_source="api", requested_by="x")
        await uow.refreshes.begin_item(job.id, tables[4].id, version="v", uri="file:///v")
        await uow.refreshes.finish_item(
            job.id, tables[0].id, "succeeded", utcnow(), rows=7, size=70
        )
        await uow.refreshes.finish_item(job.id, tables[5].id, "failed", utcnow(), error="boom")
        await uow.commit()

    async with UnitOfWork(db, read_only=True) as uow:
        progress = await progress_of(uow.session, [job.id, empty.id])
        items = await items_of(uow.session, [job.id, empty.id], per_job=3)

    assert progress[job.id].total == 6
    assert (progress[job.id].running, progress[job.id].failed) == (1, 1)
    assert (progress[job.id].succeeded, progress[job.id].queued) == (1, 3)
    assert (progress[job.id].rows, progress[job.id].bytes) == (7, 70)
    assert progress[empty.id].total == 0
    # Running first, then failed, then what still waits; never more than asked for.
    assert [(i.table_name, i.status) for i in items[job.id]] == [
        ("t4", "running"),
        ("t5", "failed"),
        ("t1", "queued"),
    ]
    assert items[empty.id] == []


async def test_cached_tables_list_live_tables_with_their_names(db: Database) -> None:
    endpoint, [orders, users] = await make_tables(db, "shop", "orders", "users")
    other, [events] = await make_tables(db, "lake", "events")
    async with UnitOfWork(db) as uow:
        for dataset in (orders, users, events):
            await uow.caches.configure(dataset, utcnow(), cached=True)
        await uow.datasets.sync(
            endpoint_id=endpoint,
            endpoint_kind="postgres",
            run_id=uuid.uuid4(),
            specs=[
                DatasetSpec(
                    schema_name="public",
                    name="orders",
                    kind="table",
                    columns=[{"name": "id", "data_type": "integer", "nullable": False}],
                    primary_key=["id"],
                    foreign_keys=[],
                    fingerprint="fp-orders",
                )
            ],
        )
        await uow.caches.move_pointer(
            orders,
            version="v1",
            uri="file:///c/v1.parquet",
            rows=10,
            size=100,
            schema_fingerprint="arrow-fp",
            source_fingerprint=orders.fingerprint,
            refresh_id=None,
            now=utcnow(),
            grace=timedelta(seconds=30),
        )
        await uow.commit()

    async with UnitOfWork(db, read_only=True) as uow:
        every = await cached_tables(uow.session)
        of_shop = await cached_tables(uow.session, endpoint_id=endpoint)
        totals = await cache_totals(uow.session, endpoint)

    # users was removed by the second run: no longer listed nor counted.
    assert [(t.endpoint_name, t.schema_name, t.table_name) for t in every] == [
        ("lake", "public", "events"),
        ("shop", "public", "orders"),
    ]
    assert [t.dataset_id for t in of_shop] == [orders.id]
    assert all(t.cache.cached and t.endpoint_lazy_fetch for t in every)
    assert other != endpoint
    assert totals == CacheTotals(kept_cached=1, with_version=1, bytes=100)
