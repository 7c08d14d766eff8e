"""The CloudEvents envelope: every event survives a round trip; every bad message says why."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from freshet.contracts import (
    CollectionChanged,
    CollectionRequested,
    DatasetDiff,
    DatasetRef,
    EnvelopeError,
    Event,
    PreviewRequested,
    PreviewSampled,
    RefreshRequested,
    RunCompleted,
    decode,
    encode,
)
from freshet.contracts.envelope import CORRELATION_HEADER

NOW = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
ID = uuid.UUID("11111111-1111-4111-8111-111111111111")
ID2 = uuid.UUID("22222222-2222-4222-8222-222222222222")

SAMPLES: list[Event] = [
    CollectionRequested(collection_id=ID, run_id=ID2, trigger_source="manual", requested_by="ann"),
    RunCompleted(
        run_id=ID2,
        collection_id=ID,
        endpoint_id=ID,
        status="SUCCEEDED",
        trigger_source="schedule",
        completed_at=NOW,
        datasets_total=3,
        diff=DatasetDiff(added=[DatasetRef(dataset_id=ID, schema_name="main", name="orders")]),
    ),
    RefreshRequested(endpoint_id=ID, tables=["public.users"], force=True),
    PreviewRequested(dataset_id=ID, endpoint_id=ID2, refresh_source="collection"),
    PreviewSampled(
        dataset_id=ID,
        columns=["a", "b"],
        rows=[[1, "x"], [None, {"nested": [1.5]}]],
        sampled_at=NOW,
        sampled_by="freshet-previewer",
        refresh_source="external",
        row_count=2,
    ),
    CollectionChanged(
        collection_id=ID, endpoint_id=ID2, schedule_cron="*/5 * * * *", changed_at=NOW
    ),
]


def headers_of(msg_headers: list[tuple[str, bytes]]) -> dict[str, bytes]:
    return dict(msg_headers)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_round_trips_through_the_envelope(event: Event) -> None:
    msg = encode(event, source="/freshet/test", correlation_id="corr-1", event_id="ev-1", time=NOW)

    env = decode(msg.value, msg.headers)

    assert env.data == event
    assert env.id == "ev-1"
    assert env.type == event.event_type
    assert env.source == "/freshet/test"
    assert env.time == NOW
    assert env.correlation_id == "corr-1"
    assert msg.key == event.key().encode()


def test_binary_mode_puts_context_in_ce_headers_and_data_in_the_value() -> None:
    event = SAMPLES[0]
    msg = encode(event, source="/s", time=NOW)
    h = headers_of(msg.headers)
    assert h["ce_specversion"] == b"1.0"
    assert h["ce_type"] == b"freshet.collection.requested.v1"
    assert h["ce_time"] == b"2026-11-23T10:30:00Z"
    assert h["content-type"] == b"application/json"
    # The correlation id defaults to the event id, so a chain always has one.
    assert h[CORRELATION_HEADER] == h["ce_id"]
    assert json.loads(msg.value)["collection_id"] == str(ID)


def good() -> tuple[bytes, list[tuple[str, bytes]]]:
    msg = encode(SAMPLES[0], source="/s")
    return msg.value, msg.headers


def without(headers: list[tuple[str, bytes]], name: str) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in headers if k != name]


def replace(headers: list[tuple[str, bytes]], name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [*without(headers, name), (name, value)]


def test_malformed_value_is_rejected_with_the_json_error() -> None:
    _, headers = good()
    with pytest.raises(EnvelopeError, match="not valid JSON") as err:
        decode(b"{not json", headers)
    assert err.value.reason == "malformed_value"


def test_a_json_value_that_is_not_an_object_is_malformed() -> None:
    _, headers = good()
    with pytest.raises(EnvelopeError, match="must be a JSON object, got list") as err:
        decode(b"[1,2]", headers)
    assert err.value.reason == "malformed_value"


def test_a_tombstone_is_malformed() -> None:
    _, headers = good()
    with pytest.raises(EnvelopeError, match="tombstone") as err:
        decode(None, headers)
    assert err.value.reason == "malformed_value"


@pytest.mark.parametrize("name", ["ce_id", "ce_type", "ce_source", "ce_specversion"])
def test_each_missing_required_header_is_named(name: str) -> None:
    value, headers = good()
    with pytest.raises(EnvelopeError, match=f"required header '{name}' is missing") as err:
        decode(value, without(headers, name))
    assert err.value.reason == "missing_header"


def test_unknown_event_type_is_named() -> None:
    value, headers = good()
    with pytest.raises(EnvelopeError, match="'freshet.bogus.v9' is not known") as err:
        decode(value, replace(headers, "ce_type", b"freshet.bogus.v9"))
    assert err.value.reason == "unknown_type"


def test_oversize_payload_is_rejected_before_parsing() -> None:
    _, headers = good()
    big = b'{"x": "' + b"a" * 2000 + b'"}'
    with pytest.raises(EnvelopeError, match=r"is 2\d{3} bytes, limit 1000") as err:
        decode(big, headers, max_bytes=1000)
    assert err.value.reason == "oversize"


def test_oversize_event_is_refused_by_the_producer_side() -> None:
    with pytest.raises(EnvelopeError) as err:
        encode(SAMPLES[4], source="/s", max_bytes=10)
    assert err.value.reason == "oversize"


def test_invalid_data_names_the_field_but_never_echoes_the_value() -> None:
    value, headers = good()
    bad = json.loads(value)
    bad["collection_id"] = "secret-looking-not-a-uuid"
    with pytest.raises(EnvelopeError, match="collection_id") as err:
        decode(json.dumps(bad).encode(), headers)
    assert err.value.reason == "invalid_event"
    assert "secret-looking" not in str(err.value)


def test_unsupported_spec_version_and_bad_time_are_header_errors() -> None:
    value, headers = good()
    with pytest.raises(EnvelopeError, match="ce_specversion '0.3'") as err:
        decode(value, replace(headers, "ce_specversion", b"0.3"))
    assert err.value.reason == "bad_header"
    with pytest.raises(EnvelopeError, match="not an RFC 3339 time"):
        decode(value, replace(headers, "ce_time", b"yesterday"))
    with pytest.raises(EnvelopeError, match="not valid UTF-8"):
        decode(value, replace(headers, "ce_id", b"\xff\xfe"))


def test_unknown_fields_from_a_newer_minor_version_are_ignored() -> None:
    value, headers = good()
    newer = {**json.loads(value), "added_in_a_later_version": True}
    env = decode(json.dumps(newer).encode(), headers)
    assert env.data == SAMPLES[0]


def test_previews_above_the_row_cap_are_invalid() -> None:
    with pytest.raises(ValueError, match="at most 50"):
        PreviewSampled(
            dataset_id=ID,
            columns=["a"],
            rows=[[i] for i in range(51)],
            sampled_at=NOW,
            sampled_by="x",
            refresh_source="manual",
            row_count=51,
        )
