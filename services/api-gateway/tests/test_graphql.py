"""/graphql: seed 003's queries and mutations, their errors, paging, and what never leaks.

Every test runs on SQLite and on PostgreSQL (the `catalog_url` fixture behind `gateway_app`).
Every response is checked for the endpoints' password by the `gql` helper.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from graphql import get_introspection_query
from sqlalchemy import event

from freshet.catalog import Database, RunStatus
from freshet.gateway.graphql import schema
from freshet.gateway.graphql.router import MAX_QUERY_CHARS
from freshet.gateway.graphql.sdl import sdl
from freshet.gateway.service_layer import collections as collections_service

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]
MoveRun = Callable[..., Awaitable[None]]
Outbox = Callable[[], Awaitable[list[dict[str, Any]]]]
Gql = Callable[..., Awaitable[dict[str, Any]]]

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "docs" / "api" / "schema.graphql"
REQUESTED_TOPIC = "freshet.collection.requested"
CHANGED_TOPIC = "freshet.collection.changed"

ENDPOINT_FIELDS = """
    id name kind config secretFields previewPolicy labels createdAt updatedAt
    collection { id endpointId }
"""
COLLECTION_FIELDS = """
    id endpointId endpoint { id name } scheduleCron scheduleTimezone isEnabled
    temporalScheduleId createdAt updatedAt cursor
"""
RUN_FIELDS = """
    id collectionId endpointId endpoint { id name } status requestedBy requestedAt
    startedAt completedAt workflowId temporalRunId error filters createdAt updatedAt
    triggerSource durationMs datasetsTotal datasetsAdded datasetsRemoved datasetsChanged
    cursor
