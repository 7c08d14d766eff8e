"""Previews through the API (REST and GraphQL): the stored sample with age and staleness,
manual previews through the previewer (answered in time, or 202 with a handle), preview
settings (masks, policy, opt-out) with purges, and the audit trail.

No previewer runs here: where a test needs one to answer, it plays the previewer on the
catalog (marks the request and stores the sample), as the real one would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from freshet.catalog import Database, UnitOfWork
from freshet.catalog import previews as status
from freshet.catalog.clock import utcnow
from freshet.devstack.testing import eventually

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
SyncDatasets = Callable[..., Awaitable[dict[str, str]]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]
ExpectError = Callable[..., dict[str, Any]]


@pytest.fixture
async def shop(create_endpoint: CreateEndpoint, sync_datasets: SyncDatasets) -> dict[str, str]:
    endpoint = await create_endpoint(f"shop-{uuid.uuid4().hex[:6]}")
    datasets = await sync_datasets(endpoint["id"])
    return {"endpoint_id": endpoint["id"], **datasets}


async def store_preview(
    catalog: Database, dataset_id: str, *, age: timedelta, request_id: str | None = None
) -> None:
    at = utcnow() - age
    async with UnitOfWork(catalog) as uow:
        await uow.datasets.set_preview(
            uuid.UUID(dataset_id),
            {
                "columns": ["id", "name"],
                "rows": [[1, "ada"]],
                "rowCount": 1,
                "sampledAt": at.isoformat(),
                "sampledBy": "freshet-previewer",
                "refreshSource": "collection" if request_id is None else "manual",
                "truncated": False,
                "requestId": request_id,
            },
        )
        await uow.commit()


async def test_a_never_sampled_dataset_has_no_sampled_at_and_is_stale(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    response = await client.get(f"/datasets/{shop['orders']}/preview", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sampled"] is False
    assert body["sampled_at"] is None
    assert body["age_seconds"] is None
    assert body["stale"] is True
    assert body["rows"] == []
    assert body["cached"] is True


async def test_a_stored_preview_shows_its_age_and_goes_stale_after_the_window(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str], catalog: Database
) -> None:
    await store_preview(catalog, shop["orders"], age=timedelta(hours=2))
    await store_preview(catalog, shop["customers"], age=timedelta(hours=25))
    fresh = (await client.get(f"/datasets/{shop['orders']}/preview", headers=auth("viewer"))).json()
    old = (
        await client.get(f"/datasets/{shop['customers']}/preview", headers=auth("viewer"))
    ).json()
    assert fresh["cached"] is True
    assert fresh["stale"] is False
    assert 7100 < fresh["age_seconds"] < 7300
    assert fresh["rows"] == [[1, "ada"]]
    assert fresh["sampled_by"] == "freshet-previewer"
    assert fresh["refresh_source"] == "collection"
    assert fresh["stale_after_seconds"] == 86400
    assert old["stale"] is True


async def test_a_manual_preview_not_answered_in_time_is_202_with_a_handle(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str], outbox: Outbox
) -> None:
    response = await client.post(f"/datasets/{shop['orders']}/preview", headers=auth("operator"))
    assert response.status_code == 202, response.text
    body = response.json()
    request = body["request"]
    assert request["status"] == "requested"
    assert request["requested_by"] == "otto-operator"
    assert response.headers["Location"] == f"/preview-requests/{request['id']}"
    [event] = [r for r in await outbox() if r["topic"] == "freshet.preview.requested"]
    assert event["value"]["request_id"] == request["id"]
    assert event["value"]["refresh_source"] == "manual"
    assert event["value"]["requested_by"] == "otto-operator"
    polled = await client.get(request["poll_url"], headers=auth("viewer"))
    assert polled.json()["id"] == request["id"]


async def play_previewer(catalog: Database, dataset_id: str, outcome: str) -> None:
    """Wait for the gateway's request, then answer it as the previewer would."""

    async def requested() -> Any:
        async with UnitOfWork(catalog, read_only=True) as uow:
            from sqlalchemy import select

            from freshet.catalog import PreviewRequest

            result = await uow.session.execute(
                select(PreviewRequest).where(PreviewRequest.dataset_id == uuid.UUID(dataset_id))
            )
            return result.scalars().first()

    request = await eventually(requested, timeout=5, interval=0.01)
    if outcome == "persisted":
        await store_preview(catalog, dataset_id, age=timedelta(0), request_id=str(request.id))
    async with UnitOfWork(catalog) as uow:
        await uow.previews.move(
            request.id,
            [status.REQUESTED],
            outcome,
            reason="connection refused" if outcome == "failed" else None,
        )
        await uow.commit()


