"""DuckDB plumbing shared by the `duckdb` and `files` connectors.

DuckDB blocks, so every operation runs in `asyncio.to_thread` on a connection that is opened,
used and closed inside that one thread. A watchdog thread per operation enforces the statement
timeout and stops the work early when the awaiting task is cancelled, both through
`connection.interrupt()`, which DuckDB notices within milliseconds of a running statement. The
watchdog keeps polling rather than firing once because DuckDB clears the interrupt flag when a
statement starts: an interrupt that lands just before the statement begins would otherwise be
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import duckdb

from freshet.connectors.models import Sample
from freshet.connectors.sql import quote_ident
from freshet.connectors.values import json_safe

T = TypeVar("T")

# How often the watchdog checks the deadline and the cancellation flag: often enough to stop
# within a few tens of milliseconds, rarely enough to cost nothing measurable.
_POLL_S = 0.02
# Named so tests (and anyone reading a thread dump) can tell the watchdog is gone.
WATCHDOG_THREAD_NAME = "freshet-duckdb-watchdog"

# Settings every connection is opened with, before it reads anything.
CONNECT_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    # A view or file needing an extension must never make Freshet download or load code.
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    # No spilling: a huge sort fails with out-of-memory rather than writing `<db>.tmp` next to
    # the source (or `.tmp` into the working directory).
    "temp_directory": "",
}

# The Python client needs pytz to hand TIMESTAMPTZ values over, and Freshet does not depend on
# it; such columns are converted in SQL instead (see `Session.sample`).
_TIMESTAMPTZ = "TIMESTAMP WITH TIME ZONE"


async def run_in_thread(
    work: Callable[[threading.Event], T], cancelled: threading.Event | None = None
) -> T:
    """`work(cancelled)` in a worker thread; `cancelled` is set when the awaiting task is (pass
    one to be able to stop the work for other reasons too)."""
    cancelled = cancelled or threading.Event()
    try:
        return await asyncio.to_thread(work, cancelled)
    except asyncio.CancelledError:
        cancelled.set()
        raise


def first_line(exc: BaseException) -> str:
    """DuckDB's message without the SQL excerpt, hints and data lines it appends below."""
    return str(exc).strip().split("\n", 1)[0]


class Session:
    """A DuckDB connection plus the watchdog that interrupts its statements.

    Owns the connection from construction on: `close()` stops the watchdog and closes it.
    """

    def __init__(
        self, conn: duckdb.DuckDBPyConnection, timeout_s: float, cancelled: threading.Event
    ) -> None:
        self._conn = conn
        self._timeout_s = timeout_s
        self._cancelled = cancelled
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._closing = threading.Event()
        self.timed_out = False
        self._watchdog = threading.Thread(
            target=self._watch, name=WATCHDOG_THREAD_NAME, daemon=True
        )
        self._watchdog.start()

    def configure(self, settings: Sequence[tuple[str, Sequence[object]]] = ()) -> None:
        """Apply the common settings, then `settings` (connector-specific `SET`s)."""
        # Progress bars are for terminals; in a service they are noise on stdout.
        self.query("SET enable_progress_bar = false")
        # Casting TIMESTAMPTZ to TIMESTAMP then yields UTC whatever the host's zone is.
        self.query("SET TimeZone = 'UTC'")
        for sql, params in settings:
            self.query(sql, params)
        # No `lock_configuration`: DuckDB shares one database instance between the connections
        # a process opens to the same file, so a lock set by one operation would make the next
        # one's `SET`s fail. It is not needed either: once external access is off, DuckDB
        # refuses to turn it back on or to change allowed_directories or temp_directory.

    def query(
        self, sql: str, params: Sequence[object] = ()
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and all rows of `sql`, cut off after the timeout."""
        with self.statement():
            cursor = self._conn.execute(sql, list(params))
            columns = [str(d[0]) for d in cursor.description or ()]
            rows = cursor.fetchall()
        return columns, rows

    def sample(self, source: str, params: Sequence[object], limit: int) -> Sample:
        """At most `limit` rows of `SELECT * FROM {source}`, with JSON-safe values.

        `source` is SQL text (a quoted name or a table function call) and `params` its
        parameters; it must never hold caller-supplied text that is not quoted.
        """
        sql = f"SELECT * FROM {source} LIMIT ?"
        with self.statement():
            cursor = self._conn.execute(sql, [*params, limit])
            description = cursor.description or []
            names = [str(d[0]) for d in description]
            types = [str(d[1]) for d in description]
            rewrite = any(_TIMESTAMPTZ in t for t in types)
            rows = [] if rewrite else cursor.fetchall()
        if rewrite:
            # Positional references (`#3`) rather than names: a result may repeat a name.
            select = ", ".join(
                _select_item(position, name, type_)
                for position, (name, type_) in enumerate(zip(names, types, strict=True), start=1)
            )
            with self.statement():
                cursor = self._conn.execute(
                    f"SELECT {select} FROM {source} LIMIT ?", [*params, limit]
                )
                rows = cursor.fetchall()
        utc = {i for i, type_ in enumerate(types) if type_ == _TIMESTAMPTZ}
        return Sample(
            columns=names,
            rows=[
                [json_safe(_as_utc(v) if i in utc else v) for i, v in enumerate(row)]
                for row in rows
            ],
        )

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The connection itself, for what `query` cannot do (relations, registrations); run
        statements on it inside `statement()` so the timeout holds."""
        return self._conn

    @property
    def aborted(self) -> bool:
        """Whether the last statement was stopped by the timeout or by cancellation."""
        return self.timed_out or self._cancelled.is_set()

    def close(self) -> None:
        self.stop_watchdog()
        self._conn.close()

    def stop_watchdog(self) -> None:
        """Stop interrupting; the connection stays open (for a caller that closes it later)."""
        self._closing.set()
        # Joined before the connection is closed, so the watchdog never touches a closed one.
        self._watchdog.join()

    @contextlib.contextmanager
    def statement(self) -> Iterator[None]:
        """Arm the timeout around one statement run on the connection (and its fetches)."""
        with self._lock:
            if self._cancelled.is_set():
                # The task is gone; starting another statement would only waste work.
                raise duckdb.InterruptException("INTERRUPT Error: cancelled")
            self.timed_out = False
            self._deadline = time.monotonic() + self._timeout_s
        try:
            yield
        finally:
            with self._lock:
                self._deadline = None

    def _watch(self) -> None:
        while not self._closing.wait(_POLL_S):
            with self._lock:
                if self._cancelled.is_set():
                    self._conn.interrupt()
                elif self._deadline is not None and time.monotonic() > self._deadline:
                    self.timed_out = True
                    self._conn.interrupt()


def _select_item(position: int, name: str, type_: str) -> str:
    ref = f"#{position}"
    if type_ == _TIMESTAMPTZ:
        # With the session in UTC this is the UTC wall time; `_as_utc` puts the zone back.
        expr = f"CAST({ref} AS TIMESTAMP)"
    elif _TIMESTAMPTZ in type_:
        # Nested somewhere in a list, struct or map: the text form is the honest fallback.
        expr = f"CAST({ref} AS VARCHAR)"
    else:
        return ref
    return f"{expr} AS {quote_ident(name)}"


def _as_utc(value: object) -> object:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) else value
