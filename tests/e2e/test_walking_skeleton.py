"""The walking skeleton across every service boundary, on SQLite and on PostgreSQL catalogs.

register endpoint -> trigger -> QUEUED run + CollectionRequested (one transaction)
-> collector: RUNNING, discover, datasets, SUCCEEDED, RunCompleted
-> previewer: PreviewRequested per dataset -> sample -> PreviewSampled -> payload.preview
-> GET /datasets/{id} shows the rows.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

import httpx
import pytest

from freshet.devstack.testing import eventually
from tests.e2e.conftest import SOURCE_PASSWORD, System

# One worker runs every e2e test, so each catalog kind starts its system once.
pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.xdist_group("e2e")]


async def register(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/endpoints", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def trigger_and_wait(
    http: httpx.AsyncClient, collection_id: str, correlation_id: str | None = None
) -> dict[str, Any]:
    headers = {"X-Correlation-ID": correlation_id} if correlation_id else {}
    response = await http.post(f"/collections/{collection_id}/trigger", headers=headers)
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] == "QUEUED"

    async def finished() -> dict[str, Any] | None:
        current = (await http.get(f"/runs/{run['id']}")).json()
        return current if current["status"] not in ("QUEUED", "RUNNING") else None

    return dict(await eventually(finished, timeout=60))


async def previews(http: httpx.AsyncClient, endpoint_id: str, count: int) -> list[dict[str, Any]]:
    async def all_sampled() -> list[dict[str, Any]] | None:
        listed = (await http.get("/datasets", params={"endpoint_id": endpoint_id})).json()
        if len(listed) == count and all(d["preview"] for d in listed):
            return list(listed)
        return None

    return list(await eventually(all_sampled, timeout=60))


async def test_sqlite_endpoint_is_collected_and_previewed(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers) as http:
        endpoint = await register(
            http, {"name": "shop-sqlite", "kind": "sqlite", "config": {"path": str(system.demo)}}
        )
        correlation_id = f"e2e-{uuid.uuid4().hex}"
        run = await trigger_and_wait(http, endpoint["collection_id"], correlation_id)
        assert run["status"] == "SUCCEEDED", run
        assert run["requested_by"] == "dev-admin"
        assert run["trigger_source"] == "api"
        assert run["datasets_total"] == 5
        assert run["duration_ms"] is not None

        datasets = await previews(http, endpoint["id"], 5)
        by_name = {d["name"]: d for d in datasets}
        assert set(by_name) == {"customers", "products", "orders", "order_items", "order_totals"}
        assert by_name["order_totals"]["kind"] == "view"

        orders = (await http.get(f"/datasets/{by_name['orders']['id']}")).json()
        preview = orders["preview"]
        assert preview["rowCount"] == 50
        assert len(preview["rows"]) == 50
        assert preview["sampledAt"]
        assert preview["sampledBy"] == "freshet-previewer"
        assert preview["refreshSource"] == "collection"
        assert preview["runId"] == run["id"]
        # The rows are the source's rows.
        with sqlite3.connect(system.demo) as src:
            columns = [r[1] for r in src.execute("PRAGMA table_info(orders)")]
            ids = {r[0] for r in src.execute("SELECT id FROM orders")}
        assert preview["columns"] == columns
        assert {row[columns.index("id")] for row in preview["rows"]} <= ids
        # Columns and the foreign-key edges are in the catalog record.
        assert [c["name"] for c in orders["columns"]] == columns
        edges = {e["name"] for e in orders["edges"]}
        assert "main.orders(customer_id)->main.customers(id)" in edges
        assert "main.order_items(order_id)->main.orders(id)" in edges
    # One correlation id follows the request through every service's structured logs.
    for service in ("gateway", "collector", "previewer"):
        logged = [
            json.loads(line)
            for line in (system.logs / f"{service}.log").read_text().splitlines()
            if line.startswith("{")
        ]
        assert all(line["service"] == service for line in logged)
        mine = [line for line in logged if line.get("correlation_id") == correlation_id]
        assert mine, f"{service} logged nothing with correlation id {correlation_id}"


async def test_postgres_endpoint_is_collected_without_leaking_its_password(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers) as http:
        endpoint = await register(
            http,
            {
                "name": "shop-postgres",
                "kind": "postgres",
                "config": system.pg_source,
                "secrets": {"password": SOURCE_PASSWORD},
            },
        )
        assert endpoint["secret_fields"] == ["password"]
        run = await trigger_and_wait(http, endpoint["collection_id"])
        assert run["status"] == "SUCCEEDED", run
        datasets = await previews(http, endpoint["id"], 3)
        customers = next(d for d in datasets if d["name"] == "customers")
        assert customers["schema_name"] == "shop"
        assert customers["preview"]["rowCount"] == 50
        assert customers["preview"]["columns"] == ["id", "name", "joined"]

        bodies = [
            (await http.get("/endpoints")).text,
            (await http.get(f"/endpoints/{endpoint['id']}")).text,
            (await http.get("/datasets", params={"endpoint_id": endpoint["id"]})).text,
            (await http.get(f"/runs/{run['id']}")).text,
        ]
    for body in bodies:
        assert SOURCE_PASSWORD not in body
    assert SOURCE_PASSWORD not in system.log_text()


async def test_a_failing_source_fails_its_run_and_not_another(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers) as http:
        broken = await register(
            http,
            {
                "name": "broken-postgres",
                "kind": "postgres",
                "config": {**system.pg_source, "port": 1, "database": "nope"},
                "secrets": {"password": SOURCE_PASSWORD},
            },
        )
        healthy = await register(
            http, {"name": "healthy", "kind": "sqlite", "config": {"path": str(system.demo)}}
        )
        failed = await trigger_and_wait(http, broken["collection_id"])
        ok = await trigger_and_wait(http, healthy["collection_id"])
    assert failed["status"] == "FAILED"
    assert failed["error"]
    assert SOURCE_PASSWORD not in failed["error"]
    assert ok["status"] == "SUCCEEDED"
