"""What a connector reports about a source: its tables, their shape, and sample rows."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, JsonValue


class ColumnInfo(BaseModel, frozen=True):
    name: str
    data_type: str
    nullable: bool
    # 1-based position in `SELECT *` order, without gaps left by dropped columns.
    ordinal: int
    is_primary_key: bool


class ForeignKeyInfo(BaseModel, frozen=True):
    # `columns[i]` refers to `referred_columns[i]`.
    columns: list[str]
    referred_schema: str
    referred_table: str
    referred_columns: list[str]


class TableInfo(BaseModel, frozen=True):
    schema_name: str
    name: str
    kind: Literal["table", "view"]
    columns: list[ColumnInfo]
    primary_key: list[str]
    foreign_keys: list[ForeignKeyInfo]
    # The planner's estimate; None when the source has none (never analysed, views, SQLite).
    row_estimate: int | None

    def fingerprint(self) -> str:
        """A sha256 hex digest that changes exactly when the table's shape changes.

        Row estimates, foreign keys and column order in the list are deliberately left out:
        the first drifts with every write, and the others do not change what a sample holds.
        """
        shape = {
            "columns": [
                [c.name, c.data_type, c.nullable]
                for c in sorted(self.columns, key=lambda c: c.ordinal)
            ],
            "primary_key": self.primary_key,
        }
        canonical = json.dumps(shape, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()


class Sample(BaseModel, frozen=True):
    columns: list[str]
    rows: list[list[JsonValue]]
