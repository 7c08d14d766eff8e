"""Run history and cancellation: GET /runs (filters endpoint_id, collection_id, status,
from, to; keyset pages with first/after), GET /collections/{id}/runs, GET /runs/{id} and
POST /runs/{id}/cancel. Every test runs on a SQLite and a PostgreSQL catalog.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from freshet.catalog import Database, RunStatus, UnitOfWork

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
Trigger = Callable[[str], Awaitable[dict[str, Any]]]
MoveRun = Callable[..., Awaitable[None]]
InsertRuns = Callable[..., Awaitable[list[str]]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]
OutboxEvents = Callable[[str], Awaitable[list[dict[str, Any]]]]
ExpectError = Callable[..., dict[str, Any]]

COMPLETED = "freshet.run.completed.v1"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
async def endpoint(create_endpoint: CreateEndpoint) -> dict[str, Any]:
    return await create_endpoint("shop-db")


@pytest.fixture
async def hourly(endpoint: dict[str, Any], insert_runs: InsertRuns) -> list[str]:
    """Six finished runs of shop-db requested hourly from 2026-03-01 00:00 UTC, oldest first:
    SUCCEEDED at even hours, FAILED at odd ones."""
    return await insert_runs(
        endpoint,
        *(
            (T0 + timedelta(hours=i), RunStatus.FAILED if i % 2 else RunStatus.SUCCEEDED)
            for i in range(6)
        ),
    )


async def list_ids(client: httpx.AsyncClient, auth: Auth, path: str, **params: Any) -> list[str]:
    response = await client.get(path, params=params, headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()]


def cursor(*parts: str) -> str:
    """A cursor made by hand, shaped like the API's (base64url of the parts)."""
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode().rstrip("=")


# GET /runs/{id}.


async def test_a_run_reads_back_with_every_field(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], trigger: Trigger
) -> None:
    run = await trigger(endpoint["collection_id"])

    response = await client.get(f"/runs/{run['id']}", headers=auth("viewer"))

    assert response.json() == run
    assert set(run) == {
        "id",
        "collection_id",
        "endpoint_id",
        "status",
        "trigger_source",
        "requested_by",
        "requested_at",
        "started_at",
        "completed_at",
        "duration_ms",
        "workflow_id",
        "error",
        "datasets_total",
        "datasets_added",
        "datasets_removed",
        "datasets_changed",
        "filters",
        "cursor",
    }


async def test_an_unknown_run_is_404(
    client: httpx.AsyncClient, auth: Auth, expect_error: ExpectError
) -> None:
    response = await client.get(f"/runs/{uuid.uuid4()}", headers=auth("viewer"))

    expect_error(response, 404, "E_RUN_NOT_FOUND")


# Filters.


async def test_runs_are_listed_newest_first_across_endpoints(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_endpoint: CreateEndpoint,
    insert_runs: InsertRuns,
) -> None:
    other = await create_endpoint("other-db")
    [old] = await insert_runs(endpoint, (T0, RunStatus.SUCCEEDED))
    [middle] = await insert_runs(other, (T0 + timedelta(minutes=1), RunStatus.FAILED))
    [new] = await insert_runs(endpoint, (T0 + timedelta(minutes=2), RunStatus.SKIPPED))

    assert await list_ids(client, auth, "/runs") == [new, middle, old]


async def test_runs_filter_by_endpoint_and_by_collection(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_endpoint: CreateEndpoint,
    insert_runs: InsertRuns,
) -> None:
    other = await create_endpoint("other-db")
    mine = await insert_runs(
        endpoint, (T0, RunStatus.SUCCEEDED), (T0 + timedelta(1), RunStatus.FAILED)
    )
    theirs = await insert_runs(other, (T0, RunStatus.SUCCEEDED))

    newest_first = list(reversed(mine))
    assert await list_ids(client, auth, "/runs", endpoint_id=endpoint["id"]) == newest_first
    assert await list_ids(client, auth, "/runs", collection_id=endpoint["collection_id"]) == (
        newest_first
    )
    assert await list_ids(client, auth, "/runs", endpoint_id=other["id"]) == theirs
    assert (
        await list_ids(
            client, auth, "/runs", endpoint_id=endpoint["id"], collection_id=other["collection_id"]
        )
        == []
    ), "filters combine with AND"


