"""The whole system as real processes: a broker of its own and the five services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from freshet.devstack.broker import free_port
from freshet.devstack.testing import create_postgres_database, drop_postgres_database
from freshet.devstack.up import SERVICES, Stack

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
    stack = Stack(
        data_dir=data_dir,
        gateway_port=free_port(),
        kafka_port=free_port(),
        database_url=catalog,
        ports={name: free_port() for name in SERVICES},
        # Seconds-level schedules, so tests can watch real fires (6-field cron).
        extra_env={
            "FRESHET_LOG_LEVEL": "DEBUG",
            "FRESHET_MIN_SCHEDULE_INTERVAL_S": "2",
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
        )
    finally:
        stack.stop()
        if catalog:
            drop_postgres_database(postgres_server_url, catalog)
        drop_postgres_database(postgres_server_url, source)


@pytest.fixture
async def http(system: System) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the system's gateway, authenticated as its development admin."""
    async with httpx.AsyncClient(
        base_url=system.gateway, headers=system.headers, timeout=30
    ) as client:
        yield client
