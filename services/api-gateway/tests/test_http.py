"""What every response shares: correlation ids, error bodies, metrics, the API description."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from freshet.catalog.endpoints import EndpointRepository

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]

CORRELATION = "X-Correlation-ID"


# (method, path, role or None, expected status): one request for each kind of response.
RESPONSES = {
    "ok": ("GET", "/endpoints", "viewer", 200),
    "created": ("POST", "/endpoints", "admin", 201),
    "operations": ("GET", "/health", None, 200),
    "metrics": ("GET", "/metrics", None, 200),
    "no token": ("GET", "/endpoints", None, 401),
    "wrong role": ("POST", "/endpoints", "viewer", 403),
    "not found": ("GET", f"/runs/{uuid.UUID(int=7)}", "viewer", 404),
    "unknown path": ("GET", "/no/such/path", "viewer", 404),
    "invalid": ("GET", "/runs/not-a-uuid", "viewer", 422),
}
RESPONSE_PARAMS = [pytest.param(*r, id=name) for name, r in RESPONSES.items()]


async def send(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint_body: Callable[..., dict[str, Any]],
    method: str,
    path: str,
    role: str | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = endpoint_body() if (method, path) == ("POST", "/endpoints") else None
    all_headers = {**(auth(role) if role else {}), **(headers or {})}
    return await client.request(method, path, json=body, headers=all_headers)


# Correlation ids.


@pytest.mark.parametrize(("method", "path", "role", "status"), RESPONSE_PARAMS)
async def test_a_supplied_correlation_id_is_echoed_on_every_response(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint_body: Callable[..., dict[str, Any]],
    method: str,
    path: str,
    role: str | None,
    status: int,
) -> None:
    response = await send(
        client, auth, endpoint_body, method, path, role, {CORRELATION: "trace-me-0042"}
    )

    assert response.status_code == status, response.text
    assert response.headers[CORRELATION] == "trace-me-0042"


@pytest.mark.parametrize(("method", "path", "role", "status"), RESPONSE_PARAMS)
async def test_a_correlation_id_is_made_for_every_response_without_one(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint_body: Callable[..., dict[str, Any]],
    method: str,
    path: str,
    role: str | None,
    status: int,
) -> None:
    response = await send(client, auth, endpoint_body, method, path, role)

    assert response.status_code == status, response.text
    uuid.UUID(response.headers[CORRELATION])


async def test_each_request_without_a_correlation_id_gets_a_new_one(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/health")
    second = await client.get("/health")

    assert first.headers[CORRELATION] != second.headers[CORRELATION]


async def test_a_correlation_id_of_100_characters_is_kept(client: httpx.AsyncClient) -> None:
    supplied = "c" * 100

    response = await client.get("/health", headers={CORRELATION: supplied})

    assert response.headers[CORRELATION] == supplied


async def test_a_correlation_id_longer_than_100_characters_is_replaced(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/health", headers={CORRELATION: "c" * 101})

    uuid.UUID(response.headers[CORRELATION])


# Error bodies for paths and methods the API does not have.


@pytest.mark.parametrize("role", [None, "admin"])
async def test_an_unknown_path_is_404_with_an_error_body(
    client: httpx.AsyncClient, auth: Auth, role: str | None
) -> None:
    response = await client.get("/no/such/path", headers=auth(role) if role else {})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "E_NOT_FOUND"
    assert set(response.json()) == {"error"}


async def test_a_method_a_route_does_not_have_is_405_with_an_error_body(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    response = await client.delete("/endpoints", headers=auth("admin"))

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "E_METHOD_NOT_ALLOWED"


async def test_a_405_response_says_which_methods_are_allowed(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    response = await client.delete(f"/runs/{uuid.uuid4()}", headers=auth("admin"))

    assert response.status_code == 405
    assert "GET" in response.headers.get("Allow", "")


@pytest.fixture
async def broken_endpoint_path(
    create_endpoint: CreateEndpoint, monkeypatch: pytest.MonkeyPatch
) -> str:
    """GET of an endpoint whose read fails with an exception no handler expects."""
    endpoint = await create_endpoint()

    async def fail(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the catalog fell over")

    monkeypatch.setattr(EndpointRepository, "get", fail)
    return f"/endpoints/{endpoint['id']}"


@pytest.fixture
async def lenient_client(gateway_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that receives the 500 an app exception turns into, instead of the exception."""
    transport = httpx.ASGITransport(app=gateway_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_an_unexpected_error_answers_500_with_an_error_body_and_the_correlation_id(
    lenient_client: httpx.AsyncClient, auth: Auth, broken_endpoint_path: str
) -> None:
    response = await lenient_client.get(
        broken_endpoint_path, headers={**auth("viewer"), CORRELATION: "find-me-in-the-logs"}
    )

    assert response.status_code == 500
    assert response.headers.get(CORRELATION) == "find-me-in-the-logs"
    assert response.json()["error"]["code"] == "E_INTERNAL"


async def test_metrics_count_requests_that_fail_with_an_unexpected_error(
    lenient_client: httpx.AsyncClient, auth: Auth, broken_endpoint_path: str
) -> None:
    route = "/endpoints/{endpoint_id}"
    before = (await lenient_client.get("/metrics")).text

    failed = await lenient_client.get(broken_endpoint_path, headers=auth("viewer"))
    after = (await lenient_client.get("/metrics")).text

    assert failed.status_code == 500
    assert requests_total(after, route, "GET", "500") - requests_total(
        before, route, "GET", "500"
    ) == pytest.approx(1)


async def test_health_answers_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.json() == {"status": "ok", "service": "gateway", "pid": os.getpid()}


# Metrics.


def requests_total(metrics_text: str, route: str, method: str, status: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "freshet_http_requests":
            continue
        for sample in family.samples:
            if sample.name == "freshet_http_requests_total" and sample.labels == {
                "route": route,
                "method": method,
                "status": status,
            }:
                return sample.value
    return 0.0


async def test_metrics_count_requests_by_route_template_not_by_concrete_path(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint
) -> None:
    endpoint = await create_endpoint()
    before = (await client.get("/metrics")).text

    await client.get(f"/endpoints/{endpoint['id']}", headers=auth("viewer"))
    await client.get(f"/endpoints/{endpoint['id']}", headers=auth("viewer"))
    after = (await client.get("/metrics")).text

    route = "/endpoints/{endpoint_id}"
    assert f'route="{route}"' in after
    assert endpoint["id"] not in after
    assert requests_total(after, route, "GET", "200") - requests_total(
        before, route, "GET", "200"
    ) == pytest.approx(2)


async def test_metrics_count_refused_requests_by_route_and_status(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/metrics")).text

    await client.get(f"/runs/{uuid.uuid4()}")
    after = (await client.get("/metrics")).text

    assert requests_total(after, "/runs/{run_id}", "GET", "401") - requests_total(
        before, "/runs/{run_id}", "GET", "401"
    ) == pytest.approx(1)


async def test_metrics_label_unknown_paths_as_unmatched_without_the_path(
    client: httpx.AsyncClient,
) -> None:
    path = f"/probe-{uuid.uuid4().hex}"
    before = (await client.get("/metrics")).text

    await client.get(path)
    after = (await client.get("/metrics")).text

    assert path not in after
    assert requests_total(after, "unmatched", "GET", "404") - requests_total(
        before, "unmatched", "GET", "404"
    ) == pytest.approx(1)


async def test_metrics_time_requests_by_route_template(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    run_id = uuid.uuid4()
    await client.get(f"/runs/{run_id}", headers=auth("viewer"))

    metrics = (await client.get("/metrics")).text

    assert 'freshet_http_request_duration_seconds_count{method="GET",route="/runs/{run_id}"}' in (
        metrics
    )
    assert str(run_id) not in metrics


# The API description.

API_OPERATIONS = {
    ("get", "/endpoints"),
    ("post", "/endpoints"),
    ("post", "/endpoints/test"),
    ("get", "/endpoints/{endpoint_id}"),
    ("patch", "/endpoints/{endpoint_id}"),
    ("delete", "/endpoints/{endpoint_id}"),
    ("post", "/endpoints/{endpoint_id}/test"),
    ("post", "/endpoints/{endpoint_id}/trigger"),
    ("get", "/collections"),
    ("post", "/collections"),
    ("get", "/collections/{collection_id}"),
    ("patch", "/collections/{collection_id}"),
    ("delete", "/collections/{collection_id}"),
    ("post", "/collections/{collection_id}/trigger"),
    ("get", "/collections/{collection_id}/runs"),
    ("get", "/runs"),
    ("get", "/runs/{run_id}"),
    ("post", "/runs/{run_id}/cancel"),
    ("get", "/datasets"),
    ("get", "/datasets/{dataset_id}"),
}


async def test_the_openapi_document_lists_every_rest_route(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    listed = {
        (method, path)
        for path, operations in response.json()["paths"].items()
        for method in operations
    }
    assert API_OPERATIONS - listed == set()


async def test_the_openapi_document_declares_bearer_authentication_on_every_rest_route(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()

    schemes = document["components"]["securitySchemes"]
    bearer = [name for name, s in schemes.items() if s == {"type": "http", "scheme": "bearer"}]
    assert len(bearer) == 1
    for method, path in API_OPERATIONS:
        assert document["paths"][path][method]["security"] == [{bearer[0]: []}], (method, path)


async def test_the_openapi_document_describes_no_secret_values_in_endpoint_responses(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()

    endpoint_out = document["components"]["schemas"]["EndpointOut"]["properties"]
    assert "secret_fields" in endpoint_out
    assert "secrets" not in endpoint_out
