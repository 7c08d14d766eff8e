"""Preview requests and stored samples in the catalog, on SQLite and PostgreSQL: the
throttle query, claims by one worker, purges, and the freshness figures behind the gauges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from freshet.catalog import Database, DatasetSpec, UnitOfWork
from freshet.catalog import previews as status

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def endpoint_with(
    db: Database, tables: list[str], policy: str = "auto"
) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    async with UnitOfWork(db) as uow:
        endpoint = await uow.endpoints.add(
            name=f"ep-{uuid.uuid4().hex[:6]}", kind="sqlite", config={}, preview_policy=policy
        )
        result = await uow.datasets.sync(
            endpoint_id=endpoint.id,
            endpoint_kind="sqlite",
            run_id=uuid.uuid4(),
            specs=[DatasetSpec("main", t, "table", [], [], [], t) for t in tables],
        )
        await uow.commit()
    return endpoint.id, {d.name: d.id for d in result.added}


async def sample(db: Database, dataset_id: uuid.UUID, at: datetime) -> None:
    async with UnitOfWork(db) as uow:
        await uow.datasets.set_preview(dataset_id, {"rows": [], "sampledAt": at.isoformat()})
        await uow.commit()


async def test_freshness_counts_stale_and_missing_of_previewable_datasets(catalog_url: str) -> None:
    db = Database(catalog_url)
    try:
        endpoint_id, ids = await endpoint_with(db, ["fresh", "old", "never", "opted"])
        await endpoint_with(db, ["other"], policy="manual-only")
        await sample(db, ids["fresh"], NOW - timedelta(minutes=5))
        await sample(db, ids["old"], NOW - timedelta(days=3))
        async with UnitOfWork(db) as uow:
            opted = await uow.datasets.get(ids["opted"])
            assert opted is not None
            opted.payload = {"previewOptOut": True}
            await uow.commit()
        async with UnitOfWork(db, read_only=True) as uow:
            [found] = await uow.previews.freshness(NOW - timedelta(days=1))
        assert found.endpoint_id == endpoint_id
        assert (found.datasets, found.stale_or_missing) == (3, 2)
        assert found.oldest_sampled_at == NOW - timedelta(days=3)
    finally:
        await db.dispose()


async def test_purge_removes_samples_and_errors_and_open_requests_are_refused(
    catalog_url: str,
) -> None:
    db = Database(catalog_url)
    try:
        endpoint_id, ids = await endpoint_with(db, ["a", "b"])
        await sample(db, ids["a"], NOW)
        async with UnitOfWork(db) as uow:
            queued = uow.previews.stage(
                dataset_id=ids["b"],
                endpoint_id=endpoint_id,
                refresh_source="schedule",
                status=status.QUEUED,
                due_at=NOW,
            )
            await uow.commit()
        async with UnitOfWork(db) as uow:
            assert await uow.previews.purge_samples(endpoint_id=endpoint_id) == 1
            refused = await uow.previews.refuse_open("off", endpoint_id=endpoint_id)
            await uow.commit()
        assert [r.id for r in refused] == [queued.id]
        async with UnitOfWork(db, read_only=True) as uow:
            a = await uow.datasets.get(ids["a"])
            request = await uow.previews.get(queued.id)
        assert a is not None
        assert "preview" not in a.payload
        assert a.preview_sampled_at is None
        assert request is not None
        assert request.status == status.REFUSED
    finally:
        await db.dispose()


async def test_only_the_claiming_worker_finishes_a_request_and_throttle_counts_automatic_ones(
    catalog_url: str,
) -> None:
    db = Database(catalog_url)
    try:
        endpoint_id, ids = await endpoint_with(db, ["a"])
        async with UnitOfWork(db) as uow:
            for source in ("manual", "collection"):
                uow.previews.stage(
                    dataset_id=ids["a"],
                    endpoint_id=endpoint_id,
                    refresh_source=source,
                    status=status.QUEUED,
                    due_at=NOW,
                    requested_at=NOW,
                )
            await uow.commit()
        async with UnitOfWork(db) as uow:
            claimed = await uow.previews.claim(endpoint_id, "w1", limit=1, now=NOW)
            await uow.commit()
        assert [c.refresh_source for c in claimed] == ["manual"]  # a person waits: first
        async with UnitOfWork(db) as uow:
            assert not await uow.previews.finish(claimed[0].id, "w2", status.SAMPLED)
            assert await uow.previews.finish(claimed[0].id, "w1", status.SAMPLED)
            assert await uow.previews.refreshed_since(ids["a"], NOW - timedelta(hours=1))
            assert not await uow.previews.refreshed_since(ids["a"], NOW + timedelta(seconds=1))
            await uow.commit()
    finally:
        await db.dispose()
