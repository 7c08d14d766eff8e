"""The web UI in-process: sign-in, roles, CSRF, and each page over a real catalog (SQLite and
PostgreSQL). The browser tests in tests/e2e/test_web_ui.py drive the same pages in Chromium
against the running system."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.devstack.ui_client import UiClient

CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
SyncDatasets = Callable[..., Awaitable[dict[str, str]]]
InsertRuns = Callable[..., Awaitable[list[str]]]


Browser = UiClient
Open = Callable[..., Awaitable[Browser]]


async def sqlite_endpoint(create_endpoint: CreateEndpoint, name: str = "shop") -> dict[str, Any]:
    return await create_endpoint(
        name, kind="sqlite", config={"path": "/nowhere/shop.db"}, secrets={}, labels=["team:x"]
    )


async def add_through_form(
    ui: Browser, action: str, fields: dict[str, str], **headers: str
) -> httpx.Response:
    """Fill the new-endpoint form as the admin would and press Save or Test connection."""
    await ui.get("/ui/endpoints/new")
    return await ui.post("/ui/endpoints/new", {**fields, "action": action}, headers=headers)


async def stored_endpoints(catalog: Database) -> list[Any]:
    async with UnitOfWork(catalog, read_only=True) as uow:
        return await uow.endpoints.all()


async def runs_of(catalog: Database) -> list[Any]:
    async with UnitOfWork(catalog, read_only=True) as uow:
        return await uow.runs.find(limit=100)


# Signing in and out.


async def test_signing_in_sets_an_httponly_samesite_cookie_and_signing_out_clears_it(
    open_ui: Open, tokens: dict[str, str]
) -> None:
    ui = await open_ui()
    page = await ui.get("/ui/sign-in")
    assert page.status_code == 200
    assert 'type="password"' in page.text

    response = await ui.post("/ui/sign-in", {"token": tokens["viewer"], "next": "/ui/datasets"})

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/datasets"
    cookie = next(c for c in response.headers.get_list("set-cookie") if "freshet_session" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/ui" in cookie
    assert (await ui.get("/ui/endpoints")).status_code == 200

    out = await ui.post("/ui/sign-out")

    assert out.status_code == 303
    after = await ui.get("/ui/endpoints")
    assert after.status_code == 303
    assert after.headers["location"].startswith("/ui/sign-in")


async def test_a_wrong_token_is_refused_and_never_shown_back(open_ui: Open) -> None:
    ui = await open_ui()
    await ui.get("/ui/sign-in")

    response = await ui.post("/ui/sign-in", {"token": "fsh_not-a-real-token-123"})

    assert response.status_code == 401
    assert "not valid" in response.text
    assert "fsh_not-a-real-token-123" not in response.text
    assert "freshet_session" not in response.headers.get("set-cookie", "")


async def test_sign_in_without_the_forms_csrf_token_is_refused(
    open_ui: Open, tokens: dict[str, str]
) -> None:
    ui = await open_ui()
    await ui.get("/ui/sign-in")

    response = await ui.post("/ui/sign-in", {"token": tokens["admin"]}, csrf=False)

    assert response.status_code == 403
    assert "E_CSRF" in response.text
    assert "freshet_session" not in response.headers.get("set-cookie", "")


async def test_a_page_asked_for_while_signed_out_leads_to_sign_in_and_back(
    open_ui: Open, tokens: dict[str, str]
) -> None:
    ui = await open_ui()

    response = await ui.get("/ui/runs?status=FAILED")

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/sign-in?next=%2Fui%2Fruns%3Fstatus%3DFAILED"
    await ui.get(response.headers["location"])
    signed = await ui.post(
        "/ui/sign-in", {"token": tokens["viewer"], "next": "/ui/runs?status=FAILED"}
    )
    assert signed.headers["location"] == "/ui/runs?status=FAILED"


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/api/x", "/ui\\..\\x", ""]
)
async def test_sign_in_never_redirects_out_of_the_ui(
    open_ui: Open, tokens: dict[str, str], target: str
) -> None:
    ui = await open_ui()
    await ui.get("/ui/sign-in")

    response = await ui.post("/ui/sign-in", {"token": tokens["viewer"], "next": target})

    assert response.headers["location"] == "/ui/endpoints"


async def test_browsers_opening_the_gateway_land_in_the_ui(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers={"accept": "text/html,application/xhtml+xml"})
    api_client = await client.get("/", headers={"accept": "application/json"})

    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"
    assert api_client.status_code == 404
    assert api_client.json()["error"]["code"] == "E_NOT_FOUND"


# Roles: what a role may not do is not offered, and the server refuses it anyway.


async def test_each_role_is_offered_only_what_it_may_do(
    open_ui: Open, create_endpoint: CreateEndpoint
) -> None:
    await sqlite_endpoint(create_endpoint)
    pages = {
        role: (await (await open_ui(role)).get("/ui/endpoints")).text
        for role in ("viewer", "operator", "admin")
    }

    assert "Trigger collection" not in pages["viewer"]
    assert "Add endpoint" not in pages["viewer"]
    assert "/edit" not in pages["viewer"]
    assert "Trigger collection" in pages["operator"]
    assert "Add endpoint" not in pages["operator"]
    assert "/edit" not in pages["operator"]
    assert "Trigger collection" in pages["admin"]
    assert "Add endpoint" in pages["admin"]
    assert "/edit" in pages["admin"]


async def test_a_viewer_posting_a_trigger_anyway_is_refused_and_no_run_is_queued(
    open_ui: Open, create_endpoint: CreateEndpoint, catalog: Database
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    ui = await open_ui("viewer")

    response = await ui.post(f"/ui/endpoints/{endpoint['id']}/trigger")

    assert response.status_code == 403
    assert "Not allowed" in response.text
    assert "E_ROLE_FORBIDDEN" in response.text
    assert await runs_of(catalog) == []


@pytest.mark.parametrize(
    ("method", "path", "least_role"),
    [
        ("GET", "/ui/endpoints/new", "admin"),
        ("POST", "/ui/endpoints/new", "admin"),
        ("GET", "/ui/endpoints/{endpoint_id}/edit", "admin"),
        ("POST", "/ui/endpoints/{endpoint_id}/edit", "admin"),
        ("POST", "/ui/endpoints/{endpoint_id}/delete", "admin"),
        ("POST", "/ui/endpoints/{endpoint_id}/test", "operator"),
        ("POST", "/ui/endpoints/{endpoint_id}/trigger", "operator"),
        ("POST", "/ui/collections/{collection_id}/schedule", "admin"),
        ("POST", "/ui/collections/{collection_id}/enabled", "admin"),
        ("POST", "/ui/runs/{run_id}/cancel", "operator"),
    ],
)
async def test_a_role_below_an_actions_least_role_is_refused_by_the_server(
    open_ui: Open,
    create_endpoint: CreateEndpoint,
    method: str,
    path: str,
    least_role: str,
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    ids = {
        "endpoint_id": endpoint["id"],
        "collection_id": endpoint["collection_id"],
        "run_id": str(uuid.uuid4()),
    }
    below = {"operator": ["viewer"], "admin": ["viewer", "operator"]}[least_role]
    for role in below:
        ui = await open_ui(role)
        url = path.format(**ids)
        response = await (ui.get(url) if method == "GET" else ui.post(url, {"enabled": "false"}))
        assert response.status_code == 403, (role, response.text)


# CSRF on every state-changing request.


async def test_a_trigger_without_the_csrf_token_is_refused_and_queues_nothing(
    open_ui: Open, create_endpoint: CreateEndpoint, catalog: Database
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    ui = await open_ui("operator")

    missing = await ui.post(f"/ui/endpoints/{endpoint['id']}/trigger", csrf=False)
    wrong = await ui.post(f"/ui/endpoints/{endpoint['id']}/trigger", {"csrf_token": "0" * 64})

    for response in (missing, wrong):
        assert response.status_code == 403
        assert "This form has expired" in response.text
    assert await runs_of(catalog) == []


async def test_a_post_from_another_origin_is_refused_even_with_the_token(
    open_ui: Open, create_endpoint: CreateEndpoint, catalog: Database
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    ui = await open_ui("operator")

    response = await ui.post(
        f"/ui/endpoints/{endpoint['id']}/trigger", headers={"Origin": "https://evil.example"}
    )

    assert response.status_code == 403
    assert await runs_of(catalog) == []


async def test_the_csrf_token_of_one_session_does_not_work_in_another(
    open_ui: Open, create_endpoint: CreateEndpoint, catalog: Database
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    admin, operator = await open_ui("admin"), await open_ui("operator")

    response = await operator.post(
        f"/ui/endpoints/{endpoint['id']}/trigger", {"csrf_token": admin.csrf}
    )

    assert response.status_code == 403
    assert await runs_of(catalog) == []


async def test_a_signed_out_post_is_sent_to_sign_in_and_changes_nothing(
    open_ui: Open, create_endpoint: CreateEndpoint, catalog: Database
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    ui = await open_ui()

    response = await ui.post(f"/ui/endpoints/{endpoint['id']}/trigger", {"csrf_token": "x"})

    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/sign-in")
    assert await runs_of(catalog) == []


# Endpoints.


async def test_trigger_collection_queues_a_manual_run_and_shows_it(
    open_ui: Open, create_endpoint: CreateEndpoint, catalog: Database
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    ui = await open_ui("operator")

    response = await ui.post(f"/ui/endpoints/{endpoint['id']}/trigger")

    [run] = await runs_of(catalog)
    assert run.trigger_source == "manual"
    assert run.requested_by == "otto-operator"
    assert response.status_code == 303
    target = response.headers["location"]
    assert target == f"/ui/collections/{endpoint['collection_id']}?run={run.id}#runs"
    page = await ui.get(target.split("#")[0])
    assert f'data-live="run:{run.id}"' in page.text
    assert "Collection triggered" in page.text
    assert 'class="highlight"' in page.text

    again = await ui.post(f"/ui/endpoints/{endpoint['id']}/trigger")

    assert again.status_code == 303
    assert "already queued or running" in (await ui.get(again.headers["location"])).text
    assert len(await runs_of(catalog)) == 1


async def test_an_admin_adds_an_endpoint_through_the_form(
    open_ui: Open, catalog: Database, tmp_path: Any
) -> None:
    ui = await open_ui("admin")

    response = await add_through_form(
        ui,
        "save",
        {
            "name": "files-lake",
            "kind": "files",
            "config.files.path": str(tmp_path),
            "config.files.recursive": "true",
            "config.postgres.host": "ignored-for-another-kind",
            "preview_policy": "manual-only",
            "labels": "lake, team:data",
        },
    )

    assert response.status_code == 303, response.text
    async with UnitOfWork(catalog, read_only=True) as uow:
        endpoint = await uow.endpoints.get_by_name("files-lake")
    assert endpoint is not None
    assert endpoint.config == {"path": str(tmp_path), "recursive": True}
    assert endpoint.preview_policy == "manual-only"
    assert endpoint.labels == ["lake", "team:data"]
    assert response.headers["location"] == f"/ui/endpoints/{endpoint.id}"


async def test_an_invalid_endpoint_form_is_shown_again_with_errors_and_no_secret(
    open_ui: Open, catalog: Database, password: str
) -> None:
    ui = await open_ui("admin")

    response = await add_through_form(
        ui,
        "save",
        {
            "name": "pg",
            "kind": "postgres",
            "config.postgres.host": "db.internal",
            "config.postgres.port": "not-a-port",
            "secret_name_0": "password",
            "secret_value_0": password,
        },
    )

    assert response.status_code == 422
    assert "was not saved" in response.text
    assert password not in response.text
    assert 'value="db.internal"' in response.text
    assert await stored_endpoints(catalog) == []


async def test_testing_a_draft_reports_the_failure_without_saving_or_leaking(
    open_ui: Open, catalog: Database, password: str
) -> None:
    ui = await open_ui("admin")

    response = await add_through_form(
        ui,
        "test",
        {
            "name": "missing",
            "kind": "sqlite",
            "config.sqlite.path": "/nowhere/at/all.db",
            "secret_name_0": "token",
            "secret_value_0": password,
        },
        **{"X-Requested-With": "fetch"},
    )

    assert response.status_code == 200
    assert "Connection failed" in response.text
    assert password not in response.text
    assert await stored_endpoints(catalog) == []


async def test_editing_keeps_secrets_left_empty_and_saves_the_rest(
    open_ui: Open, create_endpoint: CreateEndpoint, catalog: Database, password: str
) -> None:
    endpoint = await create_endpoint("pg-edit")
    ui = await open_ui("admin")
    form = await ui.get(f"/ui/endpoints/{endpoint['id']}/edit")
    assert password not in form.text
    assert "Replace <code>password</code>" in form.text

    response = await ui.post(
        f"/ui/endpoints/{endpoint['id']}/edit",
        {
            "name": "pg-renamed",
            "config.postgres.host": "db2.internal",
            "config.postgres.port": "5433",
            "config.postgres.database": "shop",
            "config.postgres.user": "ro",
            "secret_replace.password": "",
            "preview_policy": "disabled",
            "labels": "",
            "action": "save",
        },
    )

    assert response.status_code == 303, response.text
    async with UnitOfWork(catalog, read_only=True) as uow:
        changed = await uow.endpoints.get(uuid.UUID(endpoint["id"]))
    assert changed is not None
    assert changed.name == "pg-renamed"
    assert changed.config["host"] == "db2.internal"
    assert changed.config["port"] == 5433
    assert changed.secret_names == ["password"]
    assert changed.preview_policy == "disabled"


# Collections and run history.


async def test_the_collection_page_shows_the_schedule_in_words_and_filters_runs(
    open_ui: Open, create_endpoint: CreateEndpoint, insert_runs: InsertRuns
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    base = datetime(2026, 3, 1, 12, tzinfo=UTC)
    ids = await insert_runs(
        endpoint,
        *[
            (base + timedelta(hours=i), RunStatus.SUCCEEDED if i % 3 else RunStatus.FAILED)
            for i in range(30)
        ],
    )
    admin = await open_ui("admin")
    await admin.get(f"/ui/collections/{endpoint['collection_id']}")
    saved = await admin.post(
        f"/ui/collections/{endpoint['collection_id']}/schedule",
        {"cron": "0 3 * * 1-5", "timezone": "Europe/Berlin"},
    )
    assert saved.status_code == 303
    url = f"/ui/collections/{endpoint['collection_id']}"

    page = (await admin.get(url)).text
    failed = (await admin.get(url, params={"status": "FAILED"})).text
    window = (
        await admin.get(url, params={"from": "2026-03-01T14:00", "to": "2026-03-01T17:00"})
    ).text

    assert "At 03:00, Monday through Friday" in page
    assert "Europe/Berlin" in page
    assert page.count('data-live="run:') == 25
    assert "Older runs" in page
    assert failed.count('data-live="run:') == 10
    assert "Succeeded" not in failed.split("<tbody", 1)[1]
    # 14:00, 15:00, 16:00 UTC (the viewer's zone is UTC until the browser reports another).
    assert window.count('data-live="run:') == 3
    older = re.search(r'href="\?(after=[^"]+)" rel="next"', page)
    assert older is not None
    second = (await admin.get(f"{url}?{older.group(1).replace('&amp;', '&')}")).text
    assert second.count('data-live="run:') == 5
    assert ids[0] in second
    assert ids[0] not in page.split("<tbody", 1)[1]


async def test_a_live_page_names_when_it_was_read_and_a_bad_since_is_refused(
    open_ui: Open, create_endpoint: CreateEndpoint
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    viewer = await open_ui("viewer")
    before = time.time()
    page = (await viewer.get(f"/ui/collections/{endpoint['collection_id']}")).text
    after = time.time()

    since = re.search(r'data-live-since="([0-9.]+)"', page)
    assert since is not None
    # Taken before the page read the catalog, so its stream misses no change made after.
    assert before - 0.001 <= float(since.group(1)) <= after
    assert 'data-live-stream="/ui/live/runs"' in page
    refused = await viewer.fetch("/ui/live/runs?since=yesterday")
    assert refused.status_code == 422


async def test_an_invalid_schedule_is_explained_and_not_saved(
    open_ui: Open, create_endpoint: CreateEndpoint, catalog: Database
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    admin = await open_ui("admin")
    await admin.get(f"/ui/collections/{endpoint['collection_id']}")

    response = await admin.post(
        f"/ui/collections/{endpoint['collection_id']}/schedule",
        {"cron": "* * * * *", "timezone": "UTC"},
    )

    assert response.status_code == 422
    assert 'id="schedule-error"' in response.text
    assert 'value="* * * * *"' in response.text
    async with UnitOfWork(catalog, read_only=True) as uow:
        collection = await uow.collections.get(uuid.UUID(endpoint["collection_id"]))
    assert collection is not None
    assert collection.schedule_cron is None


async def test_disabling_a_collection_removes_its_trigger_button(
    open_ui: Open, create_endpoint: CreateEndpoint
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    admin = await open_ui("admin")
    await admin.get(f"/ui/collections/{endpoint['collection_id']}")

    await admin.post(f"/ui/collections/{endpoint['collection_id']}/enabled", {"enabled": "false"})

    page = (await admin.get("/ui/endpoints")).text
    assert "Trigger collection" not in page
    assert "Disabled" in page


async def test_an_operator_cancels_a_queued_run(
    open_ui: Open, create_endpoint: CreateEndpoint, catalog: Database
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    ui = await open_ui("operator")
    await ui.post(f"/ui/endpoints/{endpoint['id']}/trigger")
    [run] = await runs_of(catalog)
    await ui.get(f"/ui/runs/{run.id}")

    response = await ui.post(f"/ui/runs/{run.id}/cancel", {"next": f"/ui/runs/{run.id}"})

    assert response.status_code == 303
    [cancelled] = await runs_of(catalog)
    assert cancelled.status == "CANCELLED"
    assert cancelled.error == "cancelled by otto-operator"
    page = (await ui.get(f"/ui/runs/{run.id}")).text
    assert "Run cancelled" in page
    assert "Cancel run" not in page


async def test_times_are_shown_in_the_zone_the_browser_reports(
    open_ui: Open, create_endpoint: CreateEndpoint, insert_runs: InsertRuns
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    await insert_runs(endpoint, (datetime(2026, 7, 1, 12, tzinfo=UTC), RunStatus.SUCCEEDED))
    ui = await open_ui("viewer")
    ui.http.cookies.set("freshet_tz", "America/New_York", path="/ui")

    page = (await ui.get("/ui/runs")).text

    assert "2026-07-01 08:00:00 EDT" in page
    assert 'datetime="2026-07-01T12:00:00+00:00"' in page


# Datasets.


async def set_preview(
    catalog: Database, dataset_id: str, sampled_at: datetime, **extra: Any
) -> None:
    async with UnitOfWork(catalog) as uow:
        dataset = await uow.datasets.get(uuid.UUID(dataset_id), for_update=True)
        assert dataset is not None
        preview = {
            "columns": ["id", "note"],
            "rows": [[1, "x" * 300], [2, None]],
            "rowCount": 2,
            "sampledAt": sampled_at.isoformat(),
            "sampledBy": "freshet-previewer",
            "refreshSource": "collection",
            "truncated": True,
            **extra,
        }
        dataset.payload = {**dataset.payload, "preview": preview}
        dataset.preview_sampled_at = sampled_at
        await uow.commit()


async def test_the_dataset_page_shows_columns_keys_edges_and_the_cached_preview(
    open_ui: Open, create_endpoint: CreateEndpoint, sync_datasets: SyncDatasets, catalog: Database
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    ids = await sync_datasets(endpoint["id"])
    await set_preview(catalog, ids["orders"], datetime.now(UTC) - timedelta(minutes=5))
    ui = await open_ui("viewer")

    page = (await ui.get(f"/ui/datasets/{ids['orders']}")).text

    assert "customer_id" in page
    assert 'title="primary key">PK' in page
    assert f'href="/ui/datasets/{ids["customers"]}">public.customers' in page
    assert "Cached" in page
    assert "5 min ago" in page
    assert "freshet-previewer" in page
    assert "collection" in page
    assert "truncated" in page
    assert 'class="clip"' in page
    assert 'class="null">NULL' in page
    assert "stale-banner" not in page
    customers = (await ui.get(f"/ui/datasets/{ids['customers']}")).text
    assert "Referenced by" in customers
    assert "public.orders" in customers
    assert "No preview yet" in customers


async def test_a_preview_older_than_the_staleness_window_gets_the_banner(
    open_ui: Open, create_endpoint: CreateEndpoint, sync_datasets: SyncDatasets, catalog: Database
) -> None:
    endpoint = await sqlite_endpoint(create_endpoint)
    ids = await sync_datasets(endpoint["id"])
    await set_preview(catalog, ids["orders"], datetime.now(UTC) - timedelta(days=3))
    ui = await open_ui("viewer")

    page = (await ui.get(f"/ui/datasets/{ids['orders']}")).text

    assert "stale-banner" in page
    assert "3 days ago" in page


async def test_datasets_are_found_by_name_endpoint_and_label(
    open_ui: Open, create_endpoint: CreateEndpoint, sync_datasets: SyncDatasets
) -> None:
    shop = await sqlite_endpoint(create_endpoint, "shop")
    other = await create_endpoint("other", kind="sqlite", config={"path": "/x.db"}, secrets={})
    await sync_datasets(shop["id"])
    await sync_datasets(other["id"], with_orders=False)
    ui = await open_ui("viewer")

    def found(page: httpx.Response) -> int:
        return page.text.count('<th scope="row"><a href="/ui/datasets/')

    assert found(await ui.get("/ui/datasets")) == 3
    assert found(await ui.get("/ui/datasets", params={"q": "ORD"})) == 1
    assert found(await ui.get("/ui/datasets", params={"q": "public.cust"})) == 2
    assert found(await ui.get("/ui/datasets", params={"endpoint": other["id"]})) == 1
    assert found(await ui.get("/ui/datasets", params={"label": "team:x"})) == 2
    assert found(await ui.get("/ui/datasets", params={"label": f"endpoint:{other['id']}"})) == 1
    assert found(await ui.get("/ui/datasets", params={"q": "%"})) == 0
    assert "No dataset matches" in (await ui.get("/ui/datasets", params={"q": "nothing"})).text


# Errors and empty states.


async def test_a_missing_dataset_gets_a_friendly_not_found_page(open_ui: Open) -> None:
    ui = await open_ui("viewer")

    missing = await ui.get(f"/ui/datasets/{uuid.uuid4()}")
    nowhere = await ui.get("/ui/no/such/page")
    malformed = await ui.get("/ui/datasets/not-an-id")

    assert missing.status_code == 404
    assert "Dataset not found" in missing.text
    assert nowhere.status_code == 404
    assert "Page not found" in nowhere.text
    assert malformed.status_code == 422
    assert "Invalid input" in malformed.text
    for response in (missing, nowhere, malformed):
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["content-security-policy"]


async def test_empty_lists_say_what_to_do(open_ui: Open) -> None:
    admin, viewer = await open_ui("admin"), await open_ui("viewer")

    assert "Add the first endpoint" in (await admin.get("/ui/endpoints")).text
    assert "An administrator adds them" in (await viewer.get("/ui/endpoints")).text
    assert "No runs yet" in (await viewer.get("/ui/runs")).text
    assert "No datasets yet" in (await viewer.get("/ui/datasets")).text


async def test_ui_routes_stay_out_of_the_api_description(gateway_app: FastAPI) -> None:
    assert not [p for p in gateway_app.openapi()["paths"] if p.startswith("/ui") or p == "/"]
