"""POST /query in-process: a real catalog (SQLite and PostgreSQL), real parquet versions in the
gateway's cache store, real DuckDB. Lazy fetches that complete, and refreshes racing queries,
need the refresher: they are in tests/e2e/test_query.py."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from structlog.testing import capture_logs

from freshet.cachestore import CacheStore, new_version, write_version
from freshet.catalog import Database, DatasetSpec, UnitOfWork
from freshet.catalog.caches import TableRef
from freshet.catalog.clock import utcnow
from freshet.catalog.models import CacheReader
from freshet.devstack.testing import S3_TEST_BUCKET, DatabaseFactory, eventually
from freshet.gateway.app import create_app
from freshet.gateway.errors import ApiError
from freshet.gateway.query.engine import CacheFile, QueryEngine
from freshet.gateway.settings import GatewaySettings
from freshet.kit.tokens import new_token, token_entry

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]
ARROW = "application/vnd.apache.arrow.stream"
# Burns CPU until interrupted.
ENDLESS = "SELECT sum(a.range * b.range) FROM range(10000000000) a, range(10) b"

Catalogue = Callable[..., Awaitable[dict[tuple[str, str], uuid.UUID]]]
PutVersion = Callable[..., Awaitable[str]]


async def query(
    client: httpx.AsyncClient,
    auth: Auth,
    sql: str,
    accept: str | None = None,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    headers = {**auth("viewer"), **(headers or {})}
    if accept is not None:
        headers["Accept"] = accept
    return await client.post("/query", json={"sql": sql, **body}, headers=headers)


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


@pytest.fixture
def store(gateway_app: FastAPI) -> CacheStore:
    engine: QueryEngine = gateway_app.state.query_engine
    return engine.store


@pytest.fixture
def catalogue(catalog: Database, create_endpoint: CreateEndpoint) -> Catalogue:
    """An endpoint named `name` whose catalog holds `tables` ((schema, table) pairs, each
    with fingerprint "fp"); returns dataset ids by (schema, table)."""

    async def make(name: str, *tables: tuple[str, str]) -> dict[tuple[str, str], uuid.UUID]:
        endpoint = await create_endpoint(name)
        async with UnitOfWork(catalog) as uow:
            await uow.datasets.sync(
                endpoint_id=uuid.UUID(endpoint["id"]),
                endpoint_kind="postgres",
                run_id=uuid.uuid4(),
                specs=[
                    DatasetSpec(
                        schema_name=schema,
                        name=table,
                        kind="table",
                        columns=[],
                        primary_key=[],
                        foreign_keys=[],
                        fingerprint="fp",
                    )
                    for schema, table in tables
                ],
            )
            datasets = await uow.datasets.for_endpoint(uuid.UUID(endpoint["id"]))
            await uow.commit()
        return {(d.schema_name, d.name): d.id for d in datasets}

    return make


async def point_at(
    db: Database,
    store: CacheStore,
    dataset_id: uuid.UUID,
    data: pa.Table,
    source_fingerprint: str = "fp",
) -> str:
    """Write `data` as a new cache version of a table and move its pointer there (what the
    refresher does); returns the version's URI."""
    async with UnitOfWork(db) as uow:
        dataset = await uow.datasets.get(dataset_id)
        assert dataset is not None
        version = new_version()
        path = store.version_path(dataset.endpoint_id, dataset.schema_name, dataset.name, version)

        async def batches() -> AsyncIterator[pa.RecordBatch]:
            for batch in data.to_batches() or [pa.RecordBatch.from_pylist([], data.schema)]:
                yield batch

        written = await write_version(store, path, batches())
        await uow.caches.move_pointer(
            dataset,
            version=version,
            uri=store.uri(path),
            rows=written.rows,
            size=written.size,
            schema_fingerprint=written.schema_fingerprint,
            source_fingerprint=source_fingerprint,
            refresh_id=None,
            now=utcnow(),
            grace=timedelta(0),
        )
        await uow.commit()
    return store.uri(path)


