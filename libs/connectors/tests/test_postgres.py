"""The PostgreSQL connector against a real server, in a schema created for this test session."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from freshet.connectors import Connector, ConnectorError, TableInfo, connector_for

pytestmark = pytest.mark.postgres

# Passed as the password on every connection: the local server trusts 127.0.0.1 and ignores
# it, which lets every test check that it never surfaces in an error.
SECRET = f"Sup3r-secret-{uuid.uuid4().hex}"
WEIRD = 'we"ird'
WEIRD_QUOTED = '"we""ird"'
ODD_COLUMN_QUOTED = '"odd ""col"""'


@dataclass(frozen=True)
class Server:
    dsn: str
    config: dict[str, object]
    secrets: dict[str, str]
    schema: str

    def connector(self, timeout_s: float = 10.0, **changes: object) -> Connector:
        config = {**self.config, "schemas": [self.schema], **changes}
        return connector_for("postgres", config, self.secrets, timeout_s=timeout_s)


def _target(dsn: str) -> tuple[dict[str, object], dict[str, str]]:
    url = urllib.parse.urlsplit(dsn)
    config: dict[str, object] = {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or 5432,
        "database": url.path.lstrip("/") or "postgres",
        "user": urllib.parse.unquote(url.username or "postgres"),
    }
    password = urllib.parse.unquote(url.password) if url.password else SECRET
    return config, {"password": password}


@pytest.fixture(scope="session")
async def server(postgres_server_url: str) -> AsyncIterator[Server]:
    # No skip when the server is missing: these machines run one, and a silent skip would
    # hide a broken setup. The shared fixture says how the server is found.
    dsn = postgres_server_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn, timeout=5)
    schema = f"freshet_test_{uuid.uuid4().hex[:12]}"
    s = f'"{schema}"'
    try:
        await conn.execute(f"""
            CREATE SCHEMA {s};
            CREATE TABLE {s}.warehouses (
                region text NOT NULL,
                code integer NOT NULL,
                name varchar(40),
                opened_on date,
                PRIMARY KEY (region, code)
            );
            CREATE TABLE {s}.shipments (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                region text NOT NULL,
                warehouse_code integer NOT NULL,
                weight numeric(10, 2),
                legacy integer,
                shipped_at timestamptz,
                payload bytea,
                tags text[],
                meta jsonb,
                ref uuid,
                transit interval,
                FOREIGN KEY (region, warehouse_code) REFERENCES {s}.warehouses (region, code)
            );
            ALTER TABLE {s}.shipments DROP COLUMN legacy;
            CREATE VIEW {s}.heavy_shipments AS
                SELECT id, region, weight FROM {s}.shipments WHERE weight > 10;
            CREATE MATERIALIZED VIEW {s}.region_counts AS
                SELECT region, count(*) AS n FROM {s}.shipments GROUP BY region;
            CREATE VIEW {s}.slow AS SELECT 1 AS n FROM pg_sleep(5);
            CREATE TABLE {s}.{WEIRD_QUOTED} ({ODD_COLUMN_QUOTED} text);
            CREATE TABLE {s}.audit (n integer);
            CREATE FUNCTION {s}.write_audit() RETURNS integer LANGUAGE sql VOLATILE
                AS $$ INSERT INTO {s}.audit VALUES (1) RETURNING n $$;
            CREATE VIEW {s}.sneaky AS SELECT {s}.write_audit() AS n;
            INSERT INTO {s}.warehouses VALUES
                ('eu', 1, 'Rotterdam', '2020-01-01'),
                ('eu', 2, 'Hamburg', NULL),
                ('us', 1, 'Newark', '2021-06-30');
            INSERT INTO {s}.shipments
                (region, warehouse_code, weight, shipped_at, payload, tags, meta, ref, transit)
            SELECT CASE WHEN i % 3 = 0 THEN 'us' ELSE 'eu' END,
                   CASE WHEN i % 3 = 1 THEN 2 ELSE 1 END,
                   i * 1.25,
                   timestamptz '2026-01-01 00:00:00+00' + i * interval '1 hour',
                   '\\x00010203'::bytea,
                   ARRAY['a', 'b'],
                   jsonb_build_object('i', i),
                   '11111111-1111-4111-8111-111111111111',
                   interval '1 day 2 hours'
            FROM generate_series(1, 40) AS i;
            INSERT INTO {s}.{WEIRD_QUOTED} VALUES ('q');
            REFRESH MATERIALIZED VIEW {s}.region_counts;
            ANALYZE {s}.warehouses;
            ANALYZE {s}.shipments;
        """)
        config, secrets = _target(dsn)
        yield Server(dsn=dsn, config=config, secrets=secrets, schema=schema)
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
        await conn.close()