async def test_runs_of_an_unknown_endpoint_or_collection_are_an_empty_list(
    client: httpx.AsyncClient, auth: Auth, hourly: list[str]
) -> None:
    assert await list_ids(client, auth, "/runs", endpoint_id=str(uuid.uuid4())) == []
    assert await list_ids(client, auth, "/runs", collection_id=str(uuid.uuid4())) == []


@pytest.mark.parametrize(("status", "hours"), [("SUCCEEDED", [4, 2, 0]), ("FAILED", [5, 3, 1])])
async def test_runs_filter_by_status(
    client: httpx.AsyncClient, auth: Auth, hourly: list[str], status: str, hours: list[int]
) -> None:
    assert await list_ids(client, auth, "/runs", status=status) == [hourly[h] for h in hours]
    assert await list_ids(client, auth, "/runs", status="RUNNING") == []


@pytest.mark.parametrize(
    ("window", "hours"),
    [
        pytest.param(
            {"from": "2026-03-01T01:00:00Z", "to": "2026-03-01T03:00:00Z"}, [2, 1], id="Z"
        ),
        pytest.param(
            {"from": "2026-03-01T06:30:00+05:30", "to": "2026-03-01T08:30:00+05:30"},
            [2, 1],
            id="+05:30",
        ),
        pytest.param(
            {"from": "2026-02-28T20:00:00-05:00", "to": "2026-02-28T22:00:00-05:00"},
            [2, 1],
            id="-05:00",
        ),
        pytest.param(
            {"from": "2026-03-01T01:00:00", "to": "2026-03-01T03:00:00"}, [2, 1], id="naive is UTC"
        ),
        pytest.param(
            {"from": "2026-03-01T01:00:00", "to": "2026-03-01T08:30:00+05:30"},
            [2, 1],
            id="naive and aware",
        ),
        pytest.param({"from": "2026-03-01T04:00:00Z"}, [5, 4], id="from only"),
        pytest.param({"to": "2026-03-01T02:00:00Z"}, [1, 0], id="to only"),
        pytest.param({"from": "2026-03-01T00:30:00.5Z"}, [5, 4, 3, 2, 1], id="fractions"),
        pytest.param({"from": "2026-03-01"}, [5, 4, 3, 2, 1, 0], id="a date"),
        pytest.param({"to": "2026-03-01T00:00:00Z"}, [], id="to is exclusive"),
        pytest.param(
            {"from": "2026-03-01T02:00:00Z", "to": "2026-03-01T02:00:00Z"}, [], id="empty window"
        ),
    ],
)
async def test_runs_filter_by_the_time_they_were_requested(
    client: httpx.AsyncClient,
    auth: Auth,
    hourly: list[str],
    window: dict[str, str],
    hours: list[int],
) -> None:
    """`from` is inclusive, `to` exclusive; a time without an offset is UTC."""
    assert await list_ids(client, auth, "/runs", **window) == [hourly[h] for h in hours]


async def test_the_runs_of_a_collection_take_the_same_filters(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], hourly: list[str]
) -> None:
    ids = await list_ids(
        client,
        auth,
        f"/collections/{endpoint['collection_id']}/runs",
        status="FAILED",
        **{"from": "2026-03-01T02:00:00+00:00", "to": "2026-03-01T06:00:00+00:00"},
    )

    assert ids == [hourly[5], hourly[3]]