@pytest.fixture
def put_version(catalog: Database, store: CacheStore) -> PutVersion:
    async def put(dataset_id: uuid.UUID, data: pa.Table, *, source_fingerprint: str = "fp") -> str:
        return await point_at(catalog, store, dataset_id, data, source_fingerprint)

    return put


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


ORDERS = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int32()),
        "label": ["a", None, "c'"],
        "price": pa.array([Decimal("1.50"), Decimal("2.25"), None], pa.decimal128(12, 2)),
        "at": pa.array([0, 1_000_000, None], pa.timestamp("us", tz="UTC")),
        "paid": [True, False, None],
        "tags": [["x"], [], None],
        "blob": pa.array([b"\x00\x01", None, b"z"], pa.binary()),
    }
)


async def test_json_arrow_and_csv_results(
    client: httpx.AsyncClient, auth: Auth, catalogue: Catalogue, put_version: PutVersion
) -> None:
    ids = await catalogue("shop", ("sales", "orders"))
    await put_version(ids[("sales", "orders")], ORDERS)
    sql = 'SELECT * FROM "shop"."sales"."orders" ORDER BY id'

    as_json = await query(client, auth, sql)
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["content-type"] == "application/json"
    body = as_json.json()
    assert [c["name"] for c in body["columns"]] == ORDERS.column_names
    assert [c["type"] for c in body["columns"]][:5] == [
        "INTEGER",
        "VARCHAR",
        "DECIMAL(12,2)",
        "TIMESTAMP WITH TIME ZONE",
        "BOOLEAN",
    ]
    assert body["rows"] == [
        [1, "a", "1.50", "1970-01-01T00:00:00+00:00", True, ["x"], "AAE="],
        [2, None, "2.25", "1970-01-01T00:00:01+00:00", False, [], None],
        [3, "c'", None, None, None, None, "eg=="],
    ]
    assert body["row_count"] == 3
    assert body["truncated"] is False
    assert body["limit"] == 1000
    (table,) = body["tables"]
    assert table["name"] == '"shop"."sales"."orders"'
    assert table["rows"] == 3
    assert table["fetched"] is False
    assert set(body["timings"]) >= {"resolve", "setup", "execute", "total"}
    uuid.UUID(body["query_id"])

    as_arrow = await query(client, auth, sql, accept=ARROW)
    assert as_arrow.status_code == 200, as_arrow.text
    assert as_arrow.headers["content-type"] == ARROW
    assert as_arrow.headers["x-freshet-row-count"] == "3"
    assert as_arrow.headers["x-freshet-truncated"] == "false"
    received = pa.ipc.open_stream(as_arrow.content).read_all()
    assert received.column("id").to_pylist() == [1, 2, 3]
    assert received.column("price").to_pylist() == ORDERS.column("price").to_pylist()
    assert received.column("blob").to_pylist() == ORDERS.column("blob").to_pylist()
    assert received.schema.metadata[b"freshet.truncated"] == b"false"

    as_csv = await query(client, auth, sql, accept="text/csv")
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    lines = as_csv.text.splitlines()
    assert lines[0] == '"id","label","price","at","paid","tags","blob"'
    assert lines[1].startswith('1,"a",1.50,')
    assert lines[3].startswith('3,"c\'",,')

    # q-values pick the format; JSON wins ties; none acceptable is 406 before any work.
    chosen = await query(client, auth, sql, accept="text/csv;q=0.5, application/json;q=0.9")
    assert chosen.headers["content-type"] == "application/json"
    wildcard = await query(client, auth, sql, accept="text/*")
    assert wildcard.headers["content-type"].startswith("text/csv")
    error_of(await query(client, auth, sql, accept="application/xml"), 406, "E_NOT_ACCEPTABLE")
    error_of(
        await query(client, auth, sql, accept="application/json;q=0, */*;q=0"),
        406,
        "E_NOT_ACCEPTABLE",
    )


