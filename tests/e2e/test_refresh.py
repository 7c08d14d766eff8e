"""Seed 004 against the running system and a real PostgreSQL source of this module's own:
table and connection refreshes (sync, async, force, skip, join), discovery with and without
invalidate_changed, refreshes from outside events and from schedules, hostile names."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import asyncpg
import httpx
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.engine import make_url

from freshet.contracts import RefreshRequested, encode
from freshet.devstack.testing import (
    create_postgres_database,
    drop_postgres_database,
    eventually,
)
from tests.e2e.conftest import SOURCE_PASSWORD, System

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.xdist_group("e2e")]

ROWS = 2_000
HOSTILE_SCHEMA = 'we"ird/../sch'
HOSTILE_TABLE = "../../etc/passwd"


@pytest.fixture(scope="module")
def source(postgres_server_url: str) -> Iterator[str]:
    """A PostgreSQL source database of this module's own."""
    url = create_postgres_database(postgres_server_url, prefix="freshet_refresh_src")
    asyncio.run(
        _sql(
            url,
            f"""
        CREATE SCHEMA sales;
        CREATE TABLE sales.orders (
            id int PRIMARY KEY, amount bigint, label varchar(20), price numeric(12, 2),
            at timestamp, paid boolean, note text
        );
        INSERT INTO sales.orders
            SELECT g, g * 7, 'label ' || g, g / 3.0, timestamp '2026-01-01' + g * interval '1 s',
                   g % 2 = 0, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END
            FROM generate_series(1, {ROWS}) g;
        CREATE TABLE sales.customers (id int PRIMARY KEY, name text);
        INSERT INTO sales.customers SELECT g, 'c' || g FROM generate_series(1, 50) g;
        CREATE TABLE sales.empty (id int);
        CREATE VIEW sales.broken AS SELECT 1 / (id - id) AS boom FROM sales.customers;
        CREATE SCHEMA "{HOSTILE_SCHEMA.replace('"', '""')}";
        CREATE TABLE "{HOSTILE_SCHEMA.replace('"', '""')}"."{HOSTILE_TABLE}" (x int);
        INSERT INTO "{HOSTILE_SCHEMA.replace('"', '""')}"."{HOSTILE_TABLE}" VALUES (1), (2);
    """,
        )
    )
    yield url
    drop_postgres_database(postgres_server_url, url)