async def test_a_window_that_ends_before_it_starts_is_refused(
    client: httpx.AsyncClient, auth: Auth, hourly: list[str], expect_error: ExpectError
) -> None:
    response = await client.get(
        "/runs",
        params={"from": "2026-03-01T05:30:00+05:30", "to": "2026-03-01T00:00:00+01:00"},
        headers=auth("viewer"),
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert [d["loc"] for d in error["details"]] == [["input", "from"]]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"from": "yesterday"}, ["query", "from"], id="from not a time"),
        pytest.param({"to": "2026-13-01T00:00:00Z"}, ["query", "to"], id="to month 13"),
        pytest.param({"from": "9999-12-31T23:59:59-14:00"}, ["input", "from"], id="from past 9999"),
        pytest.param({"to": "0001-01-01T00:00:00+14:00"}, ["input", "to"], id="to before year 1"),
        pytest.param({"status": "queued"}, ["query", "status"], id="status in lower case"),
        pytest.param({"status": "DONE"}, ["query", "status"], id="unknown status"),
        pytest.param({"endpoint_id": "shop-db"}, ["query", "endpoint_id"], id="endpoint not uuid"),
        pytest.param({"collection_id": "1"}, ["query", "collection_id"], id="collection not uuid"),
        pytest.param({"first": 0}, ["query", "first"], id="first 0"),
        pytest.param({"first": 501}, ["query", "first"], id="first 501"),
        pytest.param({"first": "ten"}, ["query", "first"], id="first not a number"),
    ],
)
async def test_a_malformed_run_query_is_refused_naming_the_parameter(
    client: httpx.AsyncClient,
    auth: Auth,
    hourly: list[str],
    expect_error: ExpectError,
    params: dict[str, Any],
    loc: list[str],
) -> None:
    response = await client.get("/runs", params=params, headers=auth("viewer"))

    error = expect_error(response, 422, "E_VALIDATION")
    assert loc in [d["loc"] for d in error["details"]]


# Pages: first/after over keyset cursors.


async def read_pages(
    client: httpx.AsyncClient, auth: Auth, path: str, first: int, **params: Any
) -> list[list[str]]:
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        query = {**params, "first": first, **({"after": after} if after else {})}
        response = await client.get(path, params=query, headers=auth("viewer"))
        assert response.status_code == 200, response.text
        page = response.json()
        if not page:
            return pages
        pages.append([r["id"] for r in page])
        after = page[-1]["cursor"]
        assert len(pages) < 50, "pagination does not end"


async def test_pages_cover_every_run_once_newest_first(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], insert_runs: InsertRuns
) -> None:
    ids = await insert_runs(
        endpoint, *((T0 + timedelta(minutes=i), RunStatus.SUCCEEDED) for i in range(8))
    )

    pages = await read_pages(client, auth, "/runs", 3)

    assert [len(p) for p in pages] == [3, 3, 2]
    assert [run for page in pages for run in page] == list(reversed(ids))


async def test_pages_hold_when_runs_share_a_request_time(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], insert_runs: InsertRuns
) -> None:
    ids = await insert_runs(endpoint, *((T0, RunStatus.SUCCEEDED) for _ in range(7)))

    pages = await read_pages(client, auth, "/runs", 2)

    seen = [run for page in pages for run in page]
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen)) == 7


async def test_runs_arriving_between_pages_neither_repeat_nor_shift_them(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], insert_runs: InsertRuns
) -> None:
    ids = await insert_runs(
        endpoint, *((T0 + timedelta(minutes=i), RunStatus.SUCCEEDED) for i in range(6))
    )
    first = (await client.get("/runs", params={"first": 3}, headers=auth("viewer"))).json()
    await insert_runs(endpoint, (T0 + timedelta(hours=1), RunStatus.SUCCEEDED))

    second = await client.get(
        "/runs", params={"first": 3, "after": first[-1]["cursor"]}, headers=auth("viewer")
    )

    assert [r["id"] for r in first] == [ids[5], ids[4], ids[3]]
    assert [r["id"] for r in second.json()] == [ids[2], ids[1], ids[0]]


async def test_pages_combine_with_filters(
    client: httpx.AsyncClient, auth: Auth, endpoint: dict[str, Any], hourly: list[str]
) -> None:
    pages = await read_pages(
        client, auth, f"/collections/{endpoint['collection_id']}/runs", 2, status="FAILED"
    )

    assert pages == [[hourly[5], hourly[3]], [hourly[1]]]


async def test_every_listed_run_carries_the_cursor_of_its_position(
    client: httpx.AsyncClient, auth: Auth, hourly: list[str]
) -> None:
    runs = (await client.get("/runs", headers=auth("viewer"))).json()

    for position, run in enumerate(runs):
        after = await list_ids(client, auth, "/runs", after=run["cursor"])
        assert after == [r["id"] for r in runs[position + 1 :]]