async def test_row_limit_and_timeout(
    client: httpx.AsyncClient,
    auth: Auth,
    catalogue: Catalogue,
    put_version: PutVersion,
    gateway_app: FastAPI,
) -> None:
    ids = await catalogue("big", ("public", "numbers"))
    await put_version(ids[("public", "numbers")], pa.table({"n": list(range(2500))}))
    sql = 'SELECT n FROM "big"."public"."numbers" ORDER BY n DESC'

    default = (await query(client, auth, sql)).json()
    assert default["row_count"] == 1000
    assert default["truncated"] is True
    assert default["rows"][0] == [2499]
    assert default["rows"][-1] == [1500]
    small = await query(client, auth, sql, accept="text/csv", limit=10)
    assert small.headers["x-freshet-truncated"] == "true"
    assert small.headers["x-freshet-row-limit"] == "10"
    assert len(small.text.splitlines()) == 11
    whole = (await query(client, auth, sql, limit=2500)).json()
    assert (whole["row_count"], whole["truncated"]) == (2500, False)
    error_of(await query(client, auth, sql, limit=100_001), 422, "E_VALIDATION")
    error_of(await query(client, auth, sql, limit=0), 422, "E_VALIDATION")

    stopped = await query(client, auth, ENDLESS, timeout_s=0.3)
    error = error_of(stopped, 504, "E_QUERY_TIMEOUT")
    assert error["details"] == {"timeout_s": 0.3}
    error_of(await query(client, auth, sql, timeout_s=31), 422, "E_VALIDATION")
    # The gateway still answers queries after one was interrupted.
    assert (await query(client, auth, "SELECT 42 AS answer")).json()["rows"] == [[42]]


