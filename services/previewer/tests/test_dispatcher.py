"""Running requests off the consumer path: one worker per endpoint under a lease, endpoint
limits, isolation between endpoints, failures recorded, work handed over between processes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from freshet.catalog import UnitOfWork
from freshet.catalog.clock import utcnow
from freshet.connectors import ConnectorError
from freshet.devstack.testing import eventually
from freshet.previewer.clock import Clock
from freshet.previewer.dispatcher import DispatchConfig, Dispatcher, lease_name
from freshet.previewer.handlers import PreviewerDeps
from freshet.previewer.sampling import Backoff, Sampler

if TYPE_CHECKING:
    from services.previewer.tests.conftest import Helpers, Sources

Make = Callable[..., Dispatcher]


async def no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
async def make(deps: PreviewerDeps, sources: Sources) -> AsyncIterator[Make]:
    started: list[Dispatcher] = []

    def build(holder: str = "previewer-1", **config: object) -> Dispatcher:
        sampler = Sampler(
            connect=sources.connect,
            limits=deps.limits,
            timeout_s=5.0,
            backoff=Backoff(max_attempts=3, initial_s=0.0, jitter_s=0.0),
            clock=Clock(sleep=no_sleep),
        )
        settings = {"poll_interval_s": 0.05, "lease_ttl_s": 3.0, **config}
        dispatcher = Dispatcher(
            deps=deps,
            sampler=sampler,
            holder=holder,
            config=DispatchConfig(**settings),  # type: ignore[arg-type]
        )
        started.append(dispatcher)
        return dispatcher

    yield build
    for dispatcher in started:
        await dispatcher.stop()


async def queue(h: Helpers, endpoint_id: uuid.UUID, dataset_id: uuid.UUID) -> uuid.UUID:
    async with UnitOfWork(h.deps.db) as uow:
        row = uow.previews.stage(
            dataset_id=dataset_id,
            endpoint_id=endpoint_id,
            refresh_source="manual",
            status="queued",
            due_at=utcnow(),
        )
        await uow.commit()
    return row.id


async def statuses(h: Helpers, ids: list[uuid.UUID]) -> list[str]:
    return [(await h.request_of(i)).status for i in ids]


async def test_a_hanging_endpoint_never_delays_a_healthy_one(
    h: Helpers, sources: Sources, make: Make
) -> None:
    hanging_id, hanging = await h.add_endpoint(["h1", "h2", "h3"], path="/src/hang.db")
    healthy_id, healthy = await h.add_endpoint(["a", "b", "c", "d"], path="/src/ok.db")
    sources["/src/hang.db"].hang = True
    stuck = [await queue(h, hanging_id, d) for d in hanging.values()]
    wanted = [await queue(h, healthy_id, d) for d in healthy.values()]
    dispatcher = make(concurrency=2)
    await dispatcher.start()

    async def healthy_sampled() -> bool:
        return await statuses(h, wanted) == ["sampled"] * 4

    await eventually(healthy_sampled, timeout=10)
    # The hanging endpoint's requests are claimed, but only two reach its source at once.
    assert sources["/src/hang.db"].max_running == 2
    assert await statuses(h, stuck) == ["running"] * 3
    sampled = await h.outbox("freshet.preview.sampled")
    assert {s["dataset_id"] for s in sampled} == {str(d) for d in healthy.values()}
    assert {s["request_id"] for s in sampled} == {str(i) for i in wanted}
    starts = await h.audit_of(action="preview.sample", outcome="started")
    assert {r.target_id for r in starts} >= {str(d) for d in healthy.values()}


async def test_an_endpoint_never_runs_more_than_its_concurrency(
    h: Helpers, sources: Sources, make: Make
) -> None:
    endpoint_id, ids = await h.add_endpoint([f"t{i}" for i in range(8)], path="/src/k.db")
    wanted = [await queue(h, endpoint_id, d) for d in ids.values()]
    dispatcher = make(concurrency=3, rate_per_s=1000)
    await dispatcher.start()

    async def done() -> bool:
        return await statuses(h, wanted) == ["sampled"] * 8

    await eventually(done, timeout=10)
    assert sources["/src/k.db"].max_running == 3


async def test_a_failing_endpoint_records_the_reason_on_its_dataset_and_stops(
    h: Helpers, sources: Sources, make: Make
) -> None:
    endpoint_id, ids = await h.add_endpoint(["a"], path="/src/bad.db", secrets={"password": "s3"})
    sources["/src/bad.db"].errors = [ConnectorError("refused by s3 host", transient=True)] * 5
    [request] = [await queue(h, endpoint_id, ids["a"])]
    await make().start()

    async def failed() -> bool:
        return await statuses(h, [request]) == ["failed"]

    await eventually(failed, timeout=10)
    row = await h.request_of(request)
    assert row.attempts == 3
    assert row.reason is not None
    assert "gave up after 3 attempts" in row.reason
    error = (await h.payload_of(ids["a"]))["previewError"]
    assert error["attempts"] == 3
    assert "s3" not in error["reason"].replace("gave up", "")
    [record] = await h.audit_of(outcome="failed")
    assert record.reason == row.reason
    assert len(sources["/src/bad.db"].calls) == 3


async def test_policy_changed_after_queueing_refuses_the_request(
    h: Helpers, sources: Sources, make: Make
) -> None:
    endpoint_id, ids = await h.add_endpoint(["a"], path="/src/p.db")
    request = await queue(h, endpoint_id, ids["a"])
    async with UnitOfWork(h.deps.db) as uow:
        endpoint = await uow.endpoints.get(endpoint_id)
        assert endpoint is not None
        endpoint.preview_policy = "disabled"
        await uow.commit()
    await make().start()

    async def refused() -> bool:
        return await statuses(h, [request]) == ["refused"]

    await eventually(refused, timeout=10)
    assert sources["/src/p.db"].calls == []


async def test_one_process_at_a_time_works_on_an_endpoint_and_work_moves_on_a_stop(
    h: Helpers, sources: Sources, make: Make
) -> None:
    endpoint_id, ids = await h.add_endpoint(["a", "b"], path="/src/l.db")
    sources["/src/l.db"].hang = True
    first = [await queue(h, endpoint_id, d) for d in ids.values()]
    one = make("previewer-1")
    two = make("previewer-2")
    await one.start()

    async def running() -> bool:
        return await statuses(h, first) == ["running", "running"]

    await eventually(running, timeout=10)
    await two.start()
    await two.poll()
    assert endpoint_id not in two.workers  # the lease is previewer-1's

    sources["/src/l.db"].hang = False
    await one.stop()  # requests put back, lease released: previewer-2 takes over now

    async def sampled_by_two() -> bool:
        return await statuses(h, first) == ["sampled", "sampled"]

    await eventually(sampled_by_two, timeout=10)
    assert {(await h.request_of(i)).worker for i in first} == {"previewer-2"}


async def test_requests_of_a_dead_worker_are_run_again_once_its_lease_lapses(
    h: Helpers, make: Make
) -> None:
    endpoint_id, ids = await h.add_endpoint(["a"], path="/src/d.db")
    request = await queue(h, endpoint_id, ids["a"])
    async with UnitOfWork(h.deps.db) as uow:
        # A worker that died mid-sample: its request running, its lease expired.
        await uow.previews.claim(endpoint_id, "dead-previewer", limit=1, now=utcnow())
        await uow.leases.try_acquire(
            lease_name(endpoint_id), "dead-previewer", timedelta(seconds=-1)
        )
        await uow.commit()
    await make("previewer-9").start()

    async def sampled() -> bool:
        return await statuses(h, [request]) == ["sampled"]

    await eventually(sampled, timeout=10)
    assert (await h.request_of(request)).worker == "previewer-9"
