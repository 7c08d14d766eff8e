"""The CloudEvents Kafka protocol binding, binary content mode.

The Kafka value is the event's JSON `data`; the context attributes travel as `ce_*` headers.
Decoding never raises anything but `EnvelopeError`, whose `reason` is a stable code that
dead-letter headers and metrics use.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from freshet.contracts.events import EVENT_MODELS, Event

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
CORRELATION_HEADER = "ce_correlationid"
# Kafka brokers default to 1 MiB messages; the embedded broker enforces no limit at all, so
# producers and consumers enforce this one themselves.
DEFAULT_MAX_BYTES = 1024 * 1024

REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_type", "ce_source")

Reason = Literal[
    "malformed_value", "missing_header", "unknown_type", "oversize", "invalid_event", "bad_header"
]

_MODELS: dict[str, type[Event]] = {m.event_type: m for m in EVENT_MODELS}


class EnvelopeError(ValueError):
    """A message that is not a valid Freshet event. `reason` is a stable code."""

    reason: Reason

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class KafkaMessage:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Envelope:
    id: str
    type: str
    source: str
    time: datetime
    correlation_id: str
    data: Event


def model_for(event_type: str) -> type[Event] | None:
    return _MODELS.get(event_type)


def encode(
    event: Event,
    *,
    source: str,
    correlation_id: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> KafkaMessage:
    eid = event_id or str(uuid.uuid4())
    value = event.model_dump_json().encode()
    if len(value) > max_bytes:
        raise EnvelopeError(
            "oversize", f"{event.event_type} payload is {len(value)} bytes, limit {max_bytes}"
        )
    when = (time or datetime.now(UTC)).astimezone(UTC)
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", eid.encode()),
        ("ce_type", event.event_type.encode()),
        ("ce_source", source.encode()),
        ("ce_time", when.isoformat().replace("+00:00", "Z").encode()),
        ("content-type", CONTENT_TYPE.encode()),
        (CORRELATION_HEADER, (correlation_id or eid).encode()),
    ]
    return KafkaMessage(key=event.key().encode(), value=value, headers=headers)


def _header_map(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, raw in headers:
        if raw is None:
            continue
        try:
            out[name] = raw.decode()
        except UnicodeDecodeError:
            raise EnvelopeError("bad_header", f"header {name!r} is not valid UTF-8") from None
    return out


def decode(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Envelope:
    if value is None:
        raise EnvelopeError("malformed_value", "message has no value (tombstone)")
    if len(value) > max_bytes:
        raise EnvelopeError("oversize", f"message value is {len(value)} bytes, limit {max_bytes}")
    h = _header_map(headers)
    for name in REQUIRED_HEADERS:
        if not h.get(name):
            raise EnvelopeError("missing_header", f"required header {name!r} is missing")
    if h["ce_specversion"] != SPEC_VERSION:
        raise EnvelopeError(
            "bad_header",
            f"ce_specversion {h['ce_specversion']!r} is not supported (want {SPEC_VERSION})",
        )
    content_type = h.get("content-type", CONTENT_TYPE)
    if not content_type.startswith(CONTENT_TYPE):
        raise EnvelopeError("bad_header", f"content-type {content_type!r} is not {CONTENT_TYPE}")
    model = _MODELS.get(h["ce_type"])
    if model is None:
        raise EnvelopeError("unknown_type", f"event type {h['ce_type']!r} is not known")
    time = _parse_time(h.get("ce_time"))
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError("malformed_value", f"value is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise EnvelopeError(
            "malformed_value", f"value must be a JSON object, got {type(raw).__name__}"
        )
    try:
        data = model.model_validate(raw)
    except ValidationError as exc:
        raise EnvelopeError("invalid_event", _describe(model, exc)) from None
    return Envelope(
        id=h["ce_id"],
        type=h["ce_type"],
        source=h["ce_source"],
        time=time,
        correlation_id=h.get(CORRELATION_HEADER) or h["ce_id"],
        data=data,
    )


def _parse_time(raw: str | None) -> datetime:
    if not raw:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise EnvelopeError("bad_header", f"ce_time {raw!r} is not an RFC 3339 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _describe(model: type[Event], exc: ValidationError) -> str:
    # Field locations and messages only: never the input values, which may carry user data.
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)[:5]
    ]
    return f"{model.event_type} is invalid: " + "; ".join(parts)