SANDBOX_CASES = [
    ("SELECT 1; SELECT 2", "E_QUERY_MULTIPLE_STATEMENTS"),
    ("COPY (SELECT 1) TO '{evil}'", "E_QUERY_NOT_SELECT"),
    ('COPY "shop"."sales"."orders" TO \'{evil}\'', "E_QUERY_NOT_SELECT"),
    ("EXPORT DATABASE '{evil_dir}'", "E_QUERY_NOT_SELECT"),
    ("ATTACH '{evil_db}' AS x", "E_QUERY_NOT_SELECT"),
    ("INSTALL httpfs", "E_QUERY_NOT_SELECT"),
    ("LOAD parquet", "E_QUERY_NOT_SELECT"),
    ("SET threads = 1", "E_QUERY_NOT_SELECT"),
    ("RESET lock_configuration", "E_QUERY_NOT_SELECT"),
    ("PRAGMA version", "E_QUERY_NOT_SELECT"),
    ("CALL duckdb_settings()", "E_QUERY_NOT_SELECT"),
    ("CREATE TABLE t AS SELECT 1", "E_QUERY_NOT_SELECT"),
    ("CREATE VIEW v AS SELECT * FROM read_csv('/etc/passwd')", "E_QUERY_NOT_SELECT"),
    ('INSERT INTO "shop"."sales"."orders" VALUES (1)', "E_QUERY_NOT_SELECT"),
    ('DROP VIEW "shop"."sales"."orders"', "E_QUERY_NOT_SELECT"),
    ('DESCRIBE "shop"."sales"."orders"', "E_QUERY_NOT_SELECT"),
    ("EXPLAIN SELECT 1", "E_QUERY_NOT_SELECT"),
    ("USE shop", "E_QUERY_NOT_SELECT"),
    ("SELECT * FROM read_csv('/etc/passwd')", "E_QUERY_FUNCTION_FORBIDDEN"),
    ("SELECT * FROM read_text('/etc/hostname')", "E_QUERY_FUNCTION_FORBIDDEN"),
    ("SELECT * FROM read_blob('/etc/hostname')", "E_QUERY_FUNCTION_FORBIDDEN"),
    ("SELECT * FROM glob('/*')", "E_QUERY_FUNCTION_FORBIDDEN"),
    ("SELECT * FROM read_parquet('{other}')", "E_QUERY_FUNCTION_FORBIDDEN"),
    ("SELECT * FROM parquet_metadata('{other}')", "E_QUERY_FUNCTION_FORBIDDEN"),
    ("SELECT * FROM query('SELECT 1')", "E_QUERY_FUNCTION_FORBIDDEN"),
    ("SELECT * FROM duckdb_settings()", "E_QUERY_FUNCTION_FORBIDDEN"),
    ("SELECT getenv('HOME')", "E_QUERY_FUNCTION_FORBIDDEN"),
    ("SELECT current_setting('allowed_paths')", "E_QUERY_FUNCTION_FORBIDDEN"),
    ("SELECT 1 FROM (SELECT current_setting('threads'))", "E_QUERY_FUNCTION_FORBIDDEN"),
    ("SELECT * FROM '/etc/passwd'", "E_QUERY_TABLE_NOT_QUALIFIED"),
    ("SELECT * FROM '{other}'", "E_QUERY_TABLE_NOT_QUALIFIED"),
    ("SELECT * FROM duckdb_tables", "E_QUERY_TABLE_NOT_QUALIFIED"),
    ("SELECT * FROM information_schema.tables", "E_QUERY_TABLE_NOT_QUALIFIED"),
    ('SELECT * FROM "sales"."orders"', "E_QUERY_TABLE_NOT_QUALIFIED"),
    (
        # A CTE name used outside its scope would fall through to DuckDB's catalog.
        "WITH a AS (SELECT * FROM duckdb_views), duckdb_views AS (SELECT 1) SELECT * FROM a",
        "E_QUERY_TABLE_NOT_QUALIFIED",
    ),
    ("SELECT * FROM system.main.duckdb_views", "E_TABLE_NOT_FOUND"),
    ("SELECT $1", "E_QUERY_INVALID"),
    ("SELEC 1", "E_QUERY_SYNTAX"),
    ('SELECT nosuch FROM "shop"."sales"."orders"', "E_QUERY_INVALID"),
    ("SELECT 'x'::INTEGER", "E_QUERY_FAILED"),
]


async def test_the_sandbox_refuses_every_way_out_and_nothing_is_written_or_read(
    client: httpx.AsyncClient,
    auth: Auth,
    catalogue: Catalogue,
    put_version: PutVersion,
    store: CacheStore,
    tmp_path: Path,
) -> None:
    ids = await catalogue("shop", ("sales", "orders"), ("sales", "secret"))
    await put_version(ids[("sales", "orders")], ORDERS)
    other_uri = await put_version(ids[("sales", "secret")], pa.table({"code": ["TOP-SECRET-ROW"]}))
    other = store.path_of(other_uri)
    targets = {
        "evil": str(Path(other).parent / "evil.csv"),
        "evil_dir": str(tmp_path / "exported"),
        "evil_db": str(tmp_path / "attached.duckdb"),
        "other": other,
    }
    before = files_under(tmp_path)
    for template, code in SANDBOX_CASES:
        sql = template.format(**targets)
        response = await query(client, auth, sql)
        status = {"E_TABLE_NOT_FOUND": 404}.get(code, 400)
        error = error_of(response, status, code)
        text = response.text
        assert "root:" not in text, sql  # /etc/passwd was not read
        assert "TOP-SECRET-ROW" not in text, sql  # nor another table's file
        if str(store.root) not in sql:  # the caller's own text may come back, nothing more
            assert str(store.root) not in text, (sql, error)
    assert files_under(tmp_path) == before
    # A CTE named like a DuckDB catalog view is the CTE, not the view.
    shadow = await query(
        client, auth, "WITH duckdb_tables AS (SELECT 42 AS x) SELECT * FROM DuckDB_Tables"
    )
    assert shadow.json()["rows"] == [[42]]


