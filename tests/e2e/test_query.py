"""POST /query against the running system and a real PostgreSQL source of this module's own:
formats, row limit, timeout, lazy fetch (a first query fetches; a running refresh is joined),
lazy fetch off, stale schemas, a reader loop while refreshes swap the table, a long query
holding its version's file, hostile names and the sandbox."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import select

from freshet.catalog import Database, UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.catalog.models import CacheDeletion, CacheReader
from freshet.devstack.testing import create_postgres_database, drop_postgres_database, eventually
from tests.e2e.conftest import System
from tests.e2e.test_refresh import _sql, connection, file_of, pointer_uri, table_path

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.xdist_group("e2e")]

__all__ = ["connection"]  # the fixture, over this module's `source`

ITEMS = 500
HOSTILE_SCHEMA = 'we"ird.sch ü'
# Burns CPU until the statement timeout stops it (little memory: the right side is 10 rows).
ENDLESS = "SELECT sum(a.range * b.range) FROM range(10000000000) a, range(10) b"


@pytest.fixture(scope="module")
def source(postgres_server_url: str) -> Iterator[str]:
    url = create_postgres_database(postgres_server_url, prefix="freshet_query_src")
    schema = HOSTILE_SCHEMA.replace('"', '""')
    asyncio.run(
        _sql(
            url,
            f"""
        CREATE SCHEMA q;
        CREATE TABLE q.items (id int PRIMARY KEY, label text, price numeric(10, 2));
        INSERT INTO q.items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, {ITEMS}) g;
        -- Slow to read (about 3 s), so a query finds its refresh still running.
        CREATE VIEW q.slow AS SELECT g AS id FROM generate_series(1, 5) g, (SELECT pg_sleep(3)) s;
        CREATE SCHEMA "{schema}";
        CREATE TABLE "{schema}"."../../etc/passwd" (x int);
        INSERT INTO "{schema}"."../../etc/passwd" VALUES (1), (2);
        CREATE TABLE "{schema}"."x.y" (x int);
        INSERT INTO "{schema}"."x.y" VALUES (10);
    """,
        )
    )
    yield url
    drop_postgres_database(postgres_server_url, url)


def ident(*parts: str) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


async def run(http: httpx.AsyncClient, sql: str, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    return await http.post("/query", json={"sql": sql, **kwargs}, headers=headers)


def code_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"]["code"])


async def test_first_query_fetches_then_formats_limit_and_timeout(
    http: httpx.AsyncClient, system: System, connection: str
) -> None:
    items = ident(connection, "q", "items")
    first = await run(http, f"SELECT count(*), sum(id) FROM {items}")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["rows"] == [[ITEMS, ITEMS * (ITEMS + 1) // 2]]
    (table,) = body["tables"]
    assert table["fetched"] is True
    assert table["joined"] is False
    assert table["rows"] == ITEMS
    assert body["timings"]["fetch"] > 0
    # The lazy fetch was an ordinary refresh, visible as such.
    status = (await http.get(f"/refresh/{table['refresh_id']}")).json()
    assert status["status"] == "completed"
    assert status["trigger_source"] == "api"

    again = (await run(http, f"SELECT count(*) FROM {items}")).json()
    assert again["tables"][0]["fetched"] is False
    assert again["tables"][0]["version"] == table["version"]

    sql = f"SELECT id, label, price FROM {items} ORDER BY id"
    limited = (await run(http, sql, limit=10)).json()
    assert limited["row_count"] == 10
    assert limited["truncated"] is True
    assert limited["rows"][0] == [1, "item 1", "1.50"]
    arrow = await run(http, sql, headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert arrow.status_code == 200, arrow.text
    received = pa.ipc.open_stream(arrow.content).read_all()
    assert received.num_rows == ITEMS
    assert received.column("id").to_pylist() == list(range(1, ITEMS + 1))
    assert arrow.headers["x-freshet-truncated"] == "false"
    csv = await run(http, sql, limit=3, headers={"Accept": "text/csv"})
    assert csv.text.splitlines() == [
        '"id","label","price"',
        '1,"item 1",1.50',
        '2,"item 2",3.00',
        '3,"item 3",4.50',
    ]
    assert csv.headers["x-freshet-truncated"] == "true"
    assert code_of(await run(http, sql, headers={"Accept": "image/png"}), 406) == (
        "E_NOT_ACCEPTABLE"
    )
    stopped = await run(http, f"SELECT count(*) FROM {items} WHERE id < ({ENDLESS})", timeout_s=0.5)
    assert code_of(stopped, 504) == "E_QUERY_TIMEOUT"

    metrics = (await http.get("/metrics")).text
    assert 'freshet_queries_total{outcome="succeeded"}' in metrics
    assert 'freshet_queries_total{outcome="timeout"}' in metrics
    assert 'freshet_query_lazy_fetches_total{outcome="started"}' in metrics


async def test_a_query_joins_the_refresh_already_running(
    http: httpx.AsyncClient, connection: str
) -> None:
    started = await http.post(
        table_path(connection, "q", "slow") + "/refresh", params={"async": "true"}
    )
    assert started.status_code == 202, started.text
    refresh_id = started.json()["refresh_id"]
    response = await run(http, f"SELECT count(*) FROM {ident(connection, 'q', 'slow')}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"] == [[5]]
    (table,) = body["tables"]
    assert table["refresh_id"] == refresh_id
    assert table["joined"] is True
    status = (await http.get(f"/refresh/{refresh_id}")).json()
    assert status["tables_total"] == 1  # joined, not added


async def test_lazy_fetch_off_and_stale_schemas(
    http: httpx.AsyncClient, source: str, connection: str
) -> None:
    name = f"evolving_{uuid.uuid4().hex[:8]}"
    await _sql(source, f"CREATE TABLE q.{name} (a int); INSERT INTO q.{name} VALUES (1)")
    found = await http.post(f"/connections/{connection}/discover")
    assert found.status_code == 200, found.text
    settings = await http.patch(
        f"/connections/{connection}/cache",
        json={"lazy_fetch": False, "schema_change_policy": "ignore"},
    )
    assert settings.status_code == 200, settings.text
    table = ident(connection, "q", name)

    assert code_of(await run(http, f"SELECT * FROM {table}"), 409) == "E_QUERY_NOT_CACHED"
    refreshed = await http.post(table_path(connection, "q", name) + "/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert (await run(http, f"SELECT * FROM {table}")).json()["rows"] == [[1]]

    # The source changes shape; with the "ignore" policy the old version stays, stale.
    await _sql(source, f"ALTER TABLE q.{name} ADD COLUMN b text DEFAULT 'new'")
    changed = await http.post(f"/connections/{connection}/discover")
    assert f"q.{name}" in changed.json()["schema_changed"], changed.text
    stale = await run(http, f"SELECT * FROM {table}")
    assert code_of(stale, 409) == "E_QUERY_SCHEMA_STALE"

    on = await http.patch(f"/connections/{connection}/cache", json={"lazy_fetch": True})
    assert on.status_code == 200, on.text
    fresh = await run(http, f"SELECT * FROM {table}")
    assert fresh.status_code == 200, fresh.text
    assert [c["name"] for c in fresh.json()["columns"]] == ["a", "b"]
    assert fresh.json()["rows"] == [[1, "new"]]
    assert fresh.json()["tables"][0]["fetched"] is True


async def test_readers_never_see_a_mixed_or_partial_version(
    http: httpx.AsyncClient, source: str, connection: str
) -> None:
    """Version k of the table has k + 100 rows, every one with marker k. Two readers query
    continuously while the table is refreshed (and swapped) again and again: each result
    must be exactly one version, whole."""
    name = f"swap_{uuid.uuid4().hex[:8]}"

    async def load(marker: int) -> None:
        await _sql(
            source,
            f"""
            BEGIN;
            DELETE FROM q.{name};
            INSERT INTO q.{name} SELECT {marker}, g FROM generate_series(1, {marker + 100}) g;
            COMMIT;
            """,
        )

    await _sql(source, f"CREATE TABLE q.{name} (marker int, i int)")
    await load(0)
    assert (await http.post(f"/connections/{connection}/discover")).status_code == 200
    path = table_path(connection, "q", name) + "/refresh"
    assert (await http.post(path)).json()["status"] == "completed"
    table = ident(connection, "q", name)
    sql = (
        f"SELECT min(marker), max(marker), count(*), "
        f"(SELECT count(*) FROM {table}), (SELECT max(i) FROM {table}) FROM {table}"
    )
    seen: list[int] = []
    problems: list[str] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            response = await run(http, sql)
            if response.status_code != 200:
                problems.append(response.text)
                continue
            low, high, count, again, top = response.json()["rows"][0]
            if not (low == high and count == again == top == low + 100):
                problems.append(f"mixed or partial: {response.json()['rows']}")
            seen.append(low)

    readers = [asyncio.create_task(reader()) for _ in range(2)]
    try:
        for marker in range(1, 9):
            await load(marker)
            swapped = await http.post(path, params={"force": "true"})
            assert swapped.json()["status"] == "completed", swapped.text
    finally:
        done.set()
        await asyncio.gather(*readers)
    assert problems == []
    assert len(set(seen)) >= 3, seen  # the readers did read across swaps
    assert max(seen) <= 8


async def _catalog_rows(system: System, model: type[Any]) -> list[Any]:
    db = Database(system.stack.catalog_url)
    try:
        async with UnitOfWork(db, read_only=True) as uow:
            return list((await uow.session.execute(select(model))).scalars())
    finally:
        await db.dispose()


async def test_a_long_query_keeps_its_file_until_it_ends(
    http: httpx.AsyncClient, system: System, connection: str
) -> None:
    refreshed = await http.post(
        table_path(connection, "q", "items") + "/refresh", params={"force": "true"}
    )
    assert refreshed.status_code == 200, refreshed.text
    old = await pointer_uri(system, connection, "q", "items")
    assert old is not None
    items = ident(connection, "q", "items")
    slow = asyncio.create_task(
        run(http, f"SELECT count(*) FROM {items} WHERE id < ({ENDLESS})", timeout_s=6)
    )

    async def leased() -> bool:
        return any(r.uri == old for r in await _catalog_rows(system, CacheReader))

    await eventually(leased, timeout=10)
    swapped = await http.post(
        table_path(connection, "q", "items") + "/refresh", params={"force": "true"}
    )
    assert swapped.json()["status"] == "completed", swapped.text
    assert await pointer_uri(system, connection, "q", "items") != old

    async def overdue() -> bool:
        # Queued for deletion, grace (0.5 s) long past, several upkeep rounds (0.2 s) since.
        rows = [d for d in await _catalog_rows(system, CacheDeletion) if d.uri == old]
        return bool(rows) and (utcnow() - rows[0].not_before).total_seconds() > 1.5

    await eventually(overdue, timeout=10)
    assert file_of(old).exists()  # the query's lease keeps it
    assert code_of(await slow, 504) == "E_QUERY_TIMEOUT"
    await eventually(lambda: _gone(file_of(old)), timeout=15)


async def _gone(path: Path) -> bool:
    return not await asyncio.to_thread(path.exists)


async def test_hostile_names_and_the_sandbox(
    http: httpx.AsyncClient, system: System, connection: str
) -> None:
    passwd = ident(connection, HOSTILE_SCHEMA, "../../etc/passwd")
    dotted = ident(connection, HOSTILE_SCHEMA, "x.y")
    response = await run(http, f"SELECT sum(p.x), max(d.x) FROM {passwd} p, {dotted} d")
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [[3, 10]]
    uri = await pointer_uri(system, connection, HOSTILE_SCHEMA, "../../etc/passwd")
    assert uri is not None
    assert file_of(uri).is_relative_to(system.stack.data_dir / "cache")

    before = {p for p in system.stack.data_dir.rglob("*") if p.is_file() and "logs" not in p.parts}
    evil = file_of(uri).parent / "evil.csv"
    cases = {
        f"COPY (SELECT * FROM {passwd}) TO '{evil}'": "E_QUERY_NOT_SELECT",
        "SELECT * FROM read_csv('/etc/passwd')": "E_QUERY_FUNCTION_FORBIDDEN",
        f"SELECT * FROM read_parquet('{file_of(uri)}')": "E_QUERY_FUNCTION_FORBIDDEN",
        f"ATTACH '{evil}.db' AS x": "E_QUERY_NOT_SELECT",
        "SET enable_external_access = true": "E_QUERY_NOT_SELECT",
        f"SELECT 1 FROM {passwd}; COPY (SELECT 1) TO '{evil}'": "E_QUERY_MULTIPLE_STATEMENTS",
    }
    for sql, code in cases.items():
        refused = await run(http, sql)
        assert code_of(refused, 400) == code, sql
        assert "root:" not in refused.text
    after = {p for p in system.stack.data_dir.rglob("*") if p.is_file() and "logs" not in p.parts}
    assert not [p for p in after - before if "evil" in p.name]
    assert not evil.exists()
    # Nothing of a query's text reaches the log: only its literal-free shape.
    await run(http, f"SELECT count(*) FROM {passwd} WHERE 'lit-Q7x' <> ''")
    assert "lit-Q7x" not in system.log_text()
