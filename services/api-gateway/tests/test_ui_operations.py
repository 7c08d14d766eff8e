"""The web UI's previews, refreshes and audit log in-process, over a real catalog (SQLite and
PostgreSQL): what each role is offered and refused, CSRF, the live preview (answered, still
sampling, refused, failed), refresh jobs and cache settings, and the audit page.

No previewer or refresher runs here: where a test needs one, it answers on the catalog as the
real one would. The browser tests (tests/e2e/test_web_ui.py) drive the same pages against the
running system.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from freshet.catalog import Database, UnitOfWork
from freshet.catalog import previews as request_status
from freshet.catalog.audit import AuditFilter
from freshet.catalog.clock import utcnow
from freshet.devstack.ui_client import UiClient
from freshet.gateway.auth import Principal, Role
from freshet.gateway.ui.navigation import nav_for
from freshet.gateway.ui.session import UiUser

CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
SyncDatasets = Callable[..., Awaitable[dict[str, str]]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]
Open = Callable[..., Awaitable[UiClient]]

POLL = re.compile(r'data-poll="/ui/datasets/[0-9a-f-]+/preview\?request=([0-9a-f-]+)"')


@pytest.fixture
async def shop(create_endpoint: CreateEndpoint, sync_datasets: SyncDatasets) -> dict[str, str]:
    """A PostgreSQL endpoint (never reached) with public.customers and public.orders."""
    endpoint = await create_endpoint(f"shop-{uuid.uuid4().hex[:6]}")
    return {
        "endpoint_id": endpoint["id"],
        "name": endpoint["name"],
        **await sync_datasets(endpoint["id"]),
    }


async def audit_of(catalog: Database, action: str) -> list[Any]:
    """The audit records of `action`, newest first."""
    async with UnitOfWork(catalog, read_only=True) as uow:
        return await uow.audit.page(AuditFilter(action=action), first=100)


async def answer_request(catalog: Database, request_id: str, dataset_id: str, outcome: str) -> None:
    """Answer a manual preview request as the previewer would: store the sample (masked and cut
    as the previewer does) and mark the request, or fail it with a reason."""
    async with UnitOfWork(catalog) as uow:
        if outcome == request_status.PERSISTED:
            await uow.datasets.set_preview(
                uuid.UUID(dataset_id),
                {
                    "columns": ["id", "name"],
                    "rows": [[1, "***masked***"], [2, "***masked***"], [3, "x…[truncated]"]],
                    "rowCount": 3,
                    "sampledAt": utcnow().isoformat(),
                    "sampledBy": "freshet-previewer",
                    "refreshSource": "manual",
                    "truncated": True,
                    "truncation": {
                        "valuesTruncated": 1,
                        "binaryReplaced": 0,
                        "rowsOverLimit": 0,
                        "rowsDroppedForSize": 0,
                        "maxRows": 50,
                        "maxValueBytes": 1024,
                        "maxBytes": 65536,
                        "cuts": [{"row": 2, "column": "id", "kind": "string", "bytes": 5000}],
                    },
                    "maskedColumns": ["name"],
                    "requestId": request_id,
                },
            )
        moved = await uow.previews.move(
            uuid.UUID(request_id),
            [request_status.REQUESTED],
            outcome,
            reason="connection refused by 10.0.0.5:5432" if outcome == "failed" else None,
        )
        assert moved
        await uow.commit()


# Previews.


async def test_each_role_is_offered_only_its_preview_actions(
    open_ui: Open, shop: dict[str, str]
) -> None:
    url = f"/ui/datasets/{shop['orders']}"
    pages = {
        role: (await (await open_ui(role)).get(url)).text
        for role in ("viewer", "operator", "admin")
    }

    for page in pages.values():
        assert "Preview policy of" in page
        assert "automatic" in page
        assert "This dataset is included" in page
    assert "Preview dataset" not in pages["viewer"]
    assert "Opt out of previews" not in pages["viewer"]
    assert "Preview dataset" in pages["operator"]
    assert "Opt out of previews" not in pages["operator"]
    assert "Preview dataset" in pages["admin"]
    assert "Opt out of previews" in pages["admin"]


async def test_a_live_preview_still_sampling_is_polled_until_its_fresh_rows_show(
    open_ui: Open, shop: dict[str, str], catalog: Database, outbox: Outbox
) -> None:
    ui = await open_ui("operator")
    await ui.get(f"/ui/datasets/{shop['orders']}")

    # The page's script posts; nobody answers within the (test's 0.1 s) wait: the API's 202.
    sampling = await ui.fetch(f"/ui/datasets/{shop['orders']}/preview", {})

    assert sampling.status_code == 202, sampling.text
    assert "Sampling a fresh preview" in sampling.text
    found = POLL.search(sampling.text)
    assert found is not None
    request_id = found.group(1)
    [event] = [r for r in await outbox() if r["topic"] == "freshet.preview.requested"]
    assert event["value"]["request_id"] == request_id
    assert event["value"]["refresh_source"] == "manual"
    assert event["value"]["requested_by"] == "otto-operator"
    poll = f"/ui/datasets/{shop['orders']}/preview?request={request_id}"
    assert POLL.search((await ui.fetch(poll)).text), "still sampling: the page keeps polling"

    await answer_request(catalog, request_id, shop["orders"], request_status.PERSISTED)
    answered = (await ui.fetch(poll)).text

    assert not POLL.search(answered)
    assert 'class="badge fresh"' in answered
    assert 'class="badge cached"' not in answered
    assert "requested by <strong>otto-operator</strong>" in answered
    assert "freshet-previewer" in answered
    assert "source <strong>manual</strong>" in answered
    assert "just now" in answered
    assert 'class="badge masked"' in answered
    assert 'class="masked-value"' in answered
    assert 'class="cut"' in answered
    assert "1 value cut" in answered
    # Loaded without the request to follow, the same rows are the stored (Cached) preview.
    page = (await ui.get(f"/ui/datasets/{shop['orders']}")).text
    assert 'class="badge cached"' in page
    assert 'class="badge fresh"' not in page


async def test_without_script_a_live_preview_lands_on_the_page_following_its_request(
    open_ui: Open, shop: dict[str, str], catalog: Database
) -> None:
    ui = await open_ui("operator")
    await ui.get(f"/ui/datasets/{shop['orders']}")

    response = await ui.post(f"/ui/datasets/{shop['orders']}/preview")

    assert response.status_code == 303
    target = response.headers["location"]
    assert re.fullmatch(rf"/ui/datasets/{shop['orders']}\?request=[0-9a-f-]+#preview", target)
    page = (await ui.get(target.split("#")[0])).text
    assert "Sampling a fresh preview" in page
    assert "Check again" in page
    request_id = target.split("request=")[1].split("#")[0]

    await answer_request(catalog, request_id, shop["orders"], "failed")
    failed = (await ui.get(target.split("#")[0])).text

    assert "Sampling failed" in failed
    assert "connection refused" in failed
    assert "E_PREVIEW_FAILED" in failed


async def test_a_refused_preview_says_why_and_is_not_offered_once_refused(
    open_ui: Open,
    shop: dict[str, str],
    client: httpx.AsyncClient,
    auth: Callable[[str], dict[str, str]],
    catalog: Database,
) -> None:
    ui = await open_ui("operator")
    await ui.get(f"/ui/datasets/{shop['orders']}")
    disabled = await client.patch(
        f"/endpoints/{shop['endpoint_id']}",
        json={"preview_policy": "disabled"},
        headers=auth("admin"),
    )
    assert disabled.status_code == 200, disabled.text

    # The page was loaded before previews were disabled: its button is still there.
    refused = await ui.fetch(f"/ui/datasets/{shop['orders']}/preview", {})
    no_script = await ui.post(f"/ui/datasets/{shop['orders']}/preview")

    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("text/html")
    assert "Previews are disabled" in refused.text
    assert "E_PREVIEW_DISABLED" in refused.text
    assert no_script.status_code == 303
    page = (await ui.get(no_script.headers["location"].split("#")[0])).text
    assert "No preview was taken" in page
    assert "Preview dataset" not in page
    assert "Previews are disabled for this endpoint" in page
    [record, *_] = await audit_of(catalog, "preview.request")
    assert record.outcome == "refused"


async def test_an_admin_opts_a_dataset_out_and_back_in(
    open_ui: Open, shop: dict[str, str], catalog: Database
) -> None:
    admin, operator = await open_ui("admin"), await open_ui("operator")
    url = f"/ui/datasets/{shop['orders']}"
    await admin.get(url)
    await operator.get(url)

    forced = await operator.post(f"{url}/preview-settings", {"opt_out": "true"})
    no_token = await admin.post(f"{url}/preview-settings", {"opt_out": "true"}, csrf=False)
    out = await admin.post(f"{url}/preview-settings", {"opt_out": "true"})

    assert forced.status_code == 403
    assert no_token.status_code == 403
    assert out.status_code == 303
    page = (await admin.get(url)).text
    assert "Opted out of previews" in page
    assert "opted out</strong> of previews" in page
    assert "Opt back in" in page
    assert "Preview dataset" not in page
    refused = await operator.fetch(f"{url}/preview", {})
    assert refused.status_code == 409
    assert "E_PREVIEW_OPTED_OUT" in refused.text

    back = await admin.post(f"{url}/preview-settings", {"opt_out": "false"})
    assert back.status_code == 303
    assert "Preview dataset" in (await admin.get(url)).text
    changes = await audit_of(catalog, "preview.settings")
    assert [r.reason for r in changes] == ["opted back in to previews", "opted out of previews"]
    assert {r.actor for r in changes} == {"ada-admin"}


# Refreshes and caches.


async def test_refreshing_a_table_starts_a_job_the_refreshes_page_follows(
    open_ui: Open, shop: dict[str, str], catalog: Database, outbox: Outbox
) -> None:
    ui = await open_ui("operator")
    await ui.get(f"/ui/datasets/{shop['orders']}")

    response = await ui.post(f"/ui/datasets/{shop['orders']}/refresh", {"force": "true"})

    assert response.status_code == 303
    [event] = [r for r in await outbox() if r["topic"] == "freshet.refresh.requested"]
    refresh_id = event["value"]["refresh_id"]
    assert event["value"]["tables"] == ["public.orders"]
    assert event["value"]["force"] is True
    assert event["value"]["trigger_source"] == "manual"
    assert event["value"]["requested_by"] == "otto-operator"
    assert response.headers["location"] == (
        f"/ui/refreshes?endpoint={shop['endpoint_id']}&refresh={refresh_id}#refresh-{refresh_id}"
    )
    page = (await ui.get(response.headers["location"].split("#")[0])).text
    assert "Refresh of public.orders started" in page
    assert f'data-live="refresh:{refresh_id}"' in page
    assert 'class="card job highlight"' in page
    assert 'data-live-stream="/ui/live/refreshes"' in page
    assert "0 of 1 table done" in page
    assert "data-live-empty-note hidden>Nothing is being refreshed now" in page
    card = (await ui.fetch(f"/ui/refreshes/{refresh_id}/card")).text
    assert card.lstrip().startswith("<article")
    assert "public.orders" in card
    assert "Queued" in card
    job_page = (await ui.get(f"/ui/refreshes/{refresh_id}")).text
    assert "Table refresh, " + shop["name"] in job_page
    # The dataset page says a refresh is running and links to it.
    assert f"/ui/refreshes/{refresh_id}" in (await ui.get(f"/ui/datasets/{shop['orders']}")).text
    [record] = await audit_of(catalog, "refresh.request")
    assert (record.actor, record.outcome, record.target_id) == (
        "otto-operator",
        "requested",
        shop["orders"],
    )

    async with UnitOfWork(catalog) as uow:  # the refresher's part
        await uow.refreshes.finish_item(
            uuid.UUID(refresh_id),
            uuid.UUID(shop["orders"]),
            "failed",
            utcnow(),
            error="boom: disk full",
        )
        await uow.commit()
    card = (await ui.fetch(f"/ui/refreshes/{refresh_id}/card")).text
    assert "boom: disk full" in card
    assert "1 failed" in card


async def test_refreshing_a_connection_uses_the_chosen_tables_and_concurrency(
    open_ui: Open, shop: dict[str, str], catalog: Database, outbox: Outbox
) -> None:
    ui = await open_ui("operator")
    await ui.get("/ui/refreshes")

    async def flash_after(form: dict[str, str]) -> str:
        response = await ui.post("/ui/refreshes/connection", form)
        assert response.status_code == 303
        return (await ui.get(response.headers["location"])).text

    nothing = await flash_after({"endpoint_id": shop["endpoint_id"], "tables": "cached"})
    every = await flash_after(
        {"endpoint_id": shop["endpoint_id"], "tables": "all", "concurrency": "2"}
    )
    invalid = await flash_after({"endpoint_id": shop["endpoint_id"], "concurrency": "999"})

    assert "has no cached tables" in nothing
    [event] = [r["value"] for r in await outbox() if r["topic"] == "freshet.refresh.requested"]
    assert sorted(event["tables"]) == ["public.customers", "public.orders"]
    assert event["concurrency"] == 2
    assert f"Refresh of 2 tables of {shop['name']} started, 2 at a time" in every
    assert "0 of 2 tables done" in every
    assert "Not saved: concurrency" in invalid
    records = await audit_of(catalog, "refresh.request")
    assert [r.details["tables"] for r in records] == [2, 0]


async def test_cache_settings_are_saved_shown_and_refused_below_the_minimum_interval(
    open_ui: Open, shop: dict[str, str], catalog: Database
) -> None:
    ui = await open_ui("operator")
    url = f"/ui/datasets/{shop['customers']}"
    await ui.get(url)

    saved = await ui.post(
        f"{url}/cache", {"cached": "true", "lazy_fetch": "false", "refresh_interval_s": "3600"}
    )
    too_often = await ui.post(f"{url}/cache", {"cached": "true", "refresh_interval_s": "5"})

    assert saved.status_code == 303
    assert "Not saved" in (await ui.get(too_often.headers["location"].split("#")[0])).text
    async with UnitOfWork(catalog, read_only=True) as uow:
        cache = await uow.caches.get(uuid.UUID(shop["customers"]))
    assert cache is not None
    assert (cache.cached, cache.lazy_fetch, cache.refresh_interval_s) == (True, False, 3600)
    page = (await ui.get(url)).text
    assert "every 1 h" in page
    assert "Keep this table cached" in page
    listing = (await ui.get("/ui/refreshes")).text
    assert "public.customers" in listing
    assert "not cached yet" in listing
    assert "every 1 h" in listing
    [record] = await audit_of(catalog, "cache.settings")
    assert record.details["after"] == {"cached": True, "lazyFetch": False, "refreshIntervalS": 3600}


async def test_an_admin_sets_the_connection_cache_policy(
    open_ui: Open, shop: dict[str, str], catalog: Database
) -> None:
    admin = await open_ui("admin")
    await admin.get(f"/ui/endpoints/{shop['endpoint_id']}")

    response = await admin.post(
        f"/ui/endpoints/{shop['endpoint_id']}/cache-policy", {"schema_change_policy": "ignore"}
    )

    assert response.status_code == 303
    async with UnitOfWork(catalog, read_only=True) as uow:
        endpoint = await uow.endpoints.get(uuid.UUID(shop["endpoint_id"]))
    assert endpoint is not None
    assert (endpoint.schema_change_policy, endpoint.cache_lazy_fetch) == ("ignore", False)
    page = (await admin.get(f"/ui/endpoints/{shop['endpoint_id']}")).text
    assert "ignore: keep the old version" in page
    assert "never refreshed" in page


async def test_the_refreshes_page_with_nothing_yet_says_what_to_do(open_ui: Open) -> None:
    viewer, operator = await open_ui("viewer"), await open_ui("operator")

    seen = (await viewer.get("/ui/refreshes")).text
    offered = (await operator.get("/ui/refreshes")).text

    assert "Nothing is being refreshed now" in seen
    assert "No refresh has finished yet" in seen
    assert "No cached tables" in seen
    assert "Refresh a connection" not in seen
    assert "No cached tables" in offered
    missing = await viewer.get(f"/ui/refreshes/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert "Refresh not found" in missing.text


@pytest.mark.parametrize(
    ("path", "least_role", "form"),
    [
        ("/ui/datasets/{orders}/preview", "operator", {}),
        ("/ui/datasets/{orders}/preview-settings", "admin", {"opt_out": "true"}),
        ("/ui/datasets/{orders}/refresh", "operator", {}),
        ("/ui/datasets/{orders}/cache", "operator", {"cached": "true"}),
        ("/ui/refreshes/connection", "operator", {"endpoint_id": "{endpoint_id}"}),
        ("/ui/endpoints/{endpoint_id}/cache-policy", "admin", {"schema_change_policy": "ignore"}),
    ],
)
async def test_actions_below_their_role_or_without_the_token_change_nothing(
    open_ui: Open,
    shop: dict[str, str],
    outbox: Outbox,
    catalog: Database,
    path: str,
    least_role: str,
    form: dict[str, str],
) -> None:
    url = path.format(**shop)
    data = {k: v.format(**shop) for k, v in form.items()}
    below = {"operator": ["viewer"], "admin": ["viewer", "operator"]}[least_role]
    for role in below:
        ui = await open_ui(role)
        await ui.get("/ui/endpoints")
        refused = await ui.post(url, data)
        assert refused.status_code == 403, (role, refused.text)
        assert "Not allowed" in refused.text
    ui = await open_ui(least_role)
    await ui.get("/ui/endpoints")
    no_token = await ui.post(url, data, csrf=False)
    assert no_token.status_code == 403
    assert "This form has expired" in no_token.text
    topics = {r["topic"] for r in await outbox()}
    assert not topics & {"freshet.preview.requested", "freshet.refresh.requested"}
    async with UnitOfWork(catalog, read_only=True) as uow:
        assert await uow.caches.get(uuid.UUID(shop["orders"])) is None
        endpoint = await uow.endpoints.get(uuid.UUID(shop["endpoint_id"]))
        assert endpoint is not None
        assert endpoint.schema_change_policy == "refresh"


# The audit log.


async def test_the_audit_log_is_for_admins_filtered_and_paged(
    open_ui: Open, shop: dict[str, str], catalog: Database
) -> None:
    async with UnitOfWork(catalog) as uow:
        for i in range(60):
            uow.audit.add(
                actor="ops-bot" if i % 2 else "otto-operator",
                action="refresh.request",
                target_type="dataset",
                target_id=shop["orders"],
                outcome="requested" if i % 3 else "skipped",
                reason=f"refresh number {i}",
                details={"force": i % 2 == 0},
                at=utcnow() - timedelta(minutes=60 - i),
            )
        await uow.commit()
    admin, operator = await open_ui("admin"), await open_ui("operator")

    page = (await admin.get("/ui/audit")).text
    mine = (
        await admin.get("/ui/audit", params={"actor": "otto-operator", "outcome": "skipped"})
    ).text
    window = (
        await admin.get("/ui/audit", params={"from": "2000-01-01T00:00", "to": "2000-01-02T00:00"})
    ).text
    backwards = (
        await admin.get("/ui/audit", params={"from": "2030-01-02T00:00", "to": "2030-01-01T00:00"})
    ).text

    assert page.count("refresh number") == 50
    assert "refresh number 59" in page
    assert "Older records" in page
    older = re.search(r'href="\?([^"]*after=[^"]+)" rel="next"', page) or re.search(
        r'rel="next" href="\?([^"]+)"', page
    )
    assert older is not None
    second = (await admin.get("/ui/audit?" + older.group(1).replace("&amp;", "&"))).text
    assert second.count("refresh number") == 10
    assert "refresh number 0<" in second or "refresh number 0\n" in second
    assert mine.count("refresh number") == 10  # i even and i % 3 == 0
    assert "No audit records match these filters" in window
    assert "from is after to" in backwards
    assert f'href="/ui/datasets/{shop["orders"]}" title="{shop["orders"]}">public.orders' in page
    assert "Audit" not in [item.label for item in nav_for(signed_in_as(Role.operator))]
    assert "/ui/audit" not in (await operator.get("/ui/endpoints")).text
    refused = await operator.get("/ui/audit")
    assert refused.status_code == 403
    assert "Not allowed" in refused.text


def signed_in_as(role: Role) -> UiUser:
    return UiUser(principal=Principal(name="someone", role=role), csrf="")


async def test_the_navigation_offers_the_query_console_only_where_it_is_served(
    open_ui: Open, gateway_app: FastAPI
) -> None:
    page = (await (await open_ui("admin")).get("/ui/endpoints")).text

    assert 'href="/ui/refreshes"' in page
    assert 'href="/ui/audit"' in page
    assert 'href="/ui/query"' in page
    assert "/ui/query" in gateway_app.state.ui_paths
    # An optional section is a slot: without a page serving it, no link.
    assert [i.label for i in nav_for(signed_in_as(Role.viewer), set())] == [
        "Endpoints",
        "Runs",
        "Datasets",
        "Refreshes",
    ]