async def test_the_engine_confines_a_query_even_past_the_gate(
    gateway_app: FastAPI,
    catalogue: Catalogue,
    put_version: PutVersion,
    store: CacheStore,
    tmp_path: Path,
) -> None:
    """The second wall: statements the gate would refuse, given to the engine directly."""
    ids = await catalogue("shop", ("sales", "orders"), ("sales", "secret"))
    mine = await put_version(ids[("sales", "orders")], ORDERS)
    other = store.path_of(await put_version(ids[("sales", "secret")], ORDERS))
    engine: QueryEngine = gateway_app.state.query_engine
    files = [CacheFile(TableRef("shop", "sales", "orders"), mine)]
    evil = Path(store.path_of(mine)).parent / "evil.csv"
    before = files_under(tmp_path)
    cases = [
        (f"COPY (SELECT 1) TO '{evil}'", "E_QUERY_SANDBOX"),
        (f'COPY "shop"."sales"."orders" TO \'{evil}\'', "E_QUERY_SANDBOX"),
        ("SELECT * FROM read_csv('/etc/passwd')", "E_QUERY_SANDBOX"),
        (f"SELECT * FROM read_parquet('{other}')", "E_QUERY_SANDBOX"),
        (f"SELECT * FROM glob('{store.root}/**')", "E_QUERY_SANDBOX"),
        (f"ATTACH '{tmp_path / 'x.duckdb'}' AS x", "E_QUERY_SANDBOX"),
        (f"EXPORT DATABASE '{tmp_path / 'exported'}'", "E_QUERY_SANDBOX"),
        ("INSTALL httpfs", "E_QUERY_SANDBOX"),
        ("SET enable_external_access = true", "E_QUERY_FAILED"),
        ("SET allowed_directories = ['/']", "E_QUERY_FAILED"),
    ]
    for sql, code in cases:
        with pytest.raises(ApiError) as caught:
            await engine.run(sql, files, limit=10, timeout_s=10, stop=threading.Event())
        assert caught.value.code == code, (sql, caught.value.message)
        assert str(store.root) not in caught.value.message
    assert files_under(tmp_path) == before
    # Its own file it does read, by name.
    result = await engine.run(
        'SELECT count(*) AS n FROM "shop"."sales"."orders"',
        files,
        limit=10,
        timeout_s=10,
        stop=threading.Event(),
    )
    assert result.table.to_pylist() == [{"n": 3}]