BAD_CURSORS = {
    "not base64": "!!not-a-cursor!!",
    "empty": "",
    "base64 of junk": base64.urlsafe_b64encode(b"junk").decode(),
    "three parts": cursor("2026-03-01T00:00:00+00:00", str(uuid.uuid4()), "x"),
    "not a time": cursor("yesterday", str(uuid.uuid4())),
    "not a uuid": cursor("2026-03-01T00:00:00+00:00", "run-1"),
    "a time without offset": cursor("2026-03-01T00:00:00", str(uuid.uuid4())),
    "past year 9999 in UTC": cursor("9999-12-31T23:59:59-14:00", str(uuid.uuid4())),
    "before year 1 in UTC": cursor("0001-01-01T00:00:00+14:00", str(uuid.uuid4())),
    "sql": "' OR 1=1 --",
    "over 500 characters": "A" * 501,
}


@pytest.mark.parametrize("path", ["/runs", "/collections/{collection_id}/runs", "/collections"])
@pytest.mark.parametrize("after", [pytest.param(c, id=n) for n, c in BAD_CURSORS.items()])
async def test_an_after_that_is_no_cursor_of_the_list_is_refused(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    hourly: list[str],
    expect_error: ExpectError,
    path: str,
    after: str,
) -> None:
    response = await client.get(
        path.format(collection_id=endpoint["collection_id"]),
        params={"after": after},
        headers=auth("viewer"),
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert [d["loc"][-1] for d in error["details"]] == ["after"]


# Duration.


async def test_duration_is_the_time_from_start_to_completion_in_milliseconds(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    catalog: Database,
) -> None:
    run = await trigger(endpoint["collection_id"])
    started = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    async with UnitOfWork(catalog) as uow:
        run_id = uuid.UUID(run["id"])
        assert await uow.runs.transition(run_id, RunStatus.RUNNING, started_at=started)
        assert await uow.runs.transition(
            run_id,
            RunStatus.SUCCEEDED,
            completed_at=started + timedelta(seconds=83, microseconds=250_000),
        )
        await uow.commit()

    done = (await client.get(f"/runs/{run['id']}", headers=auth("viewer"))).json()

    assert done["duration_ms"] == 83_250


@pytest.mark.parametrize(
    "path",
    [
        pytest.param((), id="QUEUED"),
        pytest.param((RunStatus.RUNNING,), id="RUNNING"),
        pytest.param((RunStatus.SKIPPED,), id="SKIPPED before it started"),
        pytest.param((RunStatus.FAILED,), id="FAILED before it started"),
    ],
)
async def test_a_run_that_has_not_both_started_and_finished_has_no_duration(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    move_run: MoveRun,
    path: tuple[RunStatus, ...],
) -> None:
    run = await trigger(endpoint["collection_id"])
    await move_run(run["id"], *path)

    fetched = (await client.get(f"/runs/{run['id']}", headers=auth("viewer"))).json()

    assert fetched["duration_ms"] is None


# Cancelling a run.


@pytest.mark.parametrize(("role", "name"), [("operator", "otto-operator"), ("admin", "ada-admin")])
async def test_cancelling_a_queued_run_records_who_cancelled_it(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    role: str,
    name: str,
) -> None:
    run = await trigger(endpoint["collection_id"])

    response = await client.post(f"/runs/{run['id']}/cancel", headers=auth(role))

    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert (cancelled["status"], cancelled["error"]) == ("CANCELLED", f"cancelled by {name}")
    assert cancelled["completed_at"] is not None
    assert cancelled["requested_by"] == "otto-operator", "the requester stays the requester"
    assert (await client.get(f"/runs/{run['id']}", headers=auth("viewer"))).json() == cancelled


async def test_cancelling_a_queued_run_announces_run_completed_cancelled(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    outbox: Outbox,
) -> None:
    run = await trigger(endpoint["collection_id"])

    await client.post(
        f"/runs/{run['id']}/cancel", headers={**auth("operator"), "X-Correlation-ID": "stop-it"}
    )

    [row] = [r for r in await outbox() if r["event_type"] == COMPLETED]
    assert row["key"] == endpoint["collection_id"]
    assert row["headers"]["ce_correlationid"] == "stop-it"
    event = row["value"]
    assert (event["run_id"], event["status"], event["error"]) == (
        run["id"],
        "CANCELLED",
        "cancelled by otto-operator",
    )
    assert (event["collection_id"], event["endpoint_id"], event["trigger_source"]) == (
        endpoint["collection_id"],
        endpoint["id"],
        "api",
    )
    assert event["started_at"] is None


async def test_cancelling_a_running_run_ends_it(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    move_run: MoveRun,
    outbox_events: OutboxEvents,
) -> None:
    run = await trigger(endpoint["collection_id"])
    await move_run(run["id"], RunStatus.RUNNING)

    response = await client.post(f"/runs/{run['id']}/cancel", headers=auth("operator"))

    cancelled = response.json()
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["started_at"] is not None
    assert cancelled["duration_ms"] is not None
    assert [e["status"] for e in await outbox_events(COMPLETED)] == ["CANCELLED"]


async def test_cancelling_twice_is_409_the_second_time_and_announced_once(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    outbox_events: OutboxEvents,
    expect_error: ExpectError,
) -> None:
    run = await trigger(endpoint["collection_id"])
    first = await client.post(f"/runs/{run['id']}/cancel", headers=auth("operator"))

    second = await client.post(f"/runs/{run['id']}/cancel", headers=auth("admin"))

    error = expect_error(second, 409, "E_RUN_FINISHED")
    assert "CANCELLED" in error["message"]
    assert (await client.get(f"/runs/{run['id']}", headers=auth("viewer"))).json() == first.json()
    assert len(await outbox_events(COMPLETED)) == 1


async def test_of_concurrent_cancels_exactly_one_succeeds(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    outbox_events: OutboxEvents,
    expect_error: ExpectError,
) -> None:
    run = await trigger(endpoint["collection_id"])

    responses = await asyncio.gather(
        *(client.post(f"/runs/{run['id']}/cancel", headers=auth("operator")) for _ in range(8))
    )

    assert sorted(r.status_code for r in responses) == [200] + [409] * 7
    for response in responses:
        if response.status_code == 409:
            expect_error(response, 409, "E_RUN_FINISHED")
    assert len(await outbox_events(COMPLETED)) == 1


@pytest.mark.parametrize(
    "path",
    [
        pytest.param((RunStatus.RUNNING, RunStatus.SUCCEEDED), id="SUCCEEDED"),
        pytest.param((RunStatus.RUNNING, RunStatus.FAILED), id="FAILED"),
        pytest.param((RunStatus.SKIPPED,), id="SKIPPED"),
    ],
)
async def test_a_finished_run_cannot_be_cancelled_and_stays_as_it_was(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    trigger: Trigger,
    move_run: MoveRun,
    outbox_events: OutboxEvents,
    expect_error: ExpectError,
    path: tuple[RunStatus, ...],
) -> None:
    run = await trigger(endpoint["collection_id"])
    await move_run(run["id"], *path)
    before = (await client.get(f"/runs/{run['id']}", headers=auth("viewer"))).json()

    response = await client.post(f"/runs/{run['id']}/cancel", headers=auth("operator"))

    expect_error(response, 409, "E_RUN_FINISHED")
    assert (await client.get(f"/runs/{run['id']}", headers=auth("viewer"))).json() == before
    assert await outbox_events(COMPLETED) == []


async def test_cancelling_an_unknown_run_is_404(
    client: httpx.AsyncClient, auth: Auth, expect_error: ExpectError
) -> None:
    response = await client.post(f"/runs/{uuid.uuid4()}/cancel", headers=auth("operator"))

    expect_error(response, 404, "E_RUN_NOT_FOUND")


async def test_cancelling_one_run_leaves_other_collections_runs_alone(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    create_endpoint: CreateEndpoint,
    trigger: Trigger,
) -> None:
    other = await create_endpoint("other-db")
    mine = await trigger(endpoint["collection_id"])
    theirs = await trigger(other["collection_id"])

    await client.post(f"/runs/{mine['id']}/cancel", headers=auth("operator"))

    fetched = (await client.get(f"/runs/{theirs['id']}", headers=auth("viewer"))).json()
    assert fetched == theirs