def _by_name(tables: list[TableInfo]) -> dict[str, TableInfo]:
    return {t.name: t for t in tables}


def _assert_secret_free(exc: ConnectorError, server: Server) -> None:
    for secret in {SECRET, *server.secrets.values()}:
        for text in (str(exc), repr(exc), exc.message):
            assert secret not in text
    assert exc.__context__ is None
    assert exc.__cause__ is None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_test_succeeds(server: Server) -> None:
    await server.connector().test()


async def test_introspect_restricted_to_schema(server: Server) -> None:
    tables = await server.connector().introspect()
    assert [t.name for t in tables] == [
        "audit",
        "heavy_shipments",
        "region_counts",
        "shipments",
        "slow",
        "sneaky",
        "warehouses",
        WEIRD,
    ]
    assert {t.schema_name for t in tables} == {server.schema}
    kinds = {t.name: t.kind for t in tables}
    assert kinds["heavy_shipments"] == "view"
    assert kinds["region_counts"] == "view"
    assert kinds["shipments"] == "table"


async def test_introspect_columns_keys_and_estimates(server: Server) -> None:
    tables = _by_name(await server.connector().introspect())
    shipments = tables["shipments"]
    columns = {c.name: c for c in shipments.columns}
    # `legacy` was dropped: ordinals stay gap-free in SELECT * order.
    assert [c.name for c in shipments.columns] == [
        "id",
        "region",
        "warehouse_code",
        "weight",
        "shipped_at",
        "payload",
        "tags",
        "meta",
        "ref",
        "transit",
    ]
    assert [c.ordinal for c in shipments.columns] == list(range(1, 11))
    assert columns["weight"].data_type == "numeric(10,2)"
    assert columns["shipped_at"].data_type == "timestamp with time zone"
    assert columns["tags"].data_type == "text[]"
    assert not columns["region"].nullable
    assert columns["weight"].nullable
    assert columns["id"].is_primary_key
    assert not columns["region"].is_primary_key
    assert shipments.primary_key == ["id"]
    assert [fk.model_dump() for fk in shipments.foreign_keys] == [
        {
            "columns": ["region", "warehouse_code"],
            "referred_schema": server.schema,
            "referred_table": "warehouses",
            "referred_columns": ["region", "code"],
        }
    ]
    assert shipments.row_estimate == 40

    warehouses = tables["warehouses"]
    assert warehouses.primary_key == ["region", "code"]
    assert [c.is_primary_key for c in warehouses.columns] == [True, True, False, False]
    assert {c.name: c.data_type for c in warehouses.columns}["name"] == "character varying(40)"
    assert warehouses.row_estimate == 3

    view = tables["heavy_shipments"]
    assert [c.name for c in view.columns] == ["id", "region", "weight"]
    assert view.primary_key == []
    assert view.row_estimate is None
    assert [c.name for c in tables[WEIRD].columns] == ['odd "col"']


async def test_introspect_all_schemas_skips_system_schemas(server: Server) -> None:
    config = {k: v for k, v in server.config.items() if k != "schemas"}
    connector = connector_for("postgres", config, server.secrets, timeout_s=10)
    tables = await connector.introspect()
    schemas = {t.schema_name for t in tables}
    assert server.schema in schemas
    assert not {s for s in schemas if s.startswith("pg_") or s == "information_schema"}
    assert [(t.schema_name, t.name) for t in tables] == sorted(
        (t.schema_name, t.name) for t in tables
    )


async def test_sample_limit_and_json_safety(server: Server) -> None:
    sample = await server.connector().sample(server.schema, "shipments", 7)
    assert sample.columns[:3] == ["id", "region", "warehouse_code"]
    assert len(sample.rows) == 7
    json.dumps(sample.model_dump(), allow_nan=False)
    row = dict(zip(sample.columns, sample.rows[0], strict=True))
    assert row["weight"] == "1.25"
    assert row["shipped_at"] == "2026-01-01T01:00:00+00:00"
    assert row["payload"] == "<binary 4 bytes>"
    assert row["tags"] == ["a", "b"]
    assert json.loads(str(row["meta"])) == {"i": 1}
    assert row["ref"] == "11111111-1111-4111-8111-111111111111"
    assert row["transit"] == "PT93600S"


async def test_sample_views_weird_names_and_zero_limit(server: Server) -> None:
    connector = server.connector()
    materialised = await connector.sample(server.schema, "region_counts", 10)
    assert sorted(str(row[0]) for row in materialised.rows) == ["eu", "us"]
    weird = await connector.sample(server.schema, WEIRD, 10)
    assert weird.columns == ['odd "col"']
    assert weird.rows == [["q"]]
    empty = await connector.sample(server.schema, "warehouses", 0)
    assert empty.columns == ["region", "code", "name", "opened_on"]
    assert empty.rows == []


