"""Notice, in one process, that any process committed outbox rows, without querying the outbox.

The relay used to find other processes' events by reading the outbox every 20 ms, which cost
an idle service about a tenth of a core. Now the database tells it:

- PostgreSQL: every transaction that writes outbox rows also sends `NOTIFY freshet_outbox`
  (delivered when it commits; see `UnitOfWork.commit`), and the relay LISTENs on a connection
  of its own.
- SQLite has no notifications, but `PRAGMA data_version` changes whenever another connection
  commits to the file; reading it costs microseconds on a connection kept for that, so it is
  read every `probe_interval_s` in place of the outbox query, by a thread of its own: waking
  the event loop twenty times a second cost three times what the probes themselves cost.
  Any commit changes it (lease renewals of this very process included), so when it changed
  the probe also reads the outbox's newest id, and wakes the relay only when that moved.
  When the outbox has not moved for `IDLE_AFTER_S`, the probe stops polling and waits for the
  file or its WAL to be written (inotify, on Linux), then looks again: an idle service costs
  a look per commit anywhere (a few a second), not twenty.

A notice is a hint: the relay still reads the outbox now and then (its poll interval) in case
one was lost (a LISTEN connection that dropped, a probe that failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from freshet.catalog.database import Database

CHANNEL = "freshet_outbox"
RECONNECT_S = 2.0
# The outbox unchanged this long: wait for a write instead of polling.
IDLE_AFTER_S = 2.0
# How often a probe waiting for a write looks whether it is asked to stop.
STOP_CHECK_S = 1.0
log = structlog.get_logger("freshet.catalog")


class OutboxNotices:
    def __init__(
        self, db: Database, on_notice: Callable[[], None], *, probe_interval_s: float = 0.02
    ) -> None:
        self.db = db
        self.on_notice = on_notice
        self.probe_interval_s = probe_interval_s
        self._task: asyncio.Task[None] | None = None
        self._probe_thread: threading.Thread | None = None
        self._stop_probe = threading.Event()

    async def start(self) -> None:
        if self.db.dialect == "postgresql":
            self._task = asyncio.create_task(self._listen(), name="outbox notices")
            return
        path = self.db.url.database
        if path and path != ":memory:":  # else nothing another process could commit to
            loop = asyncio.get_running_loop()
            self._probe_thread = threading.Thread(
                target=self._probe,
                args=(path, lambda: loop.call_soon_threadsafe(self.on_notice)),
                name="outbox probe",
                daemon=True,
            )
            self._probe_thread.start()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._probe_thread is not None:
            self._stop_probe.set()
            await asyncio.to_thread(self._probe_thread.join)

    def _probe(self, path: str, notify: Callable[[], object]) -> None:
        conn = sqlite3.connect(path, check_same_thread=False)
        writes = _Writes.watch(path)
        idle_after = max(1, round(IDLE_AFTER_S / self.probe_interval_s))
        seen: int | None = None
        newest: int | None = None
        unmoved = 0  # probes since the outbox last moved
        try:
            while not self._stop_probe.is_set():
                if writes is not None and unmoved >= idle_after:
                    writes.wait(functools.partial(_changed, conn, seen), self._stop_probe)
                elif self._stop_probe.wait(self.probe_interval_s):
                    break
                unmoved += 1
                try:
                    version = _data_version(conn)
                    if version == seen:
                        continue
                    seen, last = version, _newest_outbox_id(conn)
                except sqlite3.Error as exc:
                    log.debug("outbox probe failed", error=type(exc).__name__)
                    continue
                if last != newest:
                    unmoved = 0
                    notify()
                newest = last
        except RuntimeError:
            pass  # the event loop closed before the probe stopped
        finally:
            conn.close()
            if writes is not None:
                writes.close()

    async def _listen(self) -> None:
        dsn = self.db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                await self._listen_until_lost(dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.debug("outbox listener lost", error=type(exc).__name__)
            await asyncio.sleep(RECONNECT_S)

    async def _listen_until_lost(self, dsn: str) -> None:
        lost = asyncio.Event()
        conn: Any = await asyncpg.connect(dsn)
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, lambda *_args: self.on_notice())
            # Anything committed while there was no listener is found by this read.
            self.on_notice()
            await lost.wait()
        finally:
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close()


def _data_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA data_version").fetchone()
    return int(row[0])


def _changed(conn: sqlite3.Connection, seen: int | None) -> bool:
    return _data_version(conn) != seen


def _newest_outbox_id(conn: sqlite3.Connection) -> int | None:
    # The primary key's last entry: one B-tree descent, whatever the outbox holds.
    row = conn.execute("SELECT max(id) FROM outbox").fetchone()
    return None if row[0] is None else int(row[0])


class _Writes:
    """Waits, in the probe's thread, until the catalog file or its WAL is written."""

    def __init__(self, inotify: Any, folder: Path, names: set[str]) -> None:
        self._inotify = inotify
        self._folder = folder
        self._names = names

    @classmethod
    def watch(cls, path: str) -> _Writes | None:
        """None where inotify is missing (not Linux): the probe then only polls."""
        try:
            from asyncinotify import Inotify

            inotify = Inotify(sync_timeout=STOP_CHECK_S, cache_size=64)
        except (ImportError, OSError) as exc:
            log.debug("no inotify; the outbox probe polls", error=type(exc).__name__)
            return None
        file = Path(path).resolve()
        return cls(inotify, file.parent, {file.name, f"{file.name}-wal"})

    def wait(self, written: Callable[[], bool], stop: threading.Event) -> None:
        """Return once the file is written, `written()` says it already was, or stop is set."""
        from asyncinotify import Mask

        # Watching from here, then looking once: a write just before the watch is not missed.
        watch = self._inotify.add_watch(self._folder, Mask.MODIFY | Mask.CREATE | Mask.MOVED_TO)
        try:
            if written():
                return
            while not stop.is_set():
                event = self._inotify.sync_get()  # at most STOP_CHECK_S
                if event is not None and event.name is not None and event.name.name in self._names:
                    return
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._inotify.rm_watch(watch)

    def close(self) -> None:
        self._inotify.close()