async def test_a_manual_preview_answered_in_time_returns_fresh_rows(
    client: httpx.AsyncClient,
    auth: Auth,
    shop: dict[str, str],
    catalog: Database,
    gateway_app: Any,
) -> None:
    gateway_app.state.settings.preview_request_timeout_s = 10.0
    answering = asyncio.create_task(play_previewer(catalog, shop["orders"], "persisted"))
    response = await client.post(f"/datasets/{shop['orders']}/preview", headers=auth("operator"))
    await answering
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cached"] is False
    assert body["rows"] == [[1, "ada"]]
    assert body["request"]["status"] == "persisted"
    assert body["stale"] is False


async def test_a_manual_preview_that_fails_is_502_with_the_reason(
    client: httpx.AsyncClient,
    auth: Auth,
    shop: dict[str, str],
    catalog: Database,
    gateway_app: Any,
    expect_error: ExpectError,
) -> None:
    gateway_app.state.settings.preview_request_timeout_s = 10.0
    answering = asyncio.create_task(play_previewer(catalog, shop["orders"], "failed"))
    response = await client.post(f"/datasets/{shop['orders']}/preview", headers=auth("operator"))
    await answering
    error = expect_error(response, 502, "E_PREVIEW_FAILED")
    assert "connection refused" in error["message"]


async def test_previews_of_a_disabled_endpoint_or_opted_out_dataset_are_refused_and_audited(
    client: httpx.AsyncClient,
    auth: Auth,
    shop: dict[str, str],
    expect_error: ExpectError,
    outbox: Outbox,
) -> None:
    opted = await client.patch(
        f"/datasets/{shop['customers']}/preview-settings",
        json={"opt_out": True},
        headers=auth("admin"),
    )
    assert opted.status_code == 200, opted.text
    assert opted.json()["opted_out"] is True
    refused = await client.post(f"/datasets/{shop['customers']}/preview", headers=auth("operator"))
    expect_error(refused, 409, "E_PREVIEW_OPTED_OUT")

    disabled = await client.patch(
        f"/endpoints/{shop['endpoint_id']}",
        json={"preview_policy": "disabled"},
        headers=auth("admin"),
    )
    assert disabled.status_code == 200, disabled.text
    refused = await client.post(f"/datasets/{shop['orders']}/preview", headers=auth("operator"))
    expect_error(refused, 409, "E_PREVIEW_DISABLED")
    assert not [r for r in await outbox() if r["topic"] == "freshet.preview.requested"]

    records = (
        await client.get(
            "/audit",
            params={"action": "preview.request", "outcome": "refused"},
            headers=auth("admin"),
        )
    ).json()
    assert {(r["target_id"], r["actor"]) for r in records} == {
        (shop["customers"], "otto-operator"),
        (shop["orders"], "otto-operator"),
    }


async def test_an_unknown_dataset_has_no_preview(
    client: httpx.AsyncClient, auth: Auth, expect_error: ExpectError
) -> None:
    missing = uuid.uuid4()
    expect_error(
        await client.get(f"/datasets/{missing}/preview", headers=auth("viewer")),
        404,
        "E_DATASET_NOT_FOUND",
    )
    expect_error(
        await client.post(f"/datasets/{missing}/preview", headers=auth("operator")),
        404,
        "E_DATASET_NOT_FOUND",
    )
    expect_error(
        await client.get(f"/preview-requests/{missing}", headers=auth("viewer")),
        404,
        "E_PREVIEW_REQUEST_NOT_FOUND",
    )


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("masks", "index"), [(["ok", "re:("], 1), ([""], 0), (["x" * 201], 0), (["a"] * 101, 100)]
)
async def test_bad_masks_are_refused_with_their_place(
    client: httpx.AsyncClient,
    auth: Auth,
    shop: dict[str, str],
    expect_error: ExpectError,
    masks: list[str],
    index: int,
) -> None:
    response = await client.patch(
        f"/endpoints/{shop['endpoint_id']}", json={"preview_masks": masks}, headers=auth("admin")
    )
    error = expect_error(response, 422, "E_VALIDATION")
    assert error["details"][0]["loc"][:2] == ["body", "preview_masks"]
    if len(masks) <= 100:
        assert error["details"][0]["loc"][2] == index