async def test_sample_missing_table_is_permanent(server: Server) -> None:
    for schema_name, table in [(server.schema, "nope"), ("no_such_schema", "shipments")]:
        with pytest.raises(ConnectorError) as info:
            await server.connector().sample(schema_name, table, 5)
        assert info.value.transient is False
        assert f"table not found: {schema_name}.{table}" in str(info.value)
        _assert_secret_free(info.value, server)


async def test_connection_is_read_only(server: Server) -> None:
    with pytest.raises(ConnectorError) as info:
        await server.connector().sample(server.schema, "sneaky", 1)
    assert info.value.transient is False
    assert "read-only" in str(info.value)
    conn = await asyncpg.connect(server.dsn)
    try:
        assert await conn.fetchval(f'SELECT count(*) FROM "{server.schema}".audit') == 0
    finally:
        await conn.close()


async def test_statement_timeout_is_transient(server: Server) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectorError) as info:
        await server.connector(timeout_s=0.5).sample(server.schema, "slow", 1)
    assert time.monotonic() - started < 4
    assert info.value.transient is True
    assert "statement timed out after 0.5s" in str(info.value)
    _assert_secret_free(info.value, server)


async def test_connection_refused_is_transient(server: Server) -> None:
    port = _free_port()
    with pytest.raises(ConnectorError) as info:
        await server.connector(host="127.0.0.1", port=port).test()
    assert info.value.transient is True
    assert f"127.0.0.1:{port}" in str(info.value)
    _assert_secret_free(info.value, server)


async def test_unknown_database_is_permanent(server: Server) -> None:
    database = f"freshet_missing_{uuid.uuid4().hex[:8]}"
    with pytest.raises(ConnectorError) as info:
        await server.connector(database=database).introspect()
    assert info.value.transient is False
    assert "database not found" in str(info.value)
    assert database in str(info.value)
    _assert_secret_free(info.value, server)


async def test_unknown_role_is_permanent(server: Server) -> None:
    with pytest.raises(ConnectorError) as info:
        await server.connector(user=f"nobody_{uuid.uuid4().hex[:8]}").test()
    assert info.value.transient is False
    assert "authentication failed" in str(info.value)
    _assert_secret_free(info.value, server)


async def test_secret_is_scrubbed_even_when_the_server_echoes_it(server: Server) -> None:
    # Contrived, but it is the only way to make the server repeat a secret back: use it as
    # the database name. The message still must not carry it.
    with pytest.raises(ConnectorError) as info:
        await server.connector(database=server.secrets["password"]).test()
    assert info.value.transient is False
    _assert_secret_free(info.value, server)
    assert "***" in str(info.value)


# --- streaming (the refresher's reader) ------------------------------------------------------


async def _collect(connector: Connector, schema: str, table: str, batch_rows: int) -> list[object]:
    return [batch async for batch in connector.stream(schema, table, batch_rows=batch_rows)]


async def test_stream_reads_every_row_in_bounded_batches(server: Server) -> None:
    batches = await _collect(server.connector(), server.schema, "shipments", 16)
    assert [b.num_rows for b in batches] == [16, 16, 8]  # type: ignore[attr-defined]
    names = batches[0].schema.names  # type: ignore[attr-defined]
    assert "weight" in names
    assert "legacy" not in names


async def test_stream_reads_hostile_names_and_views(server: Server) -> None:
    batches = await _collect(server.connector(), server.schema, WEIRD, 100)
    assert sum(b.num_rows for b in batches) == 1  # type: ignore[attr-defined]
    assert await _collect(server.connector(), server.schema, "heavy_shipments", 100)


async def test_stream_errors_are_clear_and_secret_free(server: Server) -> None:
    with pytest.raises(ConnectorError) as missing:
        await _collect(server.connector(), server.schema, "nope", 10)
    assert "table not found" in missing.value.message
    assert not missing.value.transient
    _assert_secret_free(missing.value, server)
    with pytest.raises(ConnectorError) as refused:
        await _collect(server.connector(port=_free_port()), server.schema, "shipments", 10)
    assert refused.value.transient
    assert "could not connect" in refused.value.message
    _assert_secret_free(refused.value, server)


async def test_an_abandoned_stream_stops_reading(server: Server) -> None:
    stream = server.connector().stream(server.schema, "shipments", batch_rows=1)
    first = await anext(stream)
    assert first.num_rows == 1
    await stream.aclose()  # type: ignore[attr-defined]
