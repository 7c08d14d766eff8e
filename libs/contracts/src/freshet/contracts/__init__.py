"""Freshet's event contracts. Depends on pydantic alone, so any system can reuse it."""

from freshet.contracts.envelope import (
    CORRELATION_HEADER,
    Envelope,
    EnvelopeError,
    KafkaMessage,
    decode,
    encode,
)
from freshet.contracts.events import (
    EVENT_MODELS,
    CollectionChanged,
    CollectionRequested,
    DatasetDiff,
    DatasetRef,
    Event,
    PreviewRequested,
    PreviewSampled,
    RefreshCompleted,
    RefreshRequested,
    RunCompleted,
    TableRefreshed,
    TableRefreshFailed,
)
from freshet.contracts.filters import RunFilters
from freshet.contracts.topics import TOPICS, Topic, all_topic_names, topic_for, topic_named

__all__ = [
    "CORRELATION_HEADER",
    "EVENT_MODELS",
    "TOPICS",
    "CollectionChanged",
    "CollectionRequested",
    "DatasetDiff",
    "DatasetRef",
    "Envelope",
    "EnvelopeError",
    "Event",
    "KafkaMessage",
    "PreviewRequested",
    "PreviewSampled",
    "RefreshCompleted",
    "RefreshRequested",
    "RunCompleted",
    "RunFilters",
    "TableRefreshFailed",
    "TableRefreshed",
    "Topic",
    "all_topic_names",
    "decode",
    "encode",
    "topic_for",
    "topic_named",
]