"""

COLLECTION = f"query($id: ID!) {{ collection(id: $id) {{ {COLLECTION_FIELDS} }} }}"
COLLECTIONS = f"""
query($endpointId: ID, $isEnabled: Boolean, $first: Int, $after: String) {{
  collections(endpointId: $endpointId, isEnabled: $isEnabled, first: $first, after: $after) {{
    {COLLECTION_FIELDS}
  }}
}}"""
RUNS = f"""
query($endpointId: ID, $collectionId: ID, $status: MetadataCollectionStatus,
      $from: DateTime, $to: DateTime, $first: Int, $after: String) {{
  collectionRuns(endpointId: $endpointId, collectionId: $collectionId, status: $status,
                 from: $from, to: $to, first: $first, after: $after) {{ {RUN_FIELDS} }}
}}"""
RUN = f"query($id: ID!) {{ run(id: $id) {{ {RUN_FIELDS} }} }}"
ENDPOINTS = f"{{ endpoints {{ {ENDPOINT_FIELDS} }} }}"
ENDPOINT = f"query($id: ID!) {{ endpoint(id: $id) {{ {ENDPOINT_FIELDS} }} }}"
CREATE = f"""
mutation($input: CollectionCreateInput!) {{
  createCollection(input: $input) {{ {COLLECTION_FIELDS} }}
}}"""
UPDATE = f"""
mutation($id: ID!, $input: CollectionUpdateInput!) {{
  updateCollection(id: $id, input: $input) {{ {COLLECTION_FIELDS} }}
}}"""
DELETE = "mutation($id: ID!) { deleteCollection(id: $id) }"
TRIGGER = f"mutation($id: ID!) {{ triggerCollection(collectionId: $id) {{ {RUN_FIELDS} }} }}"
TRIGGER_ENDPOINT = f"""
mutation($id: ID!) {{ triggerEndpointCollection(endpointId: $id) {{ {RUN_FIELDS} }} }}
"""
CANCEL = f"mutation($id: ID!) {{ cancelRun(id: $id) {{ {RUN_FIELDS} }} }}"


@pytest.fixture
def gql(client: httpx.AsyncClient, auth: Auth, password: str) -> Gql:
    """POST a GraphQL operation as `role` (None: no token); the JSON body of the answer.

    GraphQL errors are answered with HTTP 200; no answer may contain the password.
    """

    async def call(
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        role: str | None = "admin",
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        sent = {**(auth(role) if role else {}), **(headers or {})}
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=sent
        )
        assert response.status_code == 200, response.text
        assert password not in response.text
        body: dict[str, Any] = response.json()
        return body

    return call


def data(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]
    return result


def error(body: dict[str, Any]) -> dict[str, Any]:
    """The one error of an answer."""
    assert len(body.get("errors") or []) == 1, body
    only: dict[str, Any] = body["errors"][0]
    return only


def code(body: dict[str, Any]) -> str:
    value: str = error(body)["extensions"]["code"]
    return value


def aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


async def requested_events(outbox: Outbox) -> list[dict[str, Any]]:
    return [row for row in await outbox() if row["topic"] == REQUESTED_TOPIC]


@pytest.fixture
async def endpoint(create_endpoint: CreateEndpoint) -> dict[str, Any]:
    """A registered endpoint (REST body), with its enabled, manual-only collection."""
    return await create_endpoint("shop-db", labels=["team:shop"])


@pytest.fixture
def collection_id(endpoint: dict[str, Any]) -> str:
    value: str = endpoint["collection_id"]
    return value


@pytest.fixture
def trigger(gql: Gql) -> Callable[[str], Awaitable[dict[str, Any]]]:
    async def run(collection: str) -> dict[str, Any]:
        queued: dict[str, Any] = data(await gql(TRIGGER, {"id": collection}, role="operator"))[
            "triggerCollection"
        ]
        return queued

    return run


# The committed SDL.


def test_the_committed_sdl_is_the_schema() -> None:
    """`python -m freshet.gateway.graphql.sdl docs/api/schema.graphql` after a change."""
    assert SCHEMA_FILE.read_text() == sdl() == str(schema) + "\n"


def test_the_schema_has_the_seed_signatures() -> None:
    text = str(schema)
    for line in (
        "collections(endpointId: ID, isEnabled: Boolean, first: Int = 50, after: String): "
        "[MetadataCollection!]!",
        "collection(id: ID!): MetadataCollection\n",
        "collectionRuns(endpointId: ID, collectionId: ID, status: MetadataCollectionStatus, "
        "from: DateTime, to: DateTime, first: Int = 50, after: String): "
        "[MetadataCollectionRun!]!",
        "createCollection(input: CollectionCreateInput!): MetadataCollection!",
        "updateCollection(id: ID!, input: CollectionUpdateInput!): MetadataCollection!",
        "deleteCollection(id: ID!): Boolean!",
        'scheduleTimezone: String = "UTC"',
        "isEnabled: Boolean = true",
    ):
        assert line in text, line
    # The triggers keep the seed's signature; `filters` is an added optional argument.
    mutations = schema._schema.mutation_type
    assert mutations is not None
    for field, required in (
        ("triggerCollection", "collectionId"),
        ("triggerEndpointCollection", "endpointId"),
    ):
        args = mutations.fields[field].args
        assert str(args[required].type) == "ID!"
        assert str(mutations.fields[field].type) == "MetadataCollectionRun!"
        assert {name for name, arg in args.items() if str(arg.type).endswith("!")} == {required}


async def test_triggers_take_optional_filters_like_rest(
    gql: Gql, collection_id: str, outbox: Outbox
) -> None:
    query = (
        "mutation($id: ID!, $f: JSON) { triggerCollection(collectionId: $id, filters: $f) "
        "{ id filters } }"
    )
    bad = await gql(query, {"id": collection_id, "f": {"tables": ["x"]}}, role="operator")
    assert code(bad) == "E_VALIDATION"
    run = data(
        await gql(
            query, {"id": collection_id, "f": {"include_tables": ["orders*"]}}, role="operator"
        )
    )["triggerCollection"]
    assert run["filters"]["include_tables"] == ["orders*"]
    [event] = await requested_events(outbox)
    assert event["value"]["filters"]["include_tables"] == ["orders*"]


async def test_graphiql_loads_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_introspection_stays_on_within_the_limits(gql: Gql) -> None:
    """The schema is public; GraphiQL's full introspection query fits the depth, token and
    size limits."""
    full = await gql(get_introspection_query(descriptions=True), role=None)
    body = await gql("{ __schema { queryType { name } mutationType { name } } }", role=None)

    assert data(full)["__schema"]["queryType"]["name"] == "Query"

    assert data(body)["__schema"] == {
        "queryType": {"name": "Query"},
        "mutationType": {"name": "Mutation"},
    }


# Queries.


async def test_collections_lists_each_endpoints_collection_with_the_seed_fields(
    gql: Gql, create_endpoint: CreateEndpoint
) -> None:
    first = await create_endpoint("first-db")
    second = await create_endpoint("second-db")

    listed = data(await gql(COLLECTIONS, role="viewer"))["collections"]

    assert [(c["id"], c["endpointId"]) for c in listed] == [
        (first["collection_id"], first["id"]),
        (second["collection_id"], second["id"]),
    ]
    collection = listed[0]
    assert set(collection) == {
        "id",
        "endpointId",
        "endpoint",
        "scheduleCron",
        "scheduleTimezone",
        "isEnabled",
        "temporalScheduleId",
        "createdAt",
        "updatedAt",
        "cursor",
    }
    assert collection["endpoint"] == {"id": first["id"], "name": "first-db"}
    assert collection["scheduleCron"] is None
    assert collection["scheduleTimezone"] == "UTC"
    assert collection["isEnabled"] is True
    assert collection["temporalScheduleId"] is None
    assert aware(collection["createdAt"]) <= aware(collection["updatedAt"])
    assert isinstance(collection["cursor"], str)


async def test_collections_filter_by_endpoint_and_by_enabled(
    gql: Gql, create_endpoint: CreateEndpoint
) -> None:
    kept = await create_endpoint("kept-db")
    disabled = await create_endpoint("disabled-db")
    data(await gql(UPDATE, {"id": disabled["collection_id"], "input": {"isEnabled": False}}))

    by_endpoint = data(await gql(COLLECTIONS, {"endpointId": kept["id"]}, role="viewer"))
    enabled = data(await gql(COLLECTIONS, {"isEnabled": True}, role="viewer"))
    not_enabled = data(await gql(COLLECTIONS, {"isEnabled": False}, role="viewer"))

    assert [c["id"] for c in by_endpoint["collections"]] == [kept["collection_id"]]
    assert [c["id"] for c in enabled["collections"]] == [kept["collection_id"]]
    assert [c["id"] for c in not_enabled["collections"]] == [disabled["collection_id"]]


async def test_collection_by_id_and_null_when_missing(gql: Gql, collection_id: str) -> None:
    found = data(await gql(COLLECTION, {"id": collection_id}, role="viewer"))["collection"]
    missing = await gql(COLLECTION, {"id": str(uuid.uuid4())}, role="viewer")

    assert found["id"] == collection_id
    assert missing == {"data": {"collection": None}}


async def test_endpoints_and_endpoint_show_settings_and_secret_names_only(
    gql: Gql, endpoint: dict[str, Any]
) -> None:
    listed = data(await gql(ENDPOINTS, role="viewer"))["endpoints"]
    one = data(await gql(ENDPOINT, {"id": endpoint["id"]}, role="viewer"))["endpoint"]
    missing = data(await gql(ENDPOINT, {"id": str(uuid.uuid4())}, role="viewer"))

    assert listed == [one]
    assert one["id"] == endpoint["id"]
    assert one["name"] == "shop-db"
    assert one["kind"] == "postgres"
    assert one["config"] == {
        "host": "db.example.internal",
        "port": 5432,
        "database": "shop",
        "user": "ro",
    }
    assert one["secretFields"] == ["password"]
    assert one["previewPolicy"] == "auto"
    assert one["labels"] == ["team:shop"]
    assert aware(one["createdAt"]) <= aware(one["updatedAt"])
    assert one["collection"] == {"id": endpoint["collection_id"], "endpointId": endpoint["id"]}
    assert missing == {"endpoint": None}


async def test_run_by_id_and_null_when_missing(
    gql: Gql, collection_id: str, trigger: Callable[[str], Awaitable[dict[str, Any]]]
) -> None:
    queued = await trigger(collection_id)

    found = data(await gql(RUN, {"id": queued["id"]}, role="viewer"))["run"]
    missing = data(await gql(RUN, {"id": str(uuid.uuid4())}, role="viewer"))

    assert found == queued
    assert missing == {"run": None}


async def test_a_run_shows_the_filters_it_was_limited_to(
    gql: Gql, client: httpx.AsyncClient, auth: Auth, collection_id: str
) -> None:
    filters = {"include_schemas": ["public"], "exclude_tables": ["tmp_*"]}
    response = await client.post(
        f"/collections/{collection_id}/trigger",
        json={"filters": filters},
        headers=auth("operator"),
    )
    assert response.status_code == 202, response.text

    run = data(await gql(RUN, {"id": response.json()["id"]}, role="viewer"))["run"]

    assert run["filters"] == {**filters, "include_tables": [], "exclude_schemas": []}


# Mutations: create, update, delete.


async def test_create_collection_defaults_to_utc_enabled_and_manual_only(
    gql: Gql, endpoint: dict[str, Any], collection_id: str
) -> None:
    assert data(await gql(DELETE, {"id": collection_id})) == {"deleteCollection": True}

    created = data(await gql(CREATE, {"input": {"endpointId": endpoint["id"]}}))["createCollection"]

    assert created["endpointId"] == endpoint["id"]
    assert created["endpoint"] == {"id": endpoint["id"], "name": "shop-db"}
    assert created["scheduleTimezone"] == "UTC"
    assert created["isEnabled"] is True
    assert created["scheduleCron"] is None
    assert created["temporalScheduleId"] is None
    assert created["id"] != collection_id


async def test_create_collection_with_literal_input_and_no_timezone(
    gql: Gql, endpoint: dict[str, Any], collection_id: str
) -> None:
    data(await gql(DELETE, {"id": collection_id}))

    body = await gql(
        f'mutation {{ createCollection(input: {{endpointId: "{endpoint["id"]}", '
        f'scheduleCron: "0 3 * * *"}}) {{ {COLLECTION_FIELDS} }} }}'
    )

    created = data(body)["createCollection"]
    assert created["scheduleTimezone"] == "UTC"
    assert created["isEnabled"] is True
    assert created["scheduleCron"] == "0 3 * * *"
    assert created["temporalScheduleId"] == f"collection::{created['id']}"


async def test_create_collection_with_a_schedule_announces_it(
    gql: Gql, endpoint: dict[str, Any], collection_id: str, outbox: Outbox
) -> None:
    data(await gql(DELETE, {"id": collection_id}))

    created = data(
        await gql(
            CREATE,
            {
                "input": {
                    "endpointId": endpoint["id"],
                    "scheduleCron": "30 2 * * 1-5",
                    "scheduleTimezone": "Asia/Kolkata",
                    "isEnabled": False,
                }
            },
        )
    )["createCollection"]

    assert created["scheduleCron"] == "30 2 * * 1-5"
    assert created["scheduleTimezone"] == "Asia/Kolkata"
    assert created["isEnabled"] is False
    changes = [r["value"] for r in await outbox() if r["topic"] == CHANGED_TOPIC]
    assert changes[-1]["collection_id"] == created["id"]
    assert changes[-1]["schedule_cron"] == "30 2 * * 1-5"
    assert changes[-1]["deleted"] is False


async def test_an_endpoint_has_at_most_one_collection(gql: Gql, endpoint: dict[str, Any]) -> None:
    body = await gql(CREATE, {"input": {"endpointId": endpoint["id"]}})

    assert code(body) == "E_VALIDATION"
    assert error(body)["extensions"]["details"] == [
        {"loc": ["input", "endpointId"], "msg": "already has a collection"}
    ]
    assert body["data"] is None


async def test_a_collection_schedule_jitter_is_set_kept_and_validated(
    gql: Gql, endpoint: dict[str, Any], collection_id: str
) -> None:
    data(await gql(DELETE, {"id": collection_id}))
    fields = "id scheduleJitterS"
    create = CREATE.replace(COLLECTION_FIELDS, fields)
    update = UPDATE.replace(COLLECTION_FIELDS, fields)

    created = data(
        await gql(create, {"input": {"endpointId": endpoint["id"], "scheduleJitterS": 45}})
    )["createCollection"]
    kept = data(await gql(update, {"id": created["id"], "input": {"isEnabled": False}}))
    changed = data(await gql(update, {"id": created["id"], "input": {"scheduleJitterS": 0}}))
    refused = await gql(update, {"id": created["id"], "input": {"scheduleJitterS": -5}})

    assert created["scheduleJitterS"] == 45
    assert kept["updateCollection"]["scheduleJitterS"] == 45
    assert changed["updateCollection"]["scheduleJitterS"] == 0
    assert code(refused) == "E_VALIDATION"


async def test_create_collection_for_an_unknown_endpoint(gql: Gql) -> None:
    body = await gql(CREATE, {"input": {"endpointId": str(uuid.uuid4())}})

    assert code(body) == "E_ENDPOINT_NOT_FOUND"


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"scheduleCron": "* * * * *"}, "scheduleCron"),
        ({"scheduleCron": "*/2 * * * *"}, "scheduleCron"),
        ({"scheduleCron": "not a cron"}, "scheduleCron"),
        ({"scheduleCron": "0 0 3 * * * *"}, "scheduleCron"),
        (
            {"scheduleCron": "0 3 * * *", "scheduleTimezone": "Mars/Olympus_Mons"},
            "scheduleTimezone",
        ),
        ({"scheduleCron": "0 3 * * *", "scheduleTimezone": "../../etc/passwd"}, "scheduleTimezone"),
    ],
)
async def test_a_bad_schedule_is_refused_on_create_and_on_update(
    gql: Gql,
    endpoint: dict[str, Any],
    collection_id: str,
    schedule: dict[str, str],
    field: str,
) -> None:
    update = await gql(UPDATE, {"id": collection_id, "input": schedule})
    data(await gql(DELETE, {"id": collection_id}))
    create = await gql(CREATE, {"input": {"endpointId": endpoint["id"], **schedule}})

    for body in (update, create):
        assert code(body) == "E_VALIDATION"
        assert ["input", field] in [d["loc"] for d in error(body)["extensions"]["details"]]


async def test_input_models_refuse_oversized_values_without_echoing_them(
    gql: Gql, collection_id: str
) -> None:
    cron = "0 3 * * * " + "x" * 200

    body = await gql(UPDATE, {"id": collection_id, "input": {"scheduleCron": cron}})

    assert code(body) == "E_VALIDATION"
    [detail] = error(body)["extensions"]["details"]
    assert detail["loc"] == ["input", "scheduleCron"]
    assert set(detail) == {"loc", "msg"}
    assert "xxxx" not in str(body)


async def test_update_changes_only_the_fields_sent_and_null_cron_means_manual_only(
    gql: Gql, collection_id: str
) -> None:
    scheduled = data(
        await gql(
            UPDATE,
            {
                "id": collection_id,
                "input": {"scheduleCron": "0 3 * * *", "scheduleTimezone": "Europe/Paris"},
            },
        )
    )["updateCollection"]
    assert scheduled["temporalScheduleId"] == f"collection::{collection_id}"

    # Absent (variables without the key): unchanged.
    disabled = data(await gql(UPDATE, {"id": collection_id, "input": {"isEnabled": False}}))[
        "updateCollection"
    ]
    assert (disabled["scheduleCron"], disabled["scheduleTimezone"], disabled["isEnabled"]) == (
        "0 3 * * *",
        "Europe/Paris",
        False,
    )
    assert disabled["temporalScheduleId"] == f"collection::{collection_id}"

    # Absent (a literal without the field): unchanged.
    literal = data(
        await gql(
            f'mutation {{ updateCollection(id: "{collection_id}", input: {{isEnabled: true}}) '
            "{ scheduleCron isEnabled } }"
        )
    )["updateCollection"]
    assert literal == {"scheduleCron": "0 3 * * *", "isEnabled": True}

    # Explicit null: manual only; the rest stays.
    manual = data(await gql(UPDATE, {"id": collection_id, "input": {"scheduleCron": None}}))[
        "updateCollection"
    ]
    assert manual["scheduleCron"] is None
    assert manual["temporalScheduleId"] is None
    assert (manual["scheduleTimezone"], manual["isEnabled"]) == ("Europe/Paris", True)


async def test_update_with_a_literal_null_cron_makes_it_manual_only(
    gql: Gql, collection_id: str
) -> None:
    data(await gql(UPDATE, {"id": collection_id, "input": {"scheduleCron": "0 3 * * *"}}))

    body = await gql(
        f'mutation {{ updateCollection(id: "{collection_id}", input: {{scheduleCron: null}}) '
        "{ scheduleCron temporalScheduleId isEnabled } }"
    )

    assert data(body)["updateCollection"] == {
        "scheduleCron": None,
        "temporalScheduleId": None,
        "isEnabled": True,
    }


async def test_an_empty_update_changes_nothing(gql: Gql, collection_id: str) -> None:
    before = data(await gql(COLLECTION, {"id": collection_id}))["collection"]

    after = data(await gql(UPDATE, {"id": collection_id, "input": {}}))["updateCollection"]

    assert {k: v for k, v in after.items() if k != "updatedAt"} == {
        k: v for k, v in before.items() if k != "updatedAt"
    }


async def test_update_of_an_unknown_collection(gql: Gql) -> None:
    body = await gql(UPDATE, {"id": str(uuid.uuid4()), "input": {"isEnabled": False}})

    assert code(body) == "E_COLLECTION_NOT_FOUND"


async def test_delete_returns_true_and_the_collection_is_gone(
    gql: Gql, collection_id: str, trigger: Callable[[str], Awaitable[dict[str, Any]]]
) -> None:
    earlier = await trigger(collection_id)

    deleted = data(await gql(DELETE, {"id": collection_id}))

    assert deleted == {"deleteCollection": True}
    assert code(await gql(TRIGGER, {"id": collection_id}, role="operator")) == (
        "E_COLLECTION_NOT_FOUND"
    )
    assert data(await gql(COLLECTION, {"id": collection_id}))["collection"] is None
    assert code(await gql(DELETE, {"id": collection_id})) == "E_COLLECTION_NOT_FOUND"
    # History stays, without its collection; the active run was cancelled.
    run = data(await gql(RUN, {"id": earlier["id"]}))["run"]
    assert (run["collectionId"], run["status"]) == (None, "CANCELLED")


# Mutations: triggers and cancel.


async def test_trigger_queues_an_api_run_requested_by_the_token(
    gql: Gql, endpoint: dict[str, Any], collection_id: str
) -> None:
    run = data(await gql(TRIGGER, {"id": collection_id}, role="operator"))["triggerCollection"]

    assert run["status"] == "QUEUED"
    assert run["triggerSource"] == "api"
    assert run["requestedBy"] == "otto-operator"
    assert run["collectionId"] == collection_id
    assert run["endpointId"] == endpoint["id"]
    assert run["endpoint"] == {"id": endpoint["id"], "name": "shop-db"}
    assert run["workflowId"] == f"collection-run::{run['id']}"
    assert run["temporalRunId"] is None
    aware(run["requestedAt"])
    aware(run["createdAt"])
    for unset in (
        "startedAt",
        "completedAt",
        "durationMs",
        "error",
        "filters",
        "datasetsTotal",
        "datasetsAdded",
        "datasetsRemoved",
        "datasetsChanged",
    ):
        assert run[unset] is None, unset


async def test_trigger_writes_one_collection_requested_event(
    gql: Gql, collection_id: str, outbox: Outbox
) -> None:
    body = await gql(
        TRIGGER,
        {"id": collection_id},
        role="operator",
        headers={"X-Correlation-ID": "graphql-check-7"},
    )

    run = data(body)["triggerCollection"]
    [event] = await requested_events(outbox)
    assert event["key"] == collection_id
    assert event["value"]["run_id"] == run["id"]
    assert event["value"]["collection_id"] == collection_id
    assert event["value"]["endpoint_id"] == run["endpointId"]
    assert event["value"]["trigger_source"] == "api"
    assert event["value"]["requested_by"] == "otto-operator"
    assert event["headers"]["ce_correlationid"] == "graphql-check-7"
    assert event["headers"]["ce_source"] == "/freshet/gateway"


async def test_a_disabled_collection_cannot_be_triggered(
    gql: Gql, collection_id: str, outbox: Outbox
) -> None:
    data(await gql(UPDATE, {"id": collection_id, "input": {"isEnabled": False}}))

    body = await gql(TRIGGER, {"id": collection_id}, role="operator")

    assert code(body) == "E_COLLECTION_DISABLED"
    assert body["data"] is None
    assert await requested_events(outbox) == []


@pytest.mark.parametrize("active", [RunStatus.QUEUED, RunStatus.RUNNING])
async def test_a_second_trigger_while_a_run_is_active_is_refused(
    gql: Gql,
    collection_id: str,
    trigger: Callable[[str], Awaitable[dict[str, Any]]],
    move_run: MoveRun,
    outbox: Outbox,
    active: RunStatus,
) -> None:
    first = await trigger(collection_id)
    if active is RunStatus.RUNNING:
        await move_run(first["id"], RunStatus.RUNNING)

    body = await gql(TRIGGER, {"id": collection_id}, role="operator")

    assert code(body) == "E_COLLECTION_IN_PROGRESS"
    assert len(await requested_events(outbox)) == 1


async def test_a_finished_collection_can_be_triggered_again(
    gql: Gql,
    collection_id: str,
    trigger: Callable[[str], Awaitable[dict[str, Any]]],
    move_run: MoveRun,
) -> None:
    first = await trigger(collection_id)
    await move_run(first["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)

    second = await trigger(collection_id)

    assert second["id"] != first["id"]


async def test_trigger_endpoint_collection_runs_the_endpoints_collection(
    gql: Gql, endpoint: dict[str, Any], collection_id: str, outbox: Outbox
) -> None:
    body = await gql(TRIGGER_ENDPOINT, {"id": endpoint["id"]}, role="operator")

    run = data(body)["triggerEndpointCollection"]
    assert run["collectionId"] == collection_id
    assert run["endpointId"] == endpoint["id"]
    assert run["triggerSource"] == "api"
    assert [e["value"]["run_id"] for e in await requested_events(outbox)] == [run["id"]]


async def test_trigger_endpoint_collection_without_a_collection_creates_a_manual_one(
    gql: Gql, endpoint: dict[str, Any], collection_id: str
) -> None:
    data(await gql(DELETE, {"id": collection_id}))

    run = data(await gql(TRIGGER_ENDPOINT, {"id": endpoint["id"]}, role="operator"))[
        "triggerEndpointCollection"
    ]

    [created] = data(await gql(COLLECTIONS, {"endpointId": endpoint["id"]}))["collections"]
    assert run["collectionId"] == created["id"] != collection_id
    assert run["status"] == "QUEUED"
    assert created["scheduleCron"] is None
    assert created["isEnabled"] is True


async def test_trigger_endpoint_collection_of_an_unknown_endpoint(gql: Gql) -> None:
    body = await gql(TRIGGER_ENDPOINT, {"id": str(uuid.uuid4())}, role="operator")

    assert code(body) == "E_ENDPOINT_NOT_FOUND"


async def test_cancel_run_cancels_once_then_the_run_is_finished(
    gql: Gql, collection_id: str, trigger: Callable[[str], Awaitable[dict[str, Any]]]
) -> None:
    queued = await trigger(collection_id)

    cancelled = data(await gql(CANCEL, {"id": queued["id"]}, role="operator"))["cancelRun"]
    again = await gql(CANCEL, {"id": queued["id"]}, role="operator")

    assert cancelled["id"] == queued["id"]
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["error"] == "cancelled by otto-operator"
    aware(cancelled["completedAt"])
    assert code(again) == "E_RUN_FINISHED"
    # The collection is free again.
    assert (await trigger(collection_id))["status"] == "QUEUED"


async def test_cancel_of_an_unknown_run(gql: Gql) -> None:
    body = await gql(CANCEL, {"id": str(uuid.uuid4())}, role="operator")

    assert code(body) == "E_RUN_NOT_FOUND"


# Runs: history, filters, paging.


@pytest.fixture
async def three_runs(
    collection_id: str,
    trigger: Callable[[str], Awaitable[dict[str, Any]]],
    move_run: MoveRun,
) -> list[dict[str, Any]]:
    """SUCCEEDED, then FAILED, then QUEUED runs of the collection (oldest first)."""
    succeeded = await trigger(collection_id)
    await move_run(succeeded["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
    failed = await trigger(collection_id)
    await move_run(failed["id"], RunStatus.RUNNING, RunStatus.FAILED)
    queued = await trigger(collection_id)
    return [succeeded, failed, queued]


async def test_collection_runs_are_newest_first_with_their_outcome(
    gql: Gql, three_runs: list[dict[str, Any]]
) -> None:
    listed = data(await gql(RUNS, role="viewer"))["collectionRuns"]

    assert [r["id"] for r in listed] == [r["id"] for r in reversed(three_runs)]
    assert [r["status"] for r in listed] == ["QUEUED", "FAILED", "SUCCEEDED"]
    succeeded = listed[2]
    assert aware(succeeded["startedAt"]) <= aware(succeeded["completedAt"])
    assert isinstance(succeeded["durationMs"], int)
    assert succeeded["durationMs"] >= 0


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "QUEUED"])
async def test_collection_runs_filter_by_status(
    gql: Gql, three_runs: list[dict[str, Any]], status: str
) -> None:
    by_status = {r["status"]: r["id"] for r in data(await gql(RUNS))["collectionRuns"]}

    listed = data(await gql(RUNS, {"status": status}, role="viewer"))["collectionRuns"]
    literal = data(await gql(f"{{ collectionRuns(status: {status}) {{ id status }} }}"))

    assert [(r["id"], r["status"]) for r in listed] == [(by_status[status], status)]
    assert literal["collectionRuns"] == [{"id": by_status[status], "status": status}]


async def test_collection_runs_filter_by_status_with_no_match(
    gql: Gql, three_runs: list[dict[str, Any]]
) -> None:
    assert data(await gql(RUNS, {"status": "RUNNING"}))["collectionRuns"] == []


async def test_collection_runs_filter_by_requested_time(
    gql: Gql, three_runs: list[dict[str, Any]]
) -> None:
    first, second, third = three_runs

    since_second = data(await gql(RUNS, {"from": second["requestedAt"]}))["collectionRuns"]
    before_second = data(await gql(RUNS, {"to": second["requestedAt"]}))["collectionRuns"]
    only_second = data(
        await gql(RUNS, {"from": second["requestedAt"], "to": third["requestedAt"]})
    )["collectionRuns"]

    assert [r["id"] for r in since_second] == [third["id"], second["id"]]
    assert [r["id"] for r in before_second] == [first["id"]]
    assert [r["id"] for r in only_second] == [second["id"]]


async def test_collection_runs_from_after_to_is_refused(
    gql: Gql, three_runs: list[dict[str, Any]]
) -> None:
    first, _, third = three_runs

    body = await gql(RUNS, {"from": third["requestedAt"], "to": first["requestedAt"]})

    assert code(body) == "E_VALIDATION"


async def test_collection_runs_filter_by_collection_and_endpoint(
    gql: Gql,
    create_endpoint: CreateEndpoint,
    trigger: Callable[[str], Awaitable[dict[str, Any]]],
) -> None:
    mine = await create_endpoint("mine-db")
    other = await create_endpoint("other-db")
    my_run = await trigger(mine["collection_id"])
    other_run = await trigger(other["collection_id"])

    by_collection = data(await gql(RUNS, {"collectionId": mine["collection_id"]}))
    by_endpoint = data(await gql(RUNS, {"endpointId": other["id"]}))
    both = data(await gql(RUNS, {"endpointId": other["id"], "collectionId": mine["collection_id"]}))

    assert [r["id"] for r in by_collection["collectionRuns"]] == [my_run["id"]]
    assert [r["id"] for r in by_endpoint["collectionRuns"]] == [other_run["id"]]
    assert both["collectionRuns"] == []


async def test_collection_runs_page_through_three_pages_without_repeats(
    gql: Gql,
    collection_id: str,
    trigger: Callable[[str], Awaitable[dict[str, Any]]],
    move_run: MoveRun,
) -> None:
    made = []
    for _ in range(5):
        run = await trigger(collection_id)
        await move_run(run["id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
        made.append(run["id"])

    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = data(await gql(RUNS, {"first": 2, "after": after}, role="viewer"))
        items = page["collectionRuns"]
        if not items:
            break
        pages.append([r["id"] for r in items])
        after = items[-1]["cursor"]

    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == list(reversed(made))


async def test_collections_page_through_three_pages_without_repeats(
    gql: Gql, create_endpoint: CreateEndpoint
) -> None:
    made = [(await create_endpoint(f"db-{i}"))["collection_id"] for i in range(5)]

    pages: list[list[str]] = []
    after: str | None = None
    while True:
        items = data(await gql(COLLECTIONS, {"first": 2, "after": after}))["collections"]
        if not items:
            break
        pages.append([c["id"] for c in items])
        after = items[-1]["cursor"]

    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == made


async def test_first_defaults_to_50(gql: Gql, create_endpoint: CreateEndpoint) -> None:
    for i in range(3):
        await create_endpoint(f"db-{i}")

    listed = data(await gql("{ collections { id } }"))["collections"]
    explicit_null = data(await gql(COLLECTIONS, {"first": None}))["collections"]

    assert len(listed) == len(explicit_null) == 3


@pytest.mark.parametrize("field", ["collections", "collectionRuns"])
@pytest.mark.parametrize("first", [0, -1, 501])
async def test_first_outside_1_to_500_is_refused(gql: Gql, field: str, first: int) -> None:
    body = await gql(f"{{ {field}(first: {first}) {{ id }} }}", role="viewer")

    assert code(body) == "E_VALIDATION"
    assert error(body)["extensions"]["details"][0]["loc"] == ["first"]
    assert body["data"] is None


@pytest.mark.parametrize("field", ["collections", "collectionRuns"])
@pytest.mark.parametrize("after", ["not-a-cursor", "YWJj", "x" * 501])
async def test_a_cursor_that_is_not_one_is_refused(gql: Gql, field: str, after: str) -> None:
    body = await gql(
        f"query($after: String) {{ {field}(after: $after) {{ id }} }}", {"after": after}
    )

    assert code(body) == "E_VALIDATION"


@pytest.fixture
def statements(catalog: Database) -> list[str]:
    """The SQL statements the gateway sends from now on (reads and writes)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    engines = {id(e): e for e in (catalog.engine, catalog.reader)}
    for engine in engines.values():
        event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen


@pytest.mark.parametrize("endpoints", [3, 12])
async def test_the_endpoints_of_a_list_are_loaded_together(
    gql: Gql,
    create_endpoint: CreateEndpoint,
    trigger: Callable[[str], Awaitable[dict[str, Any]]],
    statements: list[str],
    endpoints: int,
) -> None:
    for i in range(endpoints):
        made = await create_endpoint(f"db-{i}")
        await trigger(made["collection_id"])
    statements.clear()

    body = await gql(
        "{ collectionRuns { endpoint { name collection { id } } } "
        "collections { endpoint { name } } }",
        role="viewer",
    )

    listed = data(body)
    assert len(listed["collectionRuns"]) == len(listed["collections"]) == endpoints
    endpoint_reads = [s for s in statements if "FROM endpoints" in s]
    collection_reads = [s for s in statements if "FROM collections" in s]
    # Few endpoints are read one by one (each once for both lists), many in one read.
    assert len(endpoint_reads) == (endpoints if endpoints <= 10 else 1)
    # One read for the `collections` list, then the endpoints' collections.
    assert len(collection_reads) == 1 + (endpoints if endpoints <= 10 else 1)


# Request errors.


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ('{ collection(id: "not-a-uuid") { id } }', ["id"]),
        ('{ endpoint(id: "42") { id } }', ["id"]),
        ('{ run(id: "") { id } }', ["id"]),
        ('{ collections(endpointId: "nope") { id } }', ["endpointId"]),
        ('{ collectionRuns(collectionId: "nope") { id } }', ["collectionId"]),
        ('{ collectionRuns(endpointId: "nope") { id } }', ["endpointId"]),
        ('mutation { triggerCollection(collectionId: "nope") { id } }', ["collectionId"]),
        ('mutation { triggerEndpointCollection(endpointId: "nope") { id } }', ["endpointId"]),
        ('mutation { deleteCollection(id: "nope") }', ["id"]),
        ('mutation { updateCollection(id: "nope", input: {}) { id } }', ["id"]),
        ('mutation { cancelRun(id: "nope") { id } }', ["id"]),
        (
            'mutation { createCollection(input: {endpointId: "nope"}) { id } }',
            ["input", "endpointId"],
        ),
    ],
)
async def test_an_id_that_is_not_a_uuid_is_refused(gql: Gql, query: str, loc: list[str]) -> None:
    body = await gql(query)

    assert code(body) == "E_VALIDATION"
    assert loc in [d["loc"] for d in error(body)["extensions"]["details"]]


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ collections { id ", None),
        ("{ collections { nope } }", None),
        ("{ collectionRuns(status: DONE) { id } }", None),
        (
            "query($s: MetadataCollectionStatus) { collectionRuns(status: $s) { id } }",
            {"s": "DONE"},
        ),
        ('{ collectionRuns(from: "yesterday") { id } }', None),
        ("query($f: DateTime) { collectionRuns(from: $f) { id } }", {"f": "yesterday"}),
        ("query($n: Int) { collections(first: $n) { id } }", {"n": "many"}),
        ("mutation { createCollection(input: {}) { id } }", None),
        ("mutation($id: ID!) { deleteCollection(id: $id) }", {}),
        ("subscription { collections { id } }", None),
    ],
)
async def test_requests_graphql_refuses_are_validation_errors(
    gql: Gql, query: str, variables: dict[str, Any] | None
) -> None:
    body = await gql(query, variables)

    assert body["errors"]
    assert {e["extensions"]["code"] for e in body["errors"]} == {"E_VALIDATION"}
    assert body.get("data") is None


