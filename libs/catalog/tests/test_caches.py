"""Cache pointers, reader leases, deletions and refresh jobs, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from freshet.catalog import Database, Dataset, DatasetSpec, UnitOfWork
from freshet.catalog.caches import TableRef, skip_reason
from freshet.catalog.clock import utcnow
from freshet.catalog.schedules import table_refresh_schedule_id

GRACE = timedelta(seconds=30)


@pytest.fixture
async def db(catalog_url: str) -> AsyncIterator[Database]:
    database = Database(catalog_url)
    yield database
    await database.dispose()


async def make_tables(db: Database, *names: str) -> tuple[str, dict[str, Dataset]]:
    async with UnitOfWork(db) as uow:
        endpoint = await uow.endpoints.add(
            name=f"ep-{uuid.uuid4().hex[:6]}", kind="postgres", config={}
        )
        specs = [
            DatasetSpec(
                schema_name="public",
                name=name,
                kind="table",
                columns=[{"name": "id", "data_type": "integer", "nullable": False}],
                primary_key=["id"],
                foreign_keys=[],
                fingerprint=f"fp-{name}",
            )
            for name in names
        ]
        result = await uow.datasets.sync(
            endpoint_id=endpoint.id, endpoint_kind="postgres", run_id=uuid.uuid4(), specs=specs
        )
        await uow.commit()
        return endpoint.name, {d.name: d for d in result.added}


async def move(db: Database, dataset: Dataset, uri: str) -> str | None:
    async with UnitOfWork(db) as uow:
        previous = await uow.caches.move_pointer(
            dataset,
            version=uri.rsplit("/", 1)[-1],
            uri=uri,
            rows=10,
            size=100,
            schema_fingerprint="arrow-fp",
            source_fingerprint=dataset.fingerprint,
            refresh_id=None,
            now=utcnow(),
            grace=GRACE,
        )
        await uow.commit()
        return previous


async def test_a_pointer_moves_and_the_old_file_waits_out_grace_and_readers(db: Database) -> None:
    endpoint, tables = await make_tables(db, "users")
    users = tables["users"]
    ref = TableRef(endpoint, "public", "users")
    assert await move(db, users, "file:///c/v1.parquet") is None
    async with UnitOfWork(db) as uow:
        read = await uow.caches.read([ref], holder="query:1", ttl=timedelta(minutes=5))
        await uow.commit()
    resolved = read.tables[ref]
    assert resolved.pointer is not None
    assert resolved.pointer.uri == "file:///c/v1.parquet"
    assert resolved.schema_current
    assert resolved.lazy_fetch  # the endpoint's default

    assert await move(db, users, "file:///c/v2.parquet") == "file:///c/v1.parquet"
    later = utcnow() + GRACE + timedelta(seconds=1)
    async with UnitOfWork(db) as uow:
        assert await uow.caches.due_deletions(utcnow()) == []  # grace not over
        assert await uow.caches.due_deletions(later) == []  # a reader holds it
        assert "file:///c/v1.parquet" in await uow.caches.known_uris()
        await uow.caches.release_readers(read.lease_id)
        await uow.commit()
    async with UnitOfWork(db) as uow:
        due = await uow.caches.due_deletions(later)
        assert [d.uri for d in due] == ["file:///c/v1.parquet"]
        assert await uow.caches.deleted(due[0].id, later)
        await uow.commit()
    async with UnitOfWork(db, read_only=True) as uow:
        assert await uow.caches.pending_deletions() == 0
        now = (await uow.caches.resolve([ref]))[ref]
    assert now.pointer is not None
    assert now.pointer.uri == "file:///c/v2.parquet"


async def test_an_expired_reader_lease_holds_nothing_and_cannot_be_renewed(db: Database) -> None:
    _, tables = await make_tables(db, "t")
    await move(db, tables["t"], "file:///c/a.parquet")
    async with UnitOfWork(db) as uow:
        lease_id, _ = await uow.caches.register_readers(
            ["file:///c/a.parquet"], holder="q", ttl=timedelta(seconds=-1)
        )
        assert not await uow.caches.renew_readers(lease_id, timedelta(minutes=1))
        await uow.caches.invalidate([tables["t"].id], utcnow(), grace=timedelta(0))
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert [d.uri for d in await uow.caches.due_deletions(utcnow())] == ["file:///c/a.parquet"]
        assert await uow.caches.prune_readers(utcnow()) == 1


async def test_unknown_and_removed_tables_do_not_resolve(db: Database) -> None:
    endpoint, _ = await make_tables(db, "t")
    async with UnitOfWork(db, read_only=True) as uow:
        found = await uow.caches.resolve(
            [TableRef(endpoint, "public", "nope"), TableRef("other", "public", "t")]
        )
    assert found == {}


async def test_settings_follow_the_schedule_and_lazy_fetch_overrides(db: Database) -> None:
    endpoint, tables = await make_tables(db, "t")
    t = tables["t"]
    async with UnitOfWork(db) as uow:
        await uow.caches.configure(
            t,
            utcnow(),
            cached=True,
            refresh_interval_s=600,
            set_refresh_interval=True,
            lazy_fetch=False,
            set_lazy_fetch=True,
        )
        await uow.commit()
    async with UnitOfWork(db) as uow:
        schedule = await uow.schedules.get(table_refresh_schedule_id(t.id))
        assert schedule is not None
        assert schedule.interval_s == 600
        ref = TableRef(endpoint, "public", "t")
        resolved = (await uow.caches.resolve([ref]))[ref]
        assert resolved.cached
        assert not resolved.lazy_fetch
        assert resolved.pointer is None
        await uow.caches.configure(t, utcnow(), cached=False)
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert await uow.schedules.get(table_refresh_schedule_id(t.id)) is None


async def test_schema_change_policy_decides_invalidation(db: Database) -> None:
    _, tables = await make_tables(db, "t")
    t = tables["t"]
    await move(db, t, "file:///c/t1.parquet")
    async with UnitOfWork(db) as uow:
        endpoint = await uow.endpoints.get(t.endpoint_id)
        assert endpoint is not None
        assert endpoint.schema_change_policy == "refresh"
        assert await uow.caches.on_schema_change(endpoint, [t.id], utcnow(), grace=GRACE) == []
        dropped = await uow.caches.on_schema_change(
            endpoint, [t.id], utcnow(), grace=GRACE, invalidate=True
        )
        assert dropped == [t.id]
        await uow.commit()
    async with UnitOfWork(db, read_only=True) as uow:
        cache = await uow.caches.get(t.id)
        assert cache is not None
        assert cache.uri is None
        assert await uow.caches.pending_deletions() == 1


def test_skip_reason_within_the_minimum_interval() -> None:
    from freshet.catalog.models import TableCache

    now = utcnow()
    cache = TableCache(uri="x", synced_at=now - timedelta(seconds=10))
    assert skip_reason(cache, now, min_interval=timedelta(minutes=5), force=False)
    assert skip_reason(cache, now, min_interval=timedelta(minutes=5), force=True) is None
    assert skip_reason(cache, now, min_interval=timedelta(seconds=5), force=False) is None
    assert skip_reason(None, now, min_interval=timedelta(minutes=5), force=False) is None


# --- refresh jobs ---------------------------------------------------------------------------


async def test_concurrent_requests_for_a_table_make_one_refresh(db: Database) -> None:
    _, tables = await make_tables(db, "t")
    t = tables["t"]

    async def request() -> tuple[uuid.UUID, bool]:
        async with UnitOfWork(db) as uow:
            got = await uow.refreshes.join_or_start_table(t, trigger_source="api", requested_by="x")
            await uow.commit()
            return got.refresh_id, got.joined

    results = await asyncio.gather(*(request() for _ in range(8)))
    assert len({refresh_id for refresh_id, _ in results}) == 1
    assert sorted(joined for _, joined in results) == [False] + [True] * 7


async def test_a_connection_job_joins_running_tables_and_completes_with_them(
    db: Database,
) -> None:
    _, tables = await make_tables(db, "a", "b")
    a, b = tables["a"], tables["b"]
    async with UnitOfWork(db) as uow:
        first = await uow.refreshes.join_or_start_table(a, trigger_source="api", requested_by="x")
        job = await uow.refreshes.start_job(
            a.endpoint_id, [a, b], trigger_source="api", requested_by="y", concurrency=2
        )
        await uow.commit()
    async with UnitOfWork(db) as uow:
        items = {i.table_name: i for i in await uow.refreshes.items(job.id)}
        assert items["a"].status == "waiting"
        assert items["a"].joined_refresh_id == first.refresh_id
        assert items["b"].status == "queued"
        claimed = await uow.refreshes.claim(job.id, "r1", timedelta(seconds=30))
        assert claimed is not None
        assert await uow.refreshes.claim(job.id, "r2", timedelta(seconds=30)) is None
        assert await uow.refreshes.begin_item(job.id, b.id, version="v", uri="file:///b") is None
        assert await uow.refreshes.holds(job.id, "r1")
        settled = await uow.refreshes.finish_item(job.id, b.id, "succeeded", utcnow(), rows=5)
        assert settled.completed_jobs == []  # a is still waiting
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert await uow.refreshes.claim(first.refresh_id, "r2", timedelta(seconds=30))
        await uow.refreshes.begin_item(first.refresh_id, a.id, version="v", uri="file:///a")
        settled = await uow.refreshes.finish_item(
            first.refresh_id, a.id, "failed", utcnow(), error="boom"
        )
        await uow.commit()
    assert settled.joined == [(job.id, "failed")]
    done = {j.id: j.status for j in settled.completed_jobs}
    assert done == {first.refresh_id: "failed", job.id: "completed"}
    async with UnitOfWork(db, read_only=True) as uow:
        progress = await uow.refreshes.progress(job.id)
    assert (progress.succeeded, progress.failed, progress.open, progress.rows) == (1, 1, 0, 5)


async def test_a_job_whose_lease_lapsed_is_taken_over_with_its_abandoned_file(
    db: Database,
) -> None:
    _, tables = await make_tables(db, "t")
    t = tables["t"]
    async with UnitOfWork(db) as uow:
        got = await uow.refreshes.join_or_start_table(t, trigger_source="api", requested_by="x")
        assert await uow.refreshes.claim(got.refresh_id, "dead", timedelta(seconds=-1))
        await uow.refreshes.begin_item(got.refresh_id, t.id, version="v1", uri="file:///v1")
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert "file:///v1" in await uow.caches.known_uris()
        expired = await uow.refreshes.expired(utcnow(), queued_before=utcnow())
        assert got.refresh_id in expired
        assert await uow.refreshes.claim(got.refresh_id, "alive", timedelta(seconds=30))
        assert not await uow.refreshes.holds(got.refresh_id, "dead")
        previous = await uow.refreshes.begin_item(
            got.refresh_id, t.id, version="v2", uri="file:///v2"
        )
        assert previous == "file:///v1"
        await uow.commit()
