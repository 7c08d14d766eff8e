"""The demo shop database the development stack registers as its first endpoint.

Deterministic for a given seed, so screenshots, docs and tests see the same customers and
orders on every machine. Only the standard library is used, so creating it needs nothing
running.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import sqlite3
import tempfile
from datetime import date, datetime, timedelta

CUSTOMERS = 500
PRODUCTS = 200
ORDERS = 1500
ORDER_ITEMS = 4000
MAX_LINES_PER_ORDER = 8

# A fixed "today", so the data does not depend on when it was generated.
_EPOCH = date(2023, 1, 1)
_DAYS = 730

_SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    country TEXT NOT NULL,
    city TEXT NOT NULL,
    phone TEXT,
    signed_up_on DATE NOT NULL,
    loyalty_points INTEGER NOT NULL DEFAULT 0,
    marketing_opt_in INTEGER NOT NULL CHECK (marketing_opt_in IN (0, 1))
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    unit_price REAL NOT NULL CHECK (unit_price > 0),
    weight_kg REAL NOT NULL,
    in_stock INTEGER NOT NULL,
    discontinued_on DATE,
    thumbnail BLOB NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    ordered_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('placed', 'paid', 'shipped', 'delivered', 'cancelled', 'returned')),
    shipped_on DATE,
    note TEXT
);
CREATE INDEX orders_customer_id ON orders (customer_id);
CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders (id),
    line_no INTEGER NOT NULL,
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price REAL NOT NULL,
    discount REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_items_product_id ON order_items (product_id);
CREATE VIEW order_totals AS
SELECT o.id AS order_id,
       o.customer_id,
       o.ordered_at,
       o.status,
       count(i.line_no) AS item_count,
       sum(i.quantity) AS units,
       round(sum(i.quantity * i.unit_price * (1 - i.discount)), 2) AS total
FROM orders AS o
JOIN order_items AS i ON i.order_id = o.id
GROUP BY o.id;
"""

