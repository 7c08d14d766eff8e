"""The cache store the settings describe (FRESHET_CACHE_ROOT and the S3 options)."""

from __future__ import annotations

from freshet.cachestore.store import CacheStore
from freshet.kit.settings import Settings


def store_from_settings(settings: Settings) -> CacheStore:
    root = settings.cache_root or str(settings.data_dir / "cache")
    if root.startswith("s3://"):
        key = settings.cache_s3_access_key_id
        secret = settings.cache_s3_secret_access_key
        return CacheStore.s3(
            root,
            endpoint_url=settings.cache_s3_endpoint_url,
            region=settings.cache_s3_region,
            access_key=key.get_secret_value() if key else None,
            secret_key=secret.get_secret_value() if secret else None,
        )
    from pathlib import Path

    return CacheStore.local(Path(root.removeprefix("file://")))
