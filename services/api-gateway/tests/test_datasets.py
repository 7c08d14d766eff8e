"""/datasets: what collector runs found, with columns, foreign-key edges and previews."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from freshet.catalog import Database, UnitOfWork

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
SyncDatasets = Callable[..., Awaitable[dict[str, str]]]


@pytest.fixture
async def shop(create_endpoint: CreateEndpoint, sync_datasets: SyncDatasets) -> dict[str, str]:
    """An endpoint with public.customers and public.orders (orders.customer_id -> customers)."""
    endpoint = await create_endpoint("shop-db")
    datasets = await sync_datasets(endpoint["id"])
    return {"endpoint_id": endpoint["id"], **datasets}


async def get_dataset(client: httpx.AsyncClient, auth: Auth, dataset_id: str) -> dict[str, Any]:
    response = await client.get(f"/datasets/{dataset_id}", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# One dataset.


async def test_a_dataset_reads_back_with_its_columns_and_primary_key(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    orders = await get_dataset(client, auth, shop["orders"])

    assert orders["id"] == shop["orders"]
    assert orders["endpoint_id"] == shop["endpoint_id"]
    assert (orders["schema_name"], orders["name"], orders["kind"]) == ("public", "orders", "table")
    assert orders["columns"] == [
        {"name": "id", "data_type": "integer", "nullable": False},
        {"name": "customer_id", "data_type": "integer", "nullable": True},
    ]
    assert orders["primary_key"] == ["id"]
    assert orders["removed_at"] is None


async def test_a_dataset_is_labelled_with_its_endpoint_and_source_kind(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    customers = await get_dataset(client, auth, shop["customers"])

    assert customers["labels"] == [f"endpoint:{shop['endpoint_id']}", "source:postgres"]


async def test_a_dataset_reports_the_row_estimate_the_source_gave_or_null(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    customers = await get_dataset(client, auth, shop["customers"])
    orders = await get_dataset(client, auth, shop["orders"])

    assert customers["row_estimate"] == 42
    assert orders["row_estimate"] is None


async def test_a_dataset_with_a_foreign_key_lists_the_edge_it_starts(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    orders = await get_dataset(client, auth, shop["orders"])

    assert orders["edges"] == [
        {
            "kind": "foreign_key",
            "name": "public.orders(customer_id)->public.customers(id)",
            "source_dataset_id": shop["orders"],
            "target_dataset_id": shop["customers"],
            "details": {"columns": ["customer_id"], "referred_columns": ["id"]},
        }
    ]


async def test_a_referenced_dataset_lists_the_edge_pointing_at_it(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    customers = await get_dataset(client, auth, shop["customers"])

    assert [(e["source_dataset_id"], e["target_dataset_id"]) for e in customers["edges"]] == [
        (shop["orders"], shop["customers"])
    ]


async def test_a_dataset_without_foreign_keys_has_an_empty_edge_list(
    client: httpx.AsyncClient,
    auth: Auth,
    sync_datasets: SyncDatasets,
    create_endpoint: CreateEndpoint,
) -> None:
    endpoint = await create_endpoint("lonely-db")
    datasets = await sync_datasets(endpoint["id"], with_orders=False)

    customers = await get_dataset(client, auth, datasets["customers"])

    assert customers["edges"] == []


async def test_a_dataset_never_sampled_has_a_null_preview(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    orders = await get_dataset(client, auth, shop["orders"])

    assert "preview" in orders
    assert orders["preview"] is None


async def test_a_sampled_dataset_shows_its_latest_preview(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str], catalog: Database
) -> None:
    preview = {
        "sampledAt": datetime(2025, 3, 1, 12, 0, tzinfo=UTC).isoformat(),
        "columns": ["id", "customer_id"],
        "rows": [[1, 7], [2, 9]],
    }
    async with UnitOfWork(catalog) as uow:
        assert await uow.datasets.set_preview(uuid.UUID(shop["orders"]), preview)
        await uow.commit()

    orders = await get_dataset(client, auth, shop["orders"])

    assert orders["preview"] == preview


async def test_an_unknown_dataset_is_404(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await client.get(f"/datasets/{uuid.uuid4()}", headers=auth("viewer"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "E_DATASET_NOT_FOUND"


async def test_a_removed_dataset_still_reads_by_id_with_its_removal_time(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str], sync_datasets: SyncDatasets
) -> None:
    await sync_datasets(shop["endpoint_id"], with_orders=False)

    orders = await get_dataset(client, auth, shop["orders"])

    assert orders["removed_at"] is not None


# The dataset list.


async def test_the_dataset_list_holds_every_dataset_by_schema_and_name_without_edges(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    response = await client.get("/datasets", headers=auth("viewer"))

    assert response.status_code == 200
    listed = response.json()
    assert [d["id"] for d in listed] == [shop["customers"], shop["orders"]]
    assert [d["edges"] for d in listed] == [None, None]
    assert [d["preview"] for d in listed] == [None, None]


async def test_the_dataset_list_is_empty_without_datasets(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    response = await client.get("/datasets", headers=auth("viewer"))

    assert response.status_code == 200
    assert response.json() == []


async def test_the_dataset_list_filtered_by_endpoint_holds_only_its_datasets(
    client: httpx.AsyncClient,
    auth: Auth,
    shop: dict[str, str],
    create_endpoint: CreateEndpoint,
    sync_datasets: SyncDatasets,
) -> None:
    other = await create_endpoint("other-db")
    others = await sync_datasets(other["id"], with_orders=False)

    mine = await client.get(
        "/datasets", params={"endpoint_id": shop["endpoint_id"]}, headers=auth("viewer")
    )
    theirs = await client.get(
        "/datasets", params={"endpoint_id": other["id"]}, headers=auth("viewer")
    )

    assert [d["id"] for d in mine.json()] == [shop["customers"], shop["orders"]]
    assert [d["id"] for d in theirs.json()] == [others["customers"]]


async def test_the_dataset_list_of_an_unknown_endpoint_is_empty(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    response = await client.get(
        "/datasets", params={"endpoint_id": str(uuid.uuid4())}, headers=auth("viewer")
    )

    assert response.status_code == 200
    assert response.json() == []


async def test_an_endpoint_filter_that_is_not_a_uuid_is_refused_with_422(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    response = await client.get(
        "/datasets", params={"endpoint_id": "shop-db"}, headers=auth("viewer")
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "E_VALIDATION"
    assert [d["loc"] for d in response.json()["error"]["details"]] == [["query", "endpoint_id"]]


async def test_removed_datasets_are_not_listed(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str], sync_datasets: SyncDatasets
) -> None:
    await sync_datasets(shop["endpoint_id"], with_orders=False)

    response = await client.get("/datasets", headers=auth("viewer"))

    assert [d["id"] for d in response.json()] == [shop["customers"]]


async def test_first_limits_the_dataset_list(
    client: httpx.AsyncClient, auth: Auth, shop: dict[str, str]
) -> None:
    response = await client.get("/datasets", params={"first": 1}, headers=auth("viewer"))

    assert [d["id"] for d in response.json()] == [shop["customers"]]


@pytest.mark.parametrize("first", [0, 1001])
async def test_first_outside_1_to_1000_is_refused_with_422(
    client: httpx.AsyncClient, auth: Auth, first: int
) -> None:
    response = await client.get("/datasets", params={"first": first}, headers=auth("viewer"))

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "E_VALIDATION"
