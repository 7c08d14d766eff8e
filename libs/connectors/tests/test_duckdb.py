"""The DuckDB connector against a real database file built per test."""

from __future__ import annotations

import asyncio
import hashlib
import json
import pathlib
import sqlite3
import sys
import threading
import time
import uuid
from decimal import Decimal

import duckdb
import pytest

from freshet.connectors import Connector, ConnectorError, TableInfo, connector_for
from freshet.connectors.duckdb_session import WATCHDOG_THREAD_NAME

SECRET = f"Sup3r-secret-{uuid.uuid4().hex}"
BOOKS = 60
COVER = bytes(range(256)) * 4
WEIRD_SCHEMA = 'odd "schema"; --'
HOSTILE_NAMES = [
    'we"ird',
    "x; DROP TABLE authors; --",
    "it's ünïcødé 表",
    "with  spaces ",
    '"; SELECT 1; --',
]
SPAN = "2 days 03:04:05.5"
THE_UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")
ODD_COLUMN = 'odd "c'


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


SCHEMA_SQL = f"""
CREATE TABLE authors (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, born DATE);
CREATE TABLE editions (
    isbn VARCHAR NOT NULL,
    printing INTEGER NOT NULL,
    released DATE,
    PRIMARY KEY (isbn, printing)
);
CREATE TABLE books (
    id INTEGER PRIMARY KEY,
    author_id INTEGER NOT NULL REFERENCES authors (id),
    title VARCHAR NOT NULL,
    published DATE,
    price DECIMAL(10, 2),
    rating DOUBLE,
    cover BLOB,
    isbn VARCHAR,
    printing INTEGER,
    FOREIGN KEY (isbn, printing) REFERENCES editions (isbn, printing)
);
CREATE VIEW book_titles AS
    SELECT b.title, a.name AS author FROM books AS b JOIN authors AS a ON a.id = b.author_id;
CREATE TABLE oddities (
    big DECIMAL(38, 3),
    stamp TIMESTAMPTZ,
    stamps TIMESTAMPTZ[],
    naive TIMESTAMP,
    span INTERVAL,
    id UUID,
    huge HUGEINT,
    tags VARCHAR[],
    point STRUCT(x INTEGER, y VARCHAR),
    ratio DOUBLE,
    flag BOOLEAN
);
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id BIGINT PRIMARY KEY, book_id INTEGER, amount DECIMAL(12, 2));
CREATE TABLE sales.lines (
    order_id BIGINT REFERENCES sales.orders (id),
    line INTEGER,
    PRIMARY KEY (order_id, line)
);
CREATE SCHEMA {_q(WEIRD_SCHEMA)};
CREATE VIEW slow AS
    SELECT count(*) AS n FROM range(100000000) AS a, range(100000000) AS b;
CREATE TABLE gone (x INTEGER);
CREATE VIEW broken AS SELECT x FROM gone;
DROP TABLE gone;
"""


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "library.duckdb"
    conn = duckdb.connect(str(path))
    try:
        conn.execute(SCHEMA_SQL)
        conn.executemany(
            "INSERT INTO authors VALUES (?, ?, ?)",
            [(1, "Ada", "1815-12-10"), (2, "Grace", None)],
        )
        conn.execute("INSERT INTO editions VALUES ('978-0', 1, DATE '2020-01-02')")
        conn.executemany(
            "INSERT INTO books VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    1 + i % 2,
                    f"Book {i}",
                    f"2020-01-{1 + i % 28:02d}",
                    Decimal("12.50") + i,
                    i / 3,
                    COVER if i % 2 else None,
                    "978-0",
                    1,
                )
                for i in range(1, BOOKS + 1)
            ],
        )
        conn.execute(
            "INSERT INTO oddities VALUES (12345678901234567890.125,"
            " TIMESTAMPTZ '2024-01-02 03:04:05.5+02', [TIMESTAMPTZ '2024-01-02 03:04:05+02'],"
            f" TIMESTAMP '2024-01-02 03:04:05', INTERVAL '{SPAN}', ?, 1::HUGEINT << 100,"
            " ['a', NULL], {'x': 1, 'y': 'b'}, 'nan'::DOUBLE, true)",
            [THE_UUID],
        )
        conn.execute("INSERT INTO oddities (big) VALUES (NULL)")
        for index, name in enumerate(HOSTILE_NAMES):
            conn.execute(f"CREATE TABLE {_q(WEIRD_SCHEMA)}.{_q(name)} ({_q(name)} INTEGER)")
            conn.execute(f"INSERT INTO {_q(WEIRD_SCHEMA)}.{_q(name)} VALUES (?)", [index])
        conn.execute(f"CREATE VIEW main.{_q(HOSTILE_NAMES[0])} AS SELECT 1 AS {_q(ODD_COLUMN)}")
    finally:
        conn.close()
    return path


