"""Query results as JSON (default), Arrow IPC stream or CSV, chosen by the Accept header.

JSON carries everything in its body: `columns` (name and DuckDB type), `rows` (arrays, in
column order: names may repeat), `row_count`, `truncated`, `limit`, the `tables` read (with
their versions), `query_id` and `timings`. Arrow and CSV carry the rows only, so the rest is
in headers (`X-Freshet-Query-Id`, `X-Freshet-Row-Count`, `X-Freshet-Truncated`,
`X-Freshet-Row-Limit`); an Arrow stream also has `freshet.truncated` and
`freshet.row_limit` in its schema metadata. Values JSON cannot hold exactly are written as
strings (decimals, 128-bit integers, non-finite floats), binary as base64.
"""

from __future__ import annotations

import base64
import enum
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from fastapi import Response

from freshet.connectors.values import json_safe
from freshet.gateway import errors


class Format(enum.Enum):
    json = "application/json"
    arrow = "application/vnd.apache.arrow.stream"
    csv = "text/csv"


# When ranges tie, the first of these wins (JSON is the default).
_PREFERENCE = (Format.json, Format.arrow, Format.csv)


def negotiate(accept: str | None) -> Format:
    """The format the Accept header prefers (RFC 9110 media ranges with q-values); JSON when
    it says nothing; E_NOT_ACCEPTABLE when it accepts none of the three."""
    if accept is None or not accept.strip():
        return Format.json
    best: tuple[float, int] | None = None
    chosen: Format | None = None
    for rank, fmt in enumerate(_PREFERENCE):
        quality = _quality(accept, fmt.value)
        if quality <= 0:
            continue
        key = (quality, -rank)
        if best is None or key > best:
            best, chosen = key, fmt
    if chosen is None:
        raise errors.NotAcceptable(
            "results come as application/json, application/vnd.apache.arrow.stream or "
            "text/csv; the Accept header allows none of them",
            details={"supported": [f.value for f in _PREFERENCE]},
        )
    return chosen


def _quality(accept: str, media_type: str) -> float:
    """The q-value the most specific matching range gives `media_type` (0: not accepted)."""
    kind = media_type.split("/")[0]
    found: tuple[int, float] | None = None
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        range_ = parts[0].lower()
        if "/" not in range_:
            continue
        r_kind, r_sub = range_.split("/", 1)
        if range_ == media_type:
            specificity = 2
        elif r_kind == kind and r_sub == "*":
            specificity = 1
        elif range_ == "*/*":
            specificity = 0
        else:
            continue
        quality = 1.0
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        if found is None or specificity > found[0]:
            found = (specificity, quality)
    return found[1] if found else 0.0


def render(fmt: Format, table: pa.Table, types: list[str], meta: dict[str, Any]) -> Response:
    """The response for a result; `meta` holds query_id, row_count, truncated, limit, tables
    and timings."""
    headers = {
        "X-Freshet-Query-Id": str(meta["query_id"]),
        "X-Freshet-Row-Count": str(meta["row_count"]),
        "X-Freshet-Truncated": "true" if meta["truncated"] else "false",
        "X-Freshet-Row-Limit": str(meta["limit"]),
        "Vary": "Accept",
    }
    if fmt is Format.arrow:
        return Response(_arrow(table, meta), media_type=fmt.value, headers=headers)
    if fmt is Format.csv:
        return Response(_csv(table), media_type="text/csv; charset=utf-8", headers=headers)
    body = {
        "query_id": str(meta["query_id"]),
        "columns": [
            {"name": name, "type": type_}
            for name, type_ in zip(table.column_names, types, strict=True)
        ],
        "rows": rows_of(table),
        **{k: meta[k] for k in ("row_count", "truncated", "limit", "tables", "timings")},
    }
    return Response(
        json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")),
        media_type=fmt.value,
        headers=headers,
    )


def rows_of(table: pa.Table) -> list[list[Any]]:
    """The rows as JSON-ready arrays, column order kept."""
    columns = [[_json_value(v) for v in column.to_pylist()] for column in table.columns]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


# Integers JSON parsers take exactly (JavaScript's safe range).
_SAFE_INT = 2**53


def _json_value(value: object) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and value.as_tuple().exponent == 0
        and abs(value) <= _SAFE_INT
    ):
        # 128-bit integers (DuckDB's sum of BIGINT) arrive as scale-0 decimals.
        return int(value)
    return json_safe(value)


def _arrow(table: pa.Table, meta: dict[str, Any]) -> bytes:
    metadata = dict(table.schema.metadata or {})
    metadata[b"freshet.truncated"] = b"true" if meta["truncated"] else b"false"
    metadata[b"freshet.row_limit"] = str(meta["limit"]).encode()
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _csv(table: pa.Table) -> bytes:
    """CSV with a header row; nested values as JSON text, binary as base64 (CSV has
    neither)."""
    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            texts = [None if v is None else _text(_json_value(v)) for v in column.to_pylist()]
            columns.append(pa.array(texts, pa.string()))
        elif pa.types.is_dictionary(kind):
            columns.append(column.cast(kind.value_type))
        else:
            columns.append(column)
    flat = pa.Table.from_arrays(columns, names=table.column_names)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(flat, sink)
    return bytes(sink.getvalue().to_pybytes())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
