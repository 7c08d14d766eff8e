"""The topic registry: every topic, what travels on it, its key and its dead-letter topic."""

from __future__ import annotations

from dataclasses import dataclass

from freshet.contracts.events import (
    CollectionChanged,
    CollectionRequested,
    Event,
    PreviewRequested,
    PreviewSampled,
    RefreshCompleted,
    RefreshRequested,
    RunCompleted,
    TableRefreshed,
    TableRefreshFailed,
)

DEAD_LETTER_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topic:
    name: str
    event: type[Event]
    partitions: int
    # Dead letters are rare and read by people: one partition keeps them in arrival order.
    dead_letter_partitions: int = 1

    @property
    def key_field(self) -> str:
        return self.event.key_field

    @property
    def dead_letter(self) -> str:
        return self.name + DEAD_LETTER_SUFFIX


TOPICS: tuple[Topic, ...] = (
    Topic("freshet.collection.requested", CollectionRequested, partitions=3),
    Topic("freshet.run.completed", RunCompleted, partitions=3),
    Topic("freshet.refresh.requested", RefreshRequested, partitions=3),
    Topic("freshet.preview.requested", PreviewRequested, partitions=3),
    Topic("freshet.preview.sampled", PreviewSampled, partitions=3),
    Topic("freshet.collection.changed", CollectionChanged, partitions=3),
    Topic("freshet.table.refreshed", TableRefreshed, partitions=3),
    Topic("freshet.table.refresh_failed", TableRefreshFailed, partitions=3),
    Topic("freshet.refresh.completed", RefreshCompleted, partitions=3),
)

_BY_NAME = {t.name: t for t in TOPICS}
_BY_EVENT = {t.event: t for t in TOPICS}


def topic_named(name: str) -> Topic:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}") from None


def topic_for(event: type[Event] | Event) -> Topic:
    cls = event if isinstance(event, type) else type(event)
    return _BY_EVENT[cls]


def all_topic_names() -> list[str]:
    """Every topic the system needs, dead-letter topics included."""
    return [n for t in TOPICS for n in (t.name, t.dead_letter)]
