"""Prometheus metrics every service exports. One process per service, so one registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter(
    "freshet_messages_consumed_total",
    "Messages a consumer finished with, by outcome (ok, duplicate, dead_lettered).",
    ["topic", "group", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "freshet_handler_duration_seconds",
    "Time a handler took for one message, retries included.",
    ["topic", "group"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RETRIES = Counter(
    "freshet_handler_retries_total",
    "Handler attempts that failed and were retried.",
    ["topic", "group"],
)
DEAD_LETTERS = Counter(
    "freshet_dead_letters_total",
    "Messages sent to a dead-letter topic, by reason.",
    ["topic", "group", "reason"],
)
CONSUMER_LAG = Gauge(
    "freshet_consumer_lag_messages",
    "Messages between a consumer's position and the end of its partitions.",
    ["topic", "group"],
)
OUTBOX_PUBLISHED = Counter(
    "freshet_outbox_published_total", "Outbox events published to the broker.", ["topic"]
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "freshet_outbox_publish_failures_total", "Outbox publish attempts that failed."
)
OUTBOX_BACKLOG = Gauge(
    "freshet_outbox_backlog", "Outbox events written but not yet published (seen by the relay)."
)
OUTBOX_OLDEST_AGE = Gauge(
    "freshet_outbox_oldest_pending_seconds", "Age of the oldest unpublished outbox event."
)
OUTBOX_REPLAYS = Counter(
    "freshet_outbox_replays_total", "Times the relay re-sent published events after a broker loss."
)
RELAY_LEADER = Gauge("freshet_outbox_relay_leader", "1 while this process holds the relay lease.")
RUNS_FINISHED = Counter(
    "freshet_collection_runs_total", "Collection runs finished, by final status.", ["status"]
)
RUN_SECONDS = Histogram(
    "freshet_collection_run_duration_seconds",
    "Duration of collection runs from start to final status.",
    ["status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
RUNS_IN_PROGRESS = Gauge(
    "freshet_collection_runs_in_progress", "Collection runs this collector is working on."
)
RUN_TAKEOVERS = Counter(
    "freshet_collection_run_takeovers_total",
    "RUNNING runs taken over after their collector stopped renewing the lease.",
)
PREVIEWS_PERSISTED = Counter(
    "freshet_previews_persisted_total",
    "Preview samples written into the catalog, by outcome (stored, stale_ignored).",
    ["outcome"],
)
PREVIEW_SAMPLES = Counter(
    "freshet_preview_samples_total", "Preview samples taken from sources, by outcome.", ["outcome"]
)
ASSIGNED_PARTITIONS = Gauge(
    "freshet_consumer_assigned_partitions",
    "Partitions of a topic this consumer holds now (replicas of a group share the partitions).",
    ["topic", "group"],
)
RUNS_OLDEST_ACTIVE = Gauge(
    "freshet_collection_run_oldest_active_seconds",
    "Age of the oldest run in a status (QUEUED: since requested, RUNNING: since started), "
    "catalog-wide; 0 when none. Every collector exports the same value.",
    ["status"],
)
DEAD_LETTER_REPLAYS = Counter(
    "freshet_dead_letter_replays_total",
    "Dead-lettered messages re-published to their original topic by an operator.",
    ["topic"],
)
PREVIEW_REQUESTS = Counter(
    "freshet_preview_requests_total",
    "Preview requests by refresh source and final outcome (sampled, failed, throttled, "
    "refused, dropped).",
    ["source", "outcome"],
)
PREVIEW_OLDEST_AGE = Gauge(
    "freshet_preview_oldest_age_seconds",
    "Age of the oldest preview of an auto-policy endpoint's previewable datasets (never-sampled "
    "ones are counted in freshet_previews_stale).",
    ["endpoint"],
)
PREVIEWS_STALE = Gauge(
    "freshet_previews_stale",
    "Previewable datasets of an auto-policy endpoint whose preview is stale or missing.",
    ["endpoint"],
)
PREVIEW_BACKLOG = Gauge(
    "freshet_preview_requests_open",
    "Preview requests waiting or running, by status (queued, running).",
    ["status"],
)
PREVIEW_ENDPOINTS_HELD = Gauge(
    "freshet_preview_endpoints_held",
    "Endpoints whose preview lease this previewer holds (it samples them).",
)
AUDIT_RECORDS = Counter(
    "freshet_audit_records_total",
    "Audit records written, by action and outcome.",
    ["action", "outcome"],
)
