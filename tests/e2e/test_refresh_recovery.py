"""Refresher processes killed with SIGKILL mid-write and just before the pointer moves (the old
cache keeps serving, the job is taken over, nothing is left behind after reconciliation), and
the cache on a real S3-compatible server (moto's server mode, started here).

Each test runs its own broker and refresher processes over a SQLite catalog: the failpoint
(`FRESHET_TEST_REFRESH_FAILPOINT`) makes the refresher SIGKILL itself at an exact point.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow.parquet as pq
import pytest
from sqlalchemy.engine import make_url

from freshet.cachestore import CacheStore
from freshet.catalog import Database, DatasetSpec, UnitOfWork
from freshet.catalog.caches import TableRef
from freshet.contracts import RefreshRequested
from freshet.devstack.broker import free_port
from freshet.devstack.testing import (
    S3_TEST_BUCKET,
    create_postgres_database,
    drop_postgres_database,
    eventually,
)
from freshet.devstack.up import SERVICES, Stack
from tests.e2e.test_refresh import _sql

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.xdist_group("e2e")]

ROWS = 100_000
BUCKET = S3_TEST_BUCKET


@pytest.fixture(scope="module")
def source(postgres_server_url: str) -> Iterator[str]:
    url = create_postgres_database(postgres_server_url, prefix="freshet_recovery_src")
    asyncio.run(
        _sql(
            url,
            f"""CREATE TABLE public.big AS
                SELECT g AS id, md5(g::text) AS label, g * 1.5 AS price
                FROM generate_series(1, {ROWS}) g""",
        )
    )
    yield url
    drop_postgres_database(postgres_server_url, url)


@dataclass
class Refreshers:
    """A broker, a SQLite catalog and refresher processes started and killed at will."""

    data_dir: Path
    source: str
    env: dict[str, str] = field(default_factory=dict)
    stack: Stack | None = None
    endpoint_id: uuid.UUID | None = None
    dataset_id: uuid.UUID | None = None

    async def start(self, **env: str) -> Stack:
        return await asyncio.to_thread(self._start, env)

    def _start(self, env: dict[str, str]) -> Stack:
        if self.stack is None:
            self.stack = Stack(
                data_dir=self.data_dir,
                gateway_port=free_port(),
                kafka_port=free_port(),
                ports={name: free_port() for name in SERVICES},
                services=("refresher",),
                extra_env={
                    "FRESHET_CACHE_GRACE_S": "0.2",
                    "FRESHET_CACHE_MAINTENANCE_INTERVAL_S": "0.2",
                    "FRESHET_CACHE_RECONCILE_INTERVAL_S": "0.5",
                    "FRESHET_CACHE_ORPHAN_MIN_AGE_S": "0",
                    "FRESHET_REFRESH_LEASE_TTL_S": "1.5",
                    # Small batches: a killed write has a partial file, not nothing.
                    "FRESHET_REFRESH_BATCH_ROWS": "20000",
                    **self.env,
                },
            )
            self.stack.start()
        else:
            self.stack.ports["refresher"] = free_port()
            self.stack.extra_env.pop("FRESHET_TEST_REFRESH_FAILPOINT", None)
            self.stack.extra_env.update(env)
            self.stack.start_services()
            if "FRESHET_TEST_REFRESH_FAILPOINT" not in env:
                self.stack.wait_ready()
        return self.stack

    @property
    def process(self) -> Any:
        assert self.stack is not None
        return self.stack.processes["refresher"]

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()

    def stop_refresher(self) -> None:
        """SIGTERM the refresher and wait: a graceful stop (broker and catalog stay)."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)

    def db(self) -> Database:
        assert self.stack is not None
        return Database(self.stack.catalog_url)

    async def register(self) -> None:
        src = make_url(self.source)
        async with self._uow() as uow:
            endpoint = await uow.endpoints.add(
                name="warehouse",
                kind="postgres",
                config={
                    "host": src.host or "127.0.0.1",
                    "port": src.port or 5432,
                    "database": src.database,
                    "user": src.username or "postgres",
                },
            )
            result = await uow.datasets.sync(
                endpoint_id=endpoint.id,
                endpoint_kind="postgres",
                run_id=uuid.uuid4(),
                specs=[
                    DatasetSpec(
                        schema_name="public",
                        name="big",
                        kind="table",
                        columns=[],
                        primary_key=[],
                        foreign_keys=[],
                        fingerprint="fp",
                    )
                ],
            )
            await uow.commit()
        self.endpoint_id = endpoint.id
        self.dataset_id = result.added[0].id

    @contextlib.asynccontextmanager
    async def _uow(self, *, read_only: bool = False) -> AsyncIterator[UnitOfWork]:
        db = self.db()
        try:
            async with UnitOfWork(db, read_only=read_only) as uow:
                yield uow
        finally:
            await db.dispose()

    async def request(self) -> uuid.UUID:
        """A forced refresh of public.big, as the gateway writes one (job + outbox event)."""
        assert self.dataset_id is not None
        async with self._uow() as uow:
            dataset = await uow.datasets.get(self.dataset_id)
            assert dataset is not None
            got = await uow.refreshes.join_or_start_table(
                dataset, trigger_source="api", requested_by="test", force=True
            )
            await uow.outbox.add(
                RefreshRequested(
                    endpoint_id=dataset.endpoint_id,
                    refresh_id=got.refresh_id,
                    tables=["public.big"],
                    force=True,
                ),
                source="/test",
            )
            await uow.commit()
        return got.refresh_id

    async def job_status(self, refresh_id: uuid.UUID) -> str | None:
        async with self._uow(read_only=True) as uow:
            job = await uow.refreshes.get(refresh_id)
            return job.status if job else None

    async def pointer(self) -> str | None:
        async with self._uow(read_only=True) as uow:
            ref = TableRef("warehouse", "public", "big")
            table = (await uow.caches.resolve([ref]))[ref]
            return table.pointer.uri if table.pointer else None

    async def completed(self, refresh_id: uuid.UUID) -> None:
        async def done() -> bool:
            return await self.job_status(refresh_id) == "completed"

        await eventually(done, timeout=60)


