"""Preview fan-out, sampling and persistence, on a real catalog with a fake source."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from freshet.catalog import Database, DatasetSpec, UnitOfWork
from freshet.catalog.secrets import SecretBox, generate_key
from freshet.connectors import Connector, ConnectorError, Sample, TableInfo
from freshet.contracts import (
    Envelope,
    Event,
    PreviewRequested,
    PreviewSampled,
    RunCompleted,
)
from freshet.devstack.testing import envelope_of
from freshet.previewer.handlers import (
    PreviewerDeps,
    handle_preview_requested,
    handle_preview_sampled,
    handle_run_completed,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class FakeSource:
    kind = "sqlite"

    def __init__(self) -> None:
        self.rows: list[list[Any]] = [[i, f"name {i}"] for i in range(80)]
        self.error: ConnectorError | None = None
        self.limits: list[int] = []

    async def test(self) -> None:
        return None

    async def introspect(self) -> list[TableInfo]:
        return []

    async def sample(self, schema_name: str, table: str, limit: int) -> Sample:
        self.limits.append(limit)
        if self.error is not None:
            raise self.error
        return Sample(columns=["id", "name"], rows=self.rows[:limit])

    def stream(
        self, schema_name: str, table: str, *, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        raise NotImplementedError


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def deps(sqlite_catalog: Database, source: FakeSource) -> PreviewerDeps:
    def connect(kind: str, config: Mapping[str, object], secrets: Mapping[str, str]) -> Connector:
        return source

    return PreviewerDeps(
        db=sqlite_catalog,
        secrets=SecretBox([generate_key()]),
        source="/freshet/previewer",
        connect=connect,
    )


def envelope(event: Event, event_id: str | None = None) -> Envelope:
    return envelope_of(event, event_id=event_id, correlation_id="corr-7")


async def add_endpoint(
    deps: PreviewerDeps, tables: list[str], policy: str = "auto"
) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    async with UnitOfWork(deps.db) as uow:
        endpoint = await uow.endpoints.add(
            name=f"ep-{uuid.uuid4().hex[:6]}", kind="sqlite", config={}, preview_policy=policy
        )
        result = await uow.datasets.sync(
            endpoint_id=endpoint.id,
            endpoint_kind="sqlite",
            run_id=uuid.uuid4(),
            specs=[
                DatasetSpec("main", t, "table", [{"name": "id"}], ["id"], [], t) for t in tables
            ],
        )
        await uow.commit()
        return endpoint.id, {d.name: d.id for d in result.added}


def completed(endpoint_id: uuid.UUID, status: str = "SUCCEEDED") -> RunCompleted:
    return RunCompleted(
        run_id=uuid.uuid4(),
        collection_id=uuid.uuid4(),
        endpoint_id=endpoint_id,
        status=status,
        trigger_source="manual",
        completed_at=NOW,
    )


async def outbox(deps: PreviewerDeps, topic: str) -> list[dict[str, Any]]:
    async with UnitOfWork(deps.db) as uow:
        rows = await uow.outbox.pending(1000)
    return [json.loads(r.value) | {"_headers": dict(r.headers)} for r in rows if r.topic == topic]


async def preview_of(deps: PreviewerDeps, dataset_id: uuid.UUID) -> dict[str, Any]:
    async with UnitOfWork(deps.db) as uow:
        dataset = await uow.datasets.get(dataset_id)
        assert dataset is not None
        return dict(dataset.payload)


# --- fan-out ---------------------------------------------------------------------------------


async def test_a_succeeded_run_requests_one_preview_per_live_dataset(deps: PreviewerDeps) -> None:
    endpoint_id, ids = await add_endpoint(deps, ["a", "b", "opted_out"])
    async with UnitOfWork(deps.db) as uow:
        dataset = await uow.datasets.get(ids["opted_out"])
        assert dataset is not None
        dataset.payload = {"previewOptOut": True}
        await uow.commit()
    event = completed(endpoint_id)

    await handle_run_completed(envelope(event), deps)

    requests = await outbox(deps, "freshet.preview.requested")
    assert sorted(r["dataset_id"] for r in requests) == sorted(str(ids[n]) for n in ("a", "b"))
    assert {r["refresh_source"] for r in requests} == {"collection"}
    assert {r["run_id"] for r in requests} == {str(event.run_id)}
    assert {r["_headers"]["ce_correlationid"] for r in requests} == {"corr-7"}


async def test_the_same_run_completed_twice_fans_out_once(deps: PreviewerDeps) -> None:
    endpoint_id, _ = await add_endpoint(deps, ["a"])
    env = envelope(completed(endpoint_id))
    await handle_run_completed(env, deps)
    await handle_run_completed(env, deps)
    assert len(await outbox(deps, "freshet.preview.requested")) == 1


@pytest.mark.parametrize(
    ("status", "policy", "auto"),
    [
        ("FAILED", "auto", True),
        ("SKIPPED", "auto", True),
        ("SUCCEEDED", "manual-only", True),
        ("SUCCEEDED", "disabled", True),
        ("SUCCEEDED", "auto", False),
    ],
)
async def test_no_automatic_previews_unless_succeeded_auto_and_enabled(
    deps: PreviewerDeps, status: str, policy: str, auto: bool
) -> None:
    deps.auto = auto
    endpoint_id, _ = await add_endpoint(deps, ["a"], policy=policy)
    await handle_run_completed(envelope(completed(endpoint_id, status)), deps)
    assert await outbox(deps, "freshet.preview.requested") == []


# --- sampling --------------------------------------------------------------------------------


async def test_sampling_publishes_at_most_fifty_rows_with_provenance(
    deps: PreviewerDeps, source: FakeSource
) -> None:
    endpoint_id, ids = await add_endpoint(deps, ["a"])
    run_id = uuid.uuid4()
    request = PreviewRequested(
        dataset_id=ids["a"], endpoint_id=endpoint_id, refresh_source="collection", run_id=run_id
    )
    await handle_preview_requested(envelope(request), deps)

    [sample] = await outbox(deps, "freshet.preview.sampled")
    assert source.limits == [50]
    assert sample["row_count"] == 50
    assert sample["rows"][0] == [0, "name 0"]
    assert sample["columns"] == ["id", "name"]
    assert sample["sampled_by"] == "freshet-previewer"
    assert sample["refresh_source"] == "collection"
    assert sample["run_id"] == str(run_id)


async def test_a_permanent_sampling_failure_is_recorded_on_the_dataset(
    deps: PreviewerDeps, source: FakeSource
) -> None:
    source.error = ConnectorError("table not found", transient=False)
    endpoint_id, ids = await add_endpoint(deps, ["a"])
    request = PreviewRequested(
        dataset_id=ids["a"], endpoint_id=endpoint_id, refresh_source="manual"
    )
    await handle_preview_requested(envelope(request), deps)
    payload = await preview_of(deps, ids["a"])
    assert "table not found" in payload["previewError"]["reason"]
    assert "preview" not in payload
    assert await outbox(deps, "freshet.preview.sampled") == []


async def test_a_transient_sampling_failure_is_left_to_the_consumer_to_retry(
    deps: PreviewerDeps, source: FakeSource
) -> None:
    source.error = ConnectorError("statement timed out", transient=True)
    endpoint_id, ids = await add_endpoint(deps, ["a"])
    request = PreviewRequested(
        dataset_id=ids["a"], endpoint_id=endpoint_id, refresh_source="manual"
    )
    with pytest.raises(ConnectorError):
        await handle_preview_requested(envelope(request), deps)
    # Nothing claimed: the retried delivery is processed normally.
    source.error = None
    await handle_preview_requested(envelope(request, event_id="retry"), deps)
    assert len(await outbox(deps, "freshet.preview.sampled")) == 1


async def test_a_disabled_endpoint_is_never_sampled(
    deps: PreviewerDeps, source: FakeSource
) -> None:
    endpoint_id, ids = await add_endpoint(deps, ["a"], policy="disabled")
    request = PreviewRequested(
        dataset_id=ids["a"], endpoint_id=endpoint_id, refresh_source="manual"
    )
    await handle_preview_requested(envelope(request), deps)
    assert source.limits == []
    assert await outbox(deps, "freshet.preview.sampled") == []


# --- persistence -----------------------------------------------------------------------------


def sampled(dataset_id: uuid.UUID, at: datetime, marker: int) -> PreviewSampled:
    return PreviewSampled(
        dataset_id=dataset_id,
        columns=["id"],
        rows=[[marker]],
        sampled_at=at,
        sampled_by="outside-sampler",
        refresh_source="external",
        row_count=1,
    )


async def test_a_sample_is_persisted_with_its_provenance(deps: PreviewerDeps) -> None:
    _, ids = await add_endpoint(deps, ["a"])
    await handle_preview_sampled(envelope(sampled(ids["a"], NOW, 1)), deps)
    preview = (await preview_of(deps, ids["a"]))["preview"]
    assert preview == {
        "columns": ["id"],
        "rows": [[1]],
        "rowCount": 1,
        "sampledAt": NOW.isoformat(),
        "sampledBy": "outside-sampler",
        "refreshSource": "external",
        "truncated": False,
        "runId": None,
    }


async def test_an_older_sample_arriving_late_never_replaces_a_newer_one(
    deps: PreviewerDeps,
) -> None:
    _, ids = await add_endpoint(deps, ["a"])
    await handle_preview_sampled(envelope(sampled(ids["a"], NOW, 2)), deps)
    await handle_preview_sampled(envelope(sampled(ids["a"], NOW - timedelta(minutes=5), 1)), deps)
    assert (await preview_of(deps, ids["a"]))["preview"]["rows"] == [[2]]
    await handle_preview_sampled(envelope(sampled(ids["a"], NOW + timedelta(minutes=5), 3)), deps)
    assert (await preview_of(deps, ids["a"]))["preview"]["rows"] == [[3]]


async def test_a_sample_for_an_unknown_dataset_is_dropped_not_retried(deps: PreviewerDeps) -> None:
    unknown = uuid.uuid4()
    await handle_preview_sampled(envelope(sampled(unknown, NOW, 1)), deps)  # does not raise
    async with UnitOfWork(deps.db) as uow:
        assert await uow.datasets.get(unknown) is None
