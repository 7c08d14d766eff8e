"""The cache store: a local folder by default, any S3-compatible store by configuration.

Files live at `<root>/<endpoint id>/<schema>/<table>/<version>.parquet`. Schema and table
names are encoded (`encode_name`) so that no name can leave its folder: `..`, `/`, `\\`,
NUL, an empty name or a very long one all become one safe path component. A file is named by
a URI: `file:///abs/path.parquet` locally, `s3://bucket/key.parquet` on S3; the catalog
stores these.

Both kinds go through pyarrow's filesystem layer (`pyarrow.fs.LocalFileSystem`,
`S3FileSystem`), so the writer, the deleter and the reconciler do not care which it is.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

import pyarrow.fs as pafs

SUFFIX = ".parquet"
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# Encoded components longer than this are shortened and made unique by a digest (file systems
# allow 255 bytes per component; S3 keys 1,024 in all).
_MAX_COMPONENT = 120


def encode_name(name: str) -> str:
    """A schema or table name as one path component that cannot leave its folder.

    Letters, digits, `_` and `-` stay; every other byte of the UTF-8 name becomes `%XX`
    (so `.`, `/`, `\\` and NUL never appear raw). The empty name is `%`, which no encoded
    name equals. Long names keep a readable prefix plus `~` and a digest of the whole name.
    """
    if name == "":
        return "%"
    encoded = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in name.encode("utf-8"))
    if len(encoded) <= _MAX_COMPONENT:
        return encoded
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:24]
    prefix = encoded[:80]
    escape = prefix.rfind("%")
    if escape >= len(prefix) - 2:
        # Never cut an escape in half.
        prefix = prefix[:escape]
    return f"{prefix}~{digest}"


def new_version(now: datetime | None = None) -> str:
    """A version name that sorts by time and never repeats: `20260114T103000Z-<hex>`."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{at:%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class StoredFile:
    uri: str
    size: int
    modified_at: datetime | None


class CacheStore:
    """One root folder (or bucket prefix) on a pyarrow filesystem."""

    def __init__(self, filesystem: pafs.FileSystem, root: str, *, scheme: str) -> None:
        self.filesystem = filesystem
        self.root = root.rstrip("/")
        self.scheme = scheme

    @classmethod
    def local(cls, root: Path) -> CacheStore:
        folder = root.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return cls(pafs.LocalFileSystem(), str(folder), scheme="file")

    @classmethod
    def s3(
        cls,
        location: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> CacheStore:
        """`location` is `s3://bucket/prefix`; `endpoint_url` names an S3-compatible server."""
        if not location.startswith("s3://") or len(location) <= len("s3://"):
            raise ValueError("an S3 cache root looks like s3://bucket/prefix")
        options: dict[str, object] = {"region": region}
        if endpoint_url:
            scheme, _, host = endpoint_url.partition("://")
            options["endpoint_override"] = host or endpoint_url
            options["scheme"] = scheme if host else "https"
        if access_key and secret_key:
            options["access_key"] = access_key
            options["secret_key"] = secret_key
        return cls(pafs.S3FileSystem(**options), location[len("s3://") :], scheme="s3")

    # --- names -------------------------------------------------------------------------------

    def version_path(
        self, endpoint_id: uuid.UUID, schema_name: str, table: str, version: str
    ) -> str:
        return (
            "/".join(
                (self.root, str(endpoint_id), encode_name(schema_name), encode_name(table), version)
            )
            + SUFFIX
        )

    def uri(self, path: str) -> str:
        if self.scheme == "file":
            return Path(path).as_uri()
        return f"s3://{path}"

    def path_of(self, uri: str) -> str:
        """The filesystem path of a URI of this store; ValueError for any other URI."""
        if self.scheme == "file":
            if not uri.startswith("file://"):
                raise ValueError("not a file URI of this cache store")
            path = unquote(uri[len("file://") :])
        else:
            if not uri.startswith("s3://"):
                raise ValueError("not an S3 URI of this cache store")
            path = uri[len("s3://") :]
        if not path.startswith(self.root + "/") or "/../" in path or path.endswith("/.."):
            raise ValueError("URI is outside the cache root")
        return path

    def local_path(self, uri: str) -> Path | None:
        """The file's local path (for readers that open files directly), None on S3."""
        return Path(self.path_of(uri)) if self.scheme == "file" else None

    # --- files -------------------------------------------------------------------------------

    def open_output(self, path: str) -> pafs.NativeFile:
        if self.scheme == "file":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return self.filesystem.open_output_stream(path)

    def make_durable(self, path: str) -> None:
        """After the file is closed: on a local disk, fsync it and its folder (S3 has the whole
        object once the upload completes, or nothing)."""
        if self.scheme != "file":
            return
        for target, flags in ((path, os.O_RDONLY), (str(Path(path).parent), os.O_RDONLY)):
            fd = os.open(target, flags)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def size(self, path: str) -> int:
        return int(self.filesystem.get_file_info(path).size or 0)

    def delete(self, uri: str) -> bool:
        """Delete the file; False when it was already gone."""
        path = self.path_of(uri)
        info = self.filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return False
        self.filesystem.delete_file(path)
        return True

    def remove_partial(self, path: str) -> None:
        """Remove what a failed write left, if anything."""
        info = self.filesystem.get_file_info(path)
        if info.type != pafs.FileType.NotFound:
            self.filesystem.delete_file(path)

    def files(self) -> Iterator[StoredFile]:
        """Every file under the root (the reconciler's view)."""
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        for info in self.filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            modified = info.mtime
            if isinstance(modified, datetime) and modified.tzinfo is None:
                modified = modified.replace(tzinfo=UTC)
            yield StoredFile(
                uri=self.uri(info.path), size=int(info.size or 0), modified_at=modified
            )

    def describe(self) -> str:
        """Where the store is, for logs (no keys)."""
        return f"{self.scheme}://{quote(self.root)}"
