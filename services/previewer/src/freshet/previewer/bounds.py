"""Keeping a sample small and JSON-safe, and saying exactly what was cut.

- at most `max_rows` rows (extra rows are cut and counted);
- a string over `max_value_bytes` (UTF-8) keeps its head and ends with `TRUNCATED_MARK`; so
  does any other value (a list, an object) whose JSON text is over the limit, as text;
- a binary value is already a size note (`<binary N bytes>`, from the connectors) and is
  counted as such; raw bytes from elsewhere become one;
- the whole preview's JSON stays under `max_bytes` by dropping rows from the end.

Each cut is recorded in `truncation`. Bounding is idempotent: a bounded sample passes through
again unchanged, so the persist step can apply it to every sample, ours or an outside one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from freshet.connectors import BINARY_NOTE, binary_note

TRUNCATED_MARK = "…[truncated]"
# Where cuts happened, listed up to this many; the counts are always complete.
MAX_RECORDED_CUTS = 100


@dataclass(frozen=True)
class Limits:
    max_rows: int = 50
    max_value_bytes: int = 1024
    max_bytes: int = 65_536


@dataclass
class Bounded:
    columns: list[str]
    rows: list[list[Any]]
    truncation: dict[str, Any] | None = None
    cuts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.truncation is not None

    @property
    def cut_more_than_binary(self) -> bool:
        """Whether anything but binary notes was cut (binary notes are already bounded)."""
        t = self.truncation or {}
        return any(t.get(k) for k in ("valuesTruncated", "rowsOverLimit", "rowsDroppedForSize"))


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(text: str, limit: int) -> str:
    """`text`'s head plus the mark, at most `limit` UTF-8 bytes in all, cut between characters."""
    room = max(limit - _utf8_len(TRUNCATED_MARK), 0)
    head = text.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return head + TRUNCATED_MARK


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _safe_scalar(value: Any) -> Any:
    """Values that JSON cannot hold, made JSON-safe (connectors already do this for theirs)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return binary_note(value.nbytes if isinstance(value, memoryview) else len(value))
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def bound(columns: Sequence[str], rows: Sequence[Sequence[Any]], limits: Limits) -> Bounded:
    counts = {"values": 0, "binary": 0, "rows_over_limit": 0, "rows_dropped_for_size": 0}
    cuts: list[dict[str, Any]] = []

    def note(row: int, column: int, kind: str, size: int) -> None:
        if len(cuts) < MAX_RECORDED_CUTS:
            name = columns[column] if column < len(columns) else str(column)
            cuts.append({"row": row, "column": name, "kind": kind, "bytes": size})

    kept = list(rows[: limits.max_rows])
    counts["rows_over_limit"] = len(rows) - len(kept)
    out_rows: list[list[Any]] = []
    for r, row in enumerate(kept):
        out: list[Any] = []
        for c, raw in enumerate(row):
            value = _safe_scalar(raw)
            if isinstance(value, str):
                if BINARY_NOTE.fullmatch(value):
                    counts["binary"] += 1
                    note(r, c, "binary", _binary_size(value))
                elif (size := _utf8_len(value)) > limits.max_value_bytes:
                    value = _cut(value, limits.max_value_bytes)
                    counts["values"] += 1
                    note(r, c, "string", size)
            elif isinstance(value, list | dict):
                text = _json(value)
                if (size := _utf8_len(text)) > limits.max_value_bytes:
                    value = _cut(text, limits.max_value_bytes)
                    counts["values"] += 1
                    note(r, c, "value", size)
            out.append(value)
        out_rows.append(out)

    # Rows go from the end until the whole preview fits: `{"columns":[…],"rows":[…]}`.
    sizes = [_utf8_len(_json(row)) + 1 for row in out_rows]
    total = _utf8_len(_json({"columns": list(columns), "rows": []})) + sum(sizes)
    while out_rows and total > limits.max_bytes:
        total -= sizes.pop()
        out_rows.pop()
        counts["rows_dropped_for_size"] += 1

    truncation: dict[str, Any] | None = None
    if any(counts.values()):
        truncation = {
            "valuesTruncated": counts["values"],
            "binaryReplaced": counts["binary"],
            "rowsOverLimit": counts["rows_over_limit"],
            "rowsDroppedForSize": counts["rows_dropped_for_size"],
            "maxRows": limits.max_rows,
            "maxValueBytes": limits.max_value_bytes,
            "maxBytes": limits.max_bytes,
            "cuts": cuts,
        }
    return Bounded(columns=list(columns), rows=out_rows, truncation=truncation, cuts=cuts)


def _binary_size(note: str) -> int:
    match = BINARY_NOTE.fullmatch(note)
    return int(match.group(1)) if match else 0
