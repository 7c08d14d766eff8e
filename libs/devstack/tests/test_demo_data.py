"""The demo shop database: created once, complete, deterministic, and readable by the connector."""

from __future__ import annotations

import hashlib
import pathlib
import sqlite3

import pytest

from freshet.connectors import connector_for
from freshet.devstack.demo_data import create_demo_database

COUNTS = {"customers": 500, "products": 200, "orders": 1500, "order_items": 4000}


@pytest.fixture
def shop(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "demo" / "shop.db"
    assert create_demo_database(path) is True
    return path


def _digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_creates_tables_view_and_row_counts(shop: pathlib.Path) -> None:
    with sqlite3.connect(shop) as conn:
        objects = dict(
            conn.execute(
                "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')"
            ).fetchall()
        )
        assert objects == {**dict.fromkeys(COUNTS, "table"), "order_totals": "view"}
        for table, expected in COUNTS.items():
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (expected,)
        assert conn.execute("SELECT count(*) FROM order_totals").fetchone() == (1500,)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_declares_keys_and_mixed_types(shop: pathlib.Path) -> None:
    with sqlite3.connect(shop) as conn:
        fks = {
            table: sorted(
                (row[2], row[3], row[4])
                for row in conn.execute(f"PRAGMA foreign_key_list({table})").fetchall()
            )
            for table in COUNTS
        }
        assert fks == {
            "customers": [],
            "products": [],
            "orders": [("customers", "customer_id", "id")],
            "order_items": [("orders", "order_id", "id"), ("products", "product_id", "id")],
        }
        pk = [
            row[1]
            for row in sorted(conn.execute("PRAGMA table_info(order_items)"), key=lambda r: r[5])
            if row[5]
        ]
        assert pk == ["order_id", "line_no"]
        types = conn.execute(
            "SELECT typeof(id), typeof(unit_price), typeof(thumbnail), typeof(name) FROM products"
            " LIMIT 1"
        ).fetchone()
        assert types == ("integer", "real", "blob", "text")
        nulls, total = conn.execute(
            "SELECT count(*) FILTER (WHERE phone IS NULL), count(*) FROM customers"
        ).fetchone()
        assert 0 < nulls < total
        (ordered_at,) = conn.execute("SELECT ordered_at FROM orders LIMIT 1").fetchone()
        assert len(ordered_at) == 19
        assert ordered_at[10] == "T"


def test_second_call_leaves_the_file_alone(shop: pathlib.Path) -> None:
    before = (_digest(shop), shop.stat().st_mtime_ns)
    assert create_demo_database(shop) is False
    assert create_demo_database(shop, seed=99) is False
    assert (_digest(shop), shop.stat().st_mtime_ns) == before
    # No temporary files are left behind next to it.
    assert [p.name for p in shop.parent.iterdir()] == ["shop.db"]


def test_is_deterministic_per_seed(shop: pathlib.Path, tmp_path: pathlib.Path) -> None:
    again = tmp_path / "again.db"
    other = tmp_path / "other.db"
    assert create_demo_database(again) is True
    assert create_demo_database(other, seed=8) is True

    def rows(path: pathlib.Path) -> list[tuple[object, ...]]:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT * FROM order_items ORDER BY 1, 2").fetchall()

    assert rows(again) == rows(shop)
    assert rows(other) != rows(shop)


def test_failed_build_leaves_nothing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("freshet.devstack.demo_data._order_items", explode)
    path = tmp_path / "shop.db"
    with pytest.raises(RuntimeError):
        create_demo_database(path)
    assert list(tmp_path.iterdir()) == []


async def test_sqlite_connector_reads_it(shop: pathlib.Path) -> None:
    connector = connector_for("sqlite", {"path": str(shop)}, {})
    await connector.test()
    tables = {t.name: t for t in await connector.introspect()}
    assert sorted(tables) == ["customers", "order_items", "order_totals", "orders", "products"]
    assert tables["order_totals"].kind == "view"
    assert tables["order_items"].primary_key == ["order_id", "line_no"]
    assert sorted(
        (fk.columns, fk.referred_table, fk.referred_columns)
        for fk in tables["order_items"].foreign_keys
    ) == [(["order_id"], "orders", ["id"]), (["product_id"], "products", ["id"])]
    assert [(fk.columns, fk.referred_table) for fk in tables["orders"].foreign_keys] == [
        (["customer_id"], "customers")
    ]
    phone = next(c for c in tables["customers"].columns if c.name == "phone")
    assert phone.nullable

    sample = await connector.sample("main", "order_items", 50)
    assert len(sample.rows) == 50
    assert sample.columns == [
        "order_id",
        "line_no",
        "product_id",
        "quantity",
        "unit_price",
        "discount",
    ]
    products = await connector.sample("main", "products", 5)
    thumbnails = [row[products.columns.index("thumbnail")] for row in products.rows]
    assert all(isinstance(t, str) and t.startswith("<binary ") for t in thumbnails)
