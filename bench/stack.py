"""Starting and stopping what a benchmark needs, the way `make up` does (freshet.devstack.up)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from freshet.catalog.database import async_url
from freshet.devstack.broker import free_port
from freshet.devstack.up import (
    SERVICES,
    Stack,
)


class BenchStack(Stack):
    """A Stack that also reports what it started, for CPU and liveness figures."""

    def pids(self) -> dict[str, int]:
        """Process ids of what this stack started: the services and the embedded broker."""
        out = {name: proc.pid for name, proc in self.processes.items() if proc.poll() is None}
        if self.broker is not None and self.broker.process is not None:
            out["broker"] = self.broker.process.pid
        return out

    def dead_services(self) -> list[str]:
        return [name for name, proc in self.processes.items() if proc.poll() is not None]


def make_stack(
    data_dir: Path,
    *,
    services: tuple[str, ...],
    database_url: str | None,
    extra_env: dict[str, str],
) -> BenchStack:
    """A stack on free ports with its own embedded broker (as tests/e2e/conftest.py makes)."""
    return BenchStack(
        data_dir=data_dir,
        gateway_port=free_port(),
        kafka_port=free_port(),
        database_url=database_url,
        ports={name: free_port() for name in SERVICES},
        extra_env=extra_env,
        services=services,
    )


def stop_stack(stack: Stack) -> None:
    """Stop every process the stack started; a second Ctrl-C does not cut this short."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stack.stop()
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def postgres_catalog(server_url: str | None) -> Iterator[str | None]:
    """A scratch PostgreSQL database for one scenario (dropped afterwards), or None for SQLite."""
    if server_url is None:
        yield None
        return
    # The helpers the tests use; importing them needs pytest, which the dev group installs.
    from freshet.devstack.testing import create_postgres_database, drop_postgres_database

    url = create_postgres_database(server_url, prefix="freshet_bench")
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            drop_postgres_database(server_url, url)


def read_only_engine(catalog_url: str) -> AsyncEngine:
    """An engine the bench reads the catalog with: opened read-only on SQLite, so the polling
    can never take (or wait for) the services' write lock."""
    parsed = make_url(catalog_url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "").resolve()
        return create_async_engine(f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true")
    return create_async_engine(async_url(catalog_url), pool_size=2)


def catalog_kind(catalog_url: str) -> str:
    return make_url(catalog_url).get_backend_name()


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc), None if unknown."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing paren are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, pid in pids.items():
        used = cpu_seconds(pid)
        if used is not None:
            out[name] = used
    return out


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before[name], 2) for name in before if name in after}


async def scrape_metrics(url: str) -> dict[str, float]:
    """A service's Prometheus metrics, each name summed over its label sets."""
    out: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            text = (await http.get(f"{url}/metrics")).text
    except httpx.HTTPError:
        return out
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out
