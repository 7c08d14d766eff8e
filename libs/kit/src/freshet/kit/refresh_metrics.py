"""Prometheus metrics of parquet caches and refreshes (names fixed for dashboards, issue 8)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REFRESH_TABLES = Counter(
    "freshet_refresh_tables_total",
    "Table refreshes by outcome (succeeded, failed, skipped, joined).",
    ["outcome"],
)
REFRESH_ROWS = Counter("freshet_refresh_rows_total", "Rows written into parquet caches.")
REFRESH_BYTES = Counter("freshet_refresh_bytes_total", "Bytes of parquet cache files written.")
REFRESH_SECONDS = Histogram(
    "freshet_refresh_duration_seconds",
    "Duration of one table's refresh, start to pointer move (or failure).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
REFRESH_IN_PROGRESS = Gauge(
    "freshet_refresh_in_progress", "Table refreshes this refresher is running now."
)
CACHE_AGE = Gauge(
    "freshet_cache_age_seconds",
    "Seconds since a cached table's current version was synced.",
    ["endpoint", "table"],
)
CACHE_BYTES = Gauge(
    "freshet_cache_bytes", "Size of a cached table's current version.", ["endpoint", "table"]
)
CACHE_PENDING_DELETIONS = Gauge(
    "freshet_cache_pending_deletions", "Replaced or invalidated cache files not yet deleted."
)
CACHE_FILES_DELETED = Counter(
    "freshet_cache_files_deleted_total",
    "Cache files deleted, by reason (replaced, invalidated, abandoned, orphan).",
    ["reason"],
)
CACHE_DELETE_FAILURES = Counter(
    "freshet_cache_delete_failures_total", "Attempts to delete a cache file that failed."
)
