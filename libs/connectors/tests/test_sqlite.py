"""The SQLite connector against a real database file built per test."""

from __future__ import annotations

import asyncio
import hashlib
import json
import pathlib
import sqlite3
import time
from datetime import date
from decimal import Decimal

import pytest

from freshet.connectors import Connector, ConnectorError, TableInfo, connector_for

WEIRD = 'we"ird'
WEIRD_QUOTED = '"we""ird"'
ODD_COLUMN_QUOTED = '"odd ""col"""'
BOOKS = 60
COVER = bytes(range(256)) * 4

SCHEMA_SQL = f"""
CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, born DATE);
CREATE TABLE editions (
    isbn TEXT NOT NULL,
    printing INTEGER NOT NULL,
    released DATE,
    PRIMARY KEY (isbn, printing)
);
CREATE TABLE books (
    id INTEGER PRIMARY KEY,
    author_id INTEGER NOT NULL REFERENCES authors (id),
    title TEXT NOT NULL,
    shout TEXT GENERATED ALWAYS AS (upper(title)) VIRTUAL,
    published DATE,
    price DECIMAL(10, 2),
    rating REAL,
    cover BLOB,
    isbn TEXT,
    printing INTEGER,
    FOREIGN KEY (isbn, printing) REFERENCES editions
);
CREATE VIEW book_titles AS
    SELECT b.title, a.name AS author FROM books AS b JOIN authors AS a ON a.id = b.author_id;
CREATE TABLE {WEIRD_QUOTED} ({ODD_COLUMN_QUOTED} TEXT, n INTEGER);
CREATE VIEW slow AS
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000)
    SELECT count(*) AS n FROM c;
CREATE TABLE gone (x INTEGER);
CREATE VIEW broken AS SELECT x FROM gone;
DROP TABLE gone;
"""


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "library.db"
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SCHEMA_SQL)
        conn.executemany(
            "INSERT INTO authors VALUES (?, ?, ?)",
            [(1, "Ada", "1815-12-10"), (2, "Grace", None)],
        )
        conn.execute("INSERT INTO editions VALUES ('978-0', 1, ?)", (date(2020, 1, 2).isoformat(),))
        conn.executemany(
            "INSERT INTO books (id, author_id, title, published, price, rating, cover, isbn,"
            " printing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    1 + i % 2,
                    f"Book {i}",
                    date(2020, 1, 1 + i % 28).isoformat(),
                    # sqlite3 has no Decimal adapter; the text goes in and NUMERIC affinity
                    # stores it as a number, just as applications do.
                    str(Decimal("12.50") + i),
                    i / 3,
                    COVER if i % 2 else None,
                    "978-0",
                    1,
                )
                for i in range(1, BOOKS + 1)
            ],
        )
        conn.execute(f"INSERT INTO {WEIRD_QUOTED} VALUES (?, ?)", ("q", 1))
        conn.commit()
    finally:
        conn.close()
    return path


def _connector(path: pathlib.Path, timeout_s: float = 30.0) -> Connector:
    return connector_for("sqlite", {"path": str(path)}, {}, timeout_s=timeout_s)


def _digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _by_name(tables: list[TableInfo]) -> dict[str, TableInfo]:
    return {t.name: t for t in tables}


async def test_test_succeeds(db_path: pathlib.Path) -> None:
    await _connector(db_path).test()