async def test_masks_are_stored_returned_and_their_change_audited(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    response = await client.patch(
        f"/endpoints/{shop['endpoint_id']}",
        json={"preview_masks": ["email", "re:^ssn"]},
        headers=auth("admin"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["preview_masks"] == ["email", "re:^ssn"]
    [record] = (
        await client.get("/audit", params={"action": "preview.settings"}, headers=auth("admin"))
    ).json()
    assert record["actor"] == "ada-admin"
    assert record["details"]["after"]["masks"] == ["email", "re:^ssn"]


async def test_new_endpoints_take_masks_too_and_refuse_bad_ones(
    client: httpx.AsyncClient, auth: Auth, endpoint_body: Any, expect_error: ExpectError
) -> None:
    ok = await client.post(
        "/endpoints", json=endpoint_body("masked", preview_masks=["card"]), headers=auth("admin")
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["preview_masks"] == ["card"]
    bad = await client.post(
        "/endpoints", json=endpoint_body("badmask", preview_masks=["re:["]), headers=auth("admin")
    )
    expect_error(bad, 422, "E_VALIDATION")


async def test_disabling_an_endpoints_previews_purges_its_samples_and_open_requests(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str], catalog: Database
) -> None:
    await store_preview(catalog, shop["orders"], age=timedelta(minutes=1))
    queued = await client.post(f"/datasets/{shop['customers']}/preview", headers=auth("operator"))
    assert queued.status_code == 202
    response = await client.patch(
        f"/endpoints/{shop['endpoint_id']}",
        json={"preview_policy": "disabled"},
        headers=auth("admin"),
    )
    assert response.status_code == 200, response.text
    orders = (await client.get(f"/datasets/{shop['orders']}", headers=auth("viewer"))).json()
    assert orders["preview"] is None
    preview = (
        await client.get(f"/datasets/{shop['orders']}/preview", headers=auth("viewer"))
    ).json()
    assert preview["sampled"] is False
    assert preview["preview_policy"] == "disabled"
    request = (
        await client.get(queued.json()["request"]["poll_url"], headers=auth("viewer"))
    ).json()
    assert request["status"] == "refused"
    [purge] = (
        await client.get("/audit", params={"action": "preview.purge"}, headers=auth("admin"))
    ).json()
    assert purge["target_id"] == shop["endpoint_id"]
    assert purge["details"] == {"datasetsPurged": 1, "requestsRefused": 1}


async def test_opting_a_dataset_out_purges_its_sample_and_opting_in_again_keeps_none(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str], catalog: Database
) -> None:
    await store_preview(catalog, shop["orders"], age=timedelta(minutes=1))
    out = await client.patch(
        f"/datasets/{shop['orders']}/preview-settings",
        json={"opt_out": True},
        headers=auth("admin"),
    )
    assert out.json()["sampled"] is False
    dataset = (await client.get(f"/datasets/{shop['orders']}", headers=auth("viewer"))).json()
    assert dataset["preview_opt_out"] is True
    assert dataset["preview"] is None
    back = await client.patch(
        f"/datasets/{shop['orders']}/preview-settings",
        json={"opt_out": False},
        headers=auth("admin"),
    )
    assert back.json()["opted_out"] is False
    assert back.json()["sampled"] is False


# --- audit -------------------------------------------------------------------------------------


async def test_audit_pages_newest_first_by_cursor_and_filters(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str], expect_error: ExpectError
) -> None:
    for _ in range(3):
        await client.post(f"/datasets/{shop['orders']}/preview", headers=auth("operator"))
    first = (
        await client.get(
            "/audit", params={"action": "preview.request", "first": 2}, headers=auth("admin")
        )
    ).json()
    rest = (
        await client.get(
            "/audit",
            params={"action": "preview.request", "first": 2, "after": first[-1]["cursor"]},
            headers=auth("admin"),
        )
    ).json()
    everything = first + rest
    assert len(everything) == 3
    assert len({r["id"] for r in everything}) == 3
    assert [r["at"] for r in everything] == sorted((r["at"] for r in everything), reverse=True)
    assert {r["target_type"] for r in everything} == {"dataset"}
    by_target = (
        await client.get("/audit", params={"target_id": shop["customers"]}, headers=auth("admin"))
    ).json()
    assert by_target == []
    expect_error(
        await client.get("/audit", params={"after": "nonsense"}, headers=auth("admin")),
        422,
        "E_VALIDATION",
    )


# --- GraphQL -----------------------------------------------------------------------------------


async def gql(client: httpx.AsyncClient, auth: Auth, role: str, query: str) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query}, headers=auth(role))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_graphql_preview_fields_match_rest(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str], catalog: Database
) -> None:
    await store_preview(catalog, shop["orders"], age=timedelta(hours=1))
    body = await gql(
        client,
        auth,
        "viewer",
        f'{{ catalogDatasetPreview(id: "{shop["orders"]}") {{ datasetId cached sampled columns '
        "rows rowCount sampledAt sampledBy refreshSource truncated ageSeconds stale "
        "staleAfterSeconds previewPolicy optedOut lastError { reason } } }",
    )
    preview = body["data"]["catalogDatasetPreview"]
    rest = (await client.get(f"/datasets/{shop['orders']}/preview", headers=auth("viewer"))).json()
    assert preview["rows"] == rest["rows"]
    assert preview["cached"] is True
    assert preview["stale"] is False
    assert preview["sampledBy"] == rest["sampled_by"]
    missing = await gql(
        client, auth, "viewer", f'{{ catalogDatasetPreview(id: "{uuid.uuid4()}") {{ datasetId }} }}'
    )
    assert missing["data"]["catalogDatasetPreview"] is None


