"""The files connector against real CSV and Parquet files built per test."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import os
import pathlib
import threading
import time
import uuid

import duckdb
import pytest

from freshet.connectors import Connector, ConnectorError, TableInfo, connector_for
from freshet.connectors.duckdb_session import WATCHDOG_THREAD_NAME

SECRET = f"Sup3r-secret-{uuid.uuid4().hex}"
ORDERS = 40
EVENTS = 25
PAYLOAD = bytes(range(256))
HOSTILE = ['it\'s "quoted"; DROP TABLE x', "ünï cødé 表", "with  spaces ", "a*", "q[1]", "w?"]
BIG_ROWS = 2_000_000


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _write_parquet(path: pathlib.Path, select: str) -> None:
    conn = duckdb.connect()
    try:
        conn.execute(f"COPY ({select}) TO {_sql_string(str(path))} (FORMAT parquet)")
    finally:
        conn.close()


@pytest.fixture
def folder(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "orders.csv").write_text(
        "id,customer,amount,ordered\n"
        + "".join(
            f"{i},cust {i % 7},{i * 1.25},2024-02-{1 + i % 28:02d}\n" for i in range(1, ORDERS + 1)
        )
    )
    _write_parquet(
        root / "events.parquet",
        f"""SELECT range AS id,
                  (range + 0.5)::DECIMAL(10, 2) AS price,
                  DATE '2024-01-01' + range::INTEGER AS day,
                  CASE WHEN range % 2 = 0 THEN from_hex('{PAYLOAD.hex()}') END AS payload,
                  CASE WHEN range % 3 = 0 THEN NULL ELSE 'note ' || range END AS note,
                  TIMESTAMPTZ '2024-01-02 03:04:05+02' + to_hours(range) AS at
           FROM range({EVENTS})""",
    )
    (root / "people.tsv").write_text("name\tage\nAda\t36\nGrace\t85\n")
    (root / "logs.csv.gz").write_bytes(gzip.compress(b"level,message\ninfo,hi\nwarn,careful\n"))
    (root / "notes.txt").write_text("not a dataset\n")
    (root / ".hidden.csv").write_text("x\n1\n")
    for index, name in enumerate(HOSTILE):
        (root / f"{name}.csv").write_text(f"n,label\n{index},row {index}\n")
    (root / "ab.csv").write_text("n,label\n100,ab\n")
    (root / "q1.csv").write_text("n,label\n101,q1\n")
    (root / "wx.csv").write_text("n,label\n102,wx\n")
    # Same name, two formats: the parquet wins.
    (root / "dup.csv").write_text("from_csv\n1\n")
    _write_parquet(root / "dup.parquet", "SELECT 1 AS from_parquet")
    (root / "Loud.CSV").write_text("x\n1\n")
    # Unreadable files; the CSV's bad line carries the secret, which must never be echoed.
    (root / "corrupt.parquet").write_bytes(os.urandom(2048))
    (root / "badutf.csv").write_bytes(f"a,b\n1,{SECRET}\n".encode() + b"\xff\xfe,3\n")
    # Symlinks: one to a file inside (followed), one to a file outside (ignored).
    outside = tmp_path / "outside.csv"
    outside.write_text(f"token\n{SECRET}\n")
    (root / "alias.csv").symlink_to(root / "people.tsv")
    (root / "escape.csv").symlink_to(outside)
    (root / "dangling.csv").symlink_to(tmp_path / "missing.csv")
    # Sub-folders, only read in recursive mode.
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "nested.csv").write_text("k\n1\n2\n")
    _write_parquet(root / "sub" / "deeper" / "deep.parquet", "SELECT 42 AS answer")
    (root / "files").mkdir()
    (root / "files" / "inner.csv").write_text("k\n3\n")
    (root / ".git").mkdir()
    (root / ".git" / "config.csv").write_text("k\n4\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "far.csv").write_text("k\n5\n")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    return root


FLAT_NAMES = sorted(
    [
        "orders",
        "events",
        "people",
        "logs",
        *HOSTILE,
        "ab",
        "q1",
        "wx",
        "dup",
        "Loud",
        "alias",
    ]
)


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("big")
    conn = duckdb.connect()
    try:
        conn.execute("SET enable_progress_bar = false")
        conn.execute(
            f"COPY (SELECT range AS i, 'r' || (range % 1000) AS label FROM range({BIG_ROWS}))"
            f" TO {_sql_string(str(root / 'big.csv'))} (HEADER)"
        )
    finally:
        conn.close()
    return root


def _connector(
    path: pathlib.Path,
    timeout_s: float = 30.0,
    secrets: dict[str, str] | None = None,
    **options: object,
) -> Connector:
    config = {"path": str(path), **options}
    return connector_for("files", config, secrets or {}, timeout_s=timeout_s)


def _by_key(tables: list[TableInfo]) -> dict[tuple[str, str], TableInfo]:
    return {(t.schema_name, t.name): t for t in tables}


def _snapshot(root: pathlib.Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = pathlib.Path(directory) / name
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"
            found[str(path.relative_to(root))] = digest
    return found


def _assert_secret_free(exc: ConnectorError) -> None:
    for text in (str(exc), repr(exc), exc.message):
        assert SECRET not in text
    assert exc.__context__ is None
    assert exc.__cause__ is None


def _watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WATCHDOG_THREAD_NAME]


async def test_test_succeeds(folder: pathlib.Path) -> None:
    await _connector(folder).test()
    assert _watchdogs() == []


async def test_missing_folder_is_permanent(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nope"
    for operation in ("test", "introspect"):
        with pytest.raises(ConnectorError) as info:
            await getattr(_connector(path), operation)()
        assert info.value.transient is False
        assert str(info.value) == f"folder not found: {path}"
    with pytest.raises(ConnectorError) as info:
        await _connector(path).sample("files", "x", 1)
    assert str(info.value) == f"folder not found: {path}"
    assert not path.exists()


async def test_file_instead_of_folder_is_permanent(folder: pathlib.Path) -> None:
    with pytest.raises(ConnectorError) as info:
        await _connector(folder / "orders.csv").introspect()
    assert info.value.transient is False
    assert "not a folder" in str(info.value)


async def test_introspect_lists_each_readable_file_sorted(folder: pathlib.Path) -> None:
    tables = await _connector(folder).introspect()
    assert [t.name for t in tables] == FLAT_NAMES
    assert {t.schema_name for t in tables} == {"files"}
    assert {t.kind for t in tables} == {"table"}
    for table in tables:
        assert table.primary_key == []
        assert table.foreign_keys == []
        assert not any(c.is_primary_key for c in table.columns)
    by_name = {t.name: t for t in tables}
    assert by_name["events"].row_estimate == EVENTS
    assert by_name["dup"].row_estimate == 1
    assert by_name["orders"].row_estimate is None
    assert by_name["logs"].row_estimate is None


async def test_introspect_columns(folder: pathlib.Path) -> None:
    by_name = {t.name: t for t in await _connector(folder).introspect()}
    orders = by_name["orders"]
    assert [(c.name, c.data_type, c.ordinal) for c in orders.columns] == [
        ("id", "BIGINT", 1),
        ("customer", "VARCHAR", 2),
        ("amount", "DOUBLE", 3),
        ("ordered", "DATE", 4),
    ]
    assert all(c.nullable for c in orders.columns)
    events = {c.name: c.data_type for c in by_name["events"].columns}
    assert events == {
        "id": "BIGINT",
        "price": "DECIMAL(10,2)",
        "day": "DATE",
        "payload": "BLOB",
        "note": "VARCHAR",
        "at": "TIMESTAMP WITH TIME ZONE",
    }
    assert [c.name for c in by_name["people"].columns] == ["name", "age"]
    assert [c.name for c in by_name["alias"].columns] == ["name", "age"]
    assert [c.name for c in by_name["logs"].columns] == ["level", "message"]
    assert [c.name for c in by_name["dup"].columns] == ["from_parquet"]


async def test_unreadable_files_are_skipped_and_logged_without_content(
    folder: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="freshet.connectors.files"):
        tables = await _connector(folder).introspect()
    names = {t.name for t in tables}
    assert "corrupt" not in names
    assert "badutf" not in names
    assert "corrupt.parquet" in caplog.text
    assert "badutf.csv" in caplog.text
    assert SECRET not in caplog.text


async def test_recursive_names_schemas_by_relative_folder(folder: pathlib.Path) -> None:
    tables = await _connector(folder, recursive=True).introspect()
    keys = [(t.schema_name, t.name) for t in tables]
    assert keys == sorted(keys)
    assert [k for k in keys if k[0] != "files"] == [
        ("files/files", "inner"),
        ("files/sub", "nested"),
        ("files/sub/deeper", "deep"),
    ]
    assert sorted(name for schema, name in keys if schema == "files") == FLAT_NAMES
    # Neither the hidden folder nor the symlinked one is read.
    assert not any(name in {"config", "far"} for _, name in keys)
    by_key = _by_key(tables)
    assert by_key["files/sub/deeper", "deep"].row_estimate == 1
    sample = await _connector(folder, recursive=True).sample("files/sub/deeper", "deep", 5)
    assert sample.rows == [[42]]
    sample = await _connector(folder, recursive=True).sample("files/files", "inner", 5)
    assert sample.rows == [[3]]


async def test_sample_respects_limit_and_is_json_safe(folder: pathlib.Path) -> None:
    connector = _connector(folder)
    orders = await connector.sample("files", "orders", 10)
    assert orders.columns == ["id", "customer", "amount", "ordered"]
    assert len(orders.rows) == 10
    assert orders.rows[0] == [1, "cust 1", 1.25, "2024-02-02"]

    events = await connector.sample("files", "events", 3)
    json.dumps(events.model_dump(), allow_nan=False)
    assert events.columns == ["id", "price", "day", "payload", "note", "at"]
    assert events.rows == [
        [
            0,
            "0.50",
            "2024-01-01",
            f"<binary {len(PAYLOAD)} bytes>",
            None,
            "2024-01-02T01:04:05+00:00",
        ],
        [1, "1.50", "2024-01-02", None, "note 1", "2024-01-02T02:04:05+00:00"],
        [
            2,
            "2.50",
            "2024-01-03",
            f"<binary {len(PAYLOAD)} bytes>",
            "note 2",
            "2024-01-02T03:04:05+00:00",
        ],
    ]


async def test_sample_all_rows_and_zero_rows(folder: pathlib.Path) -> None:
    connector = _connector(folder)
    everything = await connector.sample("files", "events", 2**63 - 1)
    assert len(everything.rows) == EVENTS
    nothing = await connector.sample("files", "orders", 0)
    assert nothing.columns == ["id", "customer", "amount", "ordered"]
    assert nothing.rows == []


async def test_sample_gzipped_csv_tsv_and_symlink(folder: pathlib.Path) -> None:
    connector = _connector(folder)
    logs = await connector.sample("files", "logs", 5)
    assert logs.rows == [["info", "hi"], ["warn", "careful"]]
    people = await connector.sample("files", "people", 5)
    assert people.rows == [["Ada", 36], ["Grace", 85]]
    alias = await connector.sample("files", "alias", 5)
    assert alias == people
    loud = await connector.sample("files", "Loud", 5)
    assert loud.rows == [[1]]


@pytest.mark.parametrize("name", HOSTILE)
async def test_sample_hostile_and_glob_like_names_read_only_their_file(
    folder: pathlib.Path, name: str
) -> None:
    sample = await _connector(folder).sample("files", name, 5)
    assert sample.columns == ["n", "label"]
    # Exactly one row: `a*` must not also read ab.csv, nor `q[1]` q1.csv, nor `w?` wx.csv.
    index = HOSTILE.index(name)
    assert sample.rows == [[index, f"row {index}"]]


@pytest.mark.parametrize("recursive", [False, True])
@pytest.mark.parametrize(
    ("schema_name", "table"),
    [
        ("files", "nope"),
        ("files", "../outside"),
        ("files", "escape"),
        ("files", "dangling"),
        ("files", "notes"),
        ("files", ".hidden"),
        ("files", "orders.csv"),
        ("files", "corrupt.parquet"),
        ("files", "/etc/passwd"),
        ("files", "sub/nested"),
        ("files/..", "outside"),
        ("files/../data", "orders"),
        ("files/sub/..", "orders"),
        ("files/./sub", "nested"),
        ("files//sub", "nested"),
        ("files/sub/", "nested"),
        ("files/.git", "config"),
        ("files/linked", "far"),
        ("files/sub\x00", "nested"),
        ("files/nope", "x"),
        ("/etc", "passwd"),
        ("main", "orders"),
        ("", "orders"),
    ],
)
async def test_sample_never_escapes_the_folder(
    folder: pathlib.Path, schema_name: str, table: str, recursive: bool
) -> None:
    with pytest.raises(ConnectorError) as info:
        await _connector(folder, recursive=recursive).sample(schema_name, table, 5)
    assert info.value.transient is False
    assert str(info.value) == f"table not found: {schema_name}.{table}"
    _assert_secret_free(info.value)


async def test_sub_folders_are_not_reachable_without_recursive(folder: pathlib.Path) -> None:
    with pytest.raises(ConnectorError, match="table not found"):
        await _connector(folder).sample("files/sub", "nested", 5)
    sample = await _connector(folder, recursive=True).sample("files/sub", "nested", 5)
    assert sample.rows == [[1], [2]]


@pytest.mark.parametrize("name", ["corrupt", "badutf"])
async def test_sample_unreadable_file_is_permanent_and_quotes_no_content(
    folder: pathlib.Path, name: str
) -> None:
    with pytest.raises(ConnectorError) as info:
        await _connector(folder).sample("files", name, 5)
    assert info.value.transient is False
    assert str(info.value).startswith(f"cannot read files.{name} in {folder}: ")
    assert "\n" not in str(info.value)
    _assert_secret_free(info.value)


async def test_csv_options_override_the_sniffer(tmp_path: pathlib.Path) -> None:
    (tmp_path / "plain.csv").write_text("1;2\n3;4\n")
    sniffed = await _connector(tmp_path).sample("files", "plain", 5)
    assert len(sniffed.rows) == 2
    told = await _connector(tmp_path, csv_delimiter=";", csv_header=False).sample(
        "files", "plain", 5
    )
    assert told.rows == [[1, 2], [3, 4]]
    headed = await _connector(tmp_path, csv_delimiter=";", csv_header=True).introspect()
    assert [c.name for c in headed[0].columns] == ["1", "2"]


async def test_fingerprint_follows_schema_changes(folder: pathlib.Path) -> None:
    before = _by_key(await _connector(folder).introspect())
    again = _by_key(await _connector(folder).introspect())
    assert {k: t.fingerprint() for k, t in before.items()} == {
        k: t.fingerprint() for k, t in again.items()
    }
    (folder / "people.tsv").write_text("name\tage\tcity\nAda\t36\tLondon\n")
    after = _by_key(await _connector(folder).introspect())
    assert after["files", "people"].fingerprint() != before["files", "people"].fingerprint()
    assert after["files", "orders"].fingerprint() == before["files", "orders"].fingerprint()


async def test_never_writes_anything(folder: pathlib.Path) -> None:
    before = _snapshot(folder.parent)
    connector = _connector(folder, recursive=True)
    await connector.test()
    await connector.introspect()
    await connector.sample("files", "events", 5)
    await connector.sample("files", "orders", 5)
    with pytest.raises(ConnectorError):
        await connector.sample("files", "corrupt", 5)
    assert _snapshot(folder.parent) == before


async def test_long_read_times_out_as_transient(big_folder: pathlib.Path) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectorError) as info:
        await _connector(big_folder, timeout_s=0.05).sample("files", "big", 2**63 - 1)
    assert info.value.transient is True
    assert str(info.value) == "statement timed out after 0.05s"
    assert info.value.__context__ is None
    assert time.monotonic() - started < 5


async def test_cancellation_stops_the_worker_thread(big_folder: pathlib.Path) -> None:
    task = asyncio.create_task(
        _connector(big_folder, timeout_s=60).sample("files", "big", 2**63 - 1)
    )
    await asyncio.sleep(0.2)
    assert _watchdogs()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Reading every row takes several seconds; the worker giving up quickly proves the
    # interrupt reached it.
    deadline = time.monotonic() + 3
    while _watchdogs():
        assert time.monotonic() < deadline, "the cancelled read kept running"
        await asyncio.sleep(0.05)


async def test_secret_never_reaches_a_message(tmp_path: pathlib.Path, folder: pathlib.Path) -> None:
    secrets = {"password": SECRET}
    with pytest.raises(ConnectorError) as info:
        await _connector(folder, secrets=secrets).sample("files", SECRET, 5)
    assert str(info.value) == "table not found: files.***"
    _assert_secret_free(info.value)

    missing = tmp_path / SECRET
    with pytest.raises(ConnectorError) as info:
        await _connector(missing, secrets=secrets).introspect()
    assert str(info.value) == f"folder not found: {tmp_path}/***"
    _assert_secret_free(info.value)

    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / f"{SECRET}.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ConnectorError) as info:
        await _connector(holder, secrets=secrets).sample("files", SECRET, 5)
    assert "***" in str(info.value)
    _assert_secret_free(info.value)


async def test_stream_reads_csv_and_parquet_files(folder: pathlib.Path) -> None:
    connector = connector_for("files", {"path": str(folder)}, {})
    orders = [b async for b in connector.stream("files", "orders", batch_rows=5)]
    assert sum(b.num_rows for b in orders) == ORDERS
    events = [b async for b in connector.stream("files", "events", batch_rows=1000)]
    assert sum(b.num_rows for b in events) == EVENTS
    with pytest.raises(ConnectorError, match="table not found"):
        [b async for b in connector.stream("files", "../etc/passwd", batch_rows=5)]
