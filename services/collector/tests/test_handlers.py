"""The run workflow as a specification: a real catalog (SQLite), a source the test controls.

Handlers only claim runs; the runner executes them in the background, so each test waits for
the runner to be idle before it looks at the outcome.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import stamina

from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.secrets import SecretBox, generate_key
from freshet.collector.handlers import handle_collection_requested
from freshet.collector.runner import Runner
from freshet.collector.workflow import CollectorDeps, run_id_for
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
        self.cancelled = 0
        self.during_introspect: list[Callable[[], Awaitable[None]]] = []
        self.hang = False

    async def test(self) -> None:
        return None

    async def introspect(self) -> list[TableInfo]:
        self.calls += 1
        for hook in self.during_introspect:
            await hook()
        if self.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.failures:
            raise self.failures.pop(0)
        return self.tables

    async def sample(self, schema_name: str, table: str, limit: int) -> Sample:
        raise NotImplementedError

    def stream(
        self, schema_name: str, table: str, *, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
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
def sources(source: FakeSource) -> dict[str, FakeSource]:
    """Sources by endpoint config path; endpoints default to `source`."""
    return {"/x.db": source}


def make_deps(
    db: Database,
    sources: dict[str, FakeSource],
    tmp_path: Path,
    owner: str = "collector-a",
    box: SecretBox | None = None,
) -> CollectorDeps:
    def connect(kind: str, config: Mapping[str, object], secrets: Mapping[str, str]) -> Connector:
        return sources[str(config["path"])]

    return CollectorDeps(
        db=db,
        secrets=box or SecretBox([generate_key()]),
        source="/freshet/collector",
        connect=connect,
        owner=owner,
        lease_ttl=timedelta(seconds=30),
        run_timeout_s=30.0,
        ingest_workdir=tmp_path / "ingest",
    )


@pytest.fixture
def deps(sqlite_catalog: Database, sources: dict[str, FakeSource], tmp_path: Path) -> CollectorDeps:
    return make_deps(sqlite_catalog, sources, tmp_path)


@pytest.fixture
async def runner(deps: CollectorDeps) -> AsyncIterator[Runner]:
    runner = Runner(deps, max_concurrent=8, check_interval_s=0.05)
    yield runner
    await runner.stop()


def second_collector(deps: CollectorDeps, source: FakeSource, tmp_path: Path) -> Runner:
    """Another collector process on the same catalog and keys."""
    return Runner(
        make_deps(deps.db, {"/x.db": source}, tmp_path, "collector-b", deps.secrets),
        max_concurrent=2,
        check_interval_s=0.05,
    )


async def add_collection(
    deps: CollectorDeps,
    *,
    enabled: bool = True,
    path: str = "/x.db",
    ingest_command: list[str] | None = None,
    run_timeout_s: int | None = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    async with UnitOfWork(deps.db) as uow:
        endpoint = await uow.endpoints.add(
            name=f"ep-{uuid.uuid4().hex[:6]}",
            kind="sqlite",
            config={"path": path},
            secret_ciphertext=deps.secrets.encrypt({"password": SECRET}),
            secret_names=["password"],
            ingest_command=ingest_command,
            run_timeout_s=run_timeout_s,
        )
        collection = await uow.collections.add(endpoint_id=endpoint.id, is_enabled=enabled)
        await uow.commit()
        return endpoint.id, collection.id


async def queue_run(
    deps: CollectorDeps,
    collection_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    filters: dict[str, Any] | None = None,
) -> uuid.UUID:
    async with UnitOfWork(deps.db) as uow:
        run = await uow.runs.add(
            collection_id=collection_id,
            endpoint_id=endpoint_id,
            trigger_source="api",
            requested_by="ann",
            filters=filters,
        )
        await uow.commit()
        return run.id


def envelope(event: Event, event_id: str | None = None) -> Envelope:
    return envelope_of(event, event_id=event_id, correlation_id="corr-1")


async def request(runner: Runner, collection_id: uuid.UUID, run_id: uuid.UUID) -> None:
    await handle_collection_requested(
        envelope(CollectionRequested(collection_id=collection_id, run_id=run_id)), runner
    )


async def run_to_end(runner: Runner, collection_id: uuid.UUID, run_id: uuid.UUID) -> None:
    await request(runner, collection_id, run_id)
    await asyncio.wait_for(runner.wait_idle(), 10)


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
                "lease_owner",
                "lease_expires_at",
            )
        }


async def status_of(deps: CollectorDeps, run_id: uuid.UUID) -> str:
    return str((await run_of(deps, run_id))["status"])


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():  # noqa: ASYNC110 - polling observable state
            await asyncio.sleep(0.02)


async def completed_events(deps: CollectorDeps) -> list[dict[str, Any]]:
    async with UnitOfWork(deps.db) as uow:
        rows = await uow.outbox.pending(100)
    return [
        json.loads(r.value) | {"_headers": dict(r.headers)}
        for r in rows
        if r.topic == "freshet.run.completed"
    ]


async def dataset_names(deps: CollectorDeps, endpoint_id: uuid.UUID) -> list[str]:
    async with UnitOfWork(deps.db) as uow:
        return [d.name for d in await uow.datasets.for_endpoint(endpoint_id)]


# --- the happy path and idempotency ---------------------------------------------------------


async def test_a_queued_run_discovers_datasets_and_reports_success(
    deps: CollectorDeps, runner: Runner
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)

    await run_to_end(runner, collection_id, run_id)

    run = await run_of(deps, run_id)
    assert {k: run[k] for k in ("status", "error", "datasets_total", "datasets_added")} == {
        "status": "SUCCEEDED",
        "error": None,
        "datasets_total": 2,
        "datasets_added": 2,
    }
    assert (run["trigger_source"], run["requested_by"]) == ("api", "ann")
    assert (run["lease_owner"], run["lease_expires_at"]) == (None, None), "lease dropped"
    [event] = await completed_events(deps)
    assert event["status"] == "SUCCEEDED"
    assert event["run_id"] == str(run_id)
    assert [d["name"] for d in event["diff"]["added"]] == ["customers", "orders"]
    assert event["_headers"]["ce_correlationid"] == "corr-1"
    assert await dataset_names(deps, endpoint_id) == ["customers", "orders"]


async def test_the_handler_returns_once_the_run_is_claimed_not_when_it_ends(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    source.hang = True
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await asyncio.wait_for(request(runner, collection_id, run_id), 5)
    run = await run_of(deps, run_id)
    assert run["status"] == "RUNNING"
    assert run["lease_owner"] == "collector-a"
    assert isinstance(run["lease_expires_at"], datetime)


async def test_a_request_for_a_finished_run_changes_nothing(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    for _ in range(3):
        await run_to_end(runner, collection_id, run_id)
    assert source.calls == 1
    assert len(await completed_events(deps)) == 1


async def test_a_request_redelivered_while_the_run_runs_elsewhere_does_nothing(
    deps: CollectorDeps, runner: Runner, source: FakeSource, tmp_path: Path
) -> None:
    source.hang = True
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await request(runner, collection_id, run_id)
    await until(lambda: asyncio.sleep(0, result=source.calls == 1))
    other = second_collector(deps, source, tmp_path)
    try:
        await request(other, collection_id, run_id)
        assert not other.tasks, "a live lease is respected"
        assert source.calls == 1
        assert (await run_of(deps, run_id))["lease_owner"] == "collector-a"
    finally:
        await other.stop()


async def test_an_outside_request_without_run_id_makes_one_run_per_event(
    deps: CollectorDeps, runner: Runner
) -> None:
    _endpoint_id, collection_id = await add_collection(deps)
    cmd = CollectionRequested(collection_id=collection_id, requested_by="etl")
    env = envelope(cmd, event_id="outside-1")
    await handle_collection_requested(env, runner)
    await runner.wait_idle()
    await handle_collection_requested(env, runner)  # redelivered
    await runner.wait_idle()
    run_id = run_id_for(cmd, "outside-1")
    run = await run_of(deps, run_id)
    assert (run["trigger_source"], run["status"]) == ("event", "SUCCEEDED")
    async with UnitOfWork(deps.db) as uow:
        assert len(await uow.runs.find(collection_id=collection_id)) == 1


async def test_an_outside_request_while_a_run_is_active_is_recorded_as_skipped(
    deps: CollectorDeps, runner: Runner
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    active = await queue_run(deps, collection_id, endpoint_id)
    cmd = CollectionRequested(collection_id=collection_id, trigger_source="schedule")
    await handle_collection_requested(envelope(cmd, event_id="tick-1"), runner)
    skipped = await run_of(deps, run_id_for(cmd, "tick-1"))
    assert (skipped["status"], skipped["error"]) == ("SKIPPED", "previous run still running")
    assert await status_of(deps, active) == "QUEUED"
    assert [(e["status"], e["error"]) for e in await completed_events(deps)] == [
        ("SKIPPED", "previous run still running")
    ]


async def test_a_request_for_an_unknown_collection_is_permanent(runner: Runner) -> None:
    with pytest.raises(PermanentError, match="does not exist"):
        await handle_collection_requested(
            envelope(CollectionRequested(collection_id=uuid.uuid4())), runner
        )


# --- prepare: skipped with a reason -----------------------------------------------------------


async def test_a_disabled_collection_records_a_skipped_run(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    endpoint_id, collection_id = await add_collection(deps, enabled=False)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await run_to_end(runner, collection_id, run_id)
    run = await run_of(deps, run_id)
    assert (run["status"], run["error"]) == ("SKIPPED", "collection is disabled")
    assert source.calls == 0
    assert [e["status"] for e in await completed_events(deps)] == ["SKIPPED"]


async def test_a_run_whose_collection_was_deleted_is_skipped(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    async with UnitOfWork(deps.db) as uow:
        collection = await uow.collections.get(collection_id)
        assert collection is not None
        await uow.collections.delete(collection)
        await uow.commit()
    await run_to_end(runner, collection_id, run_id)
    run = await run_of(deps, run_id)
    assert (run["status"], run["error"]) == ("SKIPPED", "collection no longer exists")
    assert source.calls == 0


async def test_filters_limit_the_run_to_matching_datasets_and_keep_the_rest(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    await run_to_end(runner, collection_id, await queue_run(deps, collection_id, endpoint_id))
    source.tables = [TABLES[1]]  # customers vanished, but the next run only looks at orders
    scoped = await queue_run(
        deps, collection_id, endpoint_id, filters={"include_tables": ["orders"]}
    )
    await run_to_end(runner, collection_id, scoped)
    run = await run_of(deps, scoped)
    assert (run["status"], run["datasets_total"]) == ("SUCCEEDED", 1)
    assert await dataset_names(deps, endpoint_id) == ["customers", "orders"], "not removed"


async def test_filters_that_match_nothing_skip_the_run(deps: CollectorDeps, runner: Runner) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id, filters={"include_schemas": ["x"]})
    await run_to_end(runner, collection_id, run_id)
    run = await run_of(deps, run_id)
    assert (run["status"], run["error"]) == ("SKIPPED", "filters match no dataset of the endpoint")
    assert await dataset_names(deps, endpoint_id) == []


async def test_filters_that_do_not_parse_fail_the_run(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id, filters={"tables": "orders"})
    await run_to_end(runner, collection_id, run_id)
    run = await run_of(deps, run_id)
    assert run["status"] == "FAILED"
    assert str(run["error"]).startswith("invalid filters")
    assert source.calls == 0


# --- failures, retries, timeouts ---------------------------------------------------------------


async def test_a_transient_source_failure_is_retried(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    source.failures = [ConnectorError("connection refused", transient=True)]
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await run_to_end(runner, collection_id, run_id)
    assert source.calls == 2
    assert await status_of(deps, run_id) == "SUCCEEDED"


async def test_a_permanent_source_failure_is_not_retried_and_is_sanitised(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    source.failures = [
        ConnectorError(f"authentication failed for password {SECRET}", transient=False)
    ]
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await run_to_end(runner, collection_id, run_id)
    assert source.calls == 1
    run = await run_of(deps, run_id)
    assert run["status"] == "FAILED"
    assert "authentication failed" in str(run["error"])
    assert SECRET not in str(run["error"])
    [event] = await completed_events(deps)
    assert event["status"] == "FAILED"
    assert SECRET not in json.dumps(event)


async def test_a_run_over_its_time_limit_fails_with_the_limit_in_the_error(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    source.hang = True
    endpoint_id, collection_id = await add_collection(deps, run_timeout_s=1)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await run_to_end(runner, collection_id, run_id)
    run = await run_of(deps, run_id)
    assert (run["status"], run["error"]) == ("FAILED", "timed out after 1 s")
    assert source.cancelled == 1, "the source call was stopped, not left running"


async def test_a_hanging_endpoint_delays_no_other_endpoint(
    deps: CollectorDeps, runner: Runner, sources: dict[str, FakeSource]
) -> None:
    hanging = FakeSource()
    hanging.hang = True
    sources["/hangs.db"] = hanging
    slow_endpoint, slow_collection = await add_collection(deps, path="/hangs.db")
    ok_endpoint, ok_collection = await add_collection(deps)
    slow_run = await queue_run(deps, slow_collection, slow_endpoint)
    ok_run = await queue_run(deps, ok_collection, ok_endpoint)
    await request(runner, slow_collection, slow_run)
    await request(runner, ok_collection, ok_run)
    await until(lambda: _is(deps, ok_run, "SUCCEEDED"))
    assert await status_of(deps, slow_run) == "RUNNING"


async def _is(deps: CollectorDeps, run_id: uuid.UUID, status: str) -> bool:
    return await status_of(deps, run_id) == status


# --- cancel, lease, takeover --------------------------------------------------------------------


async def test_a_run_cancelled_during_discovery_keeps_no_results(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)

    async def cancel() -> None:
        async with UnitOfWork(deps.db) as uow:
            assert await uow.runs.transition(run_id, RunStatus.CANCELLED)
            await uow.commit()

    source.during_introspect.append(cancel)
    await run_to_end(runner, collection_id, run_id)
    assert await status_of(deps, run_id) == "CANCELLED"
    assert await completed_events(deps) == []
    assert await dataset_names(deps, endpoint_id) == []


async def test_cancelling_a_running_run_stops_the_collector_promptly(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    source.hang = True
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await request(runner, collection_id, run_id)
    await until(lambda: asyncio.sleep(0, result=source.calls == 1))
    async with UnitOfWork(deps.db) as uow:
        assert await uow.runs.transition(run_id, RunStatus.CANCELLED, error="cancelled by ann")
        await uow.commit()
    # Checked every 50 ms here (FRESHET_RUN_CHECK_INTERVAL_S, 1 s by default).
    await asyncio.wait_for(runner.wait_idle(), 2)
    assert source.cancelled == 1
    run = await run_of(deps, run_id)
    assert (run["status"], run["error"]) == ("CANCELLED", "cancelled by ann")


async def test_a_run_whose_collector_died_is_taken_over_after_its_lease_expires(
    deps: CollectorDeps, runner: Runner
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    async with UnitOfWork(deps.db) as uow:
        assert await uow.runs.transition(
            run_id,
            RunStatus.RUNNING,
            lease_owner="dead-collector",
            lease_expires_at=datetime.now(UTC) + timedelta(seconds=30),
        )
        await uow.commit()
    assert await runner.sweep() == 0, "a live lease is not taken"
    async with UnitOfWork(deps.db) as uow:
        await uow.runs.release_lease(run_id, "dead-collector")  # time passes: it lapses
        await uow.commit()
    assert await runner.sweep() == 1
    await runner.wait_idle()
    assert await status_of(deps, run_id) == "SUCCEEDED"
    assert len(await completed_events(deps)) == 1


async def test_a_collector_that_lost_its_lease_stops_and_discards_its_results(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    source.hang = True
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await request(runner, collection_id, run_id)
    async with UnitOfWork(deps.db) as uow:
        await uow.runs.release_lease(run_id, "collector-a")
        assert await uow.runs.take_over(run_id, "collector-b", timedelta(seconds=30))
        await uow.commit()
    await asyncio.wait_for(runner.wait_idle(), 2)
    run = await run_of(deps, run_id)
    assert (run["status"], run["lease_owner"]) == ("RUNNING", "collector-b")
    assert await dataset_names(deps, endpoint_id) == []


async def test_stopping_hands_running_runs_to_another_collector_at_once(
    deps: CollectorDeps, runner: Runner, source: FakeSource, tmp_path: Path
) -> None:
    source.hang = True
    endpoint_id, collection_id = await add_collection(deps)
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await request(runner, collection_id, run_id)
    await runner.stop()
    run = await run_of(deps, run_id)
    assert run["status"] == "RUNNING"
    assert isinstance(run["lease_expires_at"], datetime)
    assert run["lease_expires_at"] <= datetime.now(UTC), "lease released"
    source.hang = False
    successor = second_collector(deps, source, tmp_path)
    try:
        assert await successor.sweep() == 1
        await successor.wait_idle()
    finally:
        await successor.stop()
    assert await status_of(deps, run_id) == "SUCCEEDED"


async def test_secrets_that_cannot_be_decrypted_fail_the_run_once(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    deps.secrets = SecretBox([generate_key()])  # the key was changed without re-encrypting
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await run_to_end(runner, collection_id, run_id)
    run = await run_of(deps, run_id)
    assert (run["status"], run["error"]) == (
        "FAILED",
        "endpoint secrets cannot be decrypted with the configured keys",
    )
    assert source.calls == 0


# --- external ingestion command ----------------------------------------------------------------

WRITER = r"""
import json, os, sys
assert os.environ["FRESHET_SECRET_PASSWORD"] == sys.argv[2], "secret reaches the env"
assert "{secret}" not in " ".join(sys.argv[:2])
config = json.loads(os.environ["FRESHET_ENDPOINT_CONFIG"])
with open(sys.argv[1], "w") as out:
    out.write(json.dumps({{"schema_name": "lake", "name": "events", "columns": [
        {{"name": "id", "data_type": "BIGINT", "nullable": False}},
        {{"name": "path", "data_type": "TEXT"}}], "primary_key": ["id"],
        "row_estimate": 10}}) + "\n")
    out.write("\n")
    out.write(json.dumps({{"schema_name": "lake", "name": config["path"].strip("/")}}) + "\n")
