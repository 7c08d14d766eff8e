"""The web UI in a real browser (Debian's Chromium, driven by Playwright) against the running
system: one browser for the session, a fresh context (cookies, zone, viewport) per test, the
SQLite system shared with the other end-to-end tests.

Screenshots of every page land in test-artifacts/screenshots/ (gitignored) for people to look
at; the assertions are on the page's text, roles and state.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from freshet.catalog import Database, UnitOfWork
from freshet.devstack.testing import eventually
from tests.e2e.conftest import SOURCE_PASSWORD, System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.broker,
    pytest.mark.xdist_group("e2e"),
    # One system serves every browser test: the SQLite one the other e2e tests start too.
    pytest.mark.parametrize("system", ["sqlite"], indirect=True),
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ZONE = "America/New_York"
LIVE_TIMEOUT_MS = 45_000
# What sticks out past the screen's right edge (to say why a page scrolls sideways).
WIDER_THAN_SCREEN = """
Array.from(document.querySelectorAll("body *"))
  .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .slice(0, 8)
  .map(e => e.tagName + "." + e.className)
"""
# The machine is shared: give pages and assertions time before calling them wrong.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("Debian's chromium is missing: `make tools` installs it")
    async with async_playwright() as pw:
        # `launch` gives the browser a fresh, temporary user-data dir of its own (a persistent
        # one would keep cookies across runs), removed when it closes.
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        await browser.close()


@pytest.fixture(scope="session")
def screenshots(request: pytest.FixtureRequest) -> Path:
    folder = request.config.rootpath / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def context(chromium: Browser, system: System) -> AsyncIterator[BrowserContext]:
    ctx = await chromium.new_context(
        base_url=system.gateway, timezone_id=ZONE, viewport={"width": 1280, "height": 900}
    )
    ctx.set_default_timeout(15_000)
    yield ctx
    await ctx.close()


def token_of(system: System, role: str) -> str:
    return system.token if role == "admin" else system.role_tokens[role]


async def sign_in(context: BrowserContext, system: System, role: str) -> Page:
    page = await context.new_page()
    await page.goto("/ui/")
    await page.get_by_label("API token").fill(token_of(system, role))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Endpoints", level=1)).to_be_visible()
    return page


async def shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


# An external ingestion step that takes a few seconds, so a page opened right after the
# trigger surely shows the run before it finishes (one dataset, `lake.events`).
SLOW_INGEST = r"""
import json, sys, time
time.sleep(3)
with open(sys.argv[1], "w") as out:
    out.write(json.dumps({"schema_name": "lake", "name": "events",
        "columns": [{"name": "id", "data_type": "BIGINT", "nullable": False}],
        "primary_key": ["id"]}) + "\n")