async def test_unknown_uncached_and_stale_tables(
    client: httpx.AsyncClient,
    auth: Auth,
    catalogue: Catalogue,
    put_version: PutVersion,
    gateway_app: FastAPI,
    outbox: Outbox,
) -> None:
    ids = await catalogue("pg", ("public", "fresh"), ("public", "never"), ("public", "old"))
    await put_version(ids[("public", "fresh")], pa.table({"x": [1]}))
    await put_version(ids[("public", "old")], pa.table({"x": [1]}), source_fingerprint="before")

    unknown = await query(client, auth, 'SELECT * FROM "pg"."public"."nope"')
    assert error_of(unknown, 404, "E_TABLE_NOT_FOUND")["details"] == {
        "tables": ['"pg"."public"."nope"']
    }
    # Names match exactly as written.
    error_of(await query(client, auth, "SELECT * FROM PG.public.fresh"), 404, "E_TABLE_NOT_FOUND")
    assert (await query(client, auth, "SELECT * FROM pg.public.fresh")).status_code == 200

    off = await client.patch(
        "/connections/pg/cache", json={"lazy_fetch": False}, headers=auth("admin")
    )
    assert off.status_code == 200, off.text
    never = await query(client, auth, 'SELECT * FROM "pg"."public"."never"')
    assert error_of(never, 409, "E_QUERY_NOT_CACHED")["details"] == {
        "tables": ['"pg"."public"."never"']
    }
    old = await query(client, auth, 'SELECT * FROM "pg"."public"."old"')
    error_of(old, 409, "E_QUERY_SCHEMA_STALE")

    # Lazy fetch on (the table's own setting beats the connection's): the query asks for a
    # refresh of each table and waits; no refresher runs here, so the wait runs out.
    for table in ("never", "old"):
        on = await client.put(
            f"/connections/pg/tables/public/{table}/cache",
            json={"lazy_fetch": True},
            headers=auth("operator"),
        )
        assert on.status_code == 200, on.text
    gateway_app.state.settings.query_fetch_timeout_s = 0.3
    first = await query(client, auth, 'SELECT * FROM "pg"."public"."never", "pg"."public"."old"')
    started = error_of(first, 504, "E_QUERY_FETCH_TIMEOUT")["details"]["refresh_ids"]
    assert len(set(started)) == 2
    requested = [
        row["value"]
        for row in await outbox()
        if row["event_type"] == "freshet.refresh.requested.v1"
    ]
    assert sorted(r["tables"][0] for r in requested) == ["public.never", "public.old"]
    # The stale one is forced (its version may be recent), the missing one need not be.
    assert {r["tables"][0]: r["force"] for r in requested} == {
        "public.never": False,
        "public.old": True,
    }
    # A second query joins the refreshes under way instead of starting others.
    second = await query(client, auth, 'SELECT * FROM "pg"."public"."old", "pg"."public"."never"')
    joined = error_of(second, 504, "E_QUERY_FETCH_TIMEOUT")["details"]["refresh_ids"]
    assert set(joined) == set(started)
    events = [r for r in await outbox() if r["event_type"] == "freshet.refresh.requested.v1"]
    assert len(events) == 2  # nothing new was asked for


async def test_hostile_names_resolve_exactly_and_stay_names(
    client: httpx.AsyncClient, auth: Auth, catalogue: Catalogue, put_version: PutVersion
) -> None:
    # Endpoint names are letters, digits, "_", "-" and "."; schemas and tables anything.
    name = "we.ird-ep_1"
    tables = [
        ("s.x", "t"),
        ("s", "x.t"),
        ("s", "x"),
        ("it's", "../../etc/passwd"),
        ('"; DROP TABLE x; --', "ü"),
    ]
    ids = await catalogue(name, *tables)
    for n, key in enumerate(tables):
        await put_version(ids[key], pa.table({"marker": [n]}))
    ep = '"we.ird-ep_1"'
    for n, (schema, table) in enumerate(tables):
        quoted = ".".join('"' + p.replace('"', '""') + '"' for p in (schema, table))
        response = await query(client, auth, f"SELECT marker FROM {ep}.{quoted}")
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == [[n]], (schema, table)
    both = await query(
        client,
        auth,
        f'SELECT a.marker, b.marker FROM {ep}."s.x"."t" a, {ep}."s"."x.t" b',
    )
    assert both.json()["rows"] == [[0, 1]]

    # DuckDB's own catalog names cannot be endpoint names in a query; "memory" can.
    sys_ids = await catalogue("system", ("main", "t"))
    await put_version(sys_ids[("main", "t")], pa.table({"x": [1]}))
    reserved = await query(client, auth, 'SELECT * FROM "system"."main"."t"')
    error_of(reserved, 422, "E_QUERY_NAME_UNSUPPORTED")
    mem_ids = await catalogue("memory", ("main", "t"))
    await put_version(mem_ids[("main", "t")], pa.table({"x": [7]}))
    assert (await query(client, auth, "SELECT x FROM memory.main.t")).json()["rows"] == [[7]]


