"""The run workflow, handler by handler, on a real catalog with a fake source."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import pytest
import stamina

from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.secrets import SecretBox, generate_key
from freshet.collector.handlers import CollectorDeps, handle_collection_requested, run_id_for
from freshet.connectors import (
    ColumnInfo,
    Connector,
    ConnectorError,
    ForeignKeyInfo,
    Sample,
    TableInfo,
)
from freshet.contracts import CollectionRequested, Envelope, Event
from freshet.devstack.testing import envelope_of
from freshet.kit.errors import PermanentError

SECRET = "s3cret-pw-never-shown"


def table(name: str, columns: list[str], fks: list[ForeignKeyInfo] | None = None) -> TableInfo:
    return TableInfo(
        schema_name="main",
        name=name,
        kind="table",
        columns=[
            ColumnInfo(name=c, data_type="TEXT", nullable=True, ordinal=i, is_primary_key=i == 0)
            for i, c in enumerate(columns)
        ],
        primary_key=[columns[0]],
        foreign_keys=fks or [],
        row_estimate=None,
    )


TABLES = [
    table("customers", ["id", "name"]),
    table(
        "orders",
        ["id", "customer_id"],
        [
            ForeignKeyInfo(
                columns=["customer_id"],
                referred_schema="main",
                referred_table="customers",
                referred_columns=["id"],
            )
        ],
    ),
]


class FakeSource:
    """A source whose answers the test decides."""

    kind = "sqlite"

    def __init__(self) -> None:
        self.tables = list(TABLES)
        self.failures: list[ConnectorError] = []
        self.calls = 0
        self.during_introspect: list[Callable[[], Awaitable[None]]] = []

    async def test(self) -> None:
        return None

    async def introspect(self) -> list[TableInfo]:
        self.calls += 1
        for hook in self.during_introspect:
            await hook()
        if self.failures:
            raise self.failures.pop(0)
        return self.tables

    async def sample(self, schema_name: str, table: str, limit: int) -> Sample:
        raise NotImplementedError


@pytest.fixture(autouse=True)
def no_retry_waits() -> Iterator[None]:
    stamina.set_testing(True, attempts=3)
    yield
    stamina.set_testing(False)


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def deps(sqlite_catalog: Database, source: FakeSource) -> CollectorDeps:
    def connect(kind: str, config: Mapping[str, object], secrets: Mapping[str, str]) -> Connector:
        return source

    return CollectorDeps(
        db=sqlite_catalog,
        secrets=SecretBox([generate_key()]),
        source="/freshet/collector",
        connect=connect,
    )


async def add_collection(
    deps: CollectorDeps, *, enabled: bool = True
) -> tuple[uuid.UUID, uuid.UUID]:
    async with UnitOfWork(deps.db) as uow:
        endpoint = await uow.endpoints.add(
            name=f"ep-{uuid.uuid4().hex[:6]}",
            kind="sqlite",
            config={"path": "/x.db"},
            secret_ciphertext=deps.secrets.encrypt({"password": SECRET}),
        )
        collection = await uow.collections.add(endpoint_id=endpoint.id, is_enabled=enabled)
        await uow.commit()
        return endpoint.id, collection.id


async def queue_run(
    deps: CollectorDeps, collection_id: uuid.UUID, endpoint_id: uuid.UUID
) -> uuid.UUID:
    async with UnitOfWork(deps.db) as uow:
        run = await uow.runs.add(
            collection_id=collection_id,
            endpoint_id=endpoint_id,
            trigger_source="manual",
            requested_by="ann",
        )
        await uow.commit()
        return run.id


def envelope(event: Event, event_id: str | None = None) -> Envelope:
    return envelope_of(event, event_id=event_id, correlation_id="corr-1")


async def run_of(deps: CollectorDeps, run_id: uuid.UUID) -> dict[str, object]:
    async with UnitOfWork(deps.db) as uow:
        run = await uow.runs.get(run_id)
        assert run is not None
        return {
            k: getattr(run, k)
            for k in (
                "status",
                "error",
                "datasets_total",
                "datasets_added",
                "trigger_source",
                "requested_by",
            )
        }


async def completed_events(deps: CollectorDeps) -> list[dict[str, Any]]:
    async with UnitOfWork(deps.db) as uow:
        rows = await uow.outbox.pending(100)
    return [
        json.loads(r.value) | {"_headers": dict(r.headers)}
        for r in rows
        if r.topic == "freshet.run.completed"
    ]


async def test_a_queued_run_discovers_datasets_and_reports_success(deps: CollectorDeps) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)

    await handle_collection_requested(
        envelope(CollectionRequested(collection_id=collection_id, run_id=run_id)), deps
    )

    assert await run_of(deps, run_id) == {
        "status": "SUCCEEDED",
        "error": None,
        "datasets_total": 2,
        "datasets_added": 2,
        "trigger_source": "manual",
        "requested_by": "ann",
    }
    [event] = await completed_events(deps)
    assert event["status"] == "SUCCEEDED"
    assert event["run_id"] == str(run_id)
    assert [d["name"] for d in event["diff"]["added"]] == ["customers", "orders"]
    assert event["_headers"]["ce_correlationid"] == "corr-1"
    async with UnitOfWork(deps.db) as uow:
        names = [d.name for d in await uow.datasets.for_endpoint(endpoint_id)]
    assert names == ["customers", "orders"]


async def test_a_request_for_a_finished_run_changes_nothing(
    deps: CollectorDeps, source: FakeSource
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    request = CollectionRequested(collection_id=collection_id, run_id=run_id)
    for _ in range(3):
        await handle_collection_requested(envelope(request), deps)
    assert source.calls == 1
    assert len(await completed_events(deps)) == 1


async def test_an_outside_request_without_run_id_makes_one_run_per_event(
    deps: CollectorDeps,
) -> None:
    _endpoint_id, collection_id = await add_collection(deps)
    request = CollectionRequested(collection_id=collection_id, requested_by="etl")
    env = envelope(request, event_id="outside-1")
    await handle_collection_requested(env, deps)
    await handle_collection_requested(env, deps)  # redelivered
    run_id = run_id_for(request, "outside-1")
    assert (await run_of(deps, run_id))["trigger_source"] == "event"
    async with UnitOfWork(deps.db) as uow:
        assert len(await uow.runs.find(collection_id=collection_id)) == 1


async def test_a_disabled_collection_records_a_skipped_run(
    deps: CollectorDeps, source: FakeSource
) -> None:
    endpoint_id, collection_id = await add_collection(deps, enabled=False)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await handle_collection_requested(
        envelope(CollectionRequested(collection_id=collection_id, run_id=run_id)), deps
    )
    run = await run_of(deps, run_id)
    assert (run["status"], run["error"]) == ("SKIPPED", "collection is disabled")
    assert source.calls == 0
    assert [e["status"] for e in await completed_events(deps)] == ["SKIPPED"]


async def test_a_run_requested_while_another_runs_is_skipped_with_the_reason(
    deps: CollectorDeps,
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    running = await queue_run(deps, collection_id, endpoint_id)
    async with UnitOfWork(deps.db) as uow:
        await uow.runs.transition(running, RunStatus.RUNNING)
        await uow.commit()
    second = await queue_run(deps, collection_id, endpoint_id)
    await handle_collection_requested(
        envelope(CollectionRequested(collection_id=collection_id, run_id=second)), deps
    )
    run = await run_of(deps, second)
    assert (run["status"], run["error"]) == ("SKIPPED", "previous run still running")
    assert (await run_of(deps, running))["status"] == "RUNNING"


async def test_a_transient_source_failure_is_retried(
    deps: CollectorDeps, source: FakeSource
) -> None:
    source.failures = [ConnectorError("connection refused", transient=True)]
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await handle_collection_requested(
        envelope(CollectionRequested(collection_id=collection_id, run_id=run_id)), deps
    )
    assert source.calls == 2
    assert (await run_of(deps, run_id))["status"] == "SUCCEEDED"


async def test_a_failing_source_fails_the_run_with_a_sanitised_error(
    deps: CollectorDeps, source: FakeSource
) -> None:
    source.failures = [
        ConnectorError(f"authentication failed for password {SECRET}", transient=False)
    ]
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await handle_collection_requested(
        envelope(CollectionRequested(collection_id=collection_id, run_id=run_id)), deps
    )
    run = await run_of(deps, run_id)
    assert run["status"] == "FAILED"
    assert "authentication failed" in str(run["error"])
    assert SECRET not in str(run["error"])
    [event] = await completed_events(deps)
    assert event["status"] == "FAILED"
    assert SECRET not in json.dumps(event)


async def test_a_run_cancelled_during_discovery_keeps_no_results(
    deps: CollectorDeps, source: FakeSource
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)

    async def cancel() -> None:
        async with UnitOfWork(deps.db) as uow:
            assert await uow.runs.transition(run_id, RunStatus.CANCELLED)
            await uow.commit()

    source.during_introspect.append(cancel)
    await handle_collection_requested(
        envelope(CollectionRequested(collection_id=collection_id, run_id=run_id)), deps
    )
    assert (await run_of(deps, run_id))["status"] == "CANCELLED"
    assert await completed_events(deps) == []
    async with UnitOfWork(deps.db) as uow:
        assert await uow.datasets.for_endpoint(endpoint_id) == []


async def test_a_request_for_an_unknown_collection_is_permanent(deps: CollectorDeps) -> None:
    with pytest.raises(PermanentError, match="does not exist"):
        await handle_collection_requested(
            envelope(CollectionRequested(collection_id=uuid.uuid4())), deps
        )
