"""Parquet caches: per-table settings, the current cache pointer, reader leases, deletions.

What a query does (the query path builds on this):

    async with UnitOfWork(db) as uow:
        read = await uow.caches.read(refs, holder="query:<id>", ttl=timedelta(minutes=5))
        await uow.commit()
    # read.tables[ref].pointer is the version to read (None: not cached); read.lease_id
    # keeps every file it names from deletion until released or expired.
    ...  # run the query on read.tables[ref].pointer.uri
    async with UnitOfWork(db) as uow:
        await uow.caches.release_readers(read.lease_id)
        await uow.commit()

`read` resolves and registers in one transaction that locks the tables' cache rows for
share (PostgreSQL) or holds the write lock (SQLite): a refresh moving a pointer waits for it,
and the old file is queued for deletion only after the reader's claim is committed, so no
grace period is needed for correctness. The grace period (`not_before`) is for readers that
do not register (and for clock-free slack).

A pointer is moved only by `move_pointer` (the refresher, after the file is complete and
fsynced) and dropped only by `invalidate` (a schema change, an operator); both queue the
previous file for deletion in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from freshet.catalog.clock import utcnow
from freshet.catalog.conflicts import insert_ignoring_conflict
from freshet.catalog.models import (
    REFRESH_ACTIVE_STATUSES,
    CacheDeletion,
    CacheReader,
    Dataset,
    Endpoint,
    RefreshItem,
    TableCache,
)
from freshet.catalog.schedules import ScheduleRepository

SCHEMA_CHANGE_POLICIES = ("invalidate", "refresh", "ignore")


@dataclass(frozen=True)
class TableRef:
    """A table as a query names it: `"<endpoint name>"."<schema>"."<table>"`."""

    endpoint: str
    schema_name: str
    table: str


@dataclass(frozen=True)
class CachePointer:
    """The cache version a query reads."""

    version: str
    uri: str
    rows: int
    bytes: int
    schema_fingerprint: str
    source_fingerprint: str | None
    synced_at: datetime
    refresh_id: uuid.UUID | None


@dataclass(frozen=True)
class ResolvedTable:
    """A catalogued table with its current pointer (None: nothing cached to read)."""

    ref: TableRef
    dataset_id: uuid.UUID
    endpoint_id: uuid.UUID
    # The catalog's column list and fingerprint now (a pointer written before a schema change
    # has another `source_fingerprint`).
    columns: list[dict[str, object]]
    fingerprint: str | None
    cached: bool
    # Whether a query may fetch the table when it has no pointer (the table's setting, else
    # the endpoint's).
    lazy_fetch: bool
    pointer: CachePointer | None

    @property
    def schema_current(self) -> bool:
        """Whether the cached version was written with the shape the catalog has now."""
        return self.pointer is not None and self.pointer.source_fingerprint == self.fingerprint


@dataclass(frozen=True)
class CacheRead:
    """What `read` resolved, and the reader lease that holds its files."""

    lease_id: uuid.UUID
    expires_at: datetime
    tables: dict[TableRef, ResolvedTable]


def skip_reason(
    cache: TableCache | None, now: datetime, *, min_interval: timedelta, force: bool
) -> str | None:
    """Why a refresh of the table is not needed now (synced within the minimum interval), or
    None. `force` refreshes anyway."""
    if force or cache is None or cache.uri is None or cache.synced_at is None:
        return None
    age = now - cache.synced_at
    if age >= min_interval:
        return None
    return (
        f"synced {int(age.total_seconds())} s ago, within the minimum interval of "
        f"{int(min_interval.total_seconds())} s; use force=true to refresh anyway"
    )


def pointer_of(row: TableCache) -> CachePointer | None:
    if row.uri is None or row.version is None or row.synced_at is None:
        return None
    return CachePointer(
        version=row.version,
        uri=row.uri,
        rows=int(row.rows or 0),
        bytes=int(row.bytes or 0),
        schema_fingerprint=row.schema_fingerprint or "",
        source_fingerprint=row.source_fingerprint,
        synced_at=row.synced_at,
        refresh_id=row.refresh_id,
    )


class CacheRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- settings ----------------------------------------------------------------------------

    async def get(self, dataset_id: uuid.UUID, *, for_update: bool = False) -> TableCache | None:
        stmt = select(TableCache).where(TableCache.dataset_id == dataset_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def for_endpoint(
        self, endpoint_id: uuid.UUID, *, cached_only: bool = False
    ) -> list[TableCache]:
        stmt = select(TableCache).where(TableCache.endpoint_id == endpoint_id)
        if cached_only:
            stmt = stmt.where(TableCache.cached.is_(True))
        return list((await self.session.execute(stmt)).scalars())

    async def many(self, dataset_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, TableCache]:
        ids = list(dataset_ids)
        if not ids:
            return {}
        result = await self.session.execute(
            select(TableCache).where(TableCache.dataset_id.in_(ids))
        )
        return {c.dataset_id: c for c in result.scalars()}

    async def ensure(self, dataset: Dataset) -> TableCache:
        """The table's cache row, created (not cached, no pointer) when it has none."""
        row = await self.get(dataset.id, for_update=True)
        if row is None:
            row = TableCache(dataset_id=dataset.id, endpoint_id=dataset.endpoint_id, cached=False)
            self.session.add(row)
            await self.session.flush()
        return row

    async def configure(
        self,
        dataset: Dataset,
        now: datetime,
        *,
        cached: bool | None = None,
        lazy_fetch: bool | None = None,
        set_lazy_fetch: bool = False,
        refresh_interval_s: int | None = None,
        set_refresh_interval: bool = False,
    ) -> TableCache:
        """Change a table's cache settings; the refresh interval's schedule follows in the same
        transaction (`schedules.set_table_refresh`). Un-caching also stops the schedule.
        Validate the interval first (`schedules.validate_interval`)."""
        row = await self.ensure(dataset)
        if cached is not None:
            row.cached = cached
        if set_lazy_fetch:
            row.lazy_fetch = lazy_fetch
        if set_refresh_interval:
            row.refresh_interval_s = refresh_interval_s
        row.updated_at = now
        interval = row.refresh_interval_s if row.cached else None
        await ScheduleRepository(self.session).set_table_refresh(dataset.id, interval, now)
        await self.session.flush()
        return row

    # --- pointers ----------------------------------------------------------------------------

    async def resolve(self, refs: Iterable[TableRef]) -> dict[TableRef, ResolvedTable]:
        """The current pointer of each named table that is in the catalog (not removed).

        Tables the catalog does not know are absent from the answer.
        """
        wanted = {(r.endpoint, r.schema_name, r.table): r for r in refs}
        if not wanted:
            return {}
        stmt = (
            select(Dataset, Endpoint.name, Endpoint.cache_lazy_fetch, TableCache)
            .join(Endpoint, Endpoint.id == Dataset.endpoint_id)
            .outerjoin(TableCache, TableCache.dataset_id == Dataset.id)
            .where(
                Dataset.removed_at.is_(None),
                tuple_(Endpoint.name, Dataset.schema_name, Dataset.name).in_(list(wanted)),
            )
            # Rows read again after a lock must not come back as the objects read before it.
            .execution_options(populate_existing=True)
        )
        found: dict[TableRef, ResolvedTable] = {}
        for dataset, endpoint_name, endpoint_lazy, cache in (
            await self.session.execute(stmt)
        ).all():
            ref = wanted[(endpoint_name, dataset.schema_name, dataset.name)]
            lazy = endpoint_lazy
            if cache is not None and cache.lazy_fetch is not None:
                lazy = cache.lazy_fetch
            found[ref] = ResolvedTable(
                ref=ref,
                dataset_id=dataset.id,
                endpoint_id=dataset.endpoint_id,
                columns=list(dataset.columns),
                fingerprint=dataset.fingerprint,
                cached=bool(cache is not None and cache.cached),
                lazy_fetch=bool(lazy),
                pointer=pointer_of(cache) if cache is not None else None,
            )
        return found

    async def read(self, refs: Iterable[TableRef], *, holder: str, ttl: timedelta) -> CacheRead:
        """Resolve the tables and register a reader lease on every file they point to, in this
        transaction (commit it before reading the files)."""
        refs = list(refs)
        first = await self.resolve(refs)
        ids = [t.dataset_id for t in first.values()]
        if not ids:
            tables = first
        else:
            # Lock the cache rows for share, then read them again: no pointer can move between
            # this read and the commit of the lease (PostgreSQL; SQLite serialises writers).
            await self.session.execute(
                select(TableCache.dataset_id)
                .where(TableCache.dataset_id.in_(ids))
                .with_for_update(read=True)
            )
            tables = await self.resolve(refs)
        uris = [t.pointer.uri for t in tables.values() if t.pointer is not None]
        lease_id, expires_at = await self.register_readers(uris, holder=holder, ttl=ttl)
        return CacheRead(lease_id=lease_id, expires_at=expires_at, tables=tables)

    async def move_pointer(
        self,
        dataset: Dataset,
        *,
        version: str,
        uri: str,
        rows: int,
        size: int,
        schema_fingerprint: str,
        source_fingerprint: str | None,
        refresh_id: uuid.UUID | None,
        now: datetime,
        grace: timedelta,
    ) -> str | None:
        """Point the table at a complete new version; the previous file is queued for deletion
        after `grace`. Returns the previous uri."""
        row = await self.ensure(dataset)
        previous = row.uri
        row.version = version
        row.uri = uri
        row.rows = rows
        row.bytes = size
        row.schema_fingerprint = schema_fingerprint
        row.source_fingerprint = source_fingerprint
        row.synced_at = now
        row.refresh_id = refresh_id
        row.last_error = None
        row.last_attempt_at = now
        row.updated_at = now
        if previous is not None and previous != uri:
            await self.schedule_deletion(
                previous, dataset.id, dataset.endpoint_id, not_before=now + grace, reason="replaced"
            )
        await self.session.flush()
        return previous

    async def record_failure(self, dataset: Dataset, error: str, now: datetime) -> None:
        row = await self.ensure(dataset)
        row.last_error = error
        row.last_attempt_at = now
        await self.session.flush()

    async def invalidate(
        self, dataset_ids: Iterable[uuid.UUID], now: datetime, *, grace: timedelta
    ) -> list[uuid.UUID]:
        """Drop the pointers of these tables (their files are queued for deletion); the tables
        that had one. Settings stay: a cached table is fetched again on its next refresh."""
        rows = await self.many(dataset_ids)
        dropped: list[uuid.UUID] = []
        for row in rows.values():
            if row.uri is None:
                continue
            await self.schedule_deletion(
                row.uri,
                row.dataset_id,
                row.endpoint_id,
                not_before=now + grace,
                reason="invalidated",
            )
            row.version = row.uri = row.schema_fingerprint = row.source_fingerprint = None
            row.rows = row.bytes = None
            row.synced_at = None
            row.refresh_id = None
            row.updated_at = now
            dropped.append(row.dataset_id)
        await self.session.flush()
        return dropped

    async def on_schema_change(
        self,
        endpoint: Endpoint,
        dataset_ids: Sequence[uuid.UUID],
        now: datetime,
        *,
        grace: timedelta,
        invalidate: bool = False,
    ) -> list[uuid.UUID]:
        """What a collection run that found these tables' schema changed does to their caches,
        in the run's own transaction: drop the pointers when the run asks for it
        (`invalidate`, discover's `invalidate_changed`) or the endpoint's policy is
        "invalidate". The "refresh" policy is the refresher's (after RunCompleted)."""
        if not dataset_ids or not (invalidate or endpoint.schema_change_policy == "invalidate"):
            return []
        return await self.invalidate(dataset_ids, now, grace=grace)

    async def pointers(self) -> list[tuple[TableCache, str, str, str]]:
        """Every table with a pointer, with its endpoint name, schema and table name."""
        result = await self.session.execute(
            select(TableCache, Endpoint.name, Dataset.schema_name, Dataset.name)
            .join(Dataset, Dataset.id == TableCache.dataset_id)
            .join(Endpoint, Endpoint.id == TableCache.endpoint_id)
            .where(TableCache.uri.is_not(None))
        )
        return [(c, str(e), str(s), str(t)) for c, e, s, t in result.all()]

    # --- reader leases -----------------------------------------------------------------------

    async def register_readers(
        self, uris: Sequence[str], *, holder: str, ttl: timedelta
    ) -> tuple[uuid.UUID, datetime]:
        """A lease on these files for `ttl` (renew it for longer reads); its id and expiry."""
        lease_id = uuid.uuid4()
        now = utcnow()
        expires_at = now + ttl
        for uri in dict.fromkeys(uris):
            self.session.add(
                CacheReader(
                    lease_id=lease_id,
                    uri=uri,
                    holder=holder[:200],
                    expires_at=expires_at,
                    created_at=now,
                )
            )
        await self.session.flush()
        return lease_id, expires_at

    async def renew_readers(self, lease_id: uuid.UUID, ttl: timedelta) -> bool:
        """Extend a live lease; False when it expired or was released (its files may be gone:
        the reader must stop)."""
        now = utcnow()
        result = await self.session.execute(
            update(CacheReader)
            .where(CacheReader.lease_id == lease_id, CacheReader.expires_at >= now)
            .values(expires_at=now + ttl)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def release_readers(self, lease_id: uuid.UUID) -> None:
        await self.session.execute(delete(CacheReader).where(CacheReader.lease_id == lease_id))

    async def prune_readers(self, now: datetime) -> int:
        result = await self.session.execute(delete(CacheReader).where(CacheReader.expires_at < now))
        return int(result.rowcount)  # type: ignore[attr-defined]

    # --- deletions ---------------------------------------------------------------------------

    async def schedule_deletion(
        self,
        uri: str,
        dataset_id: uuid.UUID | None,
        endpoint_id: uuid.UUID | None,
        *,
        not_before: datetime,
        reason: str,
    ) -> None:
        """Queue a file for deletion (once: a uri already queued keeps its earlier time)."""
        await insert_ignoring_conflict(
            self.session,
            CacheDeletion,
            {
                "uri": uri,
                "dataset_id": dataset_id,
                "endpoint_id": endpoint_id,
                "reason": reason,
                "not_before": not_before,
                "created_at": utcnow(),
                "attempts": 0,
            },
        )

    async def due_deletions(self, now: datetime, *, limit: int = 100) -> list[CacheDeletion]:
        """Queued files past their time that no live reader lease holds, oldest first."""
        held = exists().where(CacheReader.uri == CacheDeletion.uri, CacheReader.expires_at >= now)
        result = await self.session.execute(
            select(CacheDeletion)
            .where(CacheDeletion.not_before <= now, ~held)
            .order_by(CacheDeletion.not_before, CacheDeletion.id)
            .limit(limit)
        )
        return list(result.scalars())

    async def deleted(self, deletion_id: int, now: datetime) -> bool:
        """Forget a deletion whose file is gone, unless a reader took a lease on it meanwhile
        (then it stays queued: False)."""
        held = exists().where(CacheReader.uri == CacheDeletion.uri, CacheReader.expires_at >= now)
        result = await self.session.execute(
            delete(CacheDeletion).where(CacheDeletion.id == deletion_id, ~held)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def deletion_failed(self, deletion_id: int, error: str, retry_at: datetime) -> None:
        await self.session.execute(
            update(CacheDeletion)
            .where(CacheDeletion.id == deletion_id)
            .values(
                attempts=CacheDeletion.attempts + 1, last_error=error[:2000], not_before=retry_at
            )
        )

    async def pending_deletions(self) -> int:
        result = await self.session.execute(select(func.count()).select_from(CacheDeletion))
        return int(result.scalar_one())

    async def known_uris(self) -> set[str]:
        """Every file the catalog knows: pointers, pending deletions, readers' files and the
        targets of active refresh items. The reconciler deletes nothing in this set."""
        queries = [
            select(TableCache.uri).where(TableCache.uri.is_not(None)),
            select(CacheDeletion.uri),
            select(CacheReader.uri),
            select(RefreshItem.uri).where(
                RefreshItem.uri.is_not(None),
                RefreshItem.status.in_(REFRESH_ACTIVE_STATUSES),
            ),
        ]
        known: set[str] = set()
        for query in queries:
            known.update(str(u) for u in (await self.session.execute(query)).scalars())
        return known