@pytest.fixture
def refreshers(tmp_path: Path, source: str) -> Iterator[Refreshers]:
    group = Refreshers(data_dir=tmp_path / "stack", source=source)
    yield group
    group.stop()


async def wait_killed(refreshers: Refreshers) -> None:
    async def dead() -> bool:
        return refreshers.process.poll() is not None

    await eventually(dead, timeout=60)
    assert refreshers.process.returncode == -signal.SIGKILL


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def file_of(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


async def test_a_refresher_killed_mid_refresh_leaves_the_old_cache_serving_and_nothing_behind(
    refreshers: Refreshers,
) -> None:
    await refreshers.start()
    await refreshers.register()
    first = await refreshers.request()
    await refreshers.completed(first)
    old = await refreshers.pointer()
    assert old is not None
    cache_root = refreshers.data_dir / "cache"

    for failpoint in ("mid_write", "before_pointer"):
        await asyncio.to_thread(refreshers.stop_refresher)
        await refreshers.start(FRESHET_TEST_REFRESH_FAILPOINT=failpoint)
        killed = await refreshers.request()
        await wait_killed(refreshers)
        assert await refreshers.job_status(killed) == "in_progress"
        assert await refreshers.pointer() == old, failpoint  # the old cache still serves
        assert pq.read_table(file_of(old)).num_rows == ROWS
        leftovers = [p for p in files_under(cache_root) if p != file_of(old)]
        assert len(leftovers) == 1, failpoint  # the killed attempt's file (partial or whole)

        # A new refresher takes the job over once its lease lapses; nothing is left behind.
        await refreshers.start()
        await refreshers.completed(killed)
        new = await refreshers.pointer()
        assert new not in (None, old)
        assert pq.read_table(file_of(new)).num_rows == ROWS

        async def clean(current: str = new) -> bool:
            return files_under(cache_root) == [file_of(current)]

        await eventually(clean, timeout=30)
        old = new

    # An orphan nothing knows (a file from a deleted endpoint, say) is reconciled away.
    orphan = cache_root / str(uuid.uuid4()) / "public" / "gone" / "20260101T000000Z-0.parquet"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"PAR1")
    await eventually(clean, timeout=30)


async def test_caches_on_an_s3_compatible_store(
    tmp_path: Path, source: str, s3_server: str
) -> None:
    refreshers = Refreshers(
        data_dir=tmp_path / "stack",
        source=source,
        env={
            "FRESHET_CACHE_ROOT": f"s3://{BUCKET}/caches",
            "FRESHET_CACHE_S3_ENDPOINT_URL": s3_server,
            "FRESHET_CACHE_S3_ACCESS_KEY_ID": "test",
            "FRESHET_CACHE_S3_SECRET_ACCESS_KEY": "test",
        },
    )
    try:
        await refreshers.start()
        await refreshers.register()
        await refreshers.completed(await refreshers.request())
        first = await refreshers.pointer()
        assert first is not None
        assert first.startswith(f"s3://{BUCKET}/caches/{refreshers.endpoint_id}/public/big/")
        store = CacheStore.s3(
            f"s3://{BUCKET}/caches",
            endpoint_url=s3_server,
            access_key="test",
            secret_key="test",
        )
        table = pq.read_table(store.path_of(first), filesystem=store.filesystem)
        assert table.num_rows == ROWS

        await refreshers.completed(await refreshers.request())
        second = await refreshers.pointer()
        assert second not in (None, first)

        async def only_the_current() -> bool:
            return [f.uri for f in store.files()] == [second]

        await eventually(only_the_current, timeout=30)
    finally:
        await asyncio.to_thread(refreshers.stop)