async def _sql(url: str, sql: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def connection(http: httpx.AsyncClient, system: System, source: str) -> str:
    """A discovered connection over the module's source (a new one per test)."""
    src = make_url(source)
    name = f"pg-{uuid.uuid4().hex[:8]}"
    created = await http.post(
        "/endpoints",
        json={
            "name": name,
            "kind": "postgres",
            "config": {
                "host": src.host or "127.0.0.1",
                "port": src.port or 5432,
                "database": src.database,
                "user": src.username or "postgres",
            },
            "secrets": {"password": SOURCE_PASSWORD},
        },
    )
    assert created.status_code == 201, created.text
    found = await http.post(f"/connections/{name}/discover")
    assert found.status_code == 200, found.text
    assert found.json()["discovery_status"] == "success"
    return name


def table_path(name: str, schema: str, table: str) -> str:
    return f"/connections/{name}/tables/{quote(schema, safe='')}/{quote(table, safe='')}"


def file_of(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


async def cache_of(http: httpx.AsyncClient, name: str, schema: str, table: str) -> dict[str, Any]:
    response = await http.get(table_path(name, schema, table) + "/cache")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def pointer_uri(system: System, name: str, schema: str, table: str) -> str | None:
    """The current cache file of a table, read from the catalog (the query path's view)."""
    from freshet.catalog import Database, UnitOfWork
    from freshet.catalog.caches import TableRef

    db = Database(system.stack.catalog_url)
    try:
        async with UnitOfWork(db, read_only=True) as uow:
            ref = TableRef(name, schema, table)
            resolved = (await uow.caches.resolve([ref]))[ref]
    finally:
        await db.dispose()
    return resolved.pointer.uri if resolved.pointer else None


async def test_table_refresh_sync_skip_force_async(
    http: httpx.AsyncClient, system: System, connection: str
) -> None:
    path = table_path(connection, "sales", "orders") + "/refresh"
    first = await http.post(path)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "completed"
    assert body["rows_synced"] == ROWS
    assert body["duration_ms"] is not None
    assert body["schema"] == "sales"
    assert body["table"] == "orders"
    assert body["completed_at"] >= body["started_at"]
    uri = await pointer_uri(system, connection, "sales", "orders")
    assert uri is not None
    first_file = file_of(uri)
    # <root>/<endpoint id>/<schema>/<table>/<version>.parquet
    assert first_file.parent.parent.name == "sales"
    assert first_file.parent.name == "orders"
    assert first_file.is_relative_to(system.stack.data_dir / "cache")
    table = pq.read_table(first_file)
    assert table.num_rows == ROWS
    assert table.column_names == ["id", "amount", "label", "price", "at", "paid", "note"]

    skipped = await http.post(path)
    assert skipped.status_code == 200, skipped.text
    assert skipped.json()["status"] == "skipped"
    assert "minimum interval" in skipped.json()["reason"]

    forced = await http.post(path, params={"force": "true"})
    assert forced.status_code == 200, forced.text
    assert forced.json()["status"] == "completed"
    second = await pointer_uri(system, connection, "sales", "orders")
    assert second is not None
    assert second != uri
    # The replaced version goes once the grace period is over (no reader holds it).
    await eventually(lambda: _gone(first_file), timeout=15)

    accepted = await http.post(path, params={"force": "true", "async": "true"})
    assert accepted.status_code == 202, accepted.text
    refresh_id = accepted.json()["refresh_id"]
    assert accepted.json()["status"] == "in_progress"

    async def done() -> dict[str, Any] | None:
        status = (await http.get(f"/refresh/{refresh_id}")).json()
        return status if status["status"] == "completed" else None

    status = await eventually(done, timeout=30)
    assert status["tables_total"] == 1
    assert status["tables_completed"] == 1
    assert status["rows_synced"] == ROWS
    assert status["tables"][0]["rows_synced"] == ROWS
    assert status["errors"] == []


async def _gone(path: Path) -> bool:
    return not await asyncio.to_thread(path.exists)


async def test_concurrent_duplicate_refreshes_join_one(
    http: httpx.AsyncClient, connection: str
) -> None:
    path = table_path(connection, "sales", "orders") + "/refresh"
    answers = await asyncio.gather(
        *(http.post(path, params={"async": "true", "force": "true"}) for _ in range(6))
    )
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    ids = {a.json()["refresh_id"] for a in answers}
    assert len(ids) == 1, ids
    assert sorted(a.json()["joined"] for a in answers) == [False] + [True] * 5
    # A synchronous request meanwhile joins too and waits for the same refresh.
    joined = await http.post(path, params={"force": "true"})
    assert joined.status_code == 200, joined.text
    assert joined.json()["refresh_id"] in ids | {joined.json()["refresh_id"]}


async def test_unknown_connection_and_table_have_stable_codes(
    http: httpx.AsyncClient, connection: str
) -> None:
    missing = await http.post(table_path("nope-x", "sales", "orders") + "/refresh")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "E_ENDPOINT_NOT_FOUND"
    table = await http.post(table_path(connection, "sales", "nope") + "/refresh")
    assert table.status_code == 404
    assert table.json()["error"]["code"] == "E_TABLE_NOT_FOUND"
    refresh = await http.get(f"/refresh/{uuid.uuid4()}")
    assert refresh.status_code == 404
    assert refresh.json()["error"]["code"] == "E_REFRESH_NOT_FOUND"
    listed = await http.post(f"/connections/{connection}/refresh", json={"tables": ["sales.x"]})
    assert listed.status_code == 404
    assert listed.json()["error"]["code"] == "E_TABLE_NOT_FOUND"
    bad = await http.post(f"/connections/{connection}/refresh", json={"concurrency": 0})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "E_VALIDATION"
    interval = await http.put(
        table_path(connection, "sales", "orders") + "/cache", json={"refresh_interval_s": 1}
    )
    assert interval.status_code == 422
    assert interval.json()["error"]["code"] == "E_VALIDATION"


async def test_a_failing_table_fails_alone_with_the_old_cache_serving(
    http: httpx.AsyncClient, system: System, connection: str
) -> None:
    for table in ("orders", "customers", "empty", "broken"):
        settings = await http.put(
            table_path(connection, "sales", table) + "/cache", json={"cached": True}
        )
        assert settings.status_code == 200, settings.text
        assert settings.json()["cached"] is True
    response = await http.post(
        f"/connections/{connection}/refresh", json={"concurrency": 2}, params={"force": "true"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert body["tables_total"] == 4
    assert body["tables_failed"] == 1
    assert body["tables_succeeded"] == 3
    results = {t["table"]: t for t in body["tables"]}
    assert results["sales.empty"]["rows_synced"] == 0
    assert results["sales.customers"]["rows_synced"] == 50
    assert body["errors"][0]["table"] == "sales.broken"
    assert "division by zero" in body["errors"][0]["error"]
    assert SOURCE_PASSWORD not in response.text
    assert await pointer_uri(system, connection, "sales", "broken") is None
    # One table refreshed synchronously and failing: 502 with a stable code.
    failed = await http.post(table_path(connection, "sales", "broken") + "/refresh")
    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "E_REFRESH_FAILED"
    # The listed tables only, and every discovered table with the flag.
    listed = await http.post(
        f"/connections/{connection}/refresh",
        json={"tables": ["sales.customers"]},
        params={"force": "true"},
    )
    assert listed.json()["tables_total"] == 1
    everything = await http.post(
        f"/connections/{connection}/refresh",
        json={"all_tables": True},
        params={"async": "true"},
    )
    assert everything.status_code == 202
    assert everything.json()["tables_total"] == 5  # orders, customers, empty, broken, hostile


async def test_hostile_names_stay_inside_their_folder(
    http: httpx.AsyncClient, system: System, connection: str
) -> None:
    path = table_path(connection, HOSTILE_SCHEMA, HOSTILE_TABLE)
    refreshed = await http.post(
        f"/connections/{connection}/refresh",
        json={"tables": [f"{HOSTILE_SCHEMA}.{HOSTILE_TABLE}"]},
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["tables_succeeded"] == 1
    uri = await pointer_uri(system, connection, HOSTILE_SCHEMA, HOSTILE_TABLE)
    assert uri is not None
    file = file_of(uri)
    endpoint_folder = file.parent.parent.parent
    assert endpoint_folder.parent == (system.stack.data_dir / "cache").resolve()
    assert ".." not in file.parts
    assert pq.read_table(file).num_rows == 2
    del path


async def test_discovery_reports_schema_changes_and_invalidates_on_request(
    http: httpx.AsyncClient, system: System, connection: str, source: str
) -> None:
    await http.put(table_path(connection, "sales", "customers") + "/cache", json={"cached": True})
    first = await http.post(
        table_path(connection, "sales", "customers") + "/refresh", params={"force": "true"}
    )
    assert first.status_code == 200, first.text
    before = await cache_of(http, connection, "sales", "customers")
    assert before["schema_current"] is True

    # Policy "refresh" (the default): the old cache serves until the new shape replaces it.
    await _sql(source, "ALTER TABLE sales.customers ADD COLUMN email text")
    found = await http.post(f"/connections/{connection}/discover")
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["schema_changed"] == ["sales.customers"]
    assert body["tables_schema_changed"] == 1
    assert body["caches_invalidated"] == []

    async def refreshed() -> bool:
        cache = await cache_of(http, connection, "sales", "customers")
        return bool(cache["schema_current"] and cache["version"] != before["version"])

    await eventually(refreshed, timeout=30)
    uri = await pointer_uri(system, connection, "sales", "customers")
    assert uri is not None
    assert "email" in pq.read_table(file_of(uri)).column_names

    # invalidate_changed drops the pointer in the run's own transaction.
    policy = await http.patch(
        f"/connections/{connection}/cache", json={"schema_change_policy": "ignore"}
    )
    assert policy.status_code == 200, policy.text
    await _sql(source, "ALTER TABLE sales.customers ADD COLUMN phone text")
    invalidated = await http.post(
        f"/connections/{connection}/discover", params={"invalidate_changed": "true"}
    )
    assert invalidated.status_code == 200, invalidated.text
    assert invalidated.json()["caches_invalidated"] == ["sales.customers"]
    assert await pointer_uri(system, connection, "sales", "customers") is None
    await eventually(lambda: _gone(file_of(uri)), timeout=15)
    # Added and removed tables are named too.
    await _sql(source, "CREATE TABLE sales.fresh (x int); DROP VIEW sales.broken")
    again = (await http.post(f"/connections/{connection}/discover")).json()
    assert again["added"] == ["sales.fresh"]
    assert again["removed"] == ["sales.broken"]
    await _sql(
        source,
        "DROP TABLE sales.fresh; CREATE VIEW sales.broken AS "
        "SELECT 1 / (id - id) AS boom FROM sales.customers",
    )


async def test_outside_events_and_schedules_refresh_tables(
    http: httpx.AsyncClient, system: System, connection: str
) -> None:
    endpoints = (await http.get("/endpoints")).json()
    endpoint_id = next(e["id"] for e in endpoints if e["name"] == connection)
    refresh_id = uuid.uuid4()
    producer = AIOKafkaProducer(bootstrap_servers=system.stack.bootstrap)
    await producer.start()
    try:
        message = encode(
            RefreshRequested(
                endpoint_id=uuid.UUID(endpoint_id),
                refresh_id=refresh_id,
                tables=["sales.customers"],
                force=True,
                requested_by="etl-job",
            ),
            source="/etl",
        )
        for _ in range(2):  # redelivered: still one refresh
            await producer.send_and_wait(
                "freshet.refresh.requested", message.value, key=message.key, headers=message.headers
            )
    finally:
        await producer.stop()

    async def done() -> dict[str, Any] | None:
        response = await http.get(f"/refresh/{refresh_id}")
        if response.status_code != 200 or response.json()["status"] != "completed":
            return None
        return dict(response.json())

    status = await eventually(done, timeout=30)
    assert status["trigger_source"] == "event"
    assert status["requested_by"] == "etl-job"
    assert status["tables_succeeded"] == 1

    # A refresh interval: the scheduler fires the table's schedule (2 s in this system).
    before = await cache_of(http, connection, "sales", "customers")
    await http.put(
        table_path(connection, "sales", "customers") + "/cache",
        json={"cached": True, "refresh_interval_s": 2},
    )

    async def fired() -> bool:
        cache = await cache_of(http, connection, "sales", "customers")
        return cache["version"] not in (None, before["version"])

    await eventually(fired, timeout=30)
    stopped = await http.put(
        table_path(connection, "sales", "customers") + "/cache", json={"refresh_interval_s": None}
    )
    assert stopped.json()["refresh_interval_s"] is None