async def test_queries_deeper_than_10_are_refused(gql: Gql) -> None:
    nested = "endpoint { collection { " * 5 + "id" + " } }" * 5
    body = await gql(f"{{ collections {{ {nested} }} }}")

    assert code(body) == "E_VALIDATION"
    assert "depth" in error(body)["message"]


async def test_a_query_of_depth_10_is_answered(gql: Gql) -> None:
    nested = "endpoint { collection { " * 4 + "id" + " } }" * 4
    body = await gql(f"{{ collections {{ {nested} }} }}")

    assert data(body) == {"collections": []}


async def test_oversized_queries_are_refused(gql: Gql) -> None:
    long = await gql("{ collections { id } }" + " " * MAX_QUERY_CHARS)
    many_tokens = await gql("{ " + "collections { id } " * 600 + "}")
    aliases = await gql("{ " + " ".join(f"a{i}: collections {{ id }}" for i in range(40)) + " }")

    for body in (long, many_tokens, aliases):
        assert code(body) == "E_VALIDATION"


async def test_an_unexpected_error_is_internal_and_says_nothing_of_its_cause(
    gql: Gql, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"connection to postgres://ro:{password}@db failed")

    monkeypatch.setattr(collections_service, "list_collections", boom)

    with structlog.testing.capture_logs() as logs:
        body = await gql("{ collections { id } }", role="viewer")

    assert error(body) == {
        "message": "internal error",
        "locations": [{"line": 1, "column": 3}],
        "path": ["collections"],
        "extensions": {"code": "E_INTERNAL"},
    }
    assert body["data"] is None
    [logged] = [line for line in logs if line["event"] == "graphql resolver failed"]
    assert logged["path"] == "collections"
    assert logged["log_level"] == "error"


