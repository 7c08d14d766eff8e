"""The previewer's consumer handlers on a real catalog: fan-out, request intake (policy,
throttle, failed state), persistence (newer wins, masks and caps for outside samples)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from freshet.catalog import UnitOfWork
from freshet.catalog.masks import MASKED
from freshet.contracts import PreviewRequested, PreviewSampled
from freshet.previewer.bounds import TRUNCATED_MARK
from freshet.previewer.handlers import (
    PreviewerDeps,
    handle_preview_requested,
    handle_preview_sampled,
    handle_run_completed,
)

if TYPE_CHECKING:
    from services.previewer.tests.conftest import Helpers

from datetime import UTC, datetime

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# --- fan-out ---------------------------------------------------------------------------------


async def test_a_succeeded_run_requests_one_preview_per_live_dataset(
    deps: PreviewerDeps, h: Helpers
) -> None:
    endpoint_id, ids = await h.add_endpoint(["a", "b", "opted_out"])
    async with UnitOfWork(deps.db) as uow:
        dataset = await uow.datasets.get(ids["opted_out"])
        assert dataset is not None
        dataset.payload = {"previewOptOut": True}
        await uow.commit()
    event = h.completed(endpoint_id)

    await handle_run_completed(h.envelope(event), deps)

    requests = await h.outbox("freshet.preview.requested")
    assert sorted(r["dataset_id"] for r in requests) == sorted(str(ids[n]) for n in ("a", "b"))
    assert {r["refresh_source"] for r in requests} == {"collection"}
    assert {r["run_id"] for r in requests} == {str(event.run_id)}
    assert all(r["request_id"] for r in requests)
    assert {r["_headers"]["ce_correlationid"] for r in requests} == {"corr-7"}
    [record] = await h.audit_of(action="preview.fanout")
    assert record.outcome == "requested"
    assert record.details == {"runId": str(event.run_id), "requested": 2, "optedOut": 1}


async def test_the_same_run_completed_twice_fans_out_once(deps: PreviewerDeps, h: Helpers) -> None:
    endpoint_id, _ = await h.add_endpoint(["a"])
    env = h.envelope(h.completed(endpoint_id))
    await handle_run_completed(env, deps)
    await handle_run_completed(env, deps)
    assert len(await h.outbox("freshet.preview.requested")) == 1


@pytest.mark.parametrize(
    ("policy", "auto", "reason"),
    [
        ("manual-only", True, "policy is manual-only"),
        ("disabled", True, "policy is disabled"),
        ("auto", False, "FRESHET_PREVIEW_AUTO=false"),
    ],
)
async def test_no_automatic_previews_unless_auto_policy_and_switch_on_and_it_is_audited(
    deps: PreviewerDeps, h: Helpers, policy: str, auto: bool, reason: str
) -> None:
    deps.auto = auto
    endpoint_id, _ = await h.add_endpoint(["a"], policy=policy)
    await handle_run_completed(h.envelope(h.completed(endpoint_id)), deps)
    assert await h.outbox("freshet.preview.requested") == []
    [record] = await h.audit_of(action="preview.fanout")
    assert record.outcome == "refused"
    assert reason in (record.reason or "")


@pytest.mark.parametrize("status", ["FAILED", "SKIPPED", "CANCELLED"])
async def test_an_unsuccessful_run_requests_nothing(
    deps: PreviewerDeps, h: Helpers, status: str
) -> None:
    endpoint_id, _ = await h.add_endpoint(["a"])
    await handle_run_completed(h.envelope(h.completed(endpoint_id, status)), deps)
    assert await h.outbox("freshet.preview.requested") == []


# --- request intake ----------------------------------------------------------------------------


def ask(
    dataset_id: uuid.UUID, endpoint_id: uuid.UUID, source: str = "collection", **more: object
) -> PreviewRequested:
    return PreviewRequested(
        dataset_id=dataset_id,
        endpoint_id=endpoint_id,
        refresh_source=source,
        **more,
    )


async def test_an_accepted_request_is_queued_and_wakes_its_endpoint(
    deps: PreviewerDeps, h: Helpers
) -> None:
    woken: list[uuid.UUID] = []
    deps.notify = woken.append
    endpoint_id, ids = await h.add_endpoint(["a"])
    request_id = uuid.uuid4()

    await handle_preview_requested(
        h.envelope(ask(ids["a"], endpoint_id, request_id=request_id)), deps
    )

    row = await h.request_of(request_id)
    assert row.status == "queued"
    assert row.due_at is not None
    assert row.correlation_id == "corr-7"
    assert woken == [endpoint_id]


async def test_a_redelivered_request_is_one_request(deps: PreviewerDeps, h: Helpers) -> None:
    endpoint_id, ids = await h.add_endpoint(["a"])
    env = h.envelope(ask(ids["a"], endpoint_id))
    await handle_preview_requested(env, deps)
    await handle_preview_requested(env, deps)
    assert len(await h.requests_of(ids["a"])) == 1


@pytest.mark.parametrize(
    ("policy", "opt_out", "source", "expected"),
    [
        ("disabled", False, "manual", "refused"),
        ("disabled", False, "collection", "refused"),
        ("auto", True, "manual", "refused"),
        ("manual-only", False, "schedule", "refused"),
        ("manual-only", False, "manual", "queued"),
    ],
)
async def test_policy_decides_what_may_be_sampled(
    deps: PreviewerDeps, h: Helpers, policy: str, opt_out: bool, source: str, expected: str
) -> None:
    endpoint_id, ids = await h.add_endpoint(["a"], policy=policy)
    if opt_out:
        async with UnitOfWork(deps.db) as uow:
            dataset = await uow.datasets.get(ids["a"])
            assert dataset is not None
            dataset.payload = {"previewOptOut": True}
            await uow.commit()
    await handle_preview_requested(h.envelope(ask(ids["a"], endpoint_id, source)), deps)
    [row] = await h.requests_of(ids["a"])
    assert row.status == expected
    if expected == "refused":
        [record] = await h.audit_of(action="preview.sample", outcome="refused")
        assert record.reason == row.reason
        assert record.target_id == str(ids["a"])


async def test_a_second_automatic_refresh_within_the_interval_is_throttled_but_manual_is_not(
    deps: PreviewerDeps, h: Helpers
) -> None:
    endpoint_id, ids = await h.add_endpoint(["a"])
    for source in ("collection", "schedule", "manual"):
        await handle_preview_requested(h.envelope(ask(ids["a"], endpoint_id, source)), deps)
    statuses = [(r.refresh_source, r.status) for r in await h.requests_of(ids["a"])]
    assert statuses == [("collection", "queued"), ("schedule", "throttled"), ("manual", "queued")]
    [record] = await h.audit_of(outcome="throttled")
    assert "less than 3600s ago" in (record.reason or "")


async def test_after_the_interval_the_next_automatic_refresh_is_accepted(
    deps: PreviewerDeps, h: Helpers
) -> None:
    endpoint_id, ids = await h.add_endpoint(["a"])
    clock_now = [NOW]
    from freshet.previewer.clock import Clock

    deps.clock = Clock(now=lambda: clock_now[0])
    await handle_preview_requested(h.envelope(ask(ids["a"], endpoint_id)), deps)
    clock_now[0] = NOW + timedelta(hours=1, seconds=1)
    await handle_preview_requested(h.envelope(ask(ids["a"], endpoint_id)), deps)
    assert [r.status for r in await h.requests_of(ids["a"])] == ["queued", "queued"]


async def test_after_a_failure_sweeps_wait_for_the_next_run_which_tries_again(
    deps: PreviewerDeps, h: Helpers
) -> None:
    endpoint_id, ids = await h.add_endpoint(["a"])
    async with UnitOfWork(deps.db) as uow:
        dataset = await uow.datasets.get(ids["a"])
        assert dataset is not None
        dataset.payload = {"previewError": {"at": NOW.isoformat(), "reason": "boom"}}
        await uow.commit()
    await handle_preview_requested(h.envelope(ask(ids["a"], endpoint_id, "schedule")), deps)
    await handle_preview_requested(h.envelope(ask(ids["a"], endpoint_id, "collection")), deps)
    statuses = [(r.refresh_source, r.status) for r in await h.requests_of(ids["a"])]
    assert statuses == [("schedule", "dropped"), ("collection", "queued")]


async def test_a_request_the_gateway_recorded_is_accepted_once(
    deps: PreviewerDeps, h: Helpers
) -> None:
    endpoint_id, ids = await h.add_endpoint(["a"])
    async with UnitOfWork(deps.db) as uow:
        row = uow.previews.stage(
            dataset_id=ids["a"],
            endpoint_id=endpoint_id,
            refresh_source="manual",
            requested_by="otto",
            status="requested",
        )
        await uow.commit()
    event = ask(ids["a"], endpoint_id, "manual", request_id=row.id, requested_by="otto")
    await handle_preview_requested(h.envelope(event), deps)
    await handle_preview_requested(h.envelope(event), deps)  # another event id, same request
    [again] = await h.requests_of(ids["a"])
    assert (again.id, again.status, again.requested_by) == (row.id, "queued", "otto")


async def test_a_request_for_an_unknown_dataset_is_dropped(deps: PreviewerDeps, h: Helpers) -> None:
    await handle_preview_requested(h.envelope(ask(uuid.uuid4(), uuid.uuid4())), deps)
    assert await h.outbox("freshet.preview.sampled") == []


# --- persistence -------------------------------------------------------------------------------


def sampled(
    dataset_id: uuid.UUID,
    at: datetime,
    marker: object,
    *,
    columns: list[str] | None = None,
    rows: list[list[object]] | None = None,
    by: str = "outside-sampler",
    request_id: uuid.UUID | None = None,
) -> PreviewSampled:
    rows = rows if rows is not None else [[marker]]
    return PreviewSampled(
        dataset_id=dataset_id,
        columns=columns or ["id"],
        rows=rows,
        sampled_at=at,
        sampled_by=by,
        refresh_source="external",
        row_count=len(rows),
        request_id=request_id,
    )


async def test_a_sample_is_persisted_with_its_provenance_and_audited_when_from_outside(
    deps: PreviewerDeps, h: Helpers
) -> None:
    _, ids = await h.add_endpoint(["a"])
    await handle_preview_sampled(h.envelope(sampled(ids["a"], NOW, 1)), deps)
    preview = (await h.payload_of(ids["a"]))["preview"]
    assert preview == {
        "columns": ["id"],
        "rows": [[1]],
        "rowCount": 1,
        "sampledAt": NOW.isoformat(),
        "sampledBy": "outside-sampler",
        "refreshSource": "external",
        "truncated": False,
        "truncation": None,
        "maskedColumns": [],
        "runId": None,
        "requestId": None,
    }
    async with UnitOfWork(deps.db) as uow:
        dataset = await uow.datasets.get(ids["a"])
        assert dataset is not None
        assert dataset.preview_sampled_at == NOW
    [record] = await h.audit_of(action="preview.persist")
    assert (record.actor, record.outcome) == ("outside-sampler", "stored")


async def test_an_older_sample_arriving_late_never_replaces_a_newer_one(
    deps: PreviewerDeps, h: Helpers
) -> None:
    _, ids = await h.add_endpoint(["a"])
    await handle_preview_sampled(h.envelope(sampled(ids["a"], NOW, 2)), deps)
    await handle_preview_sampled(h.envelope(sampled(ids["a"], NOW - timedelta(minutes=5), 1)), deps)
    assert (await h.payload_of(ids["a"]))["preview"]["rows"] == [[2]]
    # The same sample again, under another event id: nothing changes.
    await handle_preview_sampled(h.envelope(sampled(ids["a"], NOW, 9)), deps)
    assert (await h.payload_of(ids["a"]))["preview"]["rows"] == [[2]]
    await handle_preview_sampled(h.envelope(sampled(ids["a"], NOW + timedelta(minutes=5), 3)), deps)
    assert (await h.payload_of(ids["a"]))["preview"]["rows"] == [[3]]


async def test_an_outside_sample_is_masked_and_bounded_before_it_is_stored(
    deps: PreviewerDeps, h: Helpers
) -> None:
    _, ids = await h.add_endpoint(["a"], masks=["email", "re:^ssn"])
    rows: list[list[object]] = [[i, f"u{i}@example.com", "123-45", "x" * 5000] for i in range(3)]
    event = sampled(ids["a"], NOW, 0, columns=["id", "Email", "ssn_no", "bio"], rows=rows)
    await handle_preview_sampled(h.envelope(event), deps)
    preview = (await h.payload_of(ids["a"]))["preview"]
    assert preview["maskedColumns"] == ["Email", "ssn_no"]
    assert all(row[1] == MASKED and row[2] == MASKED for row in preview["rows"])
    assert all(row[3].endswith(TRUNCATED_MARK) for row in preview["rows"])
    assert all(len(row[3].encode()) <= 1024 for row in preview["rows"])
    assert preview["truncated"] is True
    assert preview["truncation"]["valuesTruncated"] == 3
    assert "example.com" not in str(preview)


async def test_a_sample_for_a_disabled_endpoint_or_opted_out_dataset_is_refused(
    deps: PreviewerDeps, h: Helpers
) -> None:
    _, disabled = await h.add_endpoint(["a"], policy="disabled")
    _, ids = await h.add_endpoint(["b"])
    async with UnitOfWork(deps.db) as uow:
        dataset = await uow.datasets.get(ids["b"])
        assert dataset is not None
        dataset.payload = {"previewOptOut": True}
        await uow.commit()
    await handle_preview_sampled(h.envelope(sampled(disabled["a"], NOW, 1)), deps)
    await handle_preview_sampled(h.envelope(sampled(ids["b"], NOW, 1)), deps)
    assert "preview" not in await h.payload_of(disabled["a"])
    assert "preview" not in await h.payload_of(ids["b"])
    refused = await h.audit_of(action="preview.persist", outcome="refused")
    assert {r.target_id for r in refused} == {str(disabled["a"]), str(ids["b"])}


async def test_a_persisted_sample_answers_its_request_and_clears_an_older_error(
    deps: PreviewerDeps, h: Helpers
) -> None:
    endpoint_id, ids = await h.add_endpoint(["a"])
    async with UnitOfWork(deps.db) as uow:
        dataset = await uow.datasets.get(ids["a"])
        assert dataset is not None
        dataset.payload = {"previewError": {"at": (NOW - timedelta(hours=1)).isoformat()}}
        row = uow.previews.stage(
            dataset_id=ids["a"], endpoint_id=endpoint_id, refresh_source="manual", status="sampled"
        )
        await uow.commit()
    event = sampled(ids["a"], NOW, 1, by=deps.sampled_by, request_id=row.id)
    await handle_preview_sampled(h.envelope(event), deps)
    assert (await h.request_of(row.id)).status == "persisted"
    payload = await h.payload_of(ids["a"])
    assert "previewError" not in payload
    assert payload["preview"]["requestId"] == str(row.id)
    # Our own samples were audited when sampled; persisting them adds no record.
    assert await h.audit_of(action="preview.persist") == []


async def test_a_sample_for_an_unknown_dataset_is_dropped_not_retried(
    deps: PreviewerDeps, h: Helpers
) -> None:
    unknown = uuid.uuid4()
    await handle_preview_sampled(h.envelope(sampled(unknown, NOW, 1)), deps)  # does not raise
    async with UnitOfWork(deps.db) as uow:
        assert await uow.datasets.get(unknown) is None
