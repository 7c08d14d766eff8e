"""Parquet cache files: where they live (local folder or S3) and how a version is written."""

from freshet.cachestore.settings import store_from_settings
from freshet.cachestore.store import CacheStore, StoredFile, encode_name, new_version
from freshet.cachestore.writer import Written, schema_fingerprint, write_version

__all__ = [
    "CacheStore",
    "StoredFile",
    "Written",
    "encode_name",
    "new_version",
    "schema_fingerprint",
    "store_from_settings",
    "write_version",
]