def _connector(
    path: pathlib.Path, timeout_s: float = 30.0, secrets: dict[str, str] | None = None
) -> Connector:
    return connector_for("duckdb", {"path": str(path)}, secrets or {}, timeout_s=timeout_s)


def _digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _by_key(tables: list[TableInfo]) -> dict[tuple[str, str], TableInfo]:
    return {(t.schema_name, t.name): t for t in tables}


def _assert_secret_free(exc: ConnectorError) -> None:
    for text in (str(exc), repr(exc), exc.message):
        assert SECRET not in text
    assert exc.__context__ is None
    assert exc.__cause__ is None


def _watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WATCHDOG_THREAD_NAME]


async def test_test_succeeds(db_path: pathlib.Path) -> None:
    await _connector(db_path).test()
    assert _watchdogs() == []


async def test_missing_file_is_permanent_and_not_created(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nope.duckdb"
    with pytest.raises(ConnectorError) as info:
        await _connector(path).test()
    assert info.value.transient is False
    assert str(info.value) == f"database file not found: {path}"
    assert not path.exists()


async def test_directory_is_permanent(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConnectorError) as info:
        await _connector(tmp_path).test()
    assert info.value.transient is False
    assert "not a file" in str(info.value)


@pytest.mark.parametrize("content", ["csv", "sqlite", "empty"])
async def test_non_duckdb_file_is_permanent(tmp_path: pathlib.Path, content: str) -> None:
    path = tmp_path / "data.duckdb"
    if content == "csv":
        path.write_text("a,b\n1,2\n" * 100)
    elif content == "sqlite":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (x INTEGER)")
        conn.close()
    else:
        path.touch()
    before = _digest(path)
    with pytest.raises(ConnectorError) as info:
        await _connector(path).introspect()
    assert info.value.transient is False
    assert str(info.value) == f"not a DuckDB database: {path}"
    assert _digest(path) == before


async def test_introspect_lists_tables_and_views_of_every_schema_sorted(
    db_path: pathlib.Path,
) -> None:
    tables = await _connector(db_path).introspect()
    keys = [(t.schema_name, t.name) for t in tables]
    assert keys == sorted(keys)
    assert keys == [
        ("main", "authors"),
        ("main", "book_titles"),
        ("main", "books"),
        ("main", "broken"),
        ("main", "editions"),
        ("main", "oddities"),
        ("main", "slow"),
        ("main", 'we"ird'),
        *sorted((WEIRD_SCHEMA, name) for name in HOSTILE_NAMES),
        ("sales", "lines"),
        ("sales", "orders"),
    ]
    # No system schema, no DuckDB catalog view, nothing from the temp catalog.
    assert {t.schema_name for t in tables} == {"main", "sales", WEIRD_SCHEMA}
    by_key = _by_key(tables)
    assert by_key["main", "book_titles"].kind == "view"
    assert by_key["main", "books"].kind == "table"
    assert by_key["main", 'we"ird'].kind == "view"


async def test_introspect_row_estimates(db_path: pathlib.Path) -> None:
    tables = _by_key(await _connector(db_path).introspect())
    assert tables["main", "books"].row_estimate == BOOKS
    assert tables["main", "authors"].row_estimate == 2
    assert tables["sales", "orders"].row_estimate == 0
    assert tables["main", "book_titles"].row_estimate is None
    assert tables["main", "slow"].row_estimate is None


async def test_introspect_columns_keys_and_foreign_keys(db_path: pathlib.Path) -> None:
    tables = _by_key(await _connector(db_path).introspect())
    books = tables["main", "books"]
    assert [c.name for c in books.columns] == [
        "id",
        "author_id",
        "title",
        "published",
        "price",
        "rating",
        "cover",
        "isbn",
        "printing",
    ]
    assert [c.ordinal for c in books.columns] == list(range(1, 10))
    columns = {c.name: c for c in books.columns}
    assert columns["price"].data_type == "DECIMAL(10,2)"
    assert columns["cover"].data_type == "BLOB"
    assert columns["id"].is_primary_key
    assert not columns["id"].nullable
    assert not columns["title"].nullable
    assert columns["published"].nullable
    assert not columns["title"].is_primary_key
    assert books.primary_key == ["id"]
    fks = {fk.referred_table: fk for fk in books.foreign_keys}
    assert sorted(fks) == ["authors", "editions"]
    assert fks["authors"].columns == ["author_id"]
    assert fks["authors"].referred_columns == ["id"]
    assert fks["authors"].referred_schema == "main"
    assert fks["editions"].columns == ["isbn", "printing"]
    assert fks["editions"].referred_columns == ["isbn", "printing"]

    assert tables["main", "editions"].primary_key == ["isbn", "printing"]
    assert tables["main", "authors"].foreign_keys == []
    lines = tables["sales", "lines"]
    assert lines.primary_key == ["order_id", "line"]
    assert [(fk.referred_schema, fk.referred_table) for fk in lines.foreign_keys] == [
        ("sales", "orders")
    ]

    view = tables["main", "book_titles"]
    assert [c.name for c in view.columns] == ["title", "author"]
    assert view.primary_key == []
    assert view.foreign_keys == []
    oddities = {c.name: c.data_type for c in tables["main", "oddities"].columns}
    assert oddities["stamp"] == "TIMESTAMP WITH TIME ZONE"
    assert oddities["stamps"] == "TIMESTAMP WITH TIME ZONE[]"
    for name in HOSTILE_NAMES:
        assert [c.name for c in tables[WEIRD_SCHEMA, name].columns] == [name]


async def test_fingerprint_follows_schema_changes(db_path: pathlib.Path) -> None:
    before = _by_key(await _connector(db_path).introspect())
    again = _by_key(await _connector(db_path).introspect())
    for key, table in before.items():
        assert table.fingerprint() == again[key].fingerprint()
    conn = duckdb.connect(str(db_path))
    try:
        conn.execute("ALTER TABLE books ADD COLUMN subtitle VARCHAR")
    finally:
        conn.close()
    after = _by_key(await _connector(db_path).introspect())
    assert after["main", "books"].fingerprint() != before["main", "books"].fingerprint()
    assert after["main", "authors"].fingerprint() == before["main", "authors"].fingerprint()


async def test_sample_respects_limit_and_is_json_safe(db_path: pathlib.Path) -> None:
    sample = await _connector(db_path).sample("main", "books", 10)
    assert sample.columns[:3] == ["id", "author_id", "title"]
    assert len(sample.rows) == 10
    json.dumps(sample.model_dump(), allow_nan=False)
    for row in sample.rows:
        values = dict(zip(sample.columns, row, strict=True))
        book_id = values["id"]
        assert isinstance(book_id, int)
        assert values["published"] == f"2020-01-{1 + book_id % 28:02d}"
        # Decimals stay exact: strings, not floats.
        assert values["price"] == str(Decimal("12.50") + book_id)
        assert values["rating"] == pytest.approx(book_id / 3)
        assert values["cover"] == (f"<binary {len(COVER)} bytes>" if book_id % 2 else None)


async def test_sample_exotic_types_are_json_safe(db_path: pathlib.Path) -> None:
    sample = await _connector(db_path).sample("main", "oddities", 10)
    json.dumps(sample.model_dump(), allow_nan=False)
    assert len(sample.rows) == 2
    full, empty = sorted(sample.rows, key=lambda row: row[0] is None)
    values = dict(zip(sample.columns, full, strict=True))
    assert values == {
        "big": "12345678901234567890.125",
        # TIMESTAMPTZ in UTC, without pytz.
        "stamp": "2024-01-02T01:04:05.500000+00:00",
        "stamps": "['2024-01-02 01:04:05+00']",
        "naive": "2024-01-02T03:04:05",
        "span": "PT183845.5S",
        "id": str(THE_UUID),
        "huge": 2**100,
        "tags": ["a", None],
        "point": {"x": 1, "y": "b"},
        "ratio": "NaN",
        "flag": True,
    }
    assert empty == [None] * len(sample.columns)


async def test_sample_larger_limit_returns_all_rows(db_path: pathlib.Path) -> None:
    sample = await _connector(db_path).sample("main", "books", 2**63 - 1)
    assert len(sample.rows) == BOOKS


async def test_sample_zero_limit_still_names_columns(db_path: pathlib.Path) -> None:
    sample = await _connector(db_path).sample("main", "authors", 0)
    assert sample.columns == ["id", "name", "born"]
    assert sample.rows == []


async def test_sample_view_and_other_schema(db_path: pathlib.Path) -> None:
    connector = _connector(db_path)
    view = await connector.sample("main", "book_titles", 3)
    assert view.columns == ["title", "author"]
    assert len(view.rows) == 3
    orders = await connector.sample("sales", "orders", 3)
    assert orders.columns == ["id", "book_id", "amount"]
    assert orders.rows == []


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_sample_hostile_names(db_path: pathlib.Path, name: str) -> None:
    sample = await _connector(db_path).sample(WEIRD_SCHEMA, name, 5)
    assert sample.columns == [name]
    assert sample.rows == [[HOSTILE_NAMES.index(name)]]


async def test_sample_view_named_like_a_hostile_table(db_path: pathlib.Path) -> None:
    sample = await _connector(db_path).sample("main", 'we"ird', 5)
    assert sample.columns == [ODD_COLUMN]
    assert sample.rows == [[1]]


@pytest.mark.parametrize(
    ("schema_name", "table"),
    [
        ("main", "nope"),
        ("other", "books"),
        ("sales", "books"),
        ("main", 'books"; DROP TABLE authors; --'),
        ("main", "books; DROP TABLE authors"),
        ('main"."books', "x"),
        ("information_schema", "tables"),
        ("main", "duckdb_tables"),
        ("pg_catalog", "pg_class"),
    ],
)
async def test_sample_unknown_table_is_permanent(
    db_path: pathlib.Path, schema_name: str, table: str
) -> None:
    with pytest.raises(ConnectorError) as info:
        await _connector(db_path).sample(schema_name, table, 5)
    assert info.value.transient is False
    assert str(info.value) == f"table not found: {schema_name}.{table}"
    tables = _by_key(await _connector(db_path).introspect())
    assert ("main", "authors") in tables


async def test_sample_broken_view_names_the_real_problem(db_path: pathlib.Path) -> None:
    with pytest.raises(ConnectorError) as info:
        await _connector(db_path).sample("main", "broken", 5)
    assert info.value.transient is False
    assert "gone does not exist" in str(info.value)
    # Only DuckDB's first line: no SQL excerpt or hints.
    assert "\n" not in str(info.value)


async def test_views_cannot_read_outside_the_database(
    db_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text(f"token\n{SECRET}\n")
    conn = duckdb.connect(str(db_path))
    try:
        conn.execute(f"CREATE VIEW leak AS SELECT * FROM read_csv('{outside}')")
    finally:
        conn.close()
    with pytest.raises(ConnectorError) as info:
        await _connector(db_path).sample("main", "leak", 5)
    assert info.value.transient is False
    assert "disabled by configuration" in str(info.value)
    _assert_secret_free(info.value)


async def test_sample_rejects_negative_limit(db_path: pathlib.Path) -> None:
    with pytest.raises(ConnectorError) as info:
        await _connector(db_path).sample("main", "books", -1)
    assert info.value.transient is False


async def test_never_writes_to_the_source(db_path: pathlib.Path) -> None:
    before = _digest(db_path)
    connector = _connector(db_path)
    await connector.test()
    await connector.introspect()
    await connector.sample("main", "books", 5)
    await connector.sample("main", "oddities", 5)
    assert _digest(db_path) == before
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["library.duckdb"]


async def test_concurrent_operations_share_the_file(db_path: pathlib.Path) -> None:
    connector = _connector(db_path)
    tables, sample, _ = await asyncio.gather(
        connector.introspect(), connector.sample("main", "books", 5), connector.test()
    )
    assert len(tables) > 5
    assert len(sample.rows) == 5


async def test_long_statement_times_out_as_transient(db_path: pathlib.Path) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectorError) as info:
        await _connector(db_path, timeout_s=0.3).sample("main", "slow", 1)
    assert info.value.transient is True
    assert str(info.value) == "statement timed out after 0.3s"
    assert info.value.__context__ is None
    assert time.monotonic() - started < 5
    # The connector still works after a timeout.
    await _connector(db_path, timeout_s=5).test()


async def test_cancellation_stops_the_worker_thread(db_path: pathlib.Path) -> None:
    connector = _connector(db_path, timeout_s=60)
    task = asyncio.create_task(connector.sample("main", "slow", 1))
    await asyncio.sleep(0.3)
    assert _watchdogs()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The abandoned query holds the file open read-only, which keeps a read-write connection
    # out; one getting in quickly proves the worker gave up instead of finishing the join.
    deadline = time.monotonic() + 4
    while True:
        try:
            duckdb.connect(str(db_path)).close()
            break
        except duckdb.Error:
            assert time.monotonic() < deadline, "the cancelled query kept running"
            await asyncio.sleep(0.05)
    while _watchdogs():
        assert time.monotonic() < deadline, "the watchdog thread outlived the operation"
        await asyncio.sleep(0.05)


async def test_file_locked_by_a_writer_is_transient(db_path: pathlib.Path) -> None:
    # Another process holding the file open read-write keeps every other process out.
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import duckdb, sys; conn = duckdb.connect(sys.argv[1]); print('ready', flush=True);"
        " sys.stdin.read()",
        str(db_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None
        ready = await asyncio.wait_for(writer.stdout.readline(), timeout=30)
        assert ready.strip() == b"ready"
        with pytest.raises(ConnectorError) as info:
            await _connector(db_path).test()
    finally:
        # End of input lets the writer exit and release its lock.
        assert writer.stdin is not None
        writer.stdin.close()
        await asyncio.wait_for(writer.wait(), timeout=30)
    assert info.value.transient is True
    assert str(info.value) == f"DuckDB database is locked: {db_path}"


async def test_secret_never_reaches_a_message(
    tmp_path: pathlib.Path, db_path: pathlib.Path
) -> None:
    secrets = {"password": SECRET}
    connector = _connector(db_path, secrets=secrets)
    with pytest.raises(ConnectorError) as info:
        await connector.sample("main", SECRET, 5)
    assert str(info.value) == "table not found: main.***"
    _assert_secret_free(info.value)

    conn = duckdb.connect(str(db_path))
    try:
        conn.execute(f"CREATE TABLE {_q(SECRET)} (x INTEGER)")
        conn.execute(f"CREATE VIEW shows_secret AS SELECT x FROM {_q(SECRET)}")
        conn.execute(f"DROP TABLE {_q(SECRET)}")
    finally:
        conn.close()
    with pytest.raises(ConnectorError) as info:
        await connector.sample("main", "shows_secret", 5)
    assert "***" in str(info.value)
    _assert_secret_free(info.value)

    missing = tmp_path / SECRET / "x.duckdb"
    with pytest.raises(ConnectorError) as info:
        await _connector(missing, secrets=secrets).test()
    assert "***" in str(info.value)
    _assert_secret_free(info.value)


async def test_stream_reads_tables_views_and_hostile_names(db_path: pathlib.Path) -> None:
    batches = [b async for b in _connector(db_path).stream("main", "books", batch_rows=8)]
    assert sum(b.num_rows for b in batches) == BOOKS
    assert max(b.num_rows for b in batches) <= 8
    for index, name in enumerate(HOSTILE_NAMES):
        got = [b async for b in _connector(db_path).stream(WEIRD_SCHEMA, name, batch_rows=8)]
        assert got[0].column(0).to_pylist() == [index]
    with pytest.raises(ConnectorError, match="table not found"):
        [b async for b in _connector(db_path).stream("main", "nope", batch_rows=8)]