async def test_a_reader_lease_holds_the_files_while_the_query_runs(
    client: httpx.AsyncClient,
    auth: Auth,
    catalogue: Catalogue,
    put_version: PutVersion,
    catalog: Database,
    gateway_app: FastAPI,
) -> None:
    ids = await catalogue("leased", ("public", "t"))
    uri = await put_version(ids[("public", "t")], pa.table({"x": [1, 2]}))
    # Renewed every 0.8 s: a renewal may come 1.6 s late (a loaded two-core machine) and
    # the lease still holds; at 1.2 s it once lapsed in a full run.
    gateway_app.state.settings.query_lease_ttl_s = 2.4

    async def leases() -> list[CacheReader]:
        async with UnitOfWork(catalog, read_only=True) as uow:
            rows = await uow.session.execute(select(CacheReader))
            return list(rows.scalars())

    slow = asyncio.create_task(
        query(
            client,
            auth,
            f'SELECT count(*) FROM "leased"."public"."t" WHERE x < ({ENDLESS})',
            timeout_s=4.5,
        )
    )
    held = await eventually(leases, timeout=10)
    assert [r.uri for r in held] == [uri]
    assert held[0].holder.startswith("query:")

    async def renewed() -> bool:
        now = await leases()
        return bool(now) and now[0].expires_at > held[0].expires_at

    await eventually(renewed, timeout=5)
    error_of(await slow, 504, "E_QUERY_TIMEOUT")
    assert await leases() == []


async def test_caches_on_s3_are_queried_through_pyarrow(
    s3_server: str, new_database: DatabaseFactory, tmp_path: Path
) -> None:
    root, endpoint_url = f"s3://{S3_TEST_BUCKET}/freshet", s3_server
    token = new_token()
    app = create_app(
        GatewaySettings(
            database_url=await new_database("sqlite"),
            api_tokens=SecretStr(token_entry(token, "admin", "ada")),
            data_dir=tmp_path,
            cache_root=root,
            cache_s3_endpoint_url=endpoint_url,
            cache_s3_access_key_id=SecretStr("test"),
            cache_s3_secret_access_key=SecretStr("test-secret-key-9f2"),  # moto takes any
        )
    )
    db: Database = app.state.runtime.db
    headers = {"Authorization": f"Bearer {token}"}
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            created = await http.post(
                "/endpoints",
                json={"name": "lake", "kind": "sqlite", "config": {"path": "/nowhere.db"}},
                headers=headers,
            )
            assert created.status_code == 201, created.text
            endpoint_id = uuid.UUID(created.json()["id"])
            async with UnitOfWork(db) as uow:
                await uow.datasets.sync(
                    endpoint_id=endpoint_id,
                    endpoint_kind="sqlite",
                    run_id=uuid.uuid4(),
                    specs=[DatasetSpec("main", "events", "table", [], [], [], "fp")],
                )
                await uow.commit()
            store: CacheStore = app.state.query_engine.store
            assert store.scheme == "s3"
            async with UnitOfWork(db, read_only=True) as uow:
                (dataset,) = await uow.datasets.for_endpoint(endpoint_id)
            await point_at(db, store, dataset.id, pa.table({"n": list(range(50))}))
            response = await http.post(
                "/query",
                json={"sql": "SELECT count(*), sum(n) FROM lake.main.events WHERE n >= 10"},
                headers=headers,
            )
            assert response.status_code == 200, response.text
            assert response.json()["rows"] == [[40, 1180]]
            # A local path is nothing to an S3-backed query.
            refused = await http.post(
                "/query",
                json={"sql": "SELECT * FROM read_csv('/etc/passwd')"},
                headers=headers,
            )
            assert refused.json()["error"]["code"] == "E_QUERY_FUNCTION_FORBIDDEN"
            assert "test-secret-key-9f2" not in response.text + refused.text
    finally:
        app.state.query_engine.close()
        await db.dispose()