async def test_graphql_preview_dataset_returns_a_request_to_poll(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    body = await gql(
        client,
        auth,
        "operator",
        f'mutation {{ previewDataset(id: "{shop["orders"]}") {{ cached sampled '
        "request { id status requestedBy pollUrl } } }",
    )
    result = body["data"]["previewDataset"]
    assert result["request"]["status"] == "requested"
    assert result["request"]["requestedBy"] == "otto-operator"
    polled = await gql(
        client,
        auth,
        "viewer",
        f'{{ previewRequest(id: "{result["request"]["id"]}") {{ status }} }}',
    )
    assert polled["data"]["previewRequest"]["status"] == "requested"


async def test_graphql_preview_settings_validate_and_apply(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    bad = await gql(
        client,
        auth,
        "admin",
        f'mutation {{ updateEndpointPreviewSettings(id: "{shop["endpoint_id"]}", '
        'input: {previewMasks: ["re:("]}) { id } }',
    )
    assert bad["errors"][0]["extensions"]["code"] == "E_VALIDATION"
    bad_policy = await gql(
        client,
        auth,
        "admin",
        f'mutation {{ updateEndpointPreviewSettings(id: "{shop["endpoint_id"]}", '
        'input: {previewPolicy: "sometimes"}) { id } }',
    )
    assert bad_policy["errors"][0]["extensions"]["code"] == "E_VALIDATION"
    ok = await gql(
        client,
        auth,
        "admin",
        f'mutation {{ updateEndpointPreviewSettings(id: "{shop["endpoint_id"]}", '
        'input: {previewPolicy: "manual-only", previewMasks: ["email"]}) '
        "{ previewPolicy previewMasks } }",
    )
    assert ok["data"]["updateEndpointPreviewSettings"] == {
        "previewPolicy": "manual-only",
        "previewMasks": ["email"],
    }
    opted = await gql(
        client,
        auth,
        "admin",
        f'mutation {{ updateDatasetPreviewSettings(id: "{shop["orders"]}", '
        "input: {optedOut: true}) { optedOut } }",
    )
    assert opted["data"]["updateDatasetPreviewSettings"] == {"optedOut": True}
    refused = await gql(
        client,
        auth,
        "operator",
        f'mutation {{ previewDataset(id: "{shop["orders"]}") {{ cached }} }}',
    )
    assert refused["errors"][0]["extensions"]["code"] == "E_PREVIEW_OPTED_OUT"
