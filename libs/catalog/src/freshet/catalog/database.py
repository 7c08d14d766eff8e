"""One async engine per process, on SQLite (embedded default) or PostgreSQL, from one URL."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from freshet.catalog.postgres_tls import split_tls

if TYPE_CHECKING:
    from freshet.catalog.models import AuditRecord

SQLITE_BUSY_TIMEOUT_MS = 15_000


def async_url(url: str) -> URL:
    """Accept plain `sqlite:///…` / `postgresql://…` URLs and pick the async driver."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        return parsed.set(drivername="postgresql+asyncpg")
    return parsed


def redact(url: str | URL) -> str:
    """The URL as it may appear in a log line: never with its password."""
    return make_url(str(url)).render_as_string(hide_password=True) if url else ""


def _tune_sqlite(engine: AsyncEngine, *, writer: bool) -> None:
    # Several processes share one SQLite file in the embedded setup. WAL lets readers run beside
    # the writer; writers BEGIN IMMEDIATE, taking the write lock up front, so two writers queue
    # on busy_timeout instead of failing with "database is locked" when a read lock is upgraded.
    # Readers BEGIN DEFERRED and never hold the write lock (a polling reader that took it stalled
    # every writer; see docs/architecture.md).
    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


class Database:
    """The catalog database of one process: engine, sessions, and outbox wake-ups."""

    def __init__(self, url: str, *, pool_size: int = 5, echo: bool = False) -> None:
        self.url = async_url(url)
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
        if self.dialect == "postgresql":
            kwargs["pool_size"] = pool_size
            # TLS is configured in the URL as for libpq (sslmode, sslrootcert, ...).
            self.url, connect_args = split_tls(self.url)
            if connect_args:
                kwargs["connect_args"] = connect_args
        # On PostgreSQL readers and writers share one engine; SQLite needs its own for readers.
        if self.dialect == "sqlite":
            # One writer connection: SQLite has one write lock anyway, and writers of this
            # process then queue for the connection (FIFO, woken at once) instead of sleeping
            # in SQLite's busy handler, whose back-off left the lock idle while a dozen tasks
            # slept (the preview fan-out spent most of its time there).
            self.engine = create_async_engine(self.url, **kwargs, pool_size=1, max_overflow=0)
            _tune_sqlite(self.engine, writer=True)
            self.reader = create_async_engine(self.url, **kwargs)
            _tune_sqlite(self.reader, writer=False)
        else:
            self.engine = create_async_engine(self.url, **kwargs)
            self.reader = self.engine
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)
        self.read_sessions = async_sessionmaker(
            self.reader, expire_on_commit=False, class_=AsyncSession
        )
        self._outbox_listeners: list[Callable[[], None]] = []
        self._audit_listeners: list[Callable[[list[AuditRecord]], None]] = []

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def on_outbox_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` after any transaction of this process commits outbox rows."""
        self._outbox_listeners.append(listener)

    def outbox_committed(self) -> None:
        for listener in self._outbox_listeners:
            listener()

    def on_audit_commit(self, listener: Callable[[list[AuditRecord]], None]) -> None:
        """Call `listener` with the audit records of each transaction of this process that
        committed some (metrics and log lines count what was really written)."""
        self._audit_listeners.append(listener)

    def audit_committed(self, records: list[AuditRecord]) -> None:
        for listener in self._audit_listeners:
            listener(records)

    async def ping(self) -> None:
        # The reader: on SQLite a readiness probe must not wait for the writer connection.
        async with self.reader.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()

    def __repr__(self) -> str:
        return f"Database({redact(self.url)})"
