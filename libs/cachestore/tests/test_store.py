"""Cache paths that no name can escape, URIs that only name files of the store, and writes
that leave a complete file or none."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from freshet.cachestore import CacheStore, encode_name, new_version, write_version

HOSTILE = ["..", ".", "", "/", "a/../../b", "..\\x", "\x00", "we\"ird'; --", "ünï", "x" * 600]


@pytest.mark.parametrize("name", HOSTILE)
def test_every_name_becomes_one_safe_component(name: str) -> None:
    encoded = encode_name(name)
    assert encoded not in ("", ".", "..")
    assert "/" not in encoded
    assert "\\" not in encoded
    assert "\x00" not in encoded
    assert "." not in encoded
    assert len(encoded) <= 120
    assert encoded.isascii()


def test_distinct_names_stay_distinct() -> None:
    names = [*HOSTILE, "x" * 601, "a%2Eb", "a.b", "A.b"]
    assert len({encode_name(n) for n in names}) == len(names)


def test_version_paths_stay_under_the_root_and_uris_round_trip(tmp_path: Path) -> None:
    store = CacheStore.local(tmp_path / "cache")
    endpoint = uuid.uuid4()
    for schema in HOSTILE:
        path = store.version_path(endpoint, schema, "../../etc/passwd", new_version())
        resolved = Path(path).resolve()
        assert resolved.is_relative_to((tmp_path / "cache" / str(endpoint)).resolve())
        assert store.path_of(store.uri(path)) == path
    for outside in ("file:///etc/passwd", f"file://{tmp_path}/cache/../x", "s3://b/k", "/x"):
        with pytest.raises(ValueError, match="URI"):
            store.path_of(outside)


async def _batches(fail: bool) -> AsyncIterator[pa.RecordBatch]:
    for start in range(0, 30, 10):
        yield pa.RecordBatch.from_pydict({"id": list(range(start, start + 10))})
        if fail:
            raise RuntimeError("source went away")


async def test_a_write_leaves_a_complete_file_or_nothing(tmp_path: Path) -> None:
    store = CacheStore.local(tmp_path / "cache")
    path = store.version_path(uuid.uuid4(), "s", "t", new_version())
    written = await write_version(store, path, _batches(fail=False))
    assert written.rows == 30
    assert written.size == _size(path)
    assert pq.read_table(path).num_rows == 30
    failed = store.version_path(uuid.uuid4(), "s", "t", new_version())
    with pytest.raises(RuntimeError):
        await write_version(store, failed, _batches(fail=True))
    assert not _exists(failed)


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _size(path: str) -> int:
    return os.path.getsize(path)