async def test_metrics_and_the_log_line_carry_no_literals(
    client: httpx.AsyncClient, auth: Auth, catalogue: Catalogue, put_version: PutVersion
) -> None:
    ids = await catalogue("logged", ("public", "people"))
    await put_version(ids[("public", "people")], pa.table({"email": ["a@example.com"]}))
    with capture_logs() as logs:
        ok = await query(
            client,
            auth,
            "SELECT count(*) FROM logged.public.people WHERE email = 'a@example.com'",
            headers={"X-Correlation-ID": "corr-query-1"},
        )
        refused = await query(client, auth, "SELECT * FROM read_csv('/etc/passwd')")
    assert ok.status_code == 200, ok.text
    assert refused.status_code == 400
    lines = [e for e in logs if e["event"] == "query"]
    assert len(lines) == 2
    done = lines[0]
    assert done["outcome"] == "succeeded"
    assert done["tables"] == ['"logged"."public"."people"']
    assert done["rows"] == 1
    assert done["requested_by"] == "vera-viewer"
    assert "a@example.com" not in str(logs)
    assert "email = '?'" in done["sql_shape"]
    assert lines[1]["code"] == "E_QUERY_FUNCTION_FORBIDDEN"
    assert "/etc/passwd" not in str(lines[1])

    metrics = (await client.get("/metrics")).text
    assert 'freshet_queries_total{outcome="succeeded"}' in metrics
    assert 'freshet_queries_total{outcome="refused"}' in metrics
    assert "freshet_query_duration_seconds_bucket" in metrics
    assert "freshet_query_resolve_seconds_count" in metrics


async def test_a_lost_cache_file_is_a_clear_error_without_paths(
    client: httpx.AsyncClient,
    auth: Auth,
    catalogue: Catalogue,
    put_version: PutVersion,
    store: CacheStore,
) -> None:
    ids = await catalogue("gone", ("public", "t"))
    uri = await put_version(ids[("public", "t")], pa.table({"x": [1]}))
    # Only an operator's mistake can do this (the lease keeps Freshet from it).
    await asyncio.to_thread(Path(store.path_of(uri)).unlink)
    response = await query(client, auth, 'SELECT * FROM "gone"."public"."t"')
    error_of(response, 503, "E_QUERY_CACHE_UNAVAILABLE")
    assert str(store.root) not in response.text


# --- the web UI's query console -----------------------------------------------------------------


async def test_the_query_console_runs_a_query_and_shows_rows_tables_and_refusals(
    open_ui: Callable[..., Awaitable[Any]], catalogue: Catalogue, put_version: PutVersion
) -> None:
    ids = await catalogue("shop", ("public", "orders"))
    await put_version(ids[("public", "orders")], ORDERS)
    viewer = await open_ui("viewer")

    page = await viewer.get("/ui/query")
    ran = await viewer.post(
        "/ui/query",
        {"sql": 'SELECT id, label FROM "shop"."public"."orders" ORDER BY id', "limit": "2"},
    )
    refused = await viewer.post("/ui/query", {"sql": "COPY (SELECT 1) TO '/tmp/x.csv'"})
    no_token = await viewer.post("/ui/query", {"sql": "SELECT 1"}, csrf=False)

    assert page.status_code == 200
    assert '"shop"."public"."orders"' in page.text, "cached tables are listed"
    assert 'href="/ui/query"' in page.text, "the navigation offers the console"
    assert ran.status_code == 200, ran.text
    assert "2 rows" in ran.text
    assert "truncated at 2" in ran.text
    assert "<td>1</td><td>a</td>" in ran.text.replace("\n", "")
    assert "Tables read" in ran.text
    assert refused.status_code == 400
    assert "E_QUERY_NOT_SELECT" in refused.text
    assert "COPY (SELECT 1)" in refused.text, "the SQL is kept for another try"
    assert no_token.status_code == 403


async def test_the_query_console_asks_a_signed_out_visitor_to_sign_in(
    open_ui: Callable[..., Awaitable[Any]],
) -> None:
    visitor = await open_ui()

    response = await visitor.get("/ui/query", follow_redirects=False)

    assert response.status_code in (303, 307)
    assert response.headers["location"].startswith("/ui/sign-in")
