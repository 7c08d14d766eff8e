"""Sampling one dataset: retries with exponential backoff and jitter (timed with an injected
clock), permanent failures, masks before bounds, secrets never in a reason."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from freshet.catalog.masks import MASKED, compile_masks
from freshet.connectors import ConnectorError
from freshet.previewer.bounds import Limits
from freshet.previewer.clock import Clock
from freshet.previewer.limits import EndpointLimiter
from freshet.previewer.sampling import Backoff, SampleFailed, Sampler, Target

if TYPE_CHECKING:
    from services.previewer.tests.conftest import Sources

SECRET = "hunter2-do-not-print"


class FakeClock:
    """Sleeps return at once and move this clock on by the time slept."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def target(masks: list[str] | None = None) -> Target:
    return Target(
        request_id=uuid.uuid4(),
        dataset_id=uuid.uuid4(),
        endpoint_id=uuid.uuid4(),
        schema_name="main",
        table="t",
        kind="sqlite",
        config={"path": "/src/a.db"},
        secrets={"password": SECRET},
        masks=compile_masks(masks or []),
    )


def sampler(sources: Sources, clock: FakeClock, backoff: Backoff) -> Sampler:
    return Sampler(
        connect=sources.connect,
        limits=Limits(),
        timeout_s=5.0,
        backoff=backoff,
        clock=Clock(sleep=clock.sleep),
    )


def limiter() -> EndpointLimiter:
    return EndpointLimiter(concurrency=2, rate_per_s=1000)


async def test_transient_failures_back_off_exponentially_with_jitter_then_succeed(
    sources: Sources,
) -> None:
    clock = FakeClock()
    sources["/src/a.db"].errors = [ConnectorError("timed out", transient=True)] * 3
    backoff = Backoff(max_attempts=5, initial_s=1.0, max_s=30.0, jitter_s=0.5)

    result = await sampler(sources, clock, backoff).sample(target(), limiter())

    assert result.attempts == 4
    assert len(clock.slept) == 3
    for n, slept in enumerate(clock.slept):
        base = 1.0 * 2**n
        assert base <= slept <= base + 0.5, (n, slept)
    # Jitter: three waits are not exactly the bare exponential (the odds of that are nil).
    assert clock.slept != [1.0, 2.0, 4.0]


async def test_backoff_is_capped_and_attempts_are_bounded(sources: Sources) -> None:
    clock = FakeClock()
    sources["/src/a.db"].errors = [ConnectorError("refused", transient=True)] * 10
    backoff = Backoff(max_attempts=6, initial_s=1.0, max_s=5.0, jitter_s=0.0)

    with pytest.raises(SampleFailed) as failed:
        await sampler(sources, clock, backoff).sample(target(), limiter())

    assert clock.slept == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert failed.value.attempts == 6
    assert "refused" in failed.value.reason
    assert "gave up after 6 attempts" in failed.value.reason
    assert len(sources["/src/a.db"].calls) == 6


async def test_a_permanent_failure_is_not_retried_and_its_reason_names_no_secret(
    sources: Sources,
) -> None:
    clock = FakeClock()
    sources["/src/a.db"].errors = [
        ConnectorError(f"table not found (password={SECRET})", transient=False)
    ]
    with pytest.raises(SampleFailed) as failed:
        await sampler(sources, clock, Backoff()).sample(target(), limiter())
    assert clock.slept == []
    assert failed.value.attempts == 1
    assert "table not found" in failed.value.reason
    assert SECRET not in failed.value.reason


async def test_masks_apply_before_values_leave_the_sampler(sources: Sources) -> None:
    source = sources["/src/a.db"]
    source.columns = ["id", "email"]
    source.rows = [[1, "a@example.com"], [2, None]]
    result = await sampler(sources, FakeClock(), Backoff()).sample(target(["EMAIL"]), limiter())
    assert result.bounded.rows == [[1, MASKED], [2, None]]
    assert result.masked_columns == ["email"]


async def test_at_most_the_row_cap_is_asked_for(sources: Sources) -> None:
    result = await sampler(sources, FakeClock(), Backoff()).sample(target(), limiter())
    assert sources["/src/a.db"].calls == [("main", "t", 50)]
    assert len(result.bounded.rows) == 50
