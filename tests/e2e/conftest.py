"""The whole system as real processes: a broker of its own and the five services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from freshet.devstack.broker import free_port
from freshet.devstack.testing import create_postgres_database, drop_postgres_database
from freshet.devstack.up import SERVICES, Stack
from freshet.kit.tokens import ROLES, new_token, token_entry

# Never used by Freshet to log in (the local server trusts 127.0.0.1); it is there so the tests
# can prove that a configured password never leaks into a response, an event or a log line.
SOURCE_PASSWORD = "pw-Z9q-never-print-me"


@dataclass
class System:
    stack: Stack
    token: str
    demo: Path
    pg_source: dict[str, object]
    logs: Path
    # Tokens of the other roles, for the web UI's role tests (the admin's is `token`).
    role_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return self.stack.gateway_url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


async def _make_pg_source(url: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            CREATE SCHEMA shop;
            CREATE TABLE shop.customers (id int PRIMARY KEY, name text NOT NULL, joined date);
            CREATE TABLE shop.orders (
                id int PRIMARY KEY,
                customer_id int NOT NULL REFERENCES shop.customers(id),
                total numeric(10,2),
                placed_at timestamptz DEFAULT now()
            );
            INSERT INTO shop.customers
                SELECT g, 'customer ' || g, date '2026-01-01' + g FROM generate_series(1, 120) g;
            INSERT INTO shop.orders (id, customer_id, total)
                SELECT g, 1 + g % 120, g * 1.25 FROM generate_series(1, 300) g;
            CREATE VIEW shop.big_orders AS SELECT * FROM shop.orders WHERE total > 100;
            """
        )
    finally:
        await conn.close()


def _write_tokens(data_dir: Path) -> dict[str, str]:
    """Tokens for every role, written where `Stack` looks before it makes its admin token."""
    tokens = {role: new_token() for role in ROLES}
    names = {"viewer": "e2e-viewer", "operator": "e2e-operator", "admin": "dev-admin"}
    (data_dir / "admin-token").write_text(tokens["admin"] + "\n")
    (data_dir / "api-tokens").write_text(
        "".join(token_entry(tokens[r], r, names[r]) + "\n" for r in ROLES)
    )
    return tokens


def stack_on_free_ports(data_dir: Path, database_url: str | None, env: dict[str, str]) -> Stack:
    """A stack of every service whose broker and services listen on free ports."""
    return Stack(
        data_dir=data_dir,
        gateway_port=free_port(),
        kafka_port=free_port(),
        database_url=database_url,
        ports={name: free_port() for name in SERVICES},
        extra_env=env,
    )


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def system(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server_url: str,
) -> Iterator[System]:
    kind: str = request.param
    data_dir = tmp_path_factory.mktemp(f"system-{kind}")
    catalog = create_postgres_database(postgres_server_url) if kind == "postgres" else None
    source = create_postgres_database(postgres_server_url, prefix="freshet_source")
    asyncio.run(_make_pg_source(source))
    src = make_url(source)
    role_tokens = _write_tokens(data_dir)
    # Seconds-level schedules, so tests can watch real fires (6-field cron).
    stack = stack_on_free_ports(
        data_dir,
        catalog,
        {
            "FRESHET_LOG_LEVEL": "DEBUG",
            "FRESHET_MIN_SCHEDULE_INTERVAL_S": "2",
            # Previews: failures retried quickly, a hanging source given up on soon, gauges
            # refreshed every second; the per-dataset throttle keeps its default (an hour).
            "FRESHET_PREVIEW_MAX_ATTEMPTS": "3",
            "FRESHET_PREVIEW_RETRY_INITIAL_S": "0.1",
            "FRESHET_PREVIEW_RETRY_JITTER_S": "0.1",
            "FRESHET_PREVIEW_STATEMENT_TIMEOUT_S": "2",
            "FRESHET_PREVIEW_REQUEST_TIMEOUT_S": "5",
            "FRESHET_PREVIEW_GAUGE_INTERVAL_S": "1",
            # Parquet caches: replaced files go within a second, upkeep runs often.
            "FRESHET_CACHE_GRACE_S": "0.5",
            "FRESHET_CACHE_MAINTENANCE_INTERVAL_S": "0.2",
            "FRESHET_REFRESH_LEASE_TTL_S": "3",
        },
    )
    try:
        token, demo = stack.start()
        yield System(
            stack=stack,
            token=token,
            demo=demo,
            pg_source={
                "host": src.host or "127.0.0.1",
                "port": src.port or 5432,
                "database": src.database,
                "user": src.username or "postgres",
                "schemas": ["shop"],
            },
            logs=data_dir / "logs",
            role_tokens=role_tokens,
        )
    finally:
        stack.stop()
        if catalog:
            drop_postgres_database(postgres_server_url, catalog)
        drop_postgres_database(postgres_server_url, source)


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    yield port
    server.close()
    for writer in held:
        writer.close()


@pytest.fixture
async def http(system: System) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the system's gateway, authenticated as its development admin."""
    async with httpx.AsyncClient(
        base_url=system.gateway, headers=system.headers, timeout=30
    ) as client:
        yield client
