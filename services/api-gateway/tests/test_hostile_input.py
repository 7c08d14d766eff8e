"""Hostile input on every REST route: quotes, semicolons, unicode, `../`, NUL, very long
strings, oversized and malformed bodies, wrong types, unknown and malformed ids.

Every refusal is a 4xx with the stable body {"error": {"code", "message", "details"?}} that
never echoes the endpoint password (`expect_error` checks both), and hostile strings that
are valid data are stored and returned verbatim, never interpreted. Every test runs on a
SQLite and a PostgreSQL catalog (PostgreSQL refuses NUL characters that SQLite stores).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from freshet.catalog import Database, RunStatus, UnitOfWork
from freshet.catalog.secrets import SecretBox

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
BareEndpoint = Callable[..., Awaitable[dict[str, Any]]]
Trigger = Callable[[str], Awaitable[dict[str, Any]]]
MoveRun = Callable[..., Awaitable[None]]
SyncDatasets = Callable[..., Awaitable[dict[str, str]]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]
ExpectError = Callable[..., dict[str, Any]]

PASSWORD_PLACEHOLDER = "{password}"

# Strings an attacker or a careless script sends, by what they try.
HOSTILE = {
    "single quote": "o'brien",
    "double quote": 'say "hi"',
    "sql injection": "x'; DROP TABLE endpoints; --",
    "semicolons": "a;b;c",
    "unicode": "ünïcødé-数据-🚀",
    "right-to-left override": "abc\u202edef",
    "zero-width space": "a\u200bb",
    "path traversal": "../../etc/passwd",
    "backslashes": "..\\..\\windows",
    "html": "<script>alert(1)</script>",
    "template": "{{7*7}}${jndi:x}",
}
NUL = "a\x00b"
LONG = "x" * 10_000


@pytest.fixture
async def ids(
    create_endpoint: CreateEndpoint,
    trigger: Trigger,
    move_run: MoveRun,
    sync_datasets: SyncDatasets,
) -> dict[str, str]:
    """Ids that exist: an endpoint with its collection, a finished run and a dataset."""
    endpoint = await create_endpoint("shop-db")
    run = await trigger(endpoint["collection_id"])
    await move_run(run["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
    datasets = await sync_datasets(endpoint["id"])
    return {
        "endpoint_id": endpoint["id"],
        "collection_id": endpoint["collection_id"],
        "run_id": run["id"],
        "dataset_id": datasets["orders"],
    }


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    role: str
    # A valid JSON body for the route ("{endpoint_id}" is filled in), or None.
    body: dict[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.template}"

    def path(self, ids: dict[str, str]) -> str:
        return self.template.format(**ids)


VALID_ENDPOINT = {
    "name": "new-db",
    "kind": "postgres",
    "config": {"host": "db.internal", "database": "shop", "user": "ro"},
    "secrets": {"password": PASSWORD_PLACEHOLDER},
}
BODY_ROUTES = [
    Route("POST", "/endpoints", "admin", VALID_ENDPOINT),
    Route("POST", "/endpoints/test", "admin", VALID_ENDPOINT),
    Route("PATCH", "/endpoints/{endpoint_id}", "admin", {"labels": ["team:sales"]}),
    Route("POST", "/endpoints/{endpoint_id}/trigger", "operator", {"filters": {}}),
    Route("POST", "/collections", "admin", {"endpoint_id": "{endpoint_id}"}),
    Route("PATCH", "/collections/{collection_id}", "admin", {"is_enabled": True}),
    Route("POST", "/collections/{collection_id}/trigger", "operator", {"filters": {}}),
]
BODY_ROUTE_PARAMS = [pytest.param(r, id=str(r)) for r in BODY_ROUTES]


def filled(value: Any, ids: dict[str, str], password: str) -> Any:
    """The body with "{endpoint_id}" and "{password}" replaced by their values."""
    text = json.dumps(value).replace("{endpoint_id}", ids["endpoint_id"])
    return json.loads(text.replace(PASSWORD_PLACEHOLDER, password))


async def state(client: httpx.AsyncClient, auth: Auth, outbox: Outbox) -> list[Any]:
    """What a refused request must leave unchanged."""
    reads = ["/endpoints", "/collections", "/runs", "/datasets"]
    return [(await client.get(p, headers=auth("admin"))).json() for p in reads] + [await outbox()]


# Oversized bodies.


@pytest.mark.parametrize("route", BODY_ROUTE_PARAMS)
async def test_a_body_of_2_mb_is_refused_with_413_and_changes_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    ids: dict[str, str],
    outbox: Outbox,
    expect_error: ExpectError,
    password: str,
    route: Route,
) -> None:
    before = await state(client, auth, outbox)
    body = {**filled(route.body, ids, password), "padding": "x" * 2 * 1024 * 1024}

    response = await client.request(
        route.method, route.path(ids), json=body, headers=auth(route.role)
    )

    error = expect_error(response, 413, "E_PAYLOAD_TOO_LARGE")
    assert "1048576" in error["message"]
    assert response.headers["X-Correlation-ID"]
    assert await state(client, auth, outbox) == before


async def test_a_body_just_under_the_limit_is_read_and_validated(
    client: httpx.AsyncClient, auth: Auth, ids: dict[str, str], expect_error: ExpectError
) -> None:
    labels = ["l" * 200] * 4_000  # about 0.8 MB, but more labels than allowed

    response = await client.patch(
        f"/endpoints/{ids['endpoint_id']}", json={"labels": labels}, headers=auth("admin")
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert ["body", "labels"] in [d["loc"] for d in error["details"]]


async def test_an_oversized_body_is_refused_before_authentication(
    client: httpx.AsyncClient, expect_error: ExpectError
) -> None:
    response = await client.post("/endpoints", content=b"{" + b" " * 1_100_000 + b"}")

    expect_error(response, 413, "E_PAYLOAD_TOO_LARGE")


async def test_a_body_streamed_without_a_length_is_counted_as_it_arrives(
    client: httpx.AsyncClient, auth: Auth, ids: dict[str, str], expect_error: ExpectError
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b" " * 600_000

    response = await client.patch(
        f"/endpoints/{ids['endpoint_id']}",
        content=chunks(),
        headers={**auth("admin"), "content-type": "application/json"},
    )

    assert "content-length" not in response.request.headers
    expect_error(response, 413, "E_PAYLOAD_TOO_LARGE")


@pytest.fixture
def small_body_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """FRESHET_MAX_REQUEST_BYTES=4096, set before the app reads its settings."""
    monkeypatch.setenv("FRESHET_MAX_REQUEST_BYTES", "4096")


@pytest.mark.usefixtures("small_body_limit")
async def test_the_body_limit_is_a_setting(
    client: httpx.AsyncClient, auth: Auth, ids: dict[str, str], expect_error: ExpectError
) -> None:
    url = f"/endpoints/{ids['endpoint_id']}"

    small = await client.patch(url, json={"labels": ["a"] * 10}, headers=auth("admin"))
    large = await client.patch(url, json={"labels": ["l" * 100] * 45}, headers=auth("admin"))

    assert small.status_code == 200
    error = expect_error(large, 413, "E_PAYLOAD_TOO_LARGE")
    assert "4096" in error["message"]


# Bodies that are not the JSON object a route takes.

MALFORMED = {
    "truncated": b'{"name": "x", ',
    "trailing garbage": b'{"labels": []} {"x": 1}',
    "single quotes": b"{'labels': []}",
    "raw NUL byte in a string": b'{"labels": ["a\x00b"]}',
    "invalid utf-8": b'{"labels": ["\xff\xfe"]}',
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "a number of 5,000 digits": b'{"run_timeout_s": ' + b"9" * 5_000 + b"}",
    "empty": b"",
}


@pytest.mark.parametrize("route", BODY_ROUTE_PARAMS)
async def test_a_body_that_is_not_json_is_refused_with_422(
    client: httpx.AsyncClient,
    auth: Auth,
    ids: dict[str, str],
    outbox: Outbox,
    expect_error: ExpectError,
    route: Route,
) -> None:
    before = await outbox()
    headers = {**auth(route.role), "content-type": "application/json"}
    malformed = dict(MALFORMED)
    if route.template.endswith("/trigger"):
        del malformed["empty"]  # a trigger's body is optional: none means no filters

    for what, raw in malformed.items():
        response = await client.request(route.method, route.path(ids), content=raw, headers=headers)

        error = expect_error(response, 422, "E_VALIDATION")
        assert error["details"][0]["loc"][0] == "body", what
    assert await outbox() == before


@pytest.mark.parametrize("route", BODY_ROUTE_PARAMS)
async def test_a_body_that_is_not_a_json_object_is_refused_with_422(
    client: httpx.AsyncClient,
    auth: Auth,
    ids: dict[str, str],
    expect_error: ExpectError,
    route: Route,
) -> None:
    for value in ([], ["a"], "text", 42, 4.2, True):
        response = await client.request(
            route.method, route.path(ids), json=value, headers=auth(route.role)
        )

        error = expect_error(response, 422, "E_VALIDATION")
        assert ["body"] in [d["loc"] for d in error["details"]], value

    as_form = await client.request(
        route.method,
        route.path(ids),
        content=b"labels=a&name=b",
        headers={**auth(route.role), "content-type": "application/x-www-form-urlencoded"},
    )
    expect_error(as_form, 422, "E_VALIDATION")


# Wrong types, field by field: route -> [(fields, where the refusal points)].

WRONG_TYPES: dict[str, list[tuple[dict[str, Any], list[str | int]]]] = {
    "POST /endpoints": [
        ({"name": 7}, ["body", "name"]),
        ({"kind": ["postgres"]}, ["body", "kind"]),
        ({"config": "host=db"}, ["body", "config"]),
        ({"secrets": ["pw"]}, ["body", "secrets"]),
        ({"labels": "pii"}, ["body", "labels"]),
        ({"labels": [1]}, ["body", "labels", 0]),
        ({"preview_policy": True}, ["body", "preview_policy"]),
        ({"ingest_command": "/opt/ingest {output}"}, ["body", "ingest_command"]),
        ({"run_timeout_s": "soon"}, ["body", "run_timeout_s"]),
        ({"run_timeout_s": 1.5}, ["body", "run_timeout_s"]),
        ({"run_timeout_s": 86_401}, ["body", "run_timeout_s"]),
    ],
    "PATCH /endpoints/{endpoint_id}": [
        ({"name": ["a"]}, ["body", "name"]),
        ({"config": [1]}, ["body", "config"]),
        ({"secrets": {"password": 1}}, ["body", "secrets", "password"]),
        ({"run_timeout_s": -1}, ["body", "run_timeout_s"]),
        ({"ingest_command": []}, ["body", "ingest_command"]),
    ],
    "POST /collections": [
        ({"endpoint_id": 12}, ["body", "endpoint_id"]),
        ({"schedule_cron": ["0", "*"]}, ["body", "schedule_cron"]),
        ({"is_enabled": "perhaps"}, ["body", "is_enabled"]),
    ],
    "PATCH /collections/{collection_id}": [
        ({"is_enabled": "perhaps"}, ["body", "is_enabled"]),
        ({"schedule_timezone": {}}, ["body", "schedule_timezone"]),
    ],
    "POST /collections/{collection_id}/trigger": [({"filters": 1}, ["body", "filters"])],
}


@pytest.mark.parametrize("route", [p for p in BODY_ROUTE_PARAMS if p.id in WRONG_TYPES])
async def test_a_field_of_the_wrong_type_is_refused_naming_it(
    client: httpx.AsyncClient,
    auth: Auth,
    ids: dict[str, str],
    expect_error: ExpectError,
    password: str,
    route: Route,
) -> None:
    for fields, loc in WRONG_TYPES[str(route)]:
        body = {**filled(route.body, ids, password), **fields}

        response = await client.request(
            route.method, route.path(ids), json=body, headers=auth("admin")
        )

        error = expect_error(response, 422, "E_VALIDATION")
        assert loc in [d["loc"] for d in error["details"]], fields


# Hostile strings: refused where the format forbids them, stored verbatim where they are data.


async def test_a_hostile_endpoint_name_is_refused_on_create_and_rename(
    client: httpx.AsyncClient,
    auth: Auth,
    ids: dict[str, str],
    endpoint_body: Callable[..., dict[str, Any]],
    expect_error: ExpectError,
) -> None:
    for what, name in {**HOSTILE, "nul": NUL, "10k": LONG}.items():
        created = await client.post("/endpoints", json=endpoint_body(name), headers=auth("admin"))
        renamed = await client.patch(
            f"/endpoints/{ids['endpoint_id']}", json={"name": name}, headers=auth("admin")
        )

        for response in (created, renamed):
            error = expect_error(response, 422, "E_VALIDATION")
            assert [d["loc"] for d in error["details"]] == [["body", "name"]], what
    listed = await client.get("/endpoints", headers=auth("viewer"))
    assert [e["name"] for e in listed.json()] == ["shop-db"]


async def test_hostile_labels_config_values_and_secret_names_are_stored_verbatim(
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint_body: Callable[..., dict[str, Any]],
    password: str,
) -> None:
    for n, (what, text) in enumerate(HOSTILE.items()):
        config = {"host": text, "database": text, "user": text}
        body = endpoint_body(
            f"hostile-{n}", config=config, labels=[text], secrets={"password": password, text: "s"}
        )

        created = await client.post("/endpoints", json=body, headers=auth("admin"))

        assert created.status_code == 201, (what, created.text)
        url = f"/endpoints/{created.json()['id']}"
        fetched = (await client.get(url, headers=auth("viewer"))).json()
        assert fetched["config"] == config, what
        assert fetched["labels"] == [text], what
        assert fetched["secret_fields"] == sorted(["password", text]), what
        assert password not in created.text
    listed = await client.get("/endpoints", headers=auth("viewer"))
    assert len(listed.json()) == len(HOSTILE), "the table is intact"


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        pytest.param({"labels": [NUL]}, ["body", "labels"], id="label"),
        pytest.param(
            {"config": {"host": NUL, "database": "d", "user": "u"}}, ["body", "config"], id="value"
        ),
        pytest.param(
            {"config": {"host": "h", "database": "d", "user": "u", NUL: 1}},
            ["body", "config"],
            id="config key",
        ),
        pytest.param({"secrets": {NUL: "v"}}, ["body", "secrets"], id="secret name"),
    ],
)
async def test_a_nul_character_where_it_would_be_stored_is_refused_on_every_catalog(
    client: httpx.AsyncClient,
    auth: Auth,
    ids: dict[str, str],
    endpoint_body: Callable[..., dict[str, Any]],
    outbox: Outbox,
    expect_error: ExpectError,
    fields: dict[str, Any],
    loc: list[str],
) -> None:
    """PostgreSQL cannot store NUL in text or JSON: refused up front (422), not a 500."""
    before = await state(client, auth, outbox)

    created = await client.post(
        "/endpoints", json=endpoint_body("nul-db", **fields), headers=auth("admin")
    )
    patched = await client.patch(
        f"/endpoints/{ids['endpoint_id']}", json=fields, headers=auth("admin")
    )

    for response in (created, patched):
        error = expect_error(response, 422, "E_VALIDATION")
        assert loc in [d["loc"] for d in error["details"]]
    assert await state(client, auth, outbox) == before


async def test_a_hostile_secret_value_is_kept_and_never_returned(
    client: httpx.AsyncClient,
    auth: Auth,
    ids: dict[str, str],
    catalog: Database,
    secret_key: str,
) -> None:
    for what, value in {**HOSTILE, "nul": NUL, "10k": LONG}.items():
        response = await client.patch(
            f"/endpoints/{ids['endpoint_id']}",
            json={"secrets": {"password": value}},
            headers=auth("admin"),
        )

        assert response.status_code == 200, (what, response.text)
        assert response.json()["secret_fields"] == ["password"]
        assert value not in response.text, what
        async with UnitOfWork(catalog) as uow:
            row = await uow.endpoints.get(uuid.UUID(ids["endpoint_id"]))
        assert row is not None
        assert SecretBox([secret_key]).decrypt(row.secret_ciphertext) == {"password": value}


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        pytest.param({"labels": [LONG]}, ["body", "labels", 0], id="10k label"),
        pytest.param({"secrets": {LONG: "v"}}, ["body", "secrets"], id="10k name"),
        pytest.param(
            {"secrets": {"password": "p" * 10_001}}, ["body", "secrets", "password"], id="10k value"
        ),
        pytest.param({"ingest_command": [LONG]}, ["body", "ingest_command", 0], id="10k argument"),
    ],
)
async def test_overlong_strings_are_refused_by_request_validation(
    client: httpx.AsyncClient,
    auth: Auth,
    ids: dict[str, str],
    expect_error: ExpectError,
    fields: dict[str, Any],
    loc: list[str | int],
) -> None:
    response = await client.patch(
        f"/endpoints/{ids['endpoint_id']}", json=fields, headers=auth("admin")
    )

    error = expect_error(response, 422, "E_VALIDATION")
    assert loc in [d["loc"][: len(loc)] for d in error["details"]]
    assert "p" * 10_001 not in response.text


async def test_hostile_schedules_are_refused_naming_the_field(
    client: httpx.AsyncClient,
    auth: Auth,
    ids: dict[str, str],
    expect_error: ExpectError,
) -> None:
    url = f"/collections/{ids['collection_id']}"

    for what, value in {**HOSTILE, "nul": NUL, "10k": LONG}.items():
        for field in ("schedule_cron", "schedule_timezone"):
            response = await client.patch(url, json={field: value}, headers=auth("admin"))

            error = expect_error(response, 422, "E_VALIDATION")
            assert [d["loc"][-1] for d in error["details"]] == [field], (what, field)


# Ids in paths.

ID_ROUTES: list[tuple[str, str, str, str, dict[str, Any] | None]] = [
    ("GET", "/endpoints/{}", "endpoint_id", "viewer", None),
    ("PATCH", "/endpoints/{}", "endpoint_id", "admin", {"labels": []}),
    ("DELETE", "/endpoints/{}", "endpoint_id", "admin", None),
    ("POST", "/endpoints/{}/test", "endpoint_id", "operator", None),
    ("POST", "/endpoints/{}/trigger", "endpoint_id", "operator", None),
    ("GET", "/collections/{}", "collection_id", "viewer", None),
    ("PATCH", "/collections/{}", "collection_id", "admin", {"is_enabled": True}),
    ("DELETE", "/collections/{}", "collection_id", "admin", None),
    ("POST", "/collections/{}/trigger", "collection_id", "operator", None),
    ("GET", "/collections/{}/runs", "collection_id", "viewer", None),
    ("GET", "/runs/{}", "run_id", "viewer", None),
    ("POST", "/runs/{}/cancel", "run_id", "operator", None),
    ("GET", "/datasets/{}", "dataset_id", "viewer", None),
]
ID_ROUTE_PARAMS = [pytest.param(*r, id=f"{r[0]} {r[1]}") for r in ID_ROUTES]
NOT_FOUND = {
    "endpoint_id": "E_ENDPOINT_NOT_FOUND",
    "collection_id": "E_COLLECTION_NOT_FOUND",
    "run_id": "E_RUN_NOT_FOUND",
    "dataset_id": "E_DATASET_NOT_FOUND",
}
NOT_UUIDS = {
    "word": "shop-db",
    "number": "12345",
    "sql": "1' OR '1'='1",
    "unicode": "ünï",
    "nul": "%00",
    "dot dot": "%2e%2e",
    "uuid with a non-hex digit": "00000000-0000-0000-0000-00000000000g",
    "uuid with more": f"{uuid.UUID(int=1)}x",
    "10k": "a" * 10_000,
}


@pytest.mark.parametrize(("method", "template", "param", "role", "body"), ID_ROUTE_PARAMS)
async def test_an_unknown_id_is_404_with_the_code_of_its_kind(
    client: httpx.AsyncClient,
    auth: Auth,
    ids: dict[str, str],
    outbox: Outbox,
    expect_error: ExpectError,
    method: str,
    template: str,
    param: str,
    role: str,
    body: dict[str, Any] | None,
) -> None:
    before = await outbox()

    response = await client.request(
        method, template.format(uuid.uuid4()), json=body, headers=auth(role)
    )

    expect_error(response, 404, NOT_FOUND[param])
    assert await outbox() == before


@pytest.mark.parametrize(("method", "template", "param", "role", "body"), ID_ROUTE_PARAMS)
async def test_an_id_that_is_not_a_uuid_is_refused_with_422_naming_the_parameter(
    client: httpx.AsyncClient,
    auth: Auth,
    expect_error: ExpectError,
    method: str,
    template: str,
    param: str,
    role: str,
    body: dict[str, Any] | None,
) -> None:
    for what, bad in NOT_UUIDS.items():
        response = await client.request(method, template.format(bad), json=body, headers=auth(role))

        error = expect_error(response, 422, "E_VALIDATION")
        assert [d["loc"] for d in error["details"]] == [["path", param]], what


@pytest.mark.parametrize(
    "path", ["/endpoints/..", "/endpoints/..%2F..%2Fetc%2Fpasswd", "/runs/a/b"]
)
async def test_a_path_that_matches_no_route_is_404_with_an_error_body(
    client: httpx.AsyncClient, auth: Auth, expect_error: ExpectError, path: str
) -> None:
    response = await client.get(path, headers=auth("admin"))

    expect_error(response, 404, "E_NOT_FOUND")


# Query strings and headers.


@pytest.mark.parametrize("param", ["status", "from", "to", "after", "endpoint_id", "first"])
async def test_hostile_query_parameters_are_refused_with_422(
    client: httpx.AsyncClient,
    auth: Auth,
    ids: dict[str, str],
    expect_error: ExpectError,
    param: str,
) -> None:
    for what, value in {**HOSTILE, "nul": NUL, "10k": LONG}.items():
        response = await client.get("/runs", params={param: value}, headers=auth("viewer"))

        error = expect_error(response, 422, "E_VALIDATION")
        assert [d["loc"][-1] for d in error["details"]] == [param], what


async def test_an_overlong_bearer_token_is_just_an_unknown_token(
    client: httpx.AsyncClient, expect_error: ExpectError
) -> None:
    response = await client.get("/endpoints", headers={"Authorization": "Bearer " + LONG})

    expect_error(response, 401, "E_AUTH_REQUIRED")