_FIRST_NAMES = (
    "Ada", "Alan", "Amara", "Bea", "Carlos", "Chen", "Dara", "Elif", "Emil", "Fatima", "Femi",
    "Grace", "Hana", "Ines", "Ivan", "Jonas", "Kai", "Lena", "Luca", "Maya", "Mateo", "Nia",
    "Noor", "Olu", "Priya", "Quinn", "Rosa", "Sami", "Sven", "Tariq", "Uma", "Yara", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Andersen", "Baker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jansen", "Kowalski", "Lopez", "Mensah", "Novak", "Okafor", "Patel", "Rossi", "Schmidt",
    "Tanaka", "Umar", "Varga", "Weber", "Yilmaz", "Zhang",
)  # fmt: skip
_CITIES = {
    "NL": ("Amsterdam", "Rotterdam", "Utrecht"),
    "DE": ("Berlin", "Hamburg", "Munich", "Cologne"),
    "FR": ("Paris", "Lyon", "Marseille"),
    "ES": ("Madrid", "Barcelona", "Valencia"),
    "GB": ("London", "Manchester", "Leeds"),
    "US": ("New York", "Chicago", "Austin", "Seattle"),
    "NG": ("Lagos", "Abuja"),
    "JP": ("Tokyo", "Osaka"),
}
# Weighted towards where a European shop sells most.
_COUNTRY_WEIGHTS = {"NL": 30, "DE": 25, "FR": 12, "ES": 10, "GB": 10, "US": 8, "NG": 3, "JP": 2}
_CATEGORIES = {
    "Kitchen": ("Kettle", "Chef's Knife", "Cutting Board", "Espresso Cups", "Spice Rack"),
    "Garden": ("Trowel", "Watering Can", "Seed Tray", "Pruning Shears", "Hose Reel"),
    "Office": ("Desk Lamp", "Notebook", "Fountain Pen", "Monitor Stand", "Cable Tray"),
    "Outdoor": ("Tent", "Headlamp", "Water Bottle", "Camp Stove", "Rain Jacket"),
    "Toys": ("Puzzle", "Kite", "Building Blocks", "Yo-yo", "Marble Run"),
}
_ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Nordic", "Pro", "Travel", "Urban")
_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
_STATUS_WEIGHTS = (5, 8, 12, 65, 6, 4)
_NOTES = ("Leave at the door", "Gift wrap please", "Call before delivery", "Fragile")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def create_demo_database(path: pathlib.Path, *, seed: int = 7) -> bool:
    """Create the demo shop database at `path` unless a file is already there.

    Returns True when it created the file. The database is built in a temporary file next to
    `path` and moved into place in one step, so a crash never leaves a half-written database
    that later runs would mistake for a complete one.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = pathlib.Path(tmp_name)
    try:
        _build(tmp, random.Random(seed))  # noqa: S311 - demo data, not cryptography
        if path.exists():
            # Another process finished first; its copy is as good as ours.
            return False
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return True


def _build(path: pathlib.Path, rng: random.Random) -> None:
    conn = sqlite3.connect(path)
    try:
        # Enforced while loading, so a generator bug cannot ship dangling references.
        conn.execute("PRAGMA foreign_keys = ON")
        conn.executescript(_SCHEMA)
        with conn:
            customers, signed_up = _customers(rng)
            conn.executemany(f"INSERT INTO customers VALUES ({_marks(10)})", customers)
            products, prices = _products(rng)
            conn.executemany(f"INSERT INTO products VALUES ({_marks(9)})", products)
            orders = _orders(rng, signed_up)
            conn.executemany(f"INSERT INTO orders VALUES ({_marks(6)})", orders)
            conn.executemany(
                f"INSERT INTO order_items VALUES ({_marks(6)})", _order_items(rng, prices)
            )
        conn.execute("VACUUM")
    finally:
        conn.close()


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _customers(rng: random.Random) -> tuple[list[tuple[object, ...]], dict[int, date]]:
    """Customer rows, and each customer's sign-up date (no one orders before signing up)."""
    countries = list(_COUNTRY_WEIGHTS)
    weights = list(_COUNTRY_WEIGHTS.values())
    rows: list[tuple[object, ...]] = []
    signed_up: dict[int, date] = {}
    for customer_id in range(1, CUSTOMERS + 1):
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        country = rng.choices(countries, weights)[0]
        # About a third never gave a phone number: the nullable column previews should show.
        phone = (
            None if rng.random() < 0.35 else f"+{rng.randint(10, 99)} {rng.randrange(10**9):09d}"
        )
        signed_up[customer_id] = _EPOCH + timedelta(days=rng.randrange(_DAYS // 2))
        rows.append(
            (
                customer_id,
                f"{first}.{last}.{customer_id}@example.com".lower(),
                first,
                last,
                country,
                rng.choice(_CITIES[country]),
                phone,
                signed_up[customer_id].isoformat(),
                rng.randrange(0, 5000, 10),
                int(rng.random() < 0.4),
            )
        )
    return rows, signed_up


def _products(rng: random.Random) -> tuple[list[tuple[object, ...]], dict[int, float]]:
    """Product rows, and each product's list price (which order lines copy)."""
    categories = list(_CATEGORIES)
    rows: list[tuple[object, ...]] = []
    prices: dict[int, float] = {}
    for product_id in range(1, PRODUCTS + 1):
        category = categories[(product_id - 1) % len(categories)]
        item = rng.choice(_CATEGORIES[category])
        discontinued = (
            (_EPOCH + timedelta(days=rng.randrange(_DAYS))).isoformat()
            if rng.random() < 0.1
            else None
        )
        prices[product_id] = round(rng.uniform(2.5, 250.0), 2)
        rows.append(
            (
                product_id,
                f"{category[:3].upper()}-{product_id:05d}",
                f"{rng.choice(_ADJECTIVES)} {item}",
                category,
                prices[product_id],
                round(rng.uniform(0.05, 12.0), 3),
                rng.randint(0, 400),
                discontinued,
                _thumbnail(rng),
            )
        )
    return rows, prices


def _thumbnail(rng: random.Random) -> bytes:
    # Not a real image, just PNG-shaped bytes: enough to exercise binary handling in previews.
    return _PNG_SIGNATURE + rng.randbytes(rng.randint(48, 480))


def _orders(rng: random.Random, signed_up: dict[int, date]) -> list[tuple[object, ...]]:
    customer_ids = list(signed_up)
    end = datetime.combine(_EPOCH + timedelta(days=_DAYS), datetime.min.time())
    rows: list[tuple[object, ...]] = []
    for order_id in range(1, ORDERS + 1):
        customer_id = rng.choice(customer_ids)
        start = datetime.combine(signed_up[customer_id], datetime.min.time())
        ordered_at = start + timedelta(seconds=rng.randrange(int((end - start).total_seconds())))
        status = rng.choices(_STATUSES, _STATUS_WEIGHTS)[0]
        shipped_on = (
            (ordered_at.date() + timedelta(days=rng.randint(1, 5))).isoformat()
            if status in ("shipped", "delivered", "returned")
            else None
        )
        note = rng.choice(_NOTES) if rng.random() < 0.08 else None
        rows.append((order_id, customer_id, ordered_at.isoformat(), status, shipped_on, note))
    return rows


def _order_items(rng: random.Random, prices: dict[int, float]) -> list[tuple[object, ...]]:
    # Every order gets one line, and the rest are spread at random (capped), which lands on
    # exactly ORDER_ITEMS lines with a realistic long tail of bigger baskets.
    lines = dict.fromkeys(range(1, ORDERS + 1), 1)
    extra = ORDER_ITEMS - ORDERS
    while extra:
        order_id = rng.randint(1, ORDERS)
        if lines[order_id] < MAX_LINES_PER_ORDER:
            lines[order_id] += 1
            extra -= 1
    product_ids = list(prices)
    rows: list[tuple[object, ...]] = []
    for order_id, count in lines.items():
        for line_no, product_id in enumerate(rng.sample(product_ids, count), start=1):
            discount = rng.choice((0.0, 0.0, 0.0, 0.05, 0.1, 0.2))
            rows.append(
                (order_id, line_no, product_id, rng.randint(1, 5), prices[product_id], discount)
            )
    return rows