"""


async def new_endpoint(system: System, name: str, *, slow: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "kind": "sqlite", "config": {"path": str(system.demo)}}
    if slow:
        body["ingest_command"] = [sys.executable, "-c", SLOW_INGEST, "{output}"]
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers) as http:
        response = await http.post("/endpoints", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


async def runs_of(system: System, endpoint_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers) as http:
        response = await http.get("/runs", params={"endpoint_id": endpoint_id})
        return list(response.json())


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def test_sign_in_shows_the_endpoints_and_sign_out_ends_the_session(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    page = await context.new_page()
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await shot(page, screenshots, "sign-in")
    await page.get_by_label("API token").fill("fsh_wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not valid")

    await page.get_by_label("API token").fill(system.token)
    await page.get_by_role("button", name="Sign in").click()

    await expect(page.get_by_role("heading", name="Endpoints", level=1)).to_be_visible()
    await expect(page.get_by_text("dev-admin")).to_be_visible()
    cookies = {c["name"]: c for c in await context.cookies()}
    assert cookies["freshet_session"]["httpOnly"] is True
    assert cookies["freshet_session"]["sameSite"] == "Lax"
    assert await page.evaluate("document.cookie.includes('freshet_session')") is False
    await shot(page, screenshots, "endpoints")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.goto("/ui/endpoints")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_an_admin_adds_an_endpoint_after_testing_its_connection(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    page = await sign_in(context, system, "admin")
    name = unique("ui-added")
    await page.get_by_role("link", name="Add endpoint").click()
    await page.get_by_label("Name", exact=False).first.fill(name)
    await page.get_by_label("Kind").select_option("sqlite")
    # Only the chosen kind's settings are shown.
    await expect(page.locator('fieldset[data-kind="postgres"]')).to_be_hidden()
    await page.get_by_role("textbox", name="Path").fill("/nowhere/missing.db")
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator("#test-result")).to_contain_text("Connection failed")

    await page.get_by_role("textbox", name="Path").fill(str(system.demo))
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator("#test-result")).to_contain_text("Connection works")
    await shot(page, screenshots, "endpoint-form")
    await page.get_by_role("button", name="Add endpoint").click()

    await expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    await expect(page.get_by_role("status")).to_contain_text("added")
    await shot(page, screenshots, "endpoint")


async def test_trigger_collection_and_watch_the_run_succeed_without_a_reload(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    endpoint = await new_endpoint(system, unique("ui-live"), slow=True)
    page = await sign_in(context, system, "operator")
    await page.evaluate("window.__notReloaded = true")
    row = page.locator(f'tr[data-live="endpoint:{endpoint["id"]}"]')

    await row.get_by_role("button", name=re.compile("Trigger collection")).click()

    await expect(page.get_by_role("heading", level=1)).to_contain_text("Collection of")
    await expect(page.get_by_role("status")).to_contain_text("Collection triggered")
    [run] = await runs_of(system, endpoint["id"])
    run_row = page.locator(f'tr[data-live="run:{run["id"]}"]')
    await expect(run_row).to_have_class(re.compile("highlight"))
    await expect(page.locator("[data-live-indicator]").first).to_be_visible()
    await page.evaluate("window.__notReloaded = true")
    badge = run_row.locator(".badge")
    # QUEUED -> RUNNING has no event: the gateway's poll of active runs shows it.
    await expect(badge).to_have_text("Running", timeout=LIVE_TIMEOUT_MS)
    await expect(badge).to_have_text("Succeeded", timeout=LIVE_TIMEOUT_MS)
    assert await page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    await expect(run_row).to_contain_text("e2e-operator")
    await expect(run_row).to_contain_text("manual")
    await shot(page, screenshots, "collection")

    # The run's page, and the endpoint list that now shows it as the last run.
    await run_row.get_by_role("link").first.click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Succeeded")
    await shot(page, screenshots, "run")
    await page.goto("/ui/endpoints")
    await expect(page.locator(f'tr[data-live="endpoint:{endpoint["id"]}"]')).to_contain_text(
        "Healthy"
    )


async def test_run_history_is_filtered_by_status_and_date(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    endpoint = await new_endpoint(system, unique("ui-history"))
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers) as http:
        await http.post(f"/endpoints/{endpoint['id']}/trigger")
        queued = (await http.post(f"/endpoints/{endpoint['id']}/trigger")).status_code
        assert queued in (202, 409)

    async def finished() -> bool:
        runs = await runs_of(system, endpoint["id"])
        return bool(runs) and all(r["status"] == "SUCCEEDED" for r in runs)

    await eventually(finished, timeout=30)
    page = await sign_in(context, system, "viewer")
    await page.goto(f"/ui/runs?endpoint={endpoint['id']}")
    await expect(page.locator("tbody tr")).to_have_count(len(await runs_of(system, endpoint["id"])))

    await page.get_by_label("Status").select_option("FAILED")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_text("No runs match these filters")).to_be_visible()

    await page.get_by_label("Status").select_option("SUCCEEDED")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    await page.get_by_label("Requested from").fill("2020-01-01T00:00")
    await page.get_by_label("to", exact=True).fill(tomorrow)
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tbody tr").first).to_contain_text("Succeeded")
    assert "status=SUCCEEDED" in page.url
    await shot(page, screenshots, "runs-filtered")

    await page.get_by_label("Requested from").fill(tomorrow)
    await page.get_by_label("to", exact=True).fill("")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_text("No runs match these filters")).to_be_visible()


async def demo_dataset_with_preview(system: System) -> dict[str, Any]:
    """A dataset of the demo endpoint once its preview is stored (after a successful run)."""
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers) as http:
        endpoints = (await http.get("/endpoints")).json()
        demo = next((e for e in endpoints if e["name"] == "ui-demo"), None)
        if demo is None:
            demo = (
                await http.post(
                    "/endpoints",
                    json={
                        "name": "ui-demo",
                        "kind": "sqlite",
                        "config": {"path": str(system.demo)},
                        "labels": ["demo"],
                    },
                )
            ).json()
            await http.post(f"/endpoints/{demo['id']}/trigger")

        async def previewed() -> dict[str, Any] | None:
            found = (await http.get("/datasets", params={"endpoint_id": demo["id"]})).json()
            return next((d for d in found if d["preview"] and d["name"] == "orders"), None)

        return dict(await eventually(previewed, timeout=45))


async def test_a_dataset_shows_its_columns_edges_and_stored_preview_with_provenance(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    dataset = await demo_dataset_with_preview(system)
    page = await sign_in(context, system, "viewer")
    await page.get_by_role("link", name="Datasets", exact=True).click()
    await page.get_by_label("Name").fill("orders")
    await page.get_by_label("Label").fill("demo")
    await page.get_by_role("button", name="Search").click()
    await shot(page, screenshots, "datasets")

    await page.get_by_role("link", name=re.compile(r"\.orders$")).first.click()

    await expect(page.get_by_role("heading", level=1)).to_contain_text("orders")
    preview = page.locator("#preview")
    await expect(preview.locator(".badge.cached")).to_have_text("Cached")
    await expect(preview).to_contain_text("freshet-previewer")
    await expect(preview).to_contain_text("collection")
    # sampledAt relative and absolute, in the browser's zone.
    await expect(preview.locator(".provenance")).to_contain_text(re.compile(r"ago|just now"))
    await expect(preview.locator(".provenance")).to_contain_text(re.compile(r"E[SD]T"))
    await expect(preview.locator("table tbody tr").first).to_be_visible()
    await expect(page.get_by_role("heading", name="Keys and related datasets")).to_be_visible()
    await expect(page.locator(".stale-banner")).to_have_count(0)
    assert dataset["preview"]["rows"]
    await shot(page, screenshots, "dataset")


async def test_a_preview_older_than_the_window_shows_the_stale_banner(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    dataset = await demo_dataset_with_preview(system)
    old = datetime.now(UTC) - timedelta(days=2)
    db = Database(system.stack.catalog_url)
    try:
        async with UnitOfWork(db) as uow:
            row = await uow.datasets.get(uuid.UUID(dataset["id"]), for_update=True)
            assert row is not None
            preview = {**row.payload["preview"], "sampledAt": old.isoformat()}
            row.payload = {**row.payload, "preview": preview}
            row.preview_sampled_at = old
            await uow.commit()
    finally:
        await db.dispose()
    page = await sign_in(context, system, "viewer")

    await page.goto(f"/ui/datasets/{dataset['id']}")

    banner = page.locator(".stale-banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("2 days ago")
    await shot(page, screenshots, "dataset-stale")


async def test_a_viewer_is_offered_no_action_and_is_refused_when_forcing_one(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    endpoint = await new_endpoint(system, unique("ui-viewer"))
    page = await sign_in(context, system, "viewer")

    await expect(page.get_by_role("link", name="Add endpoint")).to_have_count(0)
    await expect(page.get_by_role("button", name=re.compile("Trigger collection"))).to_have_count(0)
    await expect(page.get_by_role("link", name=re.compile("^Edit"))).to_have_count(0)
    await page.goto(f"/ui/endpoints/{endpoint['id']}")
    await expect(page.get_by_role("button", name="Test connection")).to_have_count(0)
    await expect(page.get_by_text("Delete this endpoint")).to_have_count(0)
    await shot(page, screenshots, "endpoint-as-viewer")

    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    forced = await page.request.post(
        f"/ui/endpoints/{endpoint['id']}/trigger", form={"csrf_token": token or ""}
    )
    assert forced.status == 403
    assert "Not allowed" in await forced.text()
    assert await runs_of(system, endpoint["id"]) == []
    await page.goto(f"/ui/endpoints/{endpoint['id']}/edit")
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


async def test_a_state_change_without_the_csrf_token_is_refused(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    endpoint = await new_endpoint(system, unique("ui-csrf"))
    page = await sign_in(context, system, "operator")

    without = await page.request.post(f"/ui/endpoints/{endpoint['id']}/trigger", form={})
    status = await page.evaluate(
        "async (url) => (await fetch(url, {method: 'POST', credentials: 'same-origin'})).status",
        f"/ui/endpoints/{endpoint['id']}/trigger",
    )

    assert without.status == 403
    assert "This form has expired" in await without.text()
    assert status == 403
    assert await runs_of(system, endpoint["id"]) == []
    await page.set_content(await without.text())
    await shot(page, screenshots, "csrf-refused")


# Previews, refreshes and the audit log (second round).


async def pg_connection(system: System, name: str, **settings: Any) -> dict[str, Any]:
    """An endpoint over the system's PostgreSQL source, discovered (its datasets by name under
    "datasets"). Previews on request only unless `settings` say otherwise, so no fan-out runs."""
    body = {
        "name": name,
        "kind": "postgres",
        "config": system.pg_source,
        "secrets": {"password": SOURCE_PASSWORD},
        "preview_policy": "manual-only",
        **settings,
    }
    async with httpx.AsyncClient(
        base_url=system.gateway, headers=system.headers, timeout=60
    ) as http:
        created = await http.post("/endpoints", json=body)
        assert created.status_code == 201, created.text
        found = await http.post(f"/connections/{name}/discover")
        assert found.status_code == 200, found.text
        assert found.json()["discovery_status"] == "success", found.text
        endpoint = dict(created.json())
        listed = (await http.get("/datasets", params={"endpoint_id": endpoint["id"]})).json()
    return {**endpoint, "datasets": {d["name"]: d for d in listed}}


async def test_a_live_preview_shows_fresh_rows_with_provenance_and_masked_columns(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    connection = await pg_connection(system, unique("ui-preview"), preview_masks=["name"])
    customers = connection["datasets"]["customers"]
    page = await sign_in(context, system, "operator")
    await page.goto(f"/ui/datasets/{customers['id']}")
    preview = page.locator("#preview")
    await expect(preview).to_contain_text("No preview yet")
    await expect(preview).to_contain_text("on request only")
    await page.evaluate("window.__notReloaded = true")

    await preview.get_by_role("button", name="Preview dataset").click()

    preview = page.locator("#preview")
    await expect(preview.locator(".badge.fresh")).to_have_text("Fresh")
    provenance = preview.locator(".provenance")
    await expect(provenance).to_contain_text("freshet-previewer")
    await expect(provenance).to_contain_text("source manual")
    await expect(provenance).to_contain_text("requested by e2e-operator")
    await expect(provenance).to_contain_text(re.compile(r"ago|just now"))
    await expect(provenance).to_contain_text(re.compile(r"E[SD]T"))
    header = preview.locator("thead th", has_text="name")
    await expect(header.locator(".badge.masked")).to_have_text("masked")
    await expect(preview.locator("tbody tr")).to_have_count(50)
    await expect(preview.locator(".masked-value").first).to_have_text("***masked***")
    await expect(preview.locator("tbody tr").first).not_to_contain_text("customer 1")
    await expect(preview.locator(".stale-banner")).to_have_count(0)
    assert await page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    await shot(page, screenshots, "dataset-live-preview")

    # Opened again, the same sample is the stored one: Cached.
    await page.goto(f"/ui/datasets/{customers['id']}")
    await expect(page.locator("#preview .badge.cached")).to_have_text("Cached")


async def test_a_refused_preview_shows_its_message(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    connection = await pg_connection(system, unique("ui-refused"))
    orders = connection["datasets"]["orders"]
    page = await sign_in(context, system, "operator")
    await page.goto(f"/ui/datasets/{orders['id']}")
    button = page.get_by_role("button", name="Preview dataset")
    await expect(button).to_be_visible()
    # An administrator disables the endpoint's previews while the page is open.
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers) as http:
        changed = await http.patch(
            f"/endpoints/{connection['id']}", json={"preview_policy": "disabled"}
        )
        assert changed.status_code == 200, changed.text

    await button.click()

    note = page.locator("#preview .problem-note")
    await expect(note).to_contain_text("Previews are disabled")
    await expect(note).to_contain_text("E_PREVIEW_DISABLED")
    await expect(note).to_be_focused()
    await expect(page.get_by_role("button", name="Preview dataset")).to_have_count(0)
    await shot(page, screenshots, "dataset-preview-refused")


SLOW_SCHEMA = "ui_slow"


async def slow_table(system: System) -> None:
    """`ui_slow.ticks` in the source: 300 rows that take about three seconds to read, so a page
    opened as its refresh starts sees it running. A schema of its own: connections of the other
    tests list only `shop`."""
    source = system.pg_source
    conn = await asyncpg.connect(
        host=source["host"], port=source["port"], database=source["database"], user=source["user"]
    )
    try:
        await conn.execute(
            f"""
            CREATE SCHEMA IF NOT EXISTS {SLOW_SCHEMA};
            CREATE OR REPLACE FUNCTION {SLOW_SCHEMA}.slowly(n int) RETURNS int
                LANGUAGE sql AS 'SELECT pg_sleep(0.01); SELECT n';
            CREATE OR REPLACE VIEW {SLOW_SCHEMA}.ticks AS
                SELECT {SLOW_SCHEMA}.slowly(g) AS id, 'tick ' || g AS label
                FROM generate_series(1, 300) g;
            """
        )
    finally:
        await conn.close()


async def test_refresh_a_table_and_watch_its_progress_reach_completed(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    await slow_table(system)
    connection = await pg_connection(
        system,
        unique("ui-refresh"),
        config={**system.pg_source, "schemas": [SLOW_SCHEMA]},
    )
    ticks = connection["datasets"]["ticks"]
    page = await sign_in(context, system, "operator")
    await page.goto(f"/ui/datasets/{ticks['id']}")
    cache = page.locator("#cache")
    await expect(cache).to_contain_text("not cached")
    await cache.get_by_text("Change cache settings").click()
    await cache.get_by_label("Keep this table cached").check()
    await cache.get_by_role("button", name="Save cache settings").click()
    await expect(page.get_by_role("status").first).to_contain_text("Cache settings")
    await expect(page.locator("#cache")).to_contain_text("yes: refreshed with its connection")

    await page.locator("#cache").get_by_role("button", name="Refresh table").click()

    await expect(page.get_by_role("heading", name="Refreshes", level=1)).to_be_visible()
    await page.evaluate("window.__notReloaded = true")
    job = page.locator("article.job.highlight")
    await expect(job).to_contain_text(f"{SLOW_SCHEMA}.ticks")
    await expect(page.locator("[data-live-indicator]").first).to_be_visible()
    # The refresher reads for about three seconds: the running state shows, then the end.
    await expect(job.locator("tbody tr").first.locator(".badge")).to_have_text(
        "Running", timeout=LIVE_TIMEOUT_MS
    )
    await shot(page, screenshots, "refreshes-running")
    await expect(job.locator(".heading .badge")).to_have_text("Completed", timeout=LIVE_TIMEOUT_MS)
    assert await page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    await expect(job).to_contain_text("1 of 1 table done")
    await expect(job.locator("tbody tr").first).to_contain_text("Succeeded")
    await expect(job.locator("tbody tr").first).to_contain_text("300")
    bar = job.locator(".progress-line progress")
    assert await bar.get_attribute("value") == await bar.get_attribute("max") == "1"
    # The cached tables below were fetched again when the job ended.
    cached_row = page.locator(f"#cache-{ticks['id']}")
    await expect(cached_row).to_contain_text("300")
    await expect(cached_row).to_contain_text(re.compile(r"ago|just now"))
    await shot(page, screenshots, "refreshes")

    await job.get_by_role("link").first.click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Refresh of")
    await expect(page.locator("article.job")).to_contain_text("e2e-operator")
    await shot(page, screenshots, "refresh-job")


async def test_refresh_a_connection_from_its_endpoint_page(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    connection = await pg_connection(system, unique("ui-conn"))
    page = await sign_in(context, system, "operator")
    await page.goto(f"/ui/endpoints/{connection['id']}")
    caches = page.locator("#caches")
    await expect(caches).to_contain_text("never refreshed")
    await caches.get_by_label("every discovered table").check()
    await caches.get_by_label("At a time").fill("2")
    await shot(page, screenshots, "endpoint-caches")

    await caches.get_by_role("button", name=f"Refresh {connection['name']}").click()

    await expect(page.get_by_role("status").first).to_contain_text("2 at a time")
    job = page.locator("article.job.highlight")
    await expect(job.locator(".heading .badge")).to_have_text("Completed", timeout=LIVE_TIMEOUT_MS)
    await expect(job).to_contain_text("3 of 3 tables done")
    await expect(job).to_contain_text("2 at a time")
    for table in ("shop.customers", "shop.orders", "shop.big_orders"):
        await expect(job.locator(f'tr[data-table="{table}"]')).to_contain_text("Succeeded")
    await expect(job.locator('tr[data-table="shop.orders"]')).to_contain_text("300")
    await shot(page, screenshots, "refreshes-connection")


async def test_a_query_fetches_an_uncached_table_and_shows_its_rows_and_a_refusal(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    connection = await pg_connection(system, unique("ui-query"))
    page = await sign_in(context, system, "viewer")
    await page.goto("/ui/endpoints")
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Query").click()
    sql = page.get_by_label("SQL")

    await sql.fill(f'SELECT count(*) AS customers FROM "{connection["name"]}"."shop"."customers"')
    await page.get_by_role("button", name="Run query").click()

    result = page.locator("section.query-result")
    await expect(result).to_contain_text("1 row", timeout=LIVE_TIMEOUT_MS)
    await expect(result.locator("tbody td").first).to_have_text("120")
    await expect(result).to_contain_text("fetched for this query")
    await shot(page, screenshots, "query")

    await page.get_by_label("SQL").fill("SELECT * FROM read_csv('/etc/passwd')")
    await page.get_by_role("button", name="Run query").click()

    await expect(page.get_by_role("alert")).to_contain_text("not run")
    await expect(page.get_by_label("SQL")).to_have_value("SELECT * FROM read_csv('/etc/passwd')")
    await shot(page, screenshots, "query-refused")


async def test_the_audit_log_shows_previews_and_refreshes_to_an_admin_not_a_viewer(
    context: BrowserContext, system: System, screenshots: Path
) -> None:
    connection = await pg_connection(system, unique("ui-audit"), preview_policy="disabled")
    orders = connection["datasets"]["orders"]
    operator = {"Authorization": f"Bearer {token_of(system, 'operator')}"}
    async with httpx.AsyncClient(base_url=system.gateway, headers=operator) as http:
        refreshed = await http.post(
            f"/connections/{connection['name']}/tables/shop/orders/refresh",
            params={"async": "true"},
        )
        assert refreshed.status_code == 202, refreshed.text
        refused = await http.post(f"/datasets/{orders['id']}/preview")
        assert refused.status_code == 409, refused.text

    page = await sign_in(context, system, "admin")
    await page.get_by_role("link", name="Audit", exact=True).click()
    await expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    await page.get_by_label("Actor").fill("e2e-operator")
    await page.get_by_label("Target id").fill(orders["id"])
    await page.get_by_role("button", name="Filter").click()

    rows = page.locator("table.audit tbody tr")
    await expect(rows).to_have_count(2)
    refresh_row = rows.filter(has_text="refresh.request")
    await expect(refresh_row).to_contain_text("Requested")
    await expect(refresh_row).to_contain_text("refresh of shop.orders")
    preview_row = rows.filter(has_text="preview.request")
    await expect(preview_row).to_contain_text("Refused")
    await expect(preview_row).to_contain_text("previews are disabled")
    # Times in the viewer's zone, and the target is a link to the dataset.
    await expect(rows.first).to_contain_text(re.compile(r"E[SD]T"))
    await expect(refresh_row.get_by_role("link", name="shop.orders")).to_have_attribute(
        "href", f"/ui/datasets/{orders['id']}"
    )
    await shot(page, screenshots, "audit")

    await context.clear_cookies()
    viewer = await sign_in(context, system, "viewer")
    await expect(viewer.get_by_role("link", name="Audit", exact=True)).to_have_count(0)
    await expect(viewer.get_by_role("link", name="Refreshes", exact=True)).to_be_visible()
    await viewer.goto("/ui/audit")
    await expect(viewer.get_by_role("heading", name="Not allowed")).to_be_visible()


# Last: the pages then show what the tests above left, as a real screen would.
async def test_pages_work_by_keyboard_and_on_a_narrow_screen(
    chromium: Browser, system: System, screenshots: Path
) -> None:
    context = await chromium.new_context(
        base_url=system.gateway, timezone_id=ZONE, viewport={"width": 390, "height": 844}
    )
    try:
        page = await sign_in(context, system, "admin")
        await page.keyboard.press("Tab")
        skip = page.get_by_role("link", name="Skip to content")
        await expect(skip).to_be_focused()
        outline = await skip.evaluate("el => getComputedStyle(el).outlineStyle")
        assert outline != "none"
        await page.keyboard.press("Enter")
        assert page.url.endswith("#main")
        for path, name in (
            ("/ui/endpoints", "narrow-endpoints"),
            ("/ui/runs", "narrow-runs"),
            ("/ui/refreshes", "narrow-refreshes"),
            ("/ui/audit", "narrow-audit"),
        ):
            await page.goto(path)
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            wide = await page.evaluate(WIDER_THAN_SCREEN)
            assert overflow <= 1, f"{path} scrolls sideways by {overflow}px: {wide}"
            await shot(page, screenshots, name)
    finally:
        await context.close()
