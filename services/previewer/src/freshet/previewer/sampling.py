"""Sampling one dataset: through its connector, within the endpoint's limits, retried with
exponential backoff and jitter, then masked and bounded before anything leaves the previewer.

Retries use tenacity (the engine under stamina) because its sleep can be injected: tests check
the backoff timing with a fake clock instead of waiting. Only transient failures are retried
(timeouts, refused connections, a locked file); permanent ones (a missing table, bad
credentials) fail at once. Every error message is sanitised against the endpoint's secrets.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from freshet.catalog.masks import Masks
from freshet.connectors import ConnectorError, ConnectorFactory, Sample, sanitise
from freshet.kit import metrics
from freshet.kit.redaction import describe_error
from freshet.previewer.bounds import Bounded, Limits, bound
from freshet.previewer.clock import Clock
from freshet.previewer.limits import EndpointLimiter

log = structlog.get_logger("freshet.previewer")

# The connectors enforce the statement timeout; this backstop only catches one that does not
# (a DNS lookup that hangs, say), a little later so the connector's clearer error comes first.
BACKSTOP_GRACE_S = 5.0


@dataclass(frozen=True)
class Backoff:
    max_attempts: int = 4
    initial_s: float = 1.0
    max_s: float = 30.0
    jitter_s: float = 1.0


@dataclass(frozen=True)
class Target:
    """Everything one request needs, read from the catalog once before sampling."""

    request_id: uuid.UUID
    dataset_id: uuid.UUID
    endpoint_id: uuid.UUID
    schema_name: str
    table: str
    kind: str
    config: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)
    masks: Masks


@dataclass
class Sampled:
    bounded: Bounded
    masked_columns: list[str]
    attempts: int


class SampleFailed(Exception):
    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class _Transient(Exception):
    """A failure worth another attempt, carrying its sanitised reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Sampler:
    connect: ConnectorFactory
    limits: Limits
    timeout_s: float
    backoff: Backoff
    clock: Clock = field(default_factory=Clock)

    async def sample(self, target: Target, limiter: EndpointLimiter) -> Sampled:
        attempts = 0

        def before_sleep(state: RetryCallState) -> None:
            wait = state.next_action.sleep if state.next_action else 0.0
            error = state.outcome.exception() if state.outcome else None
            log.info(
                "preview sample failed, retrying",
                dataset_id=str(target.dataset_id),
                attempt=state.attempt_number,
                wait_s=round(wait, 3),
                error=getattr(error, "reason", None),
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, _Transient)),
            stop=stop_after_attempt(self.backoff.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.backoff.initial_s,
                max=self.backoff.max_s,
                jitter=self.backoff.jitter_s,
            ),
            sleep=self.clock.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    raw = await self._attempt(target, limiter)
        except _Transient as exc:
            raise SampleFailed(
                f"{exc.reason} (gave up after {attempts} attempts)", attempts
            ) from None
        except SampleFailed as exc:
            raise SampleFailed(exc.reason, attempts) from None
        rows, masked = target.masks.apply(raw.columns, raw.rows)
        return Sampled(bound(raw.columns, rows, self.limits), masked, attempts)

    async def _attempt(self, target: Target, limiter: EndpointLimiter) -> Sample:
        """One try under the endpoint's permit: a Sample, _Transient, or SampleFailed."""
        async with limiter.permit():
            try:
                connector = self.connect(target.kind, target.config, target.secrets)
                async with asyncio.timeout(self.timeout_s + BACKSTOP_GRACE_S):
                    sample = await connector.sample(
                        target.schema_name, target.table, self.limits.max_rows
                    )
            except ConnectorError as exc:
                metrics.PREVIEW_SAMPLES.labels("failed").inc()
                reason = sanitise(exc.message, target.secrets)
                if exc.transient:
                    raise _Transient(reason) from None
                raise SampleFailed(reason, 0) from None
            except TimeoutError:
                metrics.PREVIEW_SAMPLES.labels("failed").inc()
                raise _Transient(f"sample timed out after {self.timeout_s:g}s") from None
            except Exception as exc:
                # A bug or something no connector anticipated: not retried, never unsanitised.
                metrics.PREVIEW_SAMPLES.labels("failed").inc()
                raise SampleFailed(describe_error(exc, target.secrets.values()), 0) from None
        metrics.PREVIEW_SAMPLES.labels("ok").inc()
        return sample