async def test_an_error_in_one_field_leaves_the_others_answered(
    gql: Gql, collection_id: str
) -> None:
    body = await gql(
        f'{{ ok: collection(id: "{collection_id}") {{ id }} bad: collection(id: "x") {{ id }} }}'
    )

    assert body["data"] == {"ok": {"id": collection_id}, "bad": None}
    assert error(body)["path"] == ["bad"]
    assert code(body) == "E_VALIDATION"


# Secrets.


async def test_no_answer_contains_a_secret(
    gql: Gql,
    client: httpx.AsyncClient,
    auth: Auth,
    endpoint: dict[str, Any],
    collection_id: str,
    password: str,
) -> None:
    """`gql` checks every answer of this module; here every field that can reach an endpoint
    is asked for at once, and the whole answer searched, in any form."""
    run = data(await gql(TRIGGER_ENDPOINT, {"id": endpoint["id"]}, role="operator"))[
        "triggerEndpointCollection"
    ]
    query = f"""{{
      endpoints {{ {ENDPOINT_FIELDS} }}
      endpoint(id: "{endpoint["id"]}") {{ {ENDPOINT_FIELDS} }}
      collections {{ {COLLECTION_FIELDS} endpoint {{ {ENDPOINT_FIELDS} }} }}
      collection(id: "{collection_id}") {{ endpoint {{ {ENDPOINT_FIELDS} }} }}
      collectionRuns {{ {RUN_FIELDS} endpoint {{ {ENDPOINT_FIELDS} }} }}
      run(id: "{run["id"]}") {{ endpoint {{ {ENDPOINT_FIELDS} }} }}
    }}"""

    response = await client.post("/graphql", json={"query": query}, headers=auth("admin"))

    assert response.status_code == 200
    assert "errors" not in response.json()
    assert password not in response.text
    assert password.encode() not in response.content
    assert "secret_ciphertext" not in response.text
    assert response.json()["data"]["endpoint"]["secretFields"] == ["password"]