async def test_missing_file_is_permanent(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nope.db"
    with pytest.raises(ConnectorError) as info:
        await _connector(path).test()
    assert info.value.transient is False
    assert "SQLite database not found" in str(info.value)
    assert str(path) in str(info.value)
    # Opening read-only must not have created the file as a side effect.
    assert not path.exists()


async def test_directory_is_permanent(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConnectorError) as info:
        await _connector(tmp_path).test()
    assert info.value.transient is False


async def test_non_database_file_is_permanent(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are not the pages you are looking for\n" * 100)
    with pytest.raises(ConnectorError) as info:
        await _connector(path).test()
    assert info.value.transient is False
    assert "not a SQLite database" in str(info.value)


async def test_introspect_lists_tables_and_views_sorted(db_path: pathlib.Path) -> None:
    tables = await _connector(db_path).introspect()
    # `broken` (a view over a dropped table) cannot be described and is left out.
    assert [t.name for t in tables] == [
        "authors",
        "book_titles",
        "books",
        "editions",
        "slow",
        WEIRD,
    ]
    assert {t.schema_name for t in tables} == {"main"}
    assert {t.row_estimate for t in tables} == {None}
    kinds = {t.name: t.kind for t in tables}
    assert kinds["book_titles"] == "view"
    assert kinds["books"] == "table"


async def test_introspect_columns_keys_and_foreign_keys(db_path: pathlib.Path) -> None:
    tables = _by_name(await _connector(db_path).introspect())
    books = tables["books"]
    assert [c.name for c in books.columns] == [
        "id",
        "author_id",
        "title",
        "shout",
        "published",
        "price",
        "rating",
        "cover",
        "isbn",
        "printing",
    ]
    assert [c.ordinal for c in books.columns] == list(range(1, 11))
    columns = {c.name: c for c in books.columns}
    assert columns["price"].data_type == "DECIMAL(10, 2)"
    assert columns["id"].is_primary_key
    assert not columns["id"].nullable
    assert not columns["title"].nullable
    assert columns["published"].nullable
    assert books.primary_key == ["id"]
    assert sorted(fk.referred_table for fk in books.foreign_keys) == ["authors", "editions"]
    fks = {fk.referred_table: fk for fk in books.foreign_keys}
    assert fks["authors"].columns == ["author_id"]
    assert fks["authors"].referred_columns == ["id"]
    assert fks["authors"].referred_schema == "main"
    # `REFERENCES editions` without columns means the parent's composite primary key.
    assert fks["editions"].columns == ["isbn", "printing"]
    assert fks["editions"].referred_columns == ["isbn", "printing"]

    assert tables["editions"].primary_key == ["isbn", "printing"]
    view = tables["book_titles"]
    assert [c.name for c in view.columns] == ["title", "author"]
    assert view.primary_key == []
    assert view.foreign_keys == []
    assert [c.name for c in tables[WEIRD].columns] == ['odd "col"', "n"]


async def test_fingerprint_follows_schema_changes(db_path: pathlib.Path) -> None:
    before = _by_name(await _connector(db_path).introspect())
    again = _by_name(await _connector(db_path).introspect())
    assert before["books"].fingerprint() == again["books"].fingerprint()
    with sqlite3.connect(db_path) as conn:
        conn.execute("ALTER TABLE books ADD COLUMN subtitle TEXT")
    after = _by_name(await _connector(db_path).introspect())
    assert after["books"].fingerprint() != before["books"].fingerprint()
    assert after["authors"].fingerprint() == before["authors"].fingerprint()


async def test_sample_respects_limit_and_is_json_safe(db_path: pathlib.Path) -> None:
    sample = await _connector(db_path).sample("main", "books", 10)
    assert sample.columns[:4] == ["id", "author_id", "title", "shout"]
    assert len(sample.rows) == 10
    json.dumps(sample.model_dump(), allow_nan=False)
    first = dict(zip(sample.columns, sample.rows[0], strict=True))
    assert first["shout"] == "BOOK 1"
    assert first["published"] == "2020-01-02"
    assert first["price"] == 13.5
    assert first["cover"] == f"<binary {len(COVER)} bytes>"
    second = dict(zip(sample.columns, sample.rows[1], strict=True))
    assert second["cover"] is None


async def test_sample_larger_limit_returns_all_rows(db_path: pathlib.Path) -> None:
    sample = await _connector(db_path).sample("main", "books", 1000)
    assert len(sample.rows) == BOOKS


async def test_sample_zero_limit_still_names_columns(db_path: pathlib.Path) -> None:
    sample = await _connector(db_path).sample("main", "authors", 0)
    assert sample.columns == ["id", "name", "born"]
    assert sample.rows == []


async def test_sample_view_and_weird_names(db_path: pathlib.Path) -> None:
    connector = _connector(db_path)
    view = await connector.sample("main", "book_titles", 3)
    assert view.columns == ["title", "author"]
    assert len(view.rows) == 3
    weird = await connector.sample("main", WEIRD, 5)
    assert weird.columns == ['odd "col"', "n"]
    assert weird.rows == [["q", 1]]


@pytest.mark.parametrize(
    ("schema_name", "table"),
    [
        ("main", "nope"),
        ("other", "books"),
        ("main", 'books"; DROP TABLE authors; --'),
    ],
)
async def test_sample_unknown_table_is_permanent(
    db_path: pathlib.Path, schema_name: str, table: str
) -> None:
    with pytest.raises(ConnectorError) as info:
        await _connector(db_path).sample(schema_name, table, 5)
    assert info.value.transient is False
    assert "table not found" in str(info.value)
    tables = _by_name(await _connector(db_path).introspect())
    assert "authors" in tables


async def test_sample_broken_view_names_the_real_problem(db_path: pathlib.Path) -> None:
    with pytest.raises(ConnectorError) as info:
        await _connector(db_path).sample("main", "broken", 5)
    assert info.value.transient is False
    assert "no such table: main.gone" in str(info.value)


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
    assert _digest(db_path) == before
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["library.db"]


async def test_long_statement_times_out_as_transient(db_path: pathlib.Path) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectorError) as info:
        await _connector(db_path, timeout_s=0.3).sample("main", "slow", 1)
    assert info.value.transient is True
    assert str(info.value) == "statement timed out after 0.3s"
    assert time.monotonic() - started < 5


async def test_locked_database_is_transient(db_path: pathlib.Path) -> None:
    writer = sqlite3.connect(db_path, isolation_level=None)
    try:
        # An exclusive lock in rollback-journal mode keeps every reader out.
        writer.execute("BEGIN EXCLUSIVE")
        with pytest.raises(ConnectorError) as info:
            await _connector(db_path, timeout_s=0.2).sample("main", "books", 1)
    finally:
        writer.close()
    assert info.value.transient is True
    assert "locked" in str(info.value)


async def test_cancellation_stops_the_worker_thread(db_path: pathlib.Path) -> None:
    connector = _connector(db_path, timeout_s=60)
    task = asyncio.create_task(connector.sample("main", "slow", 1))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The abandoned query still holds a read lock while it runs; a writer getting through
    # quickly proves the worker thread gave up instead of counting to a billion.
    writer = sqlite3.connect(db_path, timeout=5, isolation_level=None)
    try:
        started = time.monotonic()
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("ROLLBACK")
        assert time.monotonic() - started < 4
    finally:
        writer.close()


async def test_stream_reads_every_row_with_one_type_per_column(db_path: pathlib.Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE mixed (v)")
    conn.executemany("INSERT INTO mixed VALUES (?)", [(1,), (2.5,), ("x",), (None,), (b"\x01",)])
    conn.commit()
    conn.close()
    batches = [b async for b in _connector(db_path).stream("main", "books", batch_rows=7)]
    assert sum(b.num_rows for b in batches) == BOOKS
    assert max(b.num_rows for b in batches) == 7
    assert len({b.schema for b in batches}) == 1
    mixed = [b async for b in _connector(db_path).stream("main", "mixed", batch_rows=2)]
    assert [v for b in mixed for v in b.column(0).to_pylist()] == ["1", "2.5", "x", None, "01"]
    weird = [b async for b in _connector(db_path).stream("main", WEIRD, batch_rows=2)]
    assert weird[0].schema.names == ['odd "col"', "n"]
    with pytest.raises(ConnectorError, match="table not found"):
        [b async for b in _connector(db_path).stream("main", "nope", batch_rows=2)]
    with pytest.raises(ConnectorError, match="table not found"):
        [b async for b in _connector(db_path).stream("other", "books", batch_rows=2)]