"""


async def test_an_external_command_ingests_records_it_writes_as_ndjson(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    script = WRITER.format(secret=SECRET)
    endpoint_id, collection_id = await add_collection(
        deps, ingest_command=[sys.executable, "-c", script, "{output}", SECRET[::-1][::-1]]
    )
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await run_to_end(runner, collection_id, run_id)
    run = await run_of(deps, run_id)
    assert (run["status"], run["error"], run["datasets_total"]) == ("SUCCEEDED", None, 2)
    assert source.calls == 0, "the connector is not used"
    async with UnitOfWork(deps.db) as uow:
        datasets = {d.name: d for d in await uow.datasets.for_endpoint(endpoint_id)}
    assert sorted(datasets) == ["events", "x.db"]
    assert datasets["events"].primary_key == ["id"]
    assert [c["name"] for c in datasets["events"].columns] == ["id", "path"]
    assert not list(deps.ingest_workdir.iterdir()), "the output file is removed"


async def test_a_failing_command_fails_the_run_with_its_sanitised_stderr(
    deps: CollectorDeps, runner: Runner
) -> None:
    script = f"import sys; sys.stderr.write('cannot log in with password={SECRET}'); sys.exit(3)"
    endpoint_id, collection_id = await add_collection(
        deps, ingest_command=[sys.executable, "-c", script]
    )
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await run_to_end(runner, collection_id, run_id)
    run = await run_of(deps, run_id)
    assert run["status"] == "FAILED"
    assert str(run["error"]).startswith("ingestion command exited with status 3: cannot log in")
    assert SECRET not in str(run["error"])


async def test_invalid_command_output_fails_the_run_naming_line_and_field(
    deps: CollectorDeps, runner: Runner
) -> None:
    script = (
        "import sys; open(sys.argv[1], 'w').write("
        '\'{"schema_name": "s", "name": "ok"}\\n{"name": "' + SECRET + "\"}\\n')"
    )
    endpoint_id, collection_id = await add_collection(
        deps, ingest_command=[sys.executable, "-c", script, "{output}"]
    )
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await run_to_end(runner, collection_id, run_id)
    run = await run_of(deps, run_id)
    assert run["status"] == "FAILED"
    assert run["error"] == "ingestion output line 2 is invalid: schema_name (Field required)"


async def test_a_command_over_the_time_limit_is_killed_with_its_children(
    deps: CollectorDeps, runner: Runner, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid)); time.sleep(60)"
    )
    endpoint_id, collection_id = await add_collection(
        deps, ingest_command=[sys.executable, "-c", script], run_timeout_s=1
    )
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await run_to_end(runner, collection_id, run_id)
    assert (await run_of(deps, run_id))["error"] == "timed out after 1 s"
    child = int(pid_file.read_text())

    def gone() -> bool:
        # Killed, or a zombie waiting for its (also killed) parent's reaper.
        status = Path(f"/proc/{child}/status")
        return not status.exists() or "zombie" in status.read_text()

    await until(lambda: asyncio.to_thread(gone))


async def test_commands_refused_by_settings_fail_the_run_without_running(
    deps: CollectorDeps, runner: Runner, tmp_path: Path
) -> None:
    deps.ingest_commands_allowed = False
    marker = tmp_path / "ran"
    endpoint_id, collection_id = await add_collection(deps, ingest_command=["touch", str(marker)])
    run_id = await queue_run(deps, collection_id, endpoint_id)
    await run_to_end(runner, collection_id, run_id)
    run = await run_of(deps, run_id)
    assert run["status"] == "FAILED"
    assert "disabled" in str(run["error"])
    assert not marker.exists()


# --- parquet caches (issue 6) ----------------------------------------------------------------


async def test_a_run_records_the_names_it_changed_and_drops_changed_caches_when_asked(
    deps: CollectorDeps, runner: Runner, source: FakeSource
) -> None:
    endpoint_id, collection_id = await add_collection(deps)
    await run_to_end(runner, collection_id, await queue_run(deps, collection_id, endpoint_id))
    async with UnitOfWork(deps.db) as uow:
        datasets = {d.name: d for d in await uow.datasets.for_endpoint(endpoint_id)}
        for dataset in datasets.values():
            await uow.caches.move_pointer(
                dataset,
                version="v1",
                uri=f"file:///cache/{dataset.name}/v1.parquet",
                rows=1,
                size=1,
                schema_fingerprint="arrow",
                source_fingerprint=dataset.fingerprint,
                refresh_id=None,
                now=datetime.now(UTC),
                grace=timedelta(0),
            )
        await uow.commit()
    # Policy "refresh" (the default): the run keeps the caches; with the flag it drops them.
    for flag, extra in ((False, ["x"]), (True, ["x", "y"])):
        source.tables = [
            table("customers", ["id", "name", *extra]),
            table("orders", ["id", "customer_id", *extra]),
        ]
        run_id = await queue_run(deps, collection_id, endpoint_id)
        if flag:
            async with UnitOfWork(deps.db) as uow:
                assert await uow.runs.request_invalidation(run_id)
                await uow.commit()
        await run_to_end(runner, collection_id, run_id)
        async with UnitOfWork(deps.db) as uow:
            run = await uow.runs.get(run_id)
            assert run is not None
            assert run.diff is not None
            assert run.diff["schema_changed"] == [["main", "customers"], ["main", "orders"]]
            pointers = [
                (await uow.caches.get(d.id)).uri  # type: ignore[union-attr]
                for d in datasets.values()
            ]
        if flag:
            assert pointers == [None, None]
            assert run.diff["caches_invalidated"] == run.diff["schema_changed"]
        else:
            assert None not in pointers
            assert run.diff["caches_invalidated"] == []
