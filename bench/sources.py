"""The tiny SQLite sources the benchmarks collect and preview."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def create_two_table_source(path: Path) -> Path:
    """Two related tables (teams <- members), a few rows each: a small endpoint to collect."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executescript(
                """
                CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
                CREATE TABLE members (
                    id INTEGER PRIMARY KEY,
                    team_id INTEGER NOT NULL REFERENCES teams (id),
                    name TEXT NOT NULL,
                    joined_on DATE
                );
                """
            )
            conn.executemany(
                "INSERT INTO teams VALUES (?, ?)", [(i, f"team {i}") for i in range(1, 6)]
            )
            conn.executemany(
                "INSERT INTO members VALUES (?, ?, ?, ?)",
                [(i, 1 + i % 5, f"member {i}", f"2026-01-{1 + i % 28:02d}") for i in range(1, 41)],
            )
    finally:
        conn.close()
    return path


def create_one_table_source(path: Path) -> Path:
    """Exactly one table of 100 rows: one dataset to preview."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                "CREATE TABLE readings ("
                "id INTEGER PRIMARY KEY, sensor TEXT NOT NULL, value REAL, taken_at TIMESTAMP)"
            )
            conn.executemany(
                "INSERT INTO readings VALUES (?, ?, ?, ?)",
                [
                    (i, f"sensor-{i % 7}", i * 0.25, f"2026-02-01T{i % 24:02d}:{i % 60:02d}:00")
                    for i in range(1, 101)
                ],
            )
    finally:
        conn.close()
    return path


def create_many_table_source(path: Path, tables: int) -> Path:
    """`tables` small tables of five rows each: one endpoint with many datasets to preview."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        with conn:
            for t in range(tables):
                conn.execute(
                    f"CREATE TABLE t{t:04d} (id INTEGER PRIMARY KEY, label TEXT, amount REAL)"
                )
                conn.executemany(
                    f"INSERT INTO t{t:04d} VALUES (?, ?, ?)",
                    [(i, f"row {i} of {t}", i * 1.5) for i in range(5)],
                )
    finally:
        conn.close()
    return path
