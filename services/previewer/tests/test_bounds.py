"""Bounding a sample: JSON-safe values, strings cut with a mark, binary as a size note, the
whole preview under a byte cap by dropping rows from the end, and every cut recorded."""

from __future__ import annotations

import json

from freshet.previewer.bounds import TRUNCATED_MARK, Limits, bound

LIMITS = Limits(max_rows=50, max_value_bytes=100, max_bytes=4096)


def test_a_small_sample_passes_unchanged() -> None:
    out = bound(["id", "name"], [[1, "a"], [2, None]], LIMITS)
    assert out.rows == [[1, "a"], [2, None]]
    assert out.truncation is None
    assert not out.truncated


def test_a_long_string_keeps_its_head_and_a_mark_within_the_limit_in_utf8_bytes() -> None:
    text = "é" * 300  # 600 bytes
    out = bound(["bio"], [[text]], LIMITS)
    cut = out.rows[0][0]
    assert cut.endswith(TRUNCATED_MARK)
    assert len(cut.encode()) <= 100
    assert text.startswith(cut[: -len(TRUNCATED_MARK)])
    assert out.truncation is not None
    assert out.truncation["valuesTruncated"] == 1
    assert out.truncation["cuts"] == [{"row": 0, "column": "bio", "kind": "string", "bytes": 600}]


def test_binary_becomes_a_size_note_and_is_counted() -> None:
    out = bound(["blob", "note"], [[b"\x00" * 10, "<binary 7 bytes>"]], LIMITS)
    assert out.rows == [["<binary 10 bytes>", "<binary 7 bytes>"]]
    assert out.truncation is not None
    assert out.truncation["binaryReplaced"] == 2


def test_a_large_nested_value_becomes_cut_json_text() -> None:
    out = bound(["doc"], [[{"k": "v" * 500}]], LIMITS)
    value = out.rows[0][0]
    assert isinstance(value, str)
    assert value.startswith('{"k":"vvv')
    assert value.endswith(TRUNCATED_MARK)
    assert out.truncation is not None
    assert out.truncation["cuts"][0]["kind"] == "value"


def test_non_finite_floats_become_strings() -> None:
    out = bound(["x"], [[float("nan")], [float("inf")]], LIMITS)
    assert out.rows == [["NaN"], ["Infinity"]]


def test_rows_over_the_row_cap_are_cut_and_counted() -> None:
    out = bound(["id"], [[i] for i in range(60)], LIMITS)
    assert len(out.rows) == 50
    assert out.truncation is not None
    assert out.truncation["rowsOverLimit"] == 10


def test_rows_are_dropped_from_the_end_until_the_whole_preview_fits() -> None:
    rows = [[i, "x" * 90] for i in range(50)]
    out = bound(["id", "text"], rows, LIMITS)
    encoded = json.dumps({"columns": out.columns, "rows": out.rows}, separators=(",", ":"))
    assert len(encoded.encode()) <= 4096
    assert out.rows == rows[: len(out.rows)]  # the first rows, in order
    assert out.truncation is not None
    assert out.truncation["rowsDroppedForSize"] == 50 - len(out.rows)
    # Dropping one row fewer would not have fitted.
    bigger = json.dumps(
        {"columns": out.columns, "rows": rows[: len(out.rows) + 1]}, separators=(",", ":")
    )
    assert len(bigger.encode()) > 4096


def test_bounding_twice_changes_nothing_more() -> None:
    rows = [[i, "y" * 500, b"zz"] for i in range(50)]
    once = bound(["id", "text", "blob"], rows, LIMITS)
    twice = bound(once.columns, once.rows, LIMITS)
    assert twice.rows == once.rows
    assert not twice.cut_more_than_binary


def test_cuts_are_listed_up_to_a_bound_but_always_counted() -> None:
    rows = [["a" * 200] * 5 for _ in range(50)]
    out = bound([f"c{i}" for i in range(5)], rows, Limits(max_value_bytes=100, max_bytes=1_000_000))
    assert out.truncation is not None
    assert out.truncation["valuesTruncated"] == 250
    assert len(out.truncation["cuts"]) == 100
