"""Prometheus metrics of the query path (names fixed for dashboards, issue 8)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

QUERY_SECONDS = Histogram(
    "freshet_query_duration_seconds",
    "A query from arrival to result: resolving, lazy fetches, execution, formatting.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
QUERIES = Counter(
    "freshet_queries_total",
    "Queries by outcome (succeeded, refused, invalid, failed, timeout, not_found, not_cached, "
    "fetch_failed, busy, unavailable, error).",
    ["outcome"],
)
QUERY_RESOLVE_SECONDS = Histogram(
    "freshet_query_resolve_seconds",
    "Resolving a query's table pointers and registering its reader lease (one transaction).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
QUERY_ROWS = Counter("freshet_query_rows_total", "Rows returned by queries.")
QUERY_LAZY_FETCHES = Counter(
    "freshet_query_lazy_fetches_total",
    "Tables a query fetched before reading them, by outcome (started, joined, succeeded, "
    "failed, timeout).",
    ["outcome"],
)

# Error code -> outcome label: few labels, each something an operator would alert on apart.
_OUTCOMES = {
    "E_VALIDATION": "invalid",
    "E_QUERY_SYNTAX": "invalid",
    "E_QUERY_INVALID": "invalid",
    "E_NOT_ACCEPTABLE": "refused",
    "E_QUERY_MULTIPLE_STATEMENTS": "refused",
    "E_QUERY_NOT_SELECT": "refused",
    "E_QUERY_FUNCTION_FORBIDDEN": "refused",
    "E_QUERY_TABLE_NOT_QUALIFIED": "refused",
    "E_QUERY_SANDBOX": "refused",
    "E_QUERY_NAME_UNSUPPORTED": "refused",
    "E_QUERY_FAILED": "failed",
    "E_QUERY_RESOURCES": "failed",
    "E_QUERY_TIMEOUT": "timeout",
    "E_QUERY_FETCH_TIMEOUT": "timeout",
    "E_TABLE_NOT_FOUND": "not_found",
    "E_QUERY_NOT_CACHED": "not_cached",
    "E_QUERY_SCHEMA_STALE": "not_cached",
    "E_QUERY_FETCH_FAILED": "fetch_failed",
    "E_QUERY_BUSY": "busy",
    "E_QUERY_CACHE_UNAVAILABLE": "unavailable",
}


def outcome_of(code: str) -> str:
    return _OUTCOMES.get(code, "error")
